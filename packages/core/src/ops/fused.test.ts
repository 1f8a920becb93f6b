import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { selectBackend } from '../backend.js';
import { setTestBackend, testBackendName } from '../testing/backend.js';
import { checkFusedCase, fusedCases } from './__fixtures__/fused_cases.js';

// Every fused op against the composition it replaces: identical values (the same kernels run),
// gradients equal to float rounding, through tfjs's engine and valueAndGrads, no tensor left.
// On the suite's backend (cpu, or VIT_TEST_BACKEND: CI also runs tensorflow) and on wasm with our
// kernels; the GPU suite (fused.gpu.test.ts) runs the same cases on WebGPU.
const backends = [...new Set([testBackendName(), 'wasm'])];

for (const backend of backends) {
  describe(`fused ops against their compositions on ${backend}`, () => {
    for (const c of fusedCases()) {
      it(c.name, async () => {
        if (backend === testBackendName()) await setTestBackend();
        else await selectBackend(backend as 'wasm', { quiet: true });
        expect(tf.getBackend()).toBe(backend);
        const r = await checkFusedCase(c);
        const rounding = c.roundingOn?.[backend];
        if (rounding === undefined) expect(r.valueErr).toBe(0);
        else expect(r.valueErr).toBeLessThan(rounding);
        expect(r.gradErr).toBeLessThan(2e-6);
        expect(r.engineErr).toBe(0);
        expect(r.leaked).toBe(0);
      });
    }
  });
}
