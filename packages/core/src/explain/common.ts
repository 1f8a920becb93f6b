import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import type { Module } from '../nn/module.js';

/** What every explanation method returns. Dispose `map` and `logits` when done. */
export interface Explanation {
  /** One map per image, `[B, H, W]` at the input's size, scaled to [0, 1] per image (all 0 when the method found nothing). */
  map: tf.Tensor3D;
  /** The model's logits for the input, `[B, classes]`. */
  logits: tf.Tensor2D;
  /** The class each map explains: the one asked for, else the top class. Rollout is class-agnostic: it reports the top class. */
  classIndex: number[];
  method: 'gradcam' | 'rollout';
  /** Grad-CAM: the dotted path of the layer it weighed (`forwardFeatures` for the features/head split). */
  layer?: string;
}

/** Explanations take an NHWC float32 batch; the model checks the rest. */
export function checkBatch(what: string, x: unknown): asserts x is tf.Tensor4D {
  if (!(x instanceof tf.Tensor)) throw new ShapeError(`${what} expects an NHWC image batch (a tf.Tensor4D), got ${x === null ? 'null' : typeof x}`);
  if (x.rank !== 4) {
    throw new ShapeError(`${what} expects an NHWC image batch [B, H, W, C], got rank ${x.rank} shape [${x.shape.join(', ')}]; for one image use tf.expandDims(image, 0)`);
  }
  if (x.dtype !== 'float32') throw new ShapeError(`${what} expects float32 images (NHWC, normalised), got ${x.dtype}`);
}

/** Runs `fn` with the model in eval mode (no dropout, BatchNorm's running statistics) and restores its mode. */
export function inEvalMode<T>(model: Module, fn: () => T): T {
  const was = model.training;
  model.eval();
  try {
    return fn();
  } finally {
    model.train(was);
  }
}

/** The class per image: `classIndex` (one for all, or one each) checked against the logits, else each image's top class. */
export function resolveClasses(what: string, classIndex: number | readonly number[] | undefined, logits: tf.Tensor2D): number[] {
  const [b, classes] = logits.shape;
  if (classIndex === undefined) {
    const top = tf.argMax(logits, 1);
    const list = Array.from(top.dataSync() as Int32Array);
    top.dispose();
    return list;
  }
  const list = typeof classIndex === 'number' ? Array.from({ length: b }, () => classIndex) : [...classIndex];
  if (list.length !== b) throw new ConfigError(`${what}: classIndex lists ${list.length} classes for a batch of ${b} images`);
  for (const c of list) {
    if (!Number.isInteger(c) || c < 0 || c >= classes) throw new ConfigError(`${what}: classIndex must be an integer in [0, ${classes - 1}] (the model has ${classes} classes), got ${c}`);
  }
  return list;
}

/**
 * `[B, h, w]` non-negative maps → `[B, H, W]`: bilinear upsampling with half-pixel centres
 * (PyTorch `F.interpolate(align_corners=False)`, OpenCV `resize`), then each image's map scaled to
 * [0, 1] (min → 0, max → 1; a constant map becomes 0).
 */
export function toUnitMaps(maps: tf.Tensor3D, height: number, width: number): tf.Tensor3D {
  return tf.tidy(() => {
    const up = tf.squeeze(tf.image.resizeBilinear(tf.expandDims(maps, 3) as tf.Tensor4D, [height, width], false, true), [3]) as tf.Tensor3D;
    const lo = tf.min(up, [1, 2], true);
    const range = tf.sub(tf.max(up, [1, 2], true), lo);
    const scaled = tf.div(tf.sub(up, lo), tf.maximum(range, 1e-30));
    return tf.where(tf.greater(tf.broadcastTo(range, up.shape), 0), scaled, tf.zerosLike(up)) as tf.Tensor3D;
  });
}

/**
 * The patch grid of `n` tokens for an `height`×`width` input: with a known stride, `⌊H/r⌋×⌊W/r⌋`;
 * otherwise the first stride (and up to 8 leading non-patch tokens) whose grid accounts for the
 * tokens. Returns the grid; the patch tokens are the last `gh·gw`.
 */
export function tokenGrid(what: string, n: number, height: number, width: number, reduction?: number | [number, number]): [number, number] {
  if (reduction !== undefined) {
    const [rh, rw] = typeof reduction === 'number' ? [reduction, reduction] : reduction;
    const g: [number, number] = [Math.floor(height / rh), Math.floor(width / rw)];
    if (g[0] * g[1] > n || g[0] * g[1] === 0) throw new ShapeError(`${what}: ${n} tokens cannot hold the ${g[0]}x${g[1]} patch grid of a ${height}x${width} input at stride ${rh}x${rw}`);
    return g;
  }
  for (let prefix = 0; prefix <= Math.min(8, n - 1); prefix++) {
    for (let r = 1; r <= Math.max(height, width); r++) {
      const gh = Math.floor(height / r);
      const gw = Math.floor(width / r);
      if (gh * gw === n - prefix && gh > 0 && gw > 0) return [gh, gw];
    }
  }
  throw new ShapeError(`${what}: cannot lay ${n} tokens out as the patch grid of a ${height}x${width} input (expected up to 8 leading tokens and then ⌊H/r⌋·⌊W/r⌋ patch tokens for some stride r)`);
}

/** The last `gh·gw` tokens of `[B, N, C]` as an NHWC map `[B, gh, gw, C]`. */
export function tokensToMap(t: tf.Tensor, grid: [number, number]): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, n, c] = t.shape as [number, number, number];
    const p = grid[0] * grid[1];
    return tf.reshape(tf.slice(t, [0, n - p, 0], [b, p, c]), [b, grid[0], grid[1], c]) as tf.Tensor4D;
  });
}
