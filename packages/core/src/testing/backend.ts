import * as tf from '@tensorflow/tfjs-core';
import { selectBackend, type BackendName } from '../backend.js';

/**
 * The backend unit tests run on: `cpu` unless `VIT_TEST_BACKEND` names another (`wasm`,
 * `tensorflow`, `webgpu`), so CI can run the same suites on every backend it has.
 * Returns the backend that is current afterwards.
 */
export async function setTestBackend(fallback: Exclude<BackendName, 'auto'> = 'cpu'): Promise<string> {
  const name = (process.env.VIT_TEST_BACKEND || fallback) as BackendName;
  if (name === 'cpu' && tf.findBackendFactory('cpu')) {
    await tf.setBackend('cpu');
    await tf.ready();
    return 'cpu';
  }
  return selectBackend(name, { quiet: true });
}

/** The backend name `setTestBackend` will pick, for test titles and skip reasons. */
export function testBackendName(fallback = 'cpu'): string {
  return process.env.VIT_TEST_BACKEND || fallback;
}
