import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { setTestBackend } from '../testing/backend.js';
import { Rng } from '../data/rng.js';
import { dropout } from '../nn/index.js';
import { confusionMatrix, perClassAccuracy, topKCorrect, withSeededRandom } from './index.js';

beforeAll(async () => {
  await setTestBackend();
});

describe('metrics', () => {
  it('topKCorrect counts labels within the first k of each row', () => {
    // Rows (k=3): [2,0,1] label 0 → rank 1; [1,2,0] label 1 → rank 0; [0,1,2] label 3 → absent.
    expect(topKCorrect([2, 0, 1, 1, 2, 0, 0, 1, 2], [0, 1, 3], 3, [1, 2, 3])).toEqual([1, 2, 2]);
    expect(() => topKCorrect([0, 1], [0, 1], 3, [1])).toThrow(/2 indices for 2 labels × k=3/);
  });

  it('confusion matrix and per-class accuracy', () => {
    const m = confusionMatrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4);
    expect(m).toEqual([
      [1, 1, 0, 0],
      [0, 1, 0, 0],
      [1, 0, 2, 0],
      [0, 0, 0, 0],
    ]);
    const acc = perClassAccuracy(m);
    expect(acc.slice(0, 3)).toEqual([0.5, 1, 2 / 3]);
    expect(acc[3]).toBeNaN();
    expect(() => confusionMatrix([0, 5], [0, 1], 3)).toThrow(/example 1 has label 5/);
  });
});

describe('withSeededRandom', () => {
  it('makes TF.js dropout repeat for a seed, and restores Math.random even when fn throws', () => {
    const original = Math.random;
    const mask = (seed: number) =>
      tf.tidy(() => Array.from(withSeededRandom(new Rng(seed), () => dropout(tf.ones([64]), 0.5)).dataSync()));
    expect(mask(1)).toEqual(mask(1));
    expect(mask(1)).not.toEqual(mask(2));
    expect(Math.random).toBe(original);
    expect(() =>
      withSeededRandom(3, () => {
        throw new Error('inside');
      }),
    ).toThrow('inside');
    expect(Math.random).toBe(original);
    expect(() => withSeededRandom(3, () => Promise.resolve(1))).toThrow(/needs a synchronous function/);
    expect(Math.random).toBe(original);
  });
});
