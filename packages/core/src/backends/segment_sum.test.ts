import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTestWasm } from '../testing/backend.js';
import { input, numDataIds, runOn, scaledError, type KernelInput } from './__fixtures__/kernel_harness.js';
import { installCpuKernels, installWasmKernels, restoreStockKernels } from './install.js';

// Compares our UnsortedSegmentSum (wasm and cpu) with tfjs's stock cpu kernel; picks its backends
// itself (see conv_grads.test.ts).

beforeAll(async () => {
  await setTestWasm(); // the threaded build with VIT_TEST_WASM_THREADS=2
  installWasmKernels();
  await tf.setBackend('cpu');
});

afterAll(() => {
  installCpuKernels();
});

const ids = (shape: number[], values: number[]): KernelInput => ({ shape, values: Int32Array.from(values), dtype: 'int32' });

async function check(x: KernelInput, segmentIds: KernelInput, numSegments: number): Promise<void> {
  restoreStockKernels('cpu');
  const ref = await runOn('cpu', tf.UnsortedSegmentSum, { x, segmentIds }, { numSegments });
  installCpuKernels();
  const cpu = await runOn('cpu', tf.UnsortedSegmentSum, { x, segmentIds }, { numSegments });
  await tf.setBackend('wasm');
  const before = numDataIds();
  const wasm = await runOn('wasm', tf.UnsortedSegmentSum, { x, segmentIds }, { numSegments });
  expect(numDataIds()).toBe(before);
  expect(scaledError(cpu, ref)).toBeLessThanOrEqual(1e-6);
  expect(scaledError(wasm, ref)).toBeLessThanOrEqual(1e-6);
  // Not all zeros: the case exercises the sums.
  expect(ref.values.some((v) => v !== 0)).toBe(true);
}

describe('UnsortedSegmentSum', () => {
  it('duplicates summed, one segment empty', async () => {
    await check(input([10, 3], 41), ids([10], [0, 2, 2, 1, 0, 3, 2, 1, 0, 2]), 5);
  });
  it('ids outside [0, numSegments) are dropped (JS path on wasm)', async () => {
    await check(input([6, 4], 42), ids([6], [0, -1, 2, 7, 2, 1]), 3);
  });
  it('rank-3 data', async () => {
    await check(input([5, 2, 3], 43), ids([5], [4, 0, 1, 1, 3]), 5);
  });
  it('int32 data', async () => {
    await check({ shape: [5, 2], values: Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), dtype: 'int32' }, ids([5], [1, 1, 0, 2, 1]), 3);
  });
  it('is the gather gradient: tf.grad through tf.gather matches cpu', async () => {
    const table = input([7, 3], 44);
    const index = [6, 1, 1, 3, 0, 6, 6];
    const grad = () =>
      tf.tidy(() => {
        const t = tf.tensor(table.values, table.shape);
        const g = tf.grad((p: tf.Tensor) => tf.sum(tf.mul(tf.gather(p, tf.tensor1d(index, 'int32')), tf.range(0, 21).reshape([7, 3]))))(t);
        return Float32Array.from(g.dataSync());
      });
    await tf.setBackend('cpu');
    const ref = grad();
    await tf.setBackend('wasm');
    const got = grad();
    expect(scaledError({ shape: [7, 3], values: got }, { shape: [7, 3], values: ref })).toBeLessThanOrEqual(1e-6);
  });
});
