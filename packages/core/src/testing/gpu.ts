import * as tf from '@tensorflow/tfjs-core';
import { selectBackend, type BackendName } from '../backend.js';
import { registerWebGPUBackend } from '../backends/dawn.js';

/**
 * The best GPU backend present for `*.gpu.test.ts`, made current:
 * 1. `tensorflow` from @tensorflow/tfjs-node-gpu, when it loads and TensorFlow sees a CUDA device;
 * 2. `webgpu`: `navigator.gpu`, or Dawn's `webgpu` package in Node (Vulkan on a real GPU, Mesa
 *    llvmpipe through OpenGL ES on machines without one; see backends/dawn.ts).
 * Returns the reason when there is none, so GPU suites skip with it printed.
 * `VIT_GPU_TEST_BACKEND=<name>` forces a backend (e.g. `cpu`, to check a GPU test file on a
 * machine without a GPU; `webgpu` to skip the tfjs-node-gpu probe).
 */
export type FoundGpuBackend =
  | {
      backend: string;
      detail: string;
      /** True when the "GPU" is a CPU rasterizer (llvmpipe/lavapipe) or a forced CPU backend. */
      software: boolean;
    }
  | { backend: null; reason: string };

async function tryImport(spec: string): Promise<{ ok: true } | { ok: false; error: string }> {
  try {
    await import(/* @vite-ignore */ spec);
    return { ok: true };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message.split('\n')[0]! : String(e) };
  }
}

// Node says "Cannot find package", vite-node "Could not resolve".
const notInstalled = (error: string) => /Cannot find (package|module)|Could not resolve/.test(error);

async function tryTfjsNodeGpu(): Promise<FoundGpuBackend> {
  const spec = '@tensorflow/tfjs-node-gpu';
  const imp = await tryImport(spec);
  if (!imp.ok) {
    return { backend: null, reason: notInstalled(imp.error) ? `${spec} is not installed` : `${spec} failed to load: ${imp.error}` };
  }
  if (!tf.findBackendFactory('tensorflow') || !(await tf.setBackend('tensorflow').catch(() => false))) {
    return { backend: null, reason: `${spec} loaded but its backend did not initialise` };
  }
  const b = tf.backend() as unknown as { isUsingGpuDevice?: boolean };
  if (!b.isUsingGpuDevice) {
    await tf.setBackend('cpu');
    return { backend: null, reason: `${spec} loaded but TensorFlow sees no GPU (CUDA 11.2/cuDNN 8.1 libraries missing?)` };
  }
  return { backend: 'tensorflow', detail: 'tfjs-node-gpu (CUDA)', software: false };
}

async function tryWebGPU(): Promise<FoundGpuBackend> {
  const res = await registerWebGPUBackend();
  if (!res.ok) return { backend: null, reason: res.reason };
  if (!tf.findBackendFactory('webgpu') || !(await tf.setBackend('webgpu').catch(() => false))) {
    return { backend: null, reason: `the webgpu backend did not initialise on ${res.adapter}` };
  }
  await tf.ready();
  return {
    backend: 'webgpu',
    detail: `${res.adapter} via ${res.backend === 'navigator' ? 'navigator.gpu' : `Dawn ${res.backend}`}${res.featureLevel === 'compatibility' ? ', compatibility mode' : ''}`,
    software: res.software,
  };
}

let found: Promise<FoundGpuBackend> | undefined;

async function probe(): Promise<FoundGpuBackend> {
  const forced = process.env.VIT_GPU_TEST_BACKEND?.trim();
  if (forced) {
    const r = forced === 'webgpu' ? await tryWebGPU() : await selectBackend(forced as BackendName, { quiet: true }).then(
      (b): FoundGpuBackend => ({
        backend: b,
        detail: 'forced by VIT_GPU_TEST_BACKEND',
        // Only tfjs-node-gpu on CUDA or a hardware WebGPU adapter count as a GPU.
        software: !(b === 'tensorflow' && (tf.backend() as unknown as { isUsingGpuDevice?: boolean }).isUsingGpuDevice),
      }),
      (e: unknown): FoundGpuBackend => ({ backend: null, reason: String(e) }),
    );
    return r.backend === null ? { backend: null, reason: `VIT_GPU_TEST_BACKEND=${forced} did not initialise: ${r.reason}` } : r;
  }
  const reasons: string[] = [];
  for (const attempt of [tryTfjsNodeGpu, tryWebGPU]) {
    const r = await attempt();
    if (r.backend !== null) return r;
    reasons.push(r.reason);
  }
  return { backend: null, reason: reasons.join('; ') };
}

/**
 * Probes once per process (Dawn instances and the CUDA context are expensive) and makes the found
 * backend current on every call.
 */
export async function findGpuBackend(): Promise<FoundGpuBackend> {
  found ??= probe();
  const r = await found;
  if (r.backend !== null && tf.getBackend() !== r.backend) await tf.setBackend(r.backend);
  return r;
}

/**
 * What the GPU suites do when there is no GPU backend: skip (default), or fail when
 * `VIT_GPU_TEST_REQUIRE=1` (the GPU machine's runner sets it, so a broken setup cannot pass as
 * "all skipped"); `VIT_GPU_TEST_REQUIRE=hardware` also fails on a software adapter (llvmpipe).
 */
export function checkGpuRequirement(found: FoundGpuBackend): void {
  const r = (process.env.VIT_GPU_TEST_REQUIRE ?? '').trim();
  if (!r || r === '0') return;
  if (found.backend === null) throw new Error(`VIT_GPU_TEST_REQUIRE=${r} but there is no GPU backend: ${found.reason}`);
  if (r === 'hardware' && found.software) throw new Error(`VIT_GPU_TEST_REQUIRE=hardware but the backend runs in software: ${found.detail}`);
}
