import * as tf from '@tensorflow/tfjs-core';
import { addParityRow, newParityResult, parityOutputs, type GoldenCase, type ParityOptions, type ParityResult } from './parity.js';

/** Runs `fn` with `name` as the current backend, restoring the previous one. */
export async function withBackend<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
  const prev = tf.getBackend();
  await tf.setBackend(name);
  try {
    return await fn();
  } finally {
    await tf.setBackend(prev);
  }
}

/** A tensor's values brought to the host, for comparing on the cpu backend. */
export interface HostTensor {
  data: Float32Array;
  shape: number[];
}

/**
 * Reads tensors asynchronously and disposes them. WebGPU in Node cannot read synchronously
 * (tfjs-backend-webgpu's `readSync` needs `OffscreenCanvas`), and moving a tensor to another
 * backend is a synchronous read too, so everything computed on a GPU leaves it through here.
 */
export async function readAndDispose(tensors: Record<string, tf.Tensor>): Promise<Record<string, HostTensor>> {
  const out: Record<string, HostTensor> = {};
  try {
    for (const [k, t] of Object.entries(tensors)) out[k] = { data: Float32Array.from((await t.data()) as ArrayLike<number>), shape: t.shape.slice() };
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
  return out;
}

/**
 * `runParity` for a backend that can only be read asynchronously: the model runs on the current
 * backend (`parityOutputs`), its outputs are read back with `await data()`, and the comparison
 * runs on `cpu` against the golden tensors (which must live on `cpu`: load the file under
 * `withBackend('cpu')`). Same rows, tolerances and train-mode-last order as `runParity`.
 */
export async function runParityAsync(golden: GoldenCase, options: ParityOptions = {}): Promise<ParityResult> {
  const result = newParityResult(golden);
  const host = await readAndDispose(parityOutputs(golden, result));
  await withBackend('cpu', () =>
    tf.tidy(() => {
      for (const [key, h] of Object.entries(host)) addParityRow(result, golden, key, tf.tensor(h.data, h.shape), options);
    }),
  );
  if (result.errors.length) result.pass = false;
  return result;
}
