/**
 * The backend switch. The app registers every browser backend itself (core's initBackend imports
 * optional backends by name, which a bundle cannot resolve) and serves the wasm binaries through
 * Vite; initBackend then picks, initialises and patches the one asked for.
 */
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
// tfjs-core registers no gradients by itself; training needs them.
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import * as tf from '@tensorflow/tfjs-core';
import { BACKEND_ORDER, initBackend, installGradientFixes, type ConcreteBackend } from '@vit/core';
import wasmPlain from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreaded from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';

setWasmPaths({ 'tfjs-backend-wasm.wasm': wasmPlain, 'tfjs-backend-wasm-simd.wasm': wasmSimd, 'tfjs-backend-wasm-threaded-simd.wasm': wasmThreaded });

export const DEMO_BACKENDS = ['wasm', 'webgl', 'webgpu', 'cpu'] as const;
export type DemoBackend = (typeof DEMO_BACKENDS)[number];

export interface BackendState {
  backend: DemoBackend;
  detail: string;
  warnings: string[];
}

/** Whether a backend can start here, and why not; a throw-away probe, before any tensor exists. */
export async function availability(name: DemoBackend): Promise<string | undefined> {
  if (name === 'webgl') {
    const gl = document.createElement('canvas').getContext('webgl2');
    return gl ? undefined : 'this browser gives no WebGL 2 context';
  }
  if (name === 'webgpu') {
    const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
    if (!gpu) return 'this browser offers no WebGPU (navigator.gpu)';
    return (await gpu.requestAdapter().catch(() => null)) ? undefined : 'WebGPU gives no adapter here';
  }
  return undefined;
}

/** Makes `name` the current backend (with core's kernels and gradient fixes). */
export async function switchBackend(name: DemoBackend): Promise<BackendState> {
  try {
    // wasmPaths false: setWasmPaths above already said where the binaries are.
    const r = await initBackend(name as ConcreteBackend, { wasmPaths: false, env: false });
    return { backend: name, detail: r.detail, warnings: r.warnings };
  } catch (e) {
    // This core's initBackend does not know webgl: the app registered it (the import above).
    if (name !== 'webgl' || (BACKEND_ORDER as readonly string[]).includes(name) || !tf.findBackendFactory(name)) throw e;
    if (!(await tf.setBackend(name))) throw new Error(`the ${name} backend did not initialise`);
    await tf.ready();
    installGradientFixes();
    return { backend: name, detail: `tfjs-backend-${name}`, warnings: [] };
  }
}
