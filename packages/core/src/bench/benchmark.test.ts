import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { Conv2d } from '../nn/conv.js';
import { Linear } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import { setTestBackend } from '../testing/backend.js';
import { benchmarkModel, formatBytes } from './benchmark.js';

class Tiny extends Module {
  conv = this.register('conv', new Conv2d(3, 4, 3, { stride: 2, padding: 1 }));
  head = this.register('head', new Linear(4, 5));
  forward(x: tf.Tensor4D): tf.Tensor2D {
    return this.head.forward(tf.mean(tf.relu(this.conv.forward(x)), [1, 2])) as tf.Tensor2D;
  }
}

describe('benchmarkModel', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it('times forward and training steps, reports peak memory, leaks nothing and trains the model', async () => {
    const m = new Tiny();
    const w0 = m.head.parameters()[0]!.dataSync().slice();
    const calls: string[] = [];
    const before = tf.memory().numTensors;
    const r = await benchmarkModel(m, { batchSize: 2, inputSize: [8, 6], warmup: 1, runs: 3, onRun: (p, k) => calls.push(`${p}:${k}`) });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.backend).toBe(tf.getBackend());
    expect(r.inputShape).toEqual([2, 8, 6, 3]);
    expect(r.params).toBe(3 * 3 * 3 * 4 + 4 + 4 * 5 + 5);
    expect(r.baseBytes).toBeGreaterThanOrEqual(r.params * 4);
    for (const p of [r.forward!, r.train!]) {
      expect(p.runsMs).toHaveLength(3);
      expect(p.minMs).toBeLessThanOrEqual(p.medianMs);
      expect(p.medianMs).toBeLessThanOrEqual(p.maxMs);
      expect(p.imagesPerSec).toBeCloseTo(2000 / p.medianMs, 6);
      expect(p.leakedTensors).toBe(0);
      // the input [2,8,6,3] floats is alive during a step, on top of the weights
      expect(p.peakBytes!).toBeGreaterThan(r.baseBytes);
    }
    // a training step holds activations and gradients: more than inference
    expect(r.train!.peakBytes!).toBeGreaterThan(r.forward!.peakBytes!);
    expect(r.peakBytes).toBe(r.train!.peakBytes);
    expect(r.forwardImagesPerSec).toBe(r.forward!.imagesPerSec);
    expect(calls).toEqual(['forward:warmup', 'forward:timed', 'forward:timed', 'forward:timed', 'train:warmup', 'train:timed', 'train:timed', 'train:timed']);
    // 4 + 1 (memory) SGD steps changed the weights; the model is left in eval mode
    expect(Array.from(m.head.parameters()[0]!.dataSync())).not.toEqual(Array.from(w0));
    expect(m.training).toBe(false);
    m.dispose();
  });

  it("times the Trainer's update with optimizer 'adamw' (moments held during the step, freed after)", async () => {
    const m = new Tiny();
    const before = tf.memory().numTensors;
    const opts = { batchSize: 2, inputSize: [8, 6] as [number, number], warmup: 1, runs: 2, forward: false };
    const sgd = await benchmarkModel(m, opts);
    const adamw = await benchmarkModel(m, { ...opts, optimizer: 'adamw' });
    expect(tf.memory().numTensors).toBe(before);
    expect(adamw.train!.leakedTensors).toBe(0);
    expect(adamw.train!.runsMs).toHaveLength(2);
    expect([sgd.optimizer, adamw.optimizer]).toEqual(['sgd', 'adamw']);
    // AdamW's two moments per parameter are alive during its steps; SGD keeps no state.
    expect(adamw.train!.peakBytes!).toBeGreaterThan(sgd.train!.peakBytes! + 4 * m.numParams());
    await expect(benchmarkModel(m, { ...opts, optimizer: 'adam' as 'sgd' })).rejects.toThrow(/optimizer must be sgd or adamw, got 'adam'/);
    m.dispose();
  });

  it('runs only the phases asked for and stops a phase at maxPhaseMs', async () => {
    const m = new Tiny();
    const r = await benchmarkModel(m, { batchSize: 1, inputSize: 4, train: false, warmup: 0, runs: 50, maxPhaseMs: 0, memory: false });
    expect(r.train).toBeUndefined();
    expect(r.forward!.runsMs).toHaveLength(1);
    expect(r.forward!.peakBytes).toBeUndefined();
    expect(r.peakBytes).toBeUndefined();
    m.dispose();
  });

  it('refuses bad sizes with a ConfigError naming the option', async () => {
    const m = new Tiny();
    await expect(benchmarkModel(m, { batchSize: 0 })).rejects.toThrow(ConfigError);
    await expect(benchmarkModel(m, { inputSize: 2.5 })).rejects.toThrow(/inputSize/);
    await expect(benchmarkModel(m, { runs: 0 })).rejects.toThrow(/runs/);
    m.dispose();
  });

  it('formats bytes in powers of 1024', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(3 * 1024 ** 3)).toBe('3.0 GB');
    expect(formatBytes(undefined)).toBe('-');
  });
});
