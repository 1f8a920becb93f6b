import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { BACKEND_ORDER, BackendError, initBackend, registeredBackends, selectBackend } from './backend.js';
import { GRADIENT_FIXES } from './backends/gradients.js';
import { replacementKernels } from './backends/install.js';

// This file is about choosing backends, so it does not call setTestBackend(); it ends on cpu.
afterAll(async () => {
  await tf.setBackend('cpu');
});

const NO_ENV = { env: false } as const;

describe('initBackend', () => {
  it('initialises the embedded cpu backend with our cpu kernels and the gradient fixes', async () => {
    const r = await initBackend('cpu', { ...NO_ENV, quiet: true });
    expect(r.backend).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(r.source).toBe('argument');
    expect(r.kernels.sort()).toEqual(
      replacementKernels('cpu')
        .map((k) => k.kernelName)
        .sort(),
    );
    expect(r.gradients.sort()).toEqual([...GRADIENT_FIXES].sort());
    expect(registeredBackends()).toContain('cpu');
  });

  it('auto takes the first backend that works, giving a reason for each one passed over', async () => {
    const r = await initBackend('auto', NO_ENV);
    expect(r.source).toBe('default');
    expect(tf.getBackend()).toBe(r.backend);
    const skipped = BACKEND_ORDER.slice(0, BACKEND_ORDER.indexOf(r.backend));
    expect(Object.keys(r.reasons).sort()).toEqual([...skipped].sort());
    for (const b of skipped) expect(r.reasons[b]).toMatch(/\w/);
    // This repo installs @tensorflow/tfjs-backend-wasm, so auto never falls as far as cpu here.
    expect(r.backend).not.toBe('cpu');
    if (r.backend === 'wasm') {
      expect(r.detail).toMatch(/tfjs-backend-wasm/);
      expect(r.kernels).toContain('BatchMatMul');
    }
    await initBackend('cpu', NO_ENV);
  });

  it('VIT_BACKEND overrides the argument', async () => {
    const r = await initBackend('wasm', { env: { VIT_BACKEND: 'cpu' } });
    expect(r.backend).toBe('cpu');
    expect(r.source).toBe('env');
  });

  it('a list falls through in its order', async () => {
    if (registeredBackends().includes('tensorflow')) return; // a machine with tfjs-node: nothing falls through
    const r = await initBackend(['tensorflow', 'cpu'], NO_ENV);
    expect(r.backend).toBe('cpu');
    expect(r.reasons.tensorflow).toMatch(/tfjs-node/);
  });

  it('rejects unknown names, from the argument or the environment, listing the valid ones', async () => {
    await expect(initBackend('tpu' as never, NO_ENV)).rejects.toThrow(/unknown backend 'tpu'.*tensorflow, webgpu, webgl, wasm, cpu/);
    await expect(initBackend('cpu', { env: { VIT_BACKEND: 'cuda' } })).rejects.toThrow(/VIT_BACKEND: unknown backend 'cuda'/);
  });

  it("webgl is a browser backend: in Node it is passed over with that reason (backend.browser.test.ts runs it in Chromium)", async () => {
    expect(BACKEND_ORDER.indexOf('webgl')).toBeGreaterThan(BACKEND_ORDER.indexOf('webgpu'));
    expect(BACKEND_ORDER.indexOf('webgl')).toBeLessThan(BACKEND_ORDER.indexOf('wasm'));
    const r = await initBackend(['webgl', 'cpu'], NO_ENV);
    expect(r.backend).toBe('cpu');
    expect(r.reasons.webgl).toMatch(/browser backend: Node has no WebGL/);
    await expect(initBackend('webgl', NO_ENV)).rejects.toThrow(/No usable backend for 'webgl': webgl: a browser backend/);
  });

  it('names the package to install when a backend asked for by name is absent', async () => {
    if (registeredBackends().includes('tensorflow')) return;
    const p = initBackend('tensorflow', NO_ENV);
    await expect(p).rejects.toThrow(BackendError);
    await expect(initBackend('tensorflow', NO_ENV)).rejects.toThrow(/install @tensorflow\/tfjs-node-gpu or @tensorflow\/tfjs-node/);
    expect(tf.getBackend()).toBe('cpu');
  });

  it('wasm: finds its binaries, installs our kernels, and warns about tensors made before', async () => {
    await initBackend('cpu', NO_ENV);
    const early = tf.tensor1d([1, 2, 3]);
    const r = await initBackend('wasm', NO_ENV);
    expect(r.backend).toBe('wasm');
    expect(r.detail).toMatch(/SIMD/);
    expect(r.kernels.sort()).toEqual(
      replacementKernels('wasm')
        .map((k) => k.kernelName)
        .sort(),
    );
    expect(r.warnings.join(' ')).toMatch(/created on 'cpu' before initBackend/);
    // The early tensor still works: tfjs moves it.
    expect(Array.from(await tf.mul(early, 2).data())).toEqual([2, 4, 6]);
    early.dispose();
    // Idempotent: a second call changes nothing.
    const again = await initBackend('wasm', NO_ENV);
    expect([...again.kernels].sort()).toEqual([...r.kernels].sort());
    await initBackend('cpu', NO_ENV);
  });
});

describe('WebGPU selection', () => {
  it('auto passes over a CPU software adapter (llvmpipe) and says so', async () => {
    const g = globalThis as { navigator?: unknown };
    const had = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
    const adapter = {
      info: { description: 'llvmpipe (LLVM 15.0.6, 256 bits)', vendor: 'mesa' },
      featureLevel: 'core',
      features: new Set(),
      limits: {},
      requestDevice: async () => ({}),
    };
    Object.defineProperty(globalThis, 'navigator', { value: { gpu: { requestAdapter: async () => adapter } }, configurable: true, writable: true });
    try {
      const r = await initBackend(['webgpu', 'cpu'], { ...NO_ENV, allowSoftwareWebGPU: false });
      expect(r.backend).toBe('cpu');
      expect(r.reasons.webgpu).toMatch(/software renderer \(llvmpipe/);
    } finally {
      if (had) Object.defineProperty(globalThis, 'navigator', had);
      else delete g.navigator;
    }
  });
});

describe('selectBackend (compatibility wrapper)', () => {
  it('returns the backend name', async () => {
    expect(await selectBackend('cpu', { quiet: true })).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
  });
});
