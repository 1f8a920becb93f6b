import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';

/**
 * Bilinear sampling of NHWC maps at fractional pixel coordinates, differentiable with respect to
 * the map and the coordinates.
 *
 * The gradient is written by hand (`tf.customGrad`) from kernels every backend has in forward
 * form: the map gradient accumulates with ScatterNd (which sums duplicate indices; 3 ms where the
 * cpu's UnsortedSegmentSum takes 38 s and a one-hot matMul 650 ms, at [14, 14, 384] maps), the
 * coordinate gradient is products and small batched matMuls. TF.js's own gather gradient
 * (UnsortedSegmentSum) is missing on wasm, quadratic on cpu, and breaks when the indices derive
 * from trainable values, so it is never used.
 */

/**
 * `input` `[B, H, W, C]`, `coords` `[B, ...S, 2]` holding (y, x) in pixels (pixel centres sit on
 * integers: (0, 0) is the first pixel) → `[B, ...S, C]`.
 *
 * The rule is the deformable-convolution one (DCN v1/v2, mmcv, torchvision `deform_conv2d`): a
 * sample is 0 unless −1 < y < H and −1 < x < W; inside, the four neighbours (⌊y⌋ or ⌊y⌋+1, ⌊x⌋ or
 * ⌊x⌋+1) are weighted bilinearly and a neighbour outside the map contributes 0 (zero padding).
 * Within the map it is exactly bilinear interpolation.
 */
export function bilinearSample(input: tf.Tensor, coords: tf.Tensor): tf.Tensor {
  if (input.rank !== 4) throw new ShapeError(`bilinearSample expected an NHWC input [B, H, W, C], got shape [${input.shape.join(',')}]`);
  const [b, h, w, c] = input.shape as [number, number, number, number];
  if (coords.rank < 2 || coords.shape[0] !== b || coords.shape[coords.rank - 1] !== 2) {
    throw new ShapeError(`bilinearSample expected coords [${b}, ..., 2] holding (y, x) for the input's batch of ${b}, got shape [${coords.shape.join(',')}]`);
  }
  if (input.dtype !== 'float32' || coords.dtype !== 'float32') {
    throw new ConfigError(`bilinearSample needs float32 input and coords, got ${input.dtype} and ${coords.dtype}`);
  }
  const outShape = [...coords.shape.slice(0, -1), c];
  const p = coords.size / (2 * b);
  if (p === 0 || input.size === 0) return tf.zeros(outShape);

  const n = b * p;
  const sample = tf.customGrad((...args: unknown[]) => {
    const [x, xy] = args as [tf.Tensor, tf.Tensor];
    const save = args[2] as tf.GradSaveFunc;
    const g = sampleGeometry(xy, b, h, w, p);
    // [B·P, 4, C] neighbours, one gather for all four corners.
    const v = tf.reshape(gatherRows(tf.reshape(x, [b * h * w, c]), tf.reshape(g.index, [n * 4])), [n, 4, c]);
    const value = tf.reshape(weightedSum(v, tf.reshape(g.weight, [n, 4])), outShape);
    save([v, g.weight, g.index, g.dwdy, g.dwdx]);
    const gradFunc = (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const [sv, sw, si, sdy, sdx] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      const d = tf.reshape(dy as tf.Tensor, [n, c]);
      // Map gradient: every sample adds weight·dy to its four neighbours; duplicates sum.
      const updates = outer(tf.reshape(sw, [n, 4]), d);
      const dx = tf.reshape(tf.scatterND(tf.reshape(si, [n * 4, 1]), updates, [b * h * w, c]), [b, h, w, c]);
      // Coordinate gradient: Σ_c dy·v per corner, times the bilinear weight's slope.
      const gc = cornerDots(sv, d);
      const gy = tf.sum(tf.mul(gc, tf.reshape(sdy, [n, 4])), 1);
      const gx = tf.sum(tf.mul(gc, tf.reshape(sdx, [n, 4])), 1);
      return [dx, tf.reshape(tf.stack([gy, gx], 1), xy.shape)];
    };
    return { value, gradFunc };
  });
  return sample(input, coords);
}

