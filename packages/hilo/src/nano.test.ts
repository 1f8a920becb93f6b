import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ShapeError, createModel, getModelCard, type Module, type VisionModel } from '@vit/core';
import { setTestBackend } from '@vit/core/testing';
import { LITV2_VARIANTS } from './index.js';

const NAME = 'litv2_nano';
const NOTE = 'Defined by @vit for 32×32 small-image datasets (Fashion-MNIST, CIFAR) and quick experiments; not from the paper. Results: docs/results.md.';

type Net = VisionModel & Module;

// Patch 2 keeps ≥ 4 keys in every attention at 32×32, so every parameter trains.
const ZERO_GRAD: string[] = [];

beforeAll(async () => {
  await setTestBackend();
});

let startTensors = 0;
beforeAll(() => {
  startTensors = tf.memory().numTensors;
});
afterEach(() => {
  expect(tf.memory().numTensors).toBe(startTensors);
});

describe(NAME, () => {
  it('has an unofficial 32×32, 10-class card with no top-1', () => {
    expect(getModelCard(NAME)).toMatchObject({
      inputSize: [32, 32, 3],
      numClasses: 10,
      official: false,
      cropPct: 1,
      interpolation: 'bilinear',
      mean: [0.485, 0.456, 0.406],
      std: [0.229, 0.224, 0.225],
      notes: NOTE,
    });
    expect(getModelCard(NAME).top1).toBeUndefined();
  });

  it('the card states the built model\'s exact parameter count: 1,420,002', () => {
    const m = createModel<Net>(NAME);
    try {
      expect(m.numParams()).toBe(1_420_002);
      expect(getModelCard(NAME).paramCount).toBe(1_420_002);
      expect(LITV2_VARIANTS.litv2_nano.paramCount).toBe(1_420_002);
    } finally {
      m.dispose();
    }
  });

  it('trains: forward at [2, 32, 32, 3] to finite 10-class logits, finite gradients, one Adam step lowers the loss', () => {
    const m = createModel<Net>(NAME, { dropPathRate: 0 });
    const opt = tf.train.adam(1e-3);
    const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const y = tf.tidy(() => tf.oneHot(tf.tensor1d([3, 7], 'int32'), 10));
    try {
      m.train();
      const named = m.namedParameters();
      const loss = () => tf.losses.softmaxCrossEntropy(y, m.forward(x)) as tf.Scalar;
      const l0 = tf.tidy(() => {
        const logits = m.forward(x);
        expect(logits.shape).toEqual([2, 10]);
        expect(Number.isFinite(tf.sum(logits).dataSync()[0]!)).toBe(true);
        return tf.losses.softmaxCrossEntropy(y, logits).dataSync()[0]!;
      });
      const { value, grads } = tf.variableGrads(loss, named.map(([, v]) => v));
      const zero: string[] = [];
      for (const [name, v] of named) {
        const [finite, nonZero] = tf.tidy(() => [tf.all(tf.isFinite(grads[v.name]!)), tf.any(tf.notEqual(grads[v.name]!, 0))].map((t) => t.dataSync()[0] === 1));
        expect(finite, name).toBe(true);
        if (!nonZero) zero.push(name);
      }
      expect(zero).toEqual(ZERO_GRAD);
      opt.applyGradients(named.map(([, v]) => ({ name: v.name, tensor: grads[v.name]! })));
      tf.dispose([value, grads]);
      const l1 = tf.tidy(() => loss().dataSync()[0]!);
      expect(l1).toBeLessThan(l0);
    } finally {
      tf.dispose([x, y]);
      opt.dispose();
      m.dispose();
    }
  });

  it('28×28 inputs (Fashion-MNIST before resizing) give a ShapeError; with padInputs: true they run', () => {
    const m = createModel<Net>(NAME);
    const p = createModel<Net>(NAME, { padInputs: true });
    const x = tf.zeros([1, 28, 28, 3]) as tf.Tensor4D;
    try {
      expect(() => m.forward(x)).toThrow(ShapeError);
      expect(() => m.forward(x)).toThrow(/28x28.*7x7 tokens.*not even/);
      p.eval();
      const y = p.forward(x);
      expect(y.shape).toEqual([1, 10]);
      y.dispose();
    } finally {
      x.dispose();
      p.dispose();
      m.dispose();
    }
  });
});
