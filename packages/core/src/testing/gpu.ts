import * as tf from '@tensorflow/tfjs-core';

/**
 * The best GPU backend present for `*.gpu.test.ts`: `tensorflow` from @tensorflow/tfjs-node-gpu,
 * else `webgpu` (navigator.gpu, or Dawn's `webgpu` package in Node). Returns the reason when
 * there is none, so GPU suites skip with it printed. `VIT_GPU_TEST_BACKEND=cpu` forces a backend,
 * for checking a GPU test file on a machine without a GPU.
 */
export type FoundGpuBackend = { backend: string; detail: string } | { backend: null; reason: string };

async function tryImport(spec: string): Promise<any> {
  try {
    return await import(/* @vite-ignore */ spec);
  } catch {
    return undefined;
  }
}

export async function findGpuBackend(): Promise<FoundGpuBackend> {
  // For checking this file itself on a machine without a GPU: VIT_GPU_TEST_BACKEND=cpu.
  const forced = process.env.VIT_GPU_TEST_BACKEND;
  if (forced) {
    if (await tf.setBackend(forced)) return { backend: forced, detail: 'forced by VIT_GPU_TEST_BACKEND' };
    return { backend: null, reason: `VIT_GPU_TEST_BACKEND=${forced} did not initialise` };
  }
  const reasons: string[] = [];
  if (await tryImport('@tensorflow/tfjs-node-gpu')) {
    if (tf.findBackendFactory('tensorflow') && (await tf.setBackend('tensorflow'))) return { backend: 'tensorflow', detail: 'tfjs-node-gpu' };
    reasons.push('tfjs-node-gpu loaded but its backend did not initialise');
  } else {
    reasons.push('@tensorflow/tfjs-node-gpu is not installed (or has no CUDA)');
  }
  const g = globalThis as { navigator?: { gpu?: any } };
  if (!g.navigator?.gpu) {
    const dawn = await tryImport('webgpu');
    if (dawn?.create) {
      process.env.EGL_PLATFORM ??= 'surfaceless';
      const gpu = dawn.create([]);
      Object.assign(globalThis, dawn.globals ?? {});
      if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
      g.navigator!.gpu = gpu;
    }
  }
  if (g.navigator?.gpu) {
    const adapter = await g.navigator.gpu.requestAdapter().catch(() => null);
    if (!adapter) {
      reasons.push('navigator.gpu has no adapter');
    } else if (!(await tryImport('@tensorflow/tfjs-backend-webgpu'))) {
      reasons.push('@tensorflow/tfjs-backend-webgpu is not installed');
    } else if (tf.findBackendFactory('webgpu') && (await tf.setBackend('webgpu').catch(() => false))) {
      return { backend: 'webgpu', detail: String(adapter.info?.description ?? adapter.info?.vendor ?? 'adapter') };
    } else {
      reasons.push('the webgpu backend did not initialise');
    }
  } else {
    reasons.push('no WebGPU (no navigator.gpu and no Dawn `webgpu` package)');
  }
  return { backend: null, reason: reasons.join('; ') };
}

