import * as tf from '@tensorflow/tfjs-core';
import { BackendError, initBackend, type BackendName } from '../backend.js';
import { enableWasmThreads, wasmThreadsStatus } from '../backends/wasm_threads.js';

/**
 * The backend unit tests run on: `cpu` unless `VIT_TEST_BACKEND` names another (`wasm`,
 * `tensorflow`, `webgpu`), so CI can run the same suites on every backend it has. wasm runs
 * `testWasmThreads()` threads. Returns the backend that is current afterwards.
 */
export async function setTestBackend(fallback: Exclude<BackendName, 'auto'> = 'cpu'): Promise<string> {
  const name = (process.env.VIT_TEST_BACKEND || fallback) as BackendName;
  if (name === 'cpu' && tf.findBackendFactory('cpu')) {
    await tf.setBackend('cpu');
    await tf.ready();
    return 'cpu';
  }
  return (await initBackend(name, { quiet: true, wasmThreads: testWasmThreads() })).backend;
}

/** The backend name `setTestBackend` will pick, for test titles and skip reasons. */
export function testBackendName(fallback = 'cpu'): string {
  return process.env.VIT_TEST_BACKEND || fallback;
}

/**
 * Threads the wasm backend runs in unit tests: `VIT_TEST_WASM_THREADS` (`auto` or a number), else
 * 1, so suites run the single-threaded build unless asked to run the threaded one.
 */
export function testWasmThreads(): number | 'auto' {
  const v = process.env.VIT_TEST_WASM_THREADS?.trim();
  if (!v) return 1;
  if (v === 'auto') return 'auto';
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new BackendError(`VIT_TEST_WASM_THREADS: expected 'auto' or a number of threads ≥ 1, got '${v}'`);
  return n;
}

/**
 * `tf.setBackend('wasm')` for tests that drive the wasm backend directly: on the threaded build
 * with `testWasmThreads()` threads when that is more than 1. Throws when threads were asked for and
 * cannot be had (a "threaded" run that silently ran one thread would prove nothing).
 */
export async function setTestWasm(): Promise<void> {
  const threads = testWasmThreads();
  const fresh = !(tf.engine() as unknown as { registry: Record<string, unknown> }).registry.wasm;
  if (threads !== 1 && fresh) {
    const r = await enableWasmThreads({ threads });
    if (!r.ok) throw new BackendError(`VIT_TEST_WASM_THREADS=${process.env.VIT_TEST_WASM_THREADS}: ${r.reason}`);
  }
  await tf.setBackend('wasm');
  await tf.ready();
  const st = wasmThreadsStatus();
  if (threads !== 1 && fresh && st.build !== 'threaded-simd') {
    throw new BackendError(`VIT_TEST_WASM_THREADS=${process.env.VIT_TEST_WASM_THREADS}: the threaded wasm build did not start (${st.reason ?? 'unknown reason'})`);
  }
}
