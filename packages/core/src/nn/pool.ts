import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { toPair, type Pair } from './conv.js';
import { Module } from './module.js';

export interface PoolOptions {
  /** Default: the kernel size (PyTorch's `stride=None`). */
  stride?: Pair;
  padding?: Pair;
  ceilMode?: boolean;
}

export interface AvgPoolOptions extends PoolOptions {
  countIncludePad?: boolean;
}

interface PoolGeometry {
  k: [number, number];
  s: [number, number];
  p: [number, number];
  out: [number, number];
  /** Extra bottom/right padding so that ceil-mode windows fit a 'valid' pool. */
  extra: [number, number];
}

/** PyTorch's `pooling_output_shape` (dilation 1). */
function poolOut(n: number, k: number, s: number, p: number, ceil: boolean): number {
  let out = Math.floor((n + 2 * p - k + (ceil ? s - 1 : 0)) / s) + 1;
  // In ceil mode the last window must start inside the input or its left padding.
  if (ceil && (out - 1) * s >= n + p) out -= 1;
  return out;
}

function geometry(what: string, x: tf.Tensor, kernel: Pair, options: PoolOptions): PoolGeometry {
  if (x.rank !== 4) throw new ShapeError(`${what} expected NHWC input of rank 4, got shape [${x.shape.join(',')}]`);
  const k = toPair(kernel, `${what} kernelSize`);
  const s = toPair(options.stride ?? kernel, `${what} stride`);
  const p = toPair(options.padding ?? 0, `${what} padding`);
  if (k.some((v) => v <= 0) || s.some((v) => v <= 0) || p.some((v) => v < 0)) {
    throw new ConfigError(`${what}: kernel and stride must be positive and padding >= 0, got kernel ${k}, stride ${s}, padding ${p}`);
  }
  if (p[0] * 2 > k[0] || p[1] * 2 > k[1]) throw new ConfigError(`${what}: padding (${p}) must be at most half the kernel size (${k}), as in PyTorch`);
  const [h, w] = [x.shape[1]!, x.shape[2]!];
  if (h + 2 * p[0] < k[0] || w + 2 * p[1] < k[1]) {
    throw new ShapeError(`${what}: kernel ${k[0]}x${k[1]} is larger than the padded input ${h + 2 * p[0]}x${w + 2 * p[1]} (input shape [${x.shape.join(',')}])`);
  }
  const ceil = options.ceilMode ?? false;
  const out: [number, number] = [poolOut(h, k[0], s[0], p[0], ceil), poolOut(w, k[1], s[1], p[1], ceil)];
  const extra: [number, number] = [
    Math.max(0, (out[0] - 1) * s[0] + k[0] - (h + 2 * p[0])),
    Math.max(0, (out[1] - 1) * s[1] + k[1] - (w + 2 * p[1])),
  ];
  return { k, s, p, out, extra };
}

/**
 * `F.avg_pool2d` on NHWC: explicit zero padding, floor or ceil output size, and PyTorch's divisor
 * (`countIncludePad`: the window clipped to the padded input; otherwise only real pixels).
 */
export function avgPool2d(x: tf.Tensor, kernel: Pair, options: AvgPoolOptions = {}): tf.Tensor4D {
  const g = geometry('AvgPool2d', x, kernel, options);
  const includePad = options.countIncludePad ?? true;
  const [ph, pw] = g.p;
  const [eh, ew] = g.extra;
  return tf.tidy(() => {
    let xp = x as tf.Tensor4D;
    if (ph || pw || eh || ew) xp = tf.pad(xp, [[0, 0], [ph, ph + eh], [pw, pw + ew], [0, 0]]);
    const mean = tf.avgPool(xp, g.k, g.s, 'valid');
    // Every window lies in the padded input and counts the padding: k·k is PyTorch's divisor too.
    if (!eh && !ew && (includePad || (!ph && !pw))) return mean;
    const divisor = divisorMap(x.shape[1]!, x.shape[2]!, g, includePad);
    return tf.div(tf.mul(mean, g.k[0] * g.k[1]), divisor);
  });
}

