import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  batchNormBackwardComposed,
  batchNormBackwardFused,
  batchNormForwardComposed,
  batchNormForwardFused,
  batchNormTrain,
  layerNormBackwardComposed,
  layerNormBackwardWasm,
  layerNormForwardComposed,
  layerNormForwardWasm,
  layerNormLastAxis,
} from '../ops/norm.js';
import { setTestWasm } from '../testing/backend.js';
import { installWasmKernels } from './install.js';
import { BATCH_NORM, BATCH_NORM_GRAD, LAYER_NORM, LAYER_NORM_GRAD } from './wasm_norm.js';

// The fused LayerNorm and training-BatchNorm kernels on wasm against the composed kernels they
// replace, on the same backend: bit for bit, forward (y and the statistics) and backward (dx, dγ,
// dβ); LayerNorm with and without γ and β, for rows of every length mod 4, row counts of every
// count mod 4, one row, long rows; BatchNorm for channel counts of every count mod 4, one pixel;
// full-size activations of the 224-px models (the threaded build too: VIT_TEST_WASM_THREADS=2 in CI).

beforeAll(async () => {
  await setTestWasm();
  installWasmKernels();
});

function values(n: number, seed: number, scale = 4, offset = 0): Float32Array {
  const v = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    v[i] = ((s / 2147483648) * 2 - 1) * scale + offset;
  }
  return v;
}

/** How many elements differ in their bits (any NaN matches any NaN). */
function bitDiffs(a: tf.Tensor, b: tf.Tensor): number {
  expect(a.shape).toEqual(b.shape);
  const x = a.dataSync();
  const y = b.dataSync();
  const xb = new Uint32Array(new Float32Array(x).buffer);
  const yb = new Uint32Array(new Float32Array(y).buffer);
  let diff = 0;
  for (let i = 0; i < xb.length; i++) if (xb[i] !== yb[i] && !(Number.isNaN(x[i]) && Number.isNaN(y[i]))) diff++;
  return diff;
}

/** Compares the fused kernels with the composed ones (in a tidy: the composed forward leaves its σ² behind, as inside customGrad's scope). */
function compare(shape: number[], withGamma: boolean, withBeta: boolean, eps: number, seed: number, offset = 0): void {
  tf.tidy(() => compareIn(shape, withGamma, withBeta, eps, seed, offset));
}

function compareIn(shape: number[], withGamma: boolean, withBeta: boolean, eps: number, seed: number, offset: number): void {
  const n = shape.reduce((a, b) => a * b, 1);
  const c = shape[shape.length - 1]!;
  const x = tf.tensor(values(n, seed, 4, offset), shape);
  const dy = tf.tensor(values(n, seed + 1), shape);
  const g = withGamma ? tf.tensor1d(values(c, seed + 2, 1, 1)) : null;
  const b = withBeta ? tf.tensor1d(values(c, seed + 3)) : null;
  const fused = layerNormForwardWasm(x, g, b, eps);
  const ref = layerNormForwardComposed(x, g, b, eps);
  const what = `[${shape}] γ ${withGamma} β ${withBeta} eps ${eps}`;
  expect(bitDiffs(fused.y, ref.y), `y ${what}`).toBe(0);
  expect(bitDiffs(fused.mean, ref.mean), `μ ${what}`).toBe(0);
  expect(bitDiffs(fused.rstd, ref.rstd), `1/σ ${what}`).toBe(0);
  const grads = layerNormBackwardWasm(dy, x, ref.mean, ref.rstd, g, withBeta);
  const refGrads = layerNormBackwardComposed(dy, x, ref.mean, ref.rstd, g, withBeta);
  expect(grads.length).toBe(1 + +withGamma + +withBeta);
  grads.forEach((t, i) => expect(bitDiffs(t, refGrads[i]!), `gradient ${i} ${what}`).toBe(0));
}

