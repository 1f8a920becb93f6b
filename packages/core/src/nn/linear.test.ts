import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError } from '../errors.js';
import { REF } from './__fixtures__/reference.js';
import { expectClose, noLeak, seq } from './__fixtures__/helpers.js';
import { Linear } from './linear.js';
import { setTestBackend } from '../testing/backend.js';

beforeAll(async () => {
  await setTestBackend();
});

describe('Linear', () => {
  it('matches PyTorch on a rank-3 input', () => {
    const lin = new Linear(4, 3);
    noLeak(() => {
      lin.loadStateDict({ weight: seq([4, 3], 0.53, 0.2), bias: seq([3], 0.91, 0.3) });
      const y = lin.forward(seq([2, 2, 4]));
      expect(y.shape).toEqual([2, 2, 3]);
      expectClose(y, REF.linear);
      // Rank 2 and rank 4 go through the same path.
      expect(lin.forward(tf.zeros([5, 4])).shape).toEqual([5, 3]);
      expect(lin.forward(tf.zeros([2, 3, 2, 4])).shape).toEqual([2, 3, 2, 3]);
    });
    lin.dispose();
  });

  it('stores [in, out] with kind linear and PyTorch default init bounds', () => {
    const lin = new Linear(64, 32, { seed: 3 });
    expect(lin.weight.shape).toEqual([64, 32]);
    expect(lin.bias!.shape).toEqual([32]);
    expect(lin.stateEntries().get('weight')!.kind).toBe('linear');
    expect(lin.stateEntries().get('bias')!.kind).toBe('plain');
    const bound = 1 / 8;
    const w = Array.from(lin.weight.dataSync());
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(bound);
    // U(−b, b) has std b/√3; 2048 samples pin it to a few percent.
    const std = Math.sqrt(w.reduce((s, v) => s + v * v, 0) / w.length);
    expect(std).toBeGreaterThan((bound / Math.sqrt(3)) * 0.9);
    expect(std).toBeLessThan((bound / Math.sqrt(3)) * 1.1);
    expect(Math.max(...Array.from(lin.bias!.dataSync()).map(Math.abs))).toBeLessThanOrEqual(bound);
    // Same seed, same init.
    const again = new Linear(64, 32, { seed: 3 });
    expect(Array.from(again.weight.dataSync())).toEqual(w);
    const noBias = new Linear(4, 2, { bias: false });
    expect(noBias.bias).toBeNull();
    expect(Object.keys(noBias.stateDict())).toEqual(['weight']);
    for (const m of [lin, again, noBias]) m.dispose();
  });

  it('rejects bad sizes and inputs', () => {
    expect(() => new Linear(0, 3)).toThrow(ConfigError);
    const lin = new Linear(4, 3);
    expect(() => lin.forward(tf.zeros([2, 5]))).toThrow(ShapeError);
    expect(() => lin.forward(tf.zeros([2, 5]))).toThrow('Linear expected input [..., 4] of rank >= 2, got shape [2,5]');
    expect(() => lin.forward(tf.zeros([4]))).toThrow(ShapeError);
    lin.dispose();
  });
});
