import { basename } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Module } from '../nn/module.js';
import { readAndDispose, runParityAsync, withBackend } from '../parity/async.js';
import { formatParityRow, formatParitySummary } from '../parity/parity.js';
import { loadSafetensorsFile } from '../weights/io.js';
import { compareTensors } from '../parity/compare.js';
import { checkGpuRequirement, findGpuBackend, type FoundGpuBackend } from './gpu.js';

// Were defined here; @vit/core exports them now (they run in a browser too).
export { readAndDispose, runParityAsync, withBackend, type HostTensor } from '../parity/async.js';

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
