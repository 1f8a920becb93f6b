import { basename } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Module } from '../nn/module.js';
import { formatParityRow, formatParitySummary, runParity } from '../parity/parity.js';
import { loadSafetensorsFile } from '../weights/io.js';
import { compareTensors } from './compare.js';
import { findGpuBackend, type FoundGpuBackend } from './gpu.js';

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

export interface GpuParityOptions {
  /** Prefix of the printed lines (`cait`). */
  label: string;
  /** Golden files to check through `runParity` on the GPU backend. */
  goldens: string[];
  /** GPU float32 kernels reassociate sums: PORTING.md's GPU bound, for outputs and gradient. */
  tolerance?: number;
  /** Models (built on the current backend) whose logits must agree with the cpu backend's. */
  crossCheck?: Array<{ name: string; build: () => Module; inputShape: [number, number, number, number] }>;
}

/**
 * The GPU project of an architecture package: golden parity on the best GPU backend present,
 * and a cpu cross-check of registered variants. Every test skips, with the reason printed, where
 * no GPU backend exists.
 */
export function describeGpuParity(o: GpuParityOptions): void {
  const tol = o.tolerance ?? 1e-3;
  describe(`${o.label} on the GPU backend`, () => {
    let found: FoundGpuBackend = { backend: null, reason: 'not probed' };
    beforeAll(async () => {
      found = await findGpuBackend();
      if (found.backend === null) console.log(`[${o.label} gpu] skipped: ${found.reason}`);
      else console.log(`[${o.label} gpu] running on '${found.backend}' (${found.detail})`);
    });
    afterAll(async () => {
      await tf.setBackend('cpu');
    });

    for (const file of o.goldens) {
      it(`golden ${basename(file)}: logits, features, input gradient`, async (ctx) => {
        if (found.backend === null) ctx.skip();
        const golden = await loadSafetensorsFile(file);
        try {
          const res = runParity(golden, { tolerance: tol, gradTolerance: tol });
          console.log(`[${o.label} gpu] ${formatParitySummary(res)}`);
          expect(res.pass, res.rows.map(formatParityRow).concat(res.errors).join('\n')).toBe(true);
        } finally {
          for (const t of golden.tensors.values()) t.dispose();
        }
      });
    }

    for (const c of o.crossCheck ?? []) {
      it(`${c.name}: logits agree with the cpu backend`, async (ctx) => {
        if (found.backend === null) ctx.skip();
        const gpuModel = c.build();
        const cpuModel = await withBackend('cpu', () => c.build());
        try {
          const state = Object.fromEntries(Object.entries(gpuModel.stateDict()).map(([k, v]) => [k, { data: v.dataSync(), shape: v.shape, dtype: v.dtype }]));
          await withBackend('cpu', () =>
            tf.tidy(() => {
              cpuModel.loadStateDict(Object.fromEntries(Object.entries(state).map(([k, s]) => [k, tf.tensor(s.data, s.shape, s.dtype)])));
            }),
          );
          const data = tf.tidy(() => tf.randomNormal(c.inputShape, 0, 1, 'float32', 3).dataSync());
          gpuModel.eval();
          cpuModel.eval();
          const yg = tf.tidy(() => (gpuModel.forward(tf.tensor4d(data, c.inputShape)) as tf.Tensor).dataSync());
          const yc = await withBackend('cpu', () => tf.tidy(() => (cpuModel.forward(tf.tensor4d(data, c.inputShape)) as tf.Tensor).dataSync()));
          const err = await withBackend('cpu', () => tf.tidy(() => compareTensors(tf.tensor(yg), tf.tensor(yc)).scaledMaxAbs));
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
