// The browser page's script for wasm_threads.browser.test.ts (bundled by esbuild): initialises
// wasm through initBackend, then runs 1024³ matMuls for the test to observe.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { initBackend, wasmThreadsStatus } from '../../index.js';

interface PThreadPool {
  runningWorkers: unknown[];
  unusedWorkers: unknown[];
}

const page = globalThis as unknown as Record<string, unknown>;

page.vitInit = async (wasmPaths: string) => {
  const init = await initBackend('wasm', { wasmPaths, env: false });
  const pthread = (tf.backend() as unknown as { wasm: { PThread?: PThreadPool } }).wasm.PThread;
  return {
    crossOriginIsolated: page.crossOriginIsolated === true,
    hardwareConcurrency: (page.navigator as { hardwareConcurrency: number }).hardwareConcurrency,
    backend: init.backend,
    detail: init.detail,
    wasmThreads: init.wasmThreads,
    status: wasmThreadsStatus(),
    threadsCount: getThreadsCount(),
    // The emscripten pthread pool: the threaded build has one (workers running XNNPACK's threads).
    runningWorkers: pthread ? pthread.runningWorkers.length : null,
  };
};

/** `times` 1024×1024 by 1024×1024 matMuls; returns a checksum so the work cannot be skipped. */
page.vitMatMul = async (times: number) => {
  const a = tf.fill([1024, 1024], 1 / 1024);
  const b = tf.fill([1024, 1024], 2);
  let sum = 0;
  for (let i = 0; i < times; i++) {
    const c = tf.matMul(a, b);
    sum += (await c.data())[0]!;
    c.dispose();
  }
  a.dispose();
  b.dispose();
  return sum;
};