describe('fused LayerNorm on wasm', () => {
  it('runs one kernel forward and one backward inside layerNormLastAxis', async () => {
    const x = tf.tensor2d(values(6 * 8, 1), [6, 8]);
    const g = tf.tensor1d(values(8, 2));
    const b = tf.tensor1d(values(8, 3));
    const fwd = await tf.profile(() => layerNormLastAxis(x, g, b, 1e-5));
    expect(fwd.kernelNames.filter(Boolean)).toEqual([LAYER_NORM]);
    const loss = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => tf.sum(tf.mul(layerNormLastAxis(xi, gi, bi, 1e-5), x));
    const bwd = await tf.profile(() => tf.grads(loss as (...t: tf.Tensor[]) => tf.Tensor)([x, g, b]));
    expect(bwd.kernelNames.filter((k) => k.startsWith('VitLayerNorm'))).toEqual([LAYER_NORM, LAYER_NORM_GRAD]);
    tf.dispose([x, g, b, fwd.result as tf.Tensor, ...(bwd.result as tf.Tensor[])]);
  });

  it('leaks nothing through layerNormLastAxis, forward and backward', () => {
    const x = tf.tensor3d(values(2 * 3 * 10, 4), [2, 3, 10]);
    const g = tf.tensor1d(values(10, 5));
    const before = tf.memory().numTensors;
    const y = layerNormLastAxis(x, g, null, 1e-5);
    const [dx, dg] = tf.grads((xi: tf.Tensor, gi: tf.Tensor) => tf.sum(tf.square(layerNormLastAxis(xi, gi, null, 1e-5))))([x, g]);
    expect(tf.memory().numTensors).toBe(before + 3);
    tf.dispose([x, g, y, dx!, dg!]);
  });

  it('equals the composed kernels bit for bit, forward and backward, for odd shapes, with and without γ and β', () => {
    const before = tf.memory().numTensors;
    const shapes = [
      [1, 1],
      [1, 5],
      [3, 7],
      [5, 4],
      [7, 1],
      [2, 3, 3, 13],
      [6, 2],
      [9, 64],
      [4, 1003],
      [2, 2, 2, 6],
    ];
    let seed = 1;
    for (const shape of shapes) {
      for (const [gm, bt] of [
        [true, true],
        [true, false],
        [false, true],
        [false, false],
      ] as const) {
        compare(shape, gm, bt, 1e-5, seed++);
      }
    }
    // A large offset (cancellation in x − μ) and another eps.
    compare([5, 33], true, true, 1e-6, 99, 1000);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('gives NaN rows where the composed form does, and leaves the other rows exact', () => {
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const x = tf.tensor2d([1, 2, 3, 4, 5, NaN, 1, 2, Infinity, 0, 1, 2, 3e38, -3e38, 3e38, 1, 7, 7, 7, 7], [5, 4]);
      const dy = tf.tensor2d(values(20, 5), [5, 4]);
      const g = tf.tensor1d([1, 2, 3, 4]);
      const fused = layerNormForwardWasm(x, g, null, 1e-5);
      const ref = layerNormForwardComposed(x, g, null, 1e-5);
      expect(bitDiffs(fused.y, ref.y)).toBe(0);
      expect(bitDiffs(fused.rstd, ref.rstd)).toBe(0);
      const grads = layerNormBackwardWasm(dy, x, ref.mean, ref.rstd, g, false);
      const refGrads = layerNormBackwardComposed(dy, x, ref.mean, ref.rstd, g, false);
      grads.forEach((t, i) => expect(bitDiffs(t, refGrads[i]!)).toBe(0));
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('handles a large map (a 224-px Conv2Former LayerNorm2d input, 8 × 56 × 56 × 64) like the composed form', () => {
    compare([8, 56, 56, 64], true, true, 1e-6, 7);
  });
});

function compareBatchNorm(shape: [number, number, number, number], eps: number, seed: number, offset = 0): void {
  tf.tidy(() => {
    const n = shape.reduce((a, b) => a * b, 1);
    const c = shape[3];
    const x = tf.tensor4d(values(n, seed, 4, offset), shape);
    const dy = tf.tensor4d(values(n, seed + 1), shape);
    const g = tf.tensor1d(values(c, seed + 2, 1, 1));
    const b = tf.tensor1d(values(c, seed + 3));
    const fused = batchNormForwardFused(x, g, b, eps);
    const ref = batchNormForwardComposed(x, g, b, eps);
    const what = `[${shape}] eps ${eps}`;
    expect(bitDiffs(fused.y, ref.y), `y ${what}`).toBe(0);
    expect(bitDiffs(fused.mean, tf.reshape(ref.mean, [c])), `μ ${what}`).toBe(0);
    expect(bitDiffs(fused.variance, tf.reshape(ref.variance, [c])), `σ² ${what}`).toBe(0);
    expect(bitDiffs(fused.rstd, tf.reshape(ref.rstd, [c])), `1/σ ${what}`).toBe(0);
    const grads = batchNormBackwardFused(dy, x, fused.mean, fused.rstd, g);
    const refGrads = batchNormBackwardComposed(dy, x, ref.mean, ref.rstd, g);
    expect(grads.length).toBe(3);
    grads.forEach((t, i) => expect(bitDiffs(t, refGrads[i]!), `gradient ${i} ${what}`).toBe(0));
  });
}

describe('fused training BatchNorm on wasm', () => {
  it('runs one kernel forward and one backward inside batchNormTrain, and leaks nothing', async () => {
    const x = tf.tensor4d(values(2 * 3 * 3 * 8, 1), [2, 3, 3, 8]);
    const g = tf.tensor1d(values(8, 2));
    const b = tf.tensor1d(values(8, 3));
    const loss = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) =>
      tf.tidy(() => {
        const r = batchNormTrain(xi as tf.Tensor4D, gi, bi, 1e-5);
        tf.dispose([r.mean, r.variance]);
        return tf.sum(tf.mul(r.y, x));
      });
    const before = tf.memory().numTensors;
    tf.dispose(tf.grads(loss as (...t: tf.Tensor[]) => tf.Tensor)([x, g, b]));
    expect(tf.memory().numTensors).toBe(before);
    const fwd = await tf.profile(() => loss(x, g, b));
    expect(fwd.kernelNames.filter((k) => k.startsWith('VitBatchNorm'))).toEqual([BATCH_NORM]);
    const bwd = await tf.profile(() => tf.grads(loss as (...t: tf.Tensor[]) => tf.Tensor)([x, g, b]));
    expect(bwd.kernelNames.filter((k) => k.startsWith('VitBatchNorm'))).toEqual([BATCH_NORM, BATCH_NORM_GRAD]);
    tf.dispose([x, g, b, fwd.result as tf.Tensor, ...(bwd.result as tf.Tensor[])]);
  });

  it('equals the composed kernels bit for bit, forward and backward, for odd channel counts and one pixel', () => {
    const before = tf.memory().numTensors;
    let seed = 1;
    for (const shape of [
      [1, 1, 1, 1],
      [1, 1, 1, 5],
      [2, 3, 3, 7],
      [4, 2, 2, 4],
      [3, 1, 5, 2],
      [2, 5, 5, 13],
      [8, 4, 4, 64],
      [2, 3, 3, 1003],
    ] as Array<[number, number, number, number]>) {
      compareBatchNorm(shape, 1e-5, seed++);
    }
    compareBatchNorm([4, 3, 3, 9], 1e-3, 50, 1000);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('handles a large map (a ResNet-50 stage-1 activation at 224 px, 8 × 56 × 56 × 256) like the composed form', () => {
    compareBatchNorm([8, 56, 56, 256], 1e-5, 11);
  });
});