interface Geometry {
  /** Flat row of each corner in the `[B·H·W, C]` view, int32 `[B, P, 4]` (clamped; weight 0 when outside). */
  index: tf.Tensor;
  /** Bilinear weight of each corner, 0 for corners outside the map or samples outside (−1, H)×(−1, W). */
  weight: tf.Tensor;
  /** ∂weight/∂y and ∂weight/∂x per corner (same masking). */
  dwdy: tf.Tensor;
  dwdx: tf.Tensor;
}

/** Corner order: (y0, x0), (y0, x0+1), (y0+1, x0), (y0+1, x0+1). */
function sampleGeometry(coords: tf.Tensor, b: number, h: number, w: number, p: number): Geometry {
  const [y, x] = tf.split(tf.reshape(coords, [b, p, 2]), 2, 2) as [tf.Tensor, tf.Tensor];
  const y0 = tf.floor(y);
  const x0 = tf.floor(x);
  const ly = tf.sub(y, y0);
  const lx = tf.sub(x, x0);
  // The four corners by broadcasting against per-corner steps (concats of [B, P, 1] pieces are
  // slow on wasm): dy = [0, 0, 1, 1], dx = [0, 1, 0, 1].
  const ty = tf.tensor3d([0, 0, 1, 1], [1, 1, 4]);
  const tx = tf.tensor3d([0, 1, 0, 1], [1, 1, 4]);
  const cy = tf.add(y0, ty);
  const cx = tf.add(x0, tx);
  // Row weight 1 − ly for the upper corners, ly for the lower ones: (1 − ly) + (2ly − 1)·dy.
  const wy = tf.add(tf.sub(1, ly), tf.mul(tf.sub(tf.mul(ly, 2), 1), ty));
  const wx = tf.add(tf.sub(1, lx), tf.mul(tf.sub(tf.mul(lx, 2), 1), tx));
  // The official rule: a sample outside (−1, H)×(−1, W) is 0 as a whole (its gradient too).
  const inside = tf.logicalAnd(tf.logicalAnd(tf.greater(y, -1), tf.less(y, h)), tf.logicalAnd(tf.greater(x, -1), tf.less(x, w)));
  const cornerIn = tf.logicalAnd(
    tf.logicalAnd(tf.greaterEqual(cy, 0), tf.lessEqual(cy, h - 1)),
    tf.logicalAnd(tf.greaterEqual(cx, 0), tf.lessEqual(cx, w - 1)),
  );
  const mask = tf.cast(tf.logicalAnd(cornerIn, inside), 'float32');
  const weight = tf.mul(tf.mul(wy, wx), mask);
  // ∂wy/∂y = ±1 (− for the upper corners), so ∂(wy·wx)/∂y = (2dy − 1)·wx; likewise for x.
  const dwdy = tf.mul(tf.mul(tf.sub(tf.mul(ty, 2), 1), wx), mask);
  const dwdx = tf.mul(tf.mul(tf.sub(tf.mul(tx, 2), 1), wy), mask);
  const iy = tf.cast(tf.clipByValue(cy, 0, h - 1), 'int32');
  const ix = tf.cast(tf.clipByValue(cx, 0, w - 1), 'int32');
  const base = tf.reshape(tf.range(0, b * h * w, h * w, 'int32'), [b, 1, 1]);
  const index = tf.add(tf.add(base, tf.mul(iy, tf.scalar(w, 'int32'))), ix);
  return { index, weight, dwdy, dwdx };
}

// The per-sample contractions have two forms: batched matMuls ([N, 1, 4]·[N, 4, C]…) are 15-30×
// faster than broadcast multiply-and-sum on the cpu backend, which has no fast broadcasting, while
// wasm runs batched matMul as a scalar loop and broadcasting fast (measured at N = 6272, C = 96).
const preferMatMul = () => tf.getBackend() !== 'wasm';

