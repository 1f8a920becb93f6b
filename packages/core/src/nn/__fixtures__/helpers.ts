// Test helpers shared by the nn/ops tests (not part of the package's public API).
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';

/** seq(shape, a, b, s)[i] = f32(s·sin(a·i + b)): the deterministic inputs gen_reference.py uses. */
export function seq(shape: number[], a = 0.37, b = 0.1, s = 1): tf.Tensor {
  const n = shape.reduce((p, q) => p * q, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = s * Math.sin(a * i + b);
  return tf.tensor(data, shape, 'float32');
}

/** max |actual − expected| ≤ atol + rtol·|expected| elementwise, with a readable failure. */
export function expectClose(actual: tf.Tensor, expected: readonly number[], atol = 1e-5, rtol = 1e-5): void {
  const got = actual.dataSync();
  expect(got.length).toBe(expected.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i]! - expected[i]!) - rtol * Math.abs(expected[i]!);
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  if (at >= 0 && !(worst <= atol)) {
    expect.fail(`element ${at}: got ${got[at]}, expected ${expected[at]} (|err| beyond ${atol} + ${rtol}·|ref|)`);
  }
}

/** Runs `fn` inside tf.tidy and checks that no tensor outlives it. */
export function noLeak(fn: () => void): void {
  const before = tf.memory().numTensors;
  tf.tidy(() => {
    fn();
  });
  expect(tf.memory().numTensors).toBe(before);
}
