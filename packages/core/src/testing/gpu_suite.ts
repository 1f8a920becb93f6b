import { basename } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Module } from '../nn/module.js';
import {
  addParityRow,
  formatParityRow,
  formatParitySummary,
  newParityResult,
  parityOutputs,
  type GoldenCase,
  type ParityOptions,
  type ParityResult,
} from '../parity/parity.js';
import { loadSafetensorsFile } from '../weights/io.js';
import { compareTensors } from '../parity/compare.js';
import { checkGpuRequirement, findGpuBackend, type FoundGpuBackend } from './gpu.js';

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

export interface GpuParityOptions {
  /** Prefix of the printed lines (`cait`). */
  label: string;
  /** Golden files to check on the GPU backend. */
  goldens: string[];
  /** GPU float32 kernels reassociate sums: PORTING.md's GPU bound, for outputs and gradient. */
  tolerance?: number;
  /** Models (built on the current backend) whose logits must agree with the cpu backend's. */
  crossCheck?: Array<{ name: string; build: () => Module; inputShape: [number, number, number, number] }>;
}

/** `VIT_GPU_TEST_LIMIT=N` keeps only the first N goldens and N cross-checks of each package. */
function gpuTestLimit(): number {
  const s = process.env.VIT_GPU_TEST_LIMIT?.trim();
  const n = Number(s);
  return s && Number.isInteger(n) && n >= 0 ? n : Infinity;
}

/**
 * The GPU project of an architecture package: golden parity on the best GPU backend present,
 * and a cpu cross-check of registered variants. Every test skips, with the reason printed, where
 * no GPU backend exists.
 */
export function describeGpuParity(o: GpuParityOptions): void {
  const tol = o.tolerance ?? 1e-3;
  const limit = gpuTestLimit();
  const goldens = o.goldens.slice(0, limit);
  const crossChecks = (o.crossCheck ?? []).slice(0, limit);
  describe(`${o.label} on the GPU backend`, () => {
    let found: FoundGpuBackend = { backend: null, reason: 'not probed' };
    beforeAll(async () => {
      found = await findGpuBackend();
      console.log(found.backend === null ? `[${o.label} gpu] skipped: ${found.reason}` : `[${o.label} gpu] running on '${found.backend}' (${found.detail})`);
      checkGpuRequirement(found);
      const cut = o.goldens.length - goldens.length + (o.crossCheck?.length ?? 0) - crossChecks.length;
      if (cut > 0) console.log(`[${o.label} gpu] VIT_GPU_TEST_LIMIT=${limit}: ${cut} case(s) left out`);
    });
    afterAll(async () => {
      await tf.setBackend('cpu');
    });
    for (const file of goldens) {
      it(`golden ${basename(file)}: logits, features, input gradient`, async (ctx) => {
        if (found.backend === null) ctx.skip();
        await findGpuBackend();
        // References stay on cpu: they are compared there, and the model's weights are copied from them.
        const golden = await withBackend('cpu', () => loadSafetensorsFile(file));
        try {
          const res = await runParityAsync(golden, { tolerance: tol, gradTolerance: tol });
          console.log(`[${o.label} gpu] ${formatParitySummary(res)}`);
          expect(res.pass, res.rows.map(formatParityRow).concat(res.errors).join('\n')).toBe(true);
        } finally {
          await withBackend('cpu', () => golden.tensors.forEach((t) => t.dispose()));
        }
      });
    }
    for (const c of crossChecks) {
      it(`${c.name}: logits agree with the cpu backend`, async (ctx) => {
        if (found.backend === null) ctx.skip();
        await findGpuBackend();
        const gpuModel = c.build();
        const cpuModel = await withBackend('cpu', () => c.build());
        try {
          const sd = gpuModel.stateDict();
          const state: Record<string, { data: tf.TypedArray; shape: number[]; dtype: tf.DataType }> = {};
          for (const [k, v] of Object.entries(sd)) state[k] = { data: (await v.data()) as tf.TypedArray, shape: v.shape, dtype: v.dtype };
          await withBackend('cpu', () =>
            tf.tidy(() => {
              cpuModel.loadStateDict(Object.fromEntries(Object.entries(state).map(([k, s]) => [k, tf.tensor(s.data, s.shape, s.dtype)])));
            }),
          );
          const data = await withBackend('cpu', () => tf.tidy(() => tf.randomNormal(c.inputShape, 0, 1, 'float32', 3).dataSync()));
          gpuModel.eval();
          cpuModel.eval();
          const yg = (await readAndDispose({ y: tf.tidy(() => gpuModel.forward(tf.tensor4d(data, c.inputShape)) as tf.Tensor) })).y!;
          const err = await withBackend('cpu', () =>
            tf.tidy(() => compareTensors(tf.tensor(yg.data, yg.shape), cpuModel.forward(tf.tensor4d(data, c.inputShape)) as tf.Tensor).scaledMaxAbs),
          );
          console.log(`[${o.label} gpu] ${c.name} gpu vs cpu logits: ${err.toExponential(2)}`);
          expect(err).toBeLessThanOrEqual(tol);
        } finally {
          gpuModel.dispose();
          await withBackend('cpu', () => cpuModel.dispose());
        }
      });
    }
  });
}
