// The page script of backend.browser.test.ts, bundled as an app would be: the backends imported by
// the app, @vit/core bundled with them (so it cannot import any of them by name at run time).
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '../../index.js';

const page = globalThis as unknown as Record<string, unknown>;

page.vitInit = async (preference: BackendName, wasmPaths?: string) => {
  if (wasmPaths) setWasmPaths(wasmPaths);
  const r = await initBackend(preference, { env: false });
  return { ...r, current: tf.getBackend() };
};

/**
 * d/dx of sum(w ⊙ stridedSlice(x)) on the current backend: tfjs 4.22 has no StridedSlice gradient,
 * initBackend's gradient fixes add it. Returns the gradient's values.
 */
page.vitStridedSliceGrad = async () => {
  const x = tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [3, 4]);
  const w = tf.tensor2d([1, 10, 100, 1000], [2, 2]);
  const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.stridedSlice(t, [0, 1], [3, 4], [2, 2]), w)))(x);
  const values = Array.from(await g.data());
  tf.dispose([x, w, g]);
  return { values, backend: tf.getBackend(), tensors: tf.memory().numTensors };
};
