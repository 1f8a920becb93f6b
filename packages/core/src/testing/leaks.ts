import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, beforeEach, expect } from 'vitest';
import { setTestBackend } from './backend.js';

/**
 * Sets the test backend (`VIT_TEST_BACKEND`, else cpu) before the tests of the enclosing file or
 * describe, and fails any of them that leaves more (or fewer) tensors than it found.
 */
export function checkTensorLeaks(): void {
  let before = 0;
  beforeAll(async () => {
    await setTestBackend();
  });
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors).toBe(before);
  });
}