/** PyTorch's avg-pool divisor per output position, as a [1, Ho, Wo, 1] constant. */
function divisorMap(h: number, w: number, g: PoolGeometry, includePad: boolean): tf.Tensor4D {
  const axis = (n: number, k: number, s: number, p: number, out: number) =>
    Array.from({ length: out }, (_, o) => {
      let start = o * s - p;
      let end = Math.min(start + k, n + p);
      const padded = end - start;
      start = Math.max(start, 0);
      end = Math.min(end, n);
      return includePad ? padded : end - start;
    });
  const rows = axis(h, g.k[0], g.s[0], g.p[0], g.out[0]);
  const cols = axis(w, g.k[1], g.s[1], g.p[1], g.out[1]);
  const data = new Float32Array(rows.length * cols.length);
  rows.forEach((r, i) => cols.forEach((c, j) => (data[i * cols.length + j] = r * c)));
  return tf.tensor4d(data, [1, rows.length, cols.length, 1]);
}

/** `F.max_pool2d` on NHWC; padding is −inf as in PyTorch, so padded cells never win. */
export function maxPool2d(x: tf.Tensor, kernel: Pair, options: PoolOptions = {}): tf.Tensor4D {
  const g = geometry('MaxPool2d', x, kernel, options);
  const [ph, pw] = g.p;
  const [eh, ew] = g.extra;
  return tf.tidy(() => {
    let xp = x as tf.Tensor4D;
    if (ph || pw || eh || ew) xp = tf.pad(xp, [[0, 0], [ph, ph + eh], [pw, pw + ew], [0, 0]], -Infinity);
    return tf.maxPool(xp, g.k, g.s, 'valid');
  });
}

export type AdaptiveSize = number | readonly [number | null, number | null];

/**
 * `F.adaptive_avg_pool2d` on NHWC: output bin i covers [floor(i·H/out), ceil((i+1)·H/out)).
 * Output 1 is the global mean; sizes that divide the input use one avgPool.
 */
export function adaptiveAvgPool2d(x: tf.Tensor, outputSize: AdaptiveSize): tf.Tensor4D {
  if (x.rank !== 4) throw new ShapeError(`AdaptiveAvgPool2d expected NHWC input of rank 4, got shape [${x.shape.join(',')}]`);
  const [h, w] = [x.shape[1]!, x.shape[2]!];
  const [oh, ow] = typeof outputSize === 'number' ? [outputSize, outputSize] : [outputSize[0] ?? h, outputSize[1] ?? w];
  if (!Number.isInteger(oh) || !Number.isInteger(ow) || oh <= 0 || ow <= 0) {
    throw new ConfigError(`AdaptiveAvgPool2d output size must be positive integers, got ${JSON.stringify(outputSize)}`);
  }
  return tf.tidy(() => {
    const x4 = x as tf.Tensor4D;
    if (oh === 1 && ow === 1) return tf.mean(x4, [1, 2], true);
    if (h % oh === 0 && w % ow === 0) return tf.avgPool(x4, [h / oh, w / ow], [h / oh, w / ow], 'valid');
    // Bins are rectangles, so the mean separates: rows first, then columns.
    return adaptiveAxis(adaptiveAxis(x4, 1, oh), 2, ow);
  });
}

function adaptiveAxis(x: tf.Tensor4D, axis: 1 | 2, out: number): tf.Tensor4D {
  const n = x.shape[axis];
  if (n === out) return x;
  const parts: tf.Tensor4D[] = [];
  for (let i = 0; i < out; i++) {
    const start = Math.floor((i * n) / out);
    const end = Math.ceil(((i + 1) * n) / out);
    const begin: [number, number, number, number] = [0, 0, 0, 0];
    const size: [number, number, number, number] = [-1, -1, -1, -1];
    begin[axis] = start;
    size[axis] = end - start;
    parts.push(tf.mean(tf.slice(x, begin, size), axis, true));
  }
  return tf.concat(parts, axis);
}

export class AvgPool2d extends Module {
  readonly options: AvgPoolOptions;
  constructor(
    readonly kernelSize: Pair,
    options: AvgPoolOptions = {},
  ) {
    super();
    this.options = { ...options };
  }
  override forward(x: tf.Tensor): tf.Tensor {
    return avgPool2d(x, this.kernelSize, this.options);
  }
}

export class MaxPool2d extends Module {
  readonly options: PoolOptions;
  constructor(
    readonly kernelSize: Pair,
    options: PoolOptions = {},
  ) {
    super();
    this.options = { ...options };
  }
  override forward(x: tf.Tensor): tf.Tensor {
    return maxPool2d(x, this.kernelSize, this.options);
  }
}

export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: AdaptiveSize) {
    super();
  }
  override forward(x: tf.Tensor): tf.Tensor {
    return adaptiveAvgPool2d(x, this.outputSize);
  }
}
