import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { BackendError, registeredBackends, selectBackend } from './backend.js';

describe('selectBackend', () => {
  it('initialises the embedded cpu backend', async () => {
    expect(await selectBackend('cpu')).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(registeredBackends()).toContain('cpu');
  });

  it('auto falls back to cpu when @tensorflow/tfjs-node is not installed', async () => {
    const hasNode = registeredBackends().includes('tensorflow');
    expect(await selectBackend('auto')).toBe(hasNode ? 'tensorflow' : 'cpu');
  });

  it('names the package to install when a backend is absent', async () => {
    if (registeredBackends().includes('tensorflow')) return; // a machine with tfjs-node: nothing to refuse
    await expect(selectBackend('tensorflow')).rejects.toThrow(BackendError);
    await expect(selectBackend('tensorflow')).rejects.toThrow(/install @tensorflow\/tfjs-node-gpu or @tensorflow\/tfjs-node/);
  });
});
