import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkGpuRequirement, findGpuBackend, type FoundGpuBackend } from '../testing/gpu.js';
import { checkFusedCase, fusedCases } from './__fixtures__/fused_cases.js';

// The fused ops' cases of fused.test.ts on the GPU backend (webgpu, or webgl in a browser-like
// runtime). GPU reductions sum in a different order than cpu, so gradients get a looser bound.
let found: FoundGpuBackend = { backend: null, reason: 'not probed' };
beforeAll(async () => {
  found = await findGpuBackend();
  console.log(found.backend === null ? `[core gpu] skipped: ${found.reason}` : `[core gpu] fused ops on '${found.backend}' (${found.detail})`);
  checkGpuRequirement(found);
}, 240_000);
afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('fused ops against their compositions on the GPU backend', () => {
  for (const c of fusedCases()) {
    it(c.name, async (ctx) => {
      if (found.backend === null) ctx.skip();
      await findGpuBackend();
      expect(tf.getBackend()).toBe(found.backend);
      const r = await checkFusedCase(c);
      console.log(`[core gpu] fused ${c.name}: value ${r.valueErr.toExponential(2)} grad ${r.gradErr.toExponential(2)}`);
      expect(r.valueErr).toBeLessThan(1e-5);
      expect(r.gradErr).toBeLessThan(1e-4);
      expect(r.engineErr).toBe(0);
      expect(r.leaked).toBe(0);
    }, 120_000);
  }
});