/** Σ_k v[n, k, :]·w[n, k]: `[N, 4, C]`, `[N, 4]` → `[N, C]`. */
function weightedSum(v: tf.Tensor, w: tf.Tensor): tf.Tensor {
  const [n, k, c] = v.shape as [number, number, number];
  if (preferMatMul()) return tf.reshape(tf.matMul(tf.reshape(w, [n, 1, k]), v as tf.Tensor3D), [n, c]);
  return tf.sum(tf.mul(v, tf.expandDims(w, 2)), 1);
}

/** w[n, k]·d[n, :] for every corner: `[N, 4]`, `[N, C]` → `[N·4, C]`. */
function outer(w: tf.Tensor, d: tf.Tensor): tf.Tensor {
  const [n, k] = w.shape as [number, number];
  const c = d.shape[1]!;
  if (preferMatMul()) return tf.reshape(tf.matMul(tf.reshape(w, [n, k, 1]), tf.reshape(d, [n, 1, c])), [n * k, c]);
  return tf.reshape(tf.mul(tf.expandDims(d, 1), tf.expandDims(w, 2)), [n * k, c]);
}

/** Σ_c v[n, k, c]·d[n, c]: `[N, 4, C]`, `[N, C]` → `[N, 4]`. */
function cornerDots(v: tf.Tensor, d: tf.Tensor): tf.Tensor {
  const [n, k, c] = v.shape as [number, number, number];
  return tf.reshape(tf.matMul(v as tf.Tensor3D, tf.reshape(d, [n, c, 1])), [n, k]);
}

/**
 * Rows `index` of a `[N, C]` matrix. Both kernels exist on every backend; measured on [6272, 96]
 * gathering 25,088 rows: wasm GatherV2 183 ms vs GatherNd 14 ms, cpu GatherV2 173 ms vs GatherNd 696 ms.
 */
function gatherRows(flat: tf.Tensor, index: tf.Tensor): tf.Tensor {
  if (tf.getBackend() === 'wasm') return tf.gatherND(flat, tf.reshape(index, [-1, 1]));
  return tf.gather(flat, index);
}

export interface GridSampleOptions {
  /** PyTorch's `align_corners` (default false, PyTorch's default): −1/1 are the corner pixels' centres when true, their outer edges when false. */
  alignCorners?: boolean;
}

/**
 * `F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros')` on NHWC: `input`
 * `[B, H, W, C]`, `grid` `[B, ...S, 2]` of normalised (x, y) in [−1, 1] (PyTorch's order) →
 * `[B, ...S, C]`. Runs {@link bilinearSample}; values equal PyTorch's everywhere, the coordinate
 * gradient too except exactly on the lines y = −1, y = H, x = −1, x = W (pixels), where DCN's rule
 * zeroes it.
 */
export function gridSample(input: tf.Tensor, grid: tf.Tensor, options: GridSampleOptions = {}): tf.Tensor {
  if (input.rank !== 4) throw new ShapeError(`gridSample expected an NHWC input [B, H, W, C], got shape [${input.shape.join(',')}]`);
  if (grid.rank < 2 || grid.shape[grid.rank - 1] !== 2) {
    throw new ShapeError(`gridSample expected a grid [B, ..., 2] holding normalised (x, y), got shape [${grid.shape.join(',')}]`);
  }
  const [, h, w] = input.shape as [number, number, number, number];
  const align = options.alignCorners ?? false;
  return tf.tidy(() => {
    const [gx, gy] = tf.split(grid, 2, grid.rank - 1);
    // align: p = (g + 1)/2·(n − 1); otherwise p = ((g + 1)·n − 1)/2.
    const unnorm = (g: tf.Tensor, n: number) => (align ? tf.mul(tf.add(g, 1), (n - 1) / 2) : tf.div(tf.sub(tf.mul(tf.add(g, 1), n), 1), 2));
    return bilinearSample(input, tf.concat([unnorm(gy!, h), unnorm(gx!, w)], grid.rank - 1));
  });
}
