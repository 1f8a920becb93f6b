// The browser page's script for pretrained.browser.test.ts (bundled by esbuild): loads TinyNet
// weights through loadPretrained's browser route (fetch + Cache API) and reports the logits.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { BROWSER_CACHE_NAME, loadPretrained, type PretrainedSource } from '../../index.js';
import { registerTiny, type TinyNet } from './tiny_model.js';

const page = globalThis as unknown as Record<string, unknown>;

page.vitLoad = async (name: string, sources: PretrainedSource[], input: number[], options: { offline?: boolean } = {}) => {
  await tf.setBackend('cpu');
  registerTiny(name, sources);
  try {
    const r = await loadPretrained<TinyNet>(name, { retries: 0, offline: options.offline });
    const y = tf.tidy(() => r.model.forward(tf.tensor4d(input, [1, 8, 8, 3])));
    const logits = Array.from(await y.data());
    y.dispose();
    r.model.dispose();
    return { logits, fromCache: r.fromCache, source: r.source, tensors: tf.memory().numTensors };
  } catch (e) {
    return { error: { name: (e as Error).name, message: (e as Error).message }, tensors: tf.memory().numTensors };
  }
};

page.vitCached = async (url: string) => {
  const cache = await caches.open(BROWSER_CACHE_NAME);
  return (await cache.match(new URL(url, location.href).href)) !== undefined;
};
