import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { REF } from './__fixtures__/reference.js';
import { noLeak, seq } from './__fixtures__/helpers.js';
import { DropPath, Dropout, dropPathRates } from './dropout.js';
import { setTestBackend } from '../testing/backend.js';

beforeAll(async () => {
  await setTestBackend();
});

describe('Dropout', () => {
  it('is inverted dropout in training and the identity in eval or at p = 0', () => {
    const d = new Dropout(0.25);
    noLeak(() => {
      const x = tf.ones([200, 100]);
      const y = d.forward(x);
      const v = y.dataSync();
      const zeros = v.filter((e) => e === 0).length / v.length;
      expect(zeros).toBeGreaterThan(0.22);
      expect(zeros).toBeLessThan(0.28);
      // Survivors are scaled by 1/(1 − p), so the mean is preserved.
      expect(v.every((e) => e === 0 || Math.abs(e - 4 / 3) < 1e-6)).toBe(true);
      expect(Math.abs(tf.mean(y).dataSync()[0]! - 1)).toBeLessThan(0.05);
      d.eval();
      expect(d.forward(x)).toBe(x);
      expect(new Dropout(0).forward(x)).toBe(x);
      expect(tf.sum(new Dropout(1).forward(x)).dataSync()[0]).toBe(0);
    });
    expect(() => new Dropout(1.5)).toThrow(ConfigError);
  });
});

describe('DropPath', () => {
  it('drops whole samples, keeps the mean, is the identity in eval', () => {
    const dp = new DropPath(0.3);
    noLeak(() => {
      const x = tf.add(tf.zeros([2000, 3, 2, 2]), seq([3, 2, 2]));
      const y = dp.forward(x);
      // Per sample: either all zero or exactly x/(1 − p).
      const ratio = tf.div(y, x).reshape([2000, 12]).arraySync() as number[][];
      let dropped = 0;
      for (const row of ratio) {
        const first = row[0]!;
        expect(row.every((r) => Math.abs(r - first) < 1e-5)).toBe(true);
        if (first === 0) dropped += 1;
        else expect(Math.abs(first - 1 / 0.7)).toBeLessThan(1e-5);
      }
      expect(dropped / 2000).toBeGreaterThan(0.26);
      expect(dropped / 2000).toBeLessThan(0.34);
      const meanRatio = tf.mean(tf.div(tf.mean(y, 0), tf.mean(x, 0))).dataSync()[0]!;
      expect(Math.abs(meanRatio - 1)).toBeLessThan(0.06);
      dp.eval();
      expect(dp.forward(x)).toBe(x);
      const zero = new DropPath(0);
      expect(zero.forward(x)).toBe(x);
    });
    expect(() => new DropPath(1)).toThrow(ConfigError);
    expect(() => new DropPath(-0.1)).toThrow(ConfigError);
  });

  it('dropPathRates equals torch.linspace(0, rate, depth) up to float32 rounding', () => {
    for (const [key, expected] of Object.entries(REF.dpr)) {
      const [rate, depth] = key.split('_').map(Number) as [number, number];
      const got = dropPathRates(rate, depth);
      expect(got.length).toBe(expected.length);
      expect(got[0]).toBe(0);
      expect(got[got.length - 1]).toBe(expected[expected.length - 1]);
      // torch's CPU kernel fills SIMD lanes with base + i·step, so its last bit depends on the
      // vector width; a couple of float32 ulps is the honest bound.
      got.forEach((v, i) => expect(Math.abs(v - expected[i]!)).toBeLessThanOrEqual(3e-8));
    }
    expect(dropPathRates(0.1, 0)).toEqual([]);
  });
});
