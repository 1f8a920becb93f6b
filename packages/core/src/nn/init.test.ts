import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import {
  assignInit,
  calculateGain,
  computeFans,
  constant,
  kaimingNormal,
  kaimingUniform,
  ones,
  truncNormal,
  xavierUniform,
  zeros,
} from './init.js';
import { setTestBackend } from '../testing/backend.js';

beforeAll(async () => {
  await setTestBackend();
});

function stats(t: tf.Tensor): { mean: number; std: number; min: number; max: number } {
  const v = Array.from(t.dataSync());
  const mean = v.reduce((s, e) => s + e, 0) / v.length;
  const std = Math.sqrt(v.reduce((s, e) => s + (e - mean) ** 2, 0) / v.length);
  return { mean, std, min: Math.min(...v), max: Math.max(...v) };
}

describe('init', () => {
  it('truncNormal: absolute bounds, right moments, deterministic per seed', () => {
    const t = truncNormal([20000], { seed: 7 });
    const s = stats(t);
    // N(0,1) truncated to [−2, 2]: std = √(1 − 4φ(2)/(Φ(2) − Φ(−2))) ≈ 0.8796.
    expect(s.min).toBeGreaterThanOrEqual(-2);
    expect(s.max).toBeLessThanOrEqual(2);
    expect(Math.abs(s.mean)).toBeLessThan(0.02);
    expect(Math.abs(s.std - 0.8796)).toBeLessThan(0.015);
    // timm's usual call: std 0.02 with bounds ±2 is untruncated in practice.
    const w = stats(truncNormal([20000], { std: 0.02, seed: 1 }));
    expect(Math.abs(w.std - 0.02)).toBeLessThan(0.0005);
    // Bounds are absolute, not in units of std: a one-sided narrow window.
    const tail = stats(truncNormal([5000], { mean: 0, std: 1, a: 3, b: 3.5, seed: 2 }));
    expect(tail.min).toBeGreaterThanOrEqual(3);
    expect(tail.max).toBeLessThanOrEqual(3.5);
    expect(Array.from(truncNormal([8], { seed: 5 }).dataSync())).toEqual(Array.from(truncNormal([8], { seed: 5 }).dataSync()));
    expect(() => truncNormal([2], { a: 1, b: 0 })).toThrow(ConfigError);
    tf.disposeVariables();
  });

  it('kaiming and xavier bounds/stds follow torch.nn.init', () => {
    const fan = 50;
    // PyTorch's default layer init: a = √5 → U(±1/√fan_in).
    const ku = stats(kaimingUniform([10000], fan, { a: Math.sqrt(5), seed: 1 }));
    expect(ku.max).toBeLessThanOrEqual(1 / Math.sqrt(fan));
    expect(ku.max).toBeGreaterThan(0.95 / Math.sqrt(fan));
    const kn = stats(kaimingNormal([10000], { fanIn: 20, fanOut: 50 }, { mode: 'fan_out', nonlinearity: 'relu', seed: 2 }));
    expect(Math.abs(kn.std - Math.sqrt(2 / 50))).toBeLessThan(0.01);
    expect(() => kaimingNormal([4], 10, { mode: 'fan_out' })).toThrow(ConfigError);
    const xu = stats(xavierUniform([10000], 30, 70, { seed: 3 }));
    expect(xu.max).toBeLessThanOrEqual(Math.sqrt(6 / 100));
    expect(calculateGain('leaky_relu', Math.sqrt(5))).toBeCloseTo(Math.sqrt(1 / 3), 12);
    expect(calculateGain('tanh')).toBeCloseTo(5 / 3, 12);
  });

  it('computeFans reads our layouts like PyTorch reads its own', () => {
    expect(computeFans([16, 32], 'linear')).toEqual({ fanIn: 16, fanOut: 32 });
    expect(computeFans([3, 3, 8, 16], 'conv2d')).toEqual({ fanIn: 72, fanOut: 144 });
    expect(computeFans([3, 3, 8, 2], 'depthwise')).toEqual({ fanIn: 9, fanOut: 144 });
    expect(computeFans([5, 1, 1], 'conv1d')).toEqual({ fanIn: 5, fanOut: 5 });
  });

  it('constant/zeros/ones and assignInit leak nothing', () => {
    const v = tf.variable(tf.zeros([2, 3]));
    const before = tf.memory().numTensors;
    assignInit(v, constant([2, 3], 0.5));
    expect(Array.from(v.dataSync())).toEqual(Array(6).fill(0.5));
    assignInit(v, ones([2, 3]));
    assignInit(v, zeros([2, 3]));
    expect(tf.memory().numTensors).toBe(before);
    expect(() => assignInit(v, ones([3, 2]))).toThrow(ConfigError);
    expect(tf.memory().numTensors).toBe(before);
    v.dispose();
  });
});
