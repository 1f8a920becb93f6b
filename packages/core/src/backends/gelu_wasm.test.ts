import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { geluErf } from '../nn/activation.js';
import { setTestWasm } from '../testing/backend.js';
import { installWasmKernels } from './install.js';
import { GELU_ERF, GELU_ERF_GRAD } from './wasm_copy.js';

// The fused exact-GELU kernels on wasm against the composed kernels they replace, on the same
// backend: bit for bit, forward and backward, for every tail length, special values and large
// tensors (the threaded build; VIT_TEST_WASM_THREADS=2 in CI).

beforeAll(async () => {
  await setTestWasm();
  installWasmKernels();
});

const composed = (x: tf.Tensor) => tf.tidy(() => tf.mul(tf.mul(0.5, x), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))));
/** The backward geluErf computes when the fused kernel is absent (nn/activation.ts). */
const composedGrad = (x: tf.Tensor, dy: tf.Tensor) =>
  tf.tidy(() => {
    const cdf = tf.mul(0.5, tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
    const xpdf = tf.mul(x, tf.mul(1 / Math.sqrt(2 * Math.PI), tf.exp(tf.mul(-0.5, tf.square(x)))));
    return tf.mul(dy, tf.add(cdf, xpdf));
  });

function inputs(n: number, seed: number): Float32Array {
  const v = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    v[i] = ((s / 2147483648) * 2 - 1) * 8;
  }
  return v;
}

const bits = (t: tf.Tensor) => new Uint32Array(new Float32Array(t.dataSync()).buffer);
function expectSameBits(a: tf.Tensor, b: tf.Tensor): void {
  const x = bits(a);
  const y = bits(b);
  let diff = 0;
  for (let i = 0; i < x.length; i++) {
    // NaN payloads may differ; any NaN matches any NaN.
    if (x[i] !== y[i] && !(Number.isNaN(a.dataSync()[i]) && Number.isNaN(b.dataSync()[i]))) diff++;
  }
  expect(diff).toBe(0);
}

describe('fused exact GELU on wasm', () => {
  it('runs one kernel forward and one backward (the composed form runs 5 and 11)', async () => {
    const x = tf.tensor1d(inputs(64, 3));
    const dy = tf.tensor1d(inputs(64, 4));
    expect(tf.getKernel(GELU_ERF, 'wasm')).toBeDefined();
    const fwd = await tf.profile(() => geluErf(x));
    // ('' is customGrad's own node, not a kernel.)
    expect(fwd.kernelNames.filter(Boolean)).toEqual([GELU_ERF]);
    const bwd = await tf.profile(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(geluErf(t), dy)))(x));
    expect(bwd.kernelNames.filter((k) => k.startsWith('VitGelu'))).toEqual([GELU_ERF, GELU_ERF_GRAD]);
    tf.dispose([x, dy, fwd.result as tf.Tensor, bwd.result as tf.Tensor]);
  });

  it('equals the composed kernels bit for bit, forward and backward, for every tail length and special values', () => {
    const before = tf.memory().numTensors;
    const specials = [0, -0, 1e-30, -1e-30, 3.4e38, -3.4e38, Infinity, -Infinity, NaN, 5.5, -5.5, 13.2, -13.2, 0.5];
    for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 13, 64, 1003]) {
      const v = inputs(n, n);
      if (n >= specials.length) v.set(specials, n - specials.length);
      const x = tf.tensor1d(v);
      const dy = tf.tensor1d(inputs(n, n + 100));
      const y = tf.engine().runKernel(GELU_ERF, { x }) as tf.Tensor;
      const ref = composed(x);
      expectSameBits(y, ref);
      const g = tf.engine().runKernel(GELU_ERF_GRAD, { x, dy }) as tf.Tensor;
      const refG = composedGrad(x, dy);
      expectSameBits(g, refG);
      tf.dispose([x, dy, y, ref, g, refG]);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('handles a large map (a 224-px Conv2Former MLP activation, 8 × 56 × 56 × 256) like the composed form', () => {
    const shape = [8, 56, 56, 256];
    const x = tf.tidy(() => tf.mul(tf.randomNormal(shape, 0, 1, 'float32', 5), 3));
    const dy = tf.randomNormal(shape, 0, 1, 'float32', 6);
    const y = tf.engine().runKernel(GELU_ERF, { x }) as tf.Tensor;
    const ref = composed(x);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(y, ref))).dataSync()[0])).toBe(0);
    const g = tf.engine().runKernel(GELU_ERF_GRAD, { x, dy }) as tf.Tensor;
    const refG = composedGrad(x, dy);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(g, refG))).dataSync()[0])).toBe(0);
    tf.dispose([x, dy, y, ref, g, refG]);
  });
});
