import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';

export type WindowSize = number | readonly [number, number];

function win(ws: WindowSize): [number, number] {
  const w: [number, number] = typeof ws === 'number' ? [ws, ws] : [ws[0], ws[1]];
  if (!w.every((v) => Number.isInteger(v) && v > 0)) throw new ConfigError(`window size must be positive integers, got ${JSON.stringify(ws)}`);
  return w;
}

/**
 * `[B, H, W, C]` → `[B·nH·nW, wh, ww, C]`: windows row-major over the grid, batch-major, tokens
 * row-major inside each window (Swin's window_partition). Goes through 4-D views only: a rank-6
 * reshape/transpose breaks gradients on the WebGPU backend.
 */
export function windowPartition(x: tf.Tensor, windowSize: WindowSize): tf.Tensor4D {
  const [wh, ww] = win(windowSize);
  if (x.rank !== 4) throw new ShapeError(`windowPartition expected [B, H, W, C], got shape [${x.shape.join(',')}]`);
  const [b, h, w, c] = x.shape as [number, number, number, number];
  if (h % wh !== 0 || w % ww !== 0) {
    throw new ShapeError(`windowPartition: height ${h} and width ${w} must be divisible by the window ${wh}x${ww}`);
  }
  const nh = h / wh;
  const nw = w / ww;
  return tf.tidy(() => {
    // [B·nH, wh, nW, ww·C]: one window row band per leading index, each window's row a ww·C run.
    const bands = tf.reshape(x, [b * nh, wh, nw, ww * c]);
    return tf.reshape(tf.transpose(bands, [0, 2, 1, 3]), [b * nh * nw, wh, ww, c]);
  });
}

/** The inverse of `windowPartition`: `[B·nH·nW, wh, ww, C]` → `[B, H, W, C]`. */
export function windowReverse(windows: tf.Tensor, windowSize: WindowSize, h: number, w: number): tf.Tensor4D {
  const [wh, ww] = win(windowSize);
  if (windows.rank !== 4 || windows.shape[1] !== wh || windows.shape[2] !== ww) {
    throw new ShapeError(`windowReverse expected [B·nW, ${wh}, ${ww}, C], got shape [${windows.shape.join(',')}]`);
  }
  if (h % wh !== 0 || w % ww !== 0) throw new ShapeError(`windowReverse: height ${h} and width ${w} must be divisible by the window ${wh}x${ww}`);
  const nh = h / wh;
  const nw = w / ww;
  const [n, , , c] = windows.shape as [number, number, number, number];
  if (n % (nh * nw) !== 0) {
    throw new ShapeError(`windowReverse: ${n} windows is not a multiple of the ${nh}x${nw} grid of a ${h}x${w} map`);
  }
  const b = n / (nh * nw);
  return tf.tidy(() => {
    const bands = tf.reshape(windows, [b * nh, nw, wh, ww * c]);
    return tf.reshape(tf.transpose(bands, [0, 2, 1, 3]), [b, h, w, c]);
  });
}
