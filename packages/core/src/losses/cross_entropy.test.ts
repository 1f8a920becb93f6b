import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { setTestBackend } from '../testing/backend.js';
import { ConfigError, ShapeError } from '../errors.js';
import { maxRelErr, readOptimFixture } from '../optim/__fixtures__/reference.js';
import { CrossEntropyLoss, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy, createLoss, crossEntropy } from './index.js';

interface Ref {
  value: number;
  grad: number[];
}
const F = readOptimFixture<Record<string, any>>('losses');

beforeAll(async () => {
  await setTestBackend();
});

function valueAndGrad(fn: (x: tf.Tensor) => tf.Tensor, logits: number[], shape: number[]): { value: number; grad: Float32Array } {
  return tf.tidy(() => {
    const x = tf.tensor(logits, shape, 'float32');
    const { value, grad } = tf.valueAndGrad(fn as (x: tf.Tensor) => tf.Scalar)(x);
    return { value: value.dataSync()[0]!, grad: grad.dataSync() as Float32Array };
  });
}

function expectRef(got: { value: number; grad: Float32Array }, ref: Ref): void {
  expect(Math.abs(got.value - ref.value) / Math.abs(ref.value)).toBeLessThan(1e-6);
  expect(maxRelErr(got.grad, ref.grad)).toBeLessThan(1e-6);
}

describe('losses against PyTorch (tools/fixtures/optim_reference.py)', () => {
  const labels = () => tf.tensor1d(F.target, 'int32');
  const soft = () => tf.tensor2d(F.soft, F.shape);

  it('crossEntropy = F.cross_entropy (mean, sum, none) with its logits gradient', () => {
    const before = tf.memory().numTensors;
    expectRef(valueAndGrad((x) => crossEntropy(x, labels()), F.logits, F.shape), F.ce);
    expectRef(valueAndGrad((x) => crossEntropy(x, labels(), { reduction: 'sum' }), F.logits, F.shape), F.ce_sum);
    const none = tf.tidy(() => crossEntropy(tf.tensor2d(F.logits, F.shape), labels(), { reduction: 'none' }).dataSync());
    expect(none.length).toBe(6);
    expect(maxRelErr(none, F.ce_none)).toBeLessThan(1e-6);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("LabelSmoothingCrossEntropy is the seeds' formula (= label_smoothing in F.cross_entropy)", () => {
    expectRef(valueAndGrad((x) => new LabelSmoothingCrossEntropy().forward(x, labels()), F.logits, F.shape), F.lsce_seed01);
    expectRef(valueAndGrad((x) => new LabelSmoothingCrossEntropy(0.3).forward(x, labels()), F.logits, F.shape), F.lsce_seed03);
    expectRef(valueAndGrad((x) => new CrossEntropyLoss(0.1).forward(x, labels()), F.logits, F.shape), F.ce_ls01);
    // The two references agree with each other too (the seeds' formula is PyTorch's label smoothing).
    expect(Math.abs(F.ce_ls01.value - F.lsce_seed01.value)).toBeLessThan(1e-6);
  });

  it('SoftTargetCrossEntropy = mean(sum(-t * log_softmax)) = F.cross_entropy with probabilities', () => {
    expectRef(valueAndGrad((x) => new SoftTargetCrossEntropy().forward(x, soft()), F.logits, F.shape), F.soft_ce);
    expectRef(valueAndGrad((x) => new SoftTargetCrossEntropy().forward(x, soft()), F.logits, F.shape), F.soft_ce_torch);
  });

  it('stays finite and exact for logits of ±1000 (log-softmax, not log(softmax))', () => {
    const got = valueAndGrad((x) => new LabelSmoothingCrossEntropy(0.1).forward(x, tf.tensor1d(F.big_target, 'int32')), F.big_logits, F.big_shape);
    expect(Number.isFinite(got.value)).toBe(true);
    expectRef(got, F.big_lsce01);
  });
});

describe('losses by hand', () => {
  it('uniform logits give log(C); one-hot soft targets equal hard labels', () => {
    tf.tidy(() => {
      const z = tf.zeros([3, 4]);
      const y = tf.tensor1d([0, 3, 1], 'int32');
      expect(crossEntropy(z, y).dataSync()[0]).toBeCloseTo(Math.log(4), 6);
      // Smoothing cannot change the loss of uniform predictions: every term is log(C).
      expect(new LabelSmoothingCrossEntropy(0.4).forward(z, y).dataSync()[0]).toBeCloseTo(Math.log(4), 6);
      const x = tf.tensor2d([[2, -1, 0.5, 0], [0, 0, 3, -2], [1, 1, 1, 4]]);
      const hard = new LabelSmoothingCrossEntropy(0.2).forward(x, y).dataSync()[0]!;
      const oneHot = new LabelSmoothingCrossEntropy(0.2).forward(x, tf.oneHot(y, 4).toFloat()).dataSync()[0]!;
      expect(oneHot).toBeCloseTo(hard, 6);
      // Row 0 by hand: log p = x − logsumexp(x).
      const lse = Math.log(Math.exp(2) + Math.exp(-1) + Math.exp(0.5) + Math.exp(0));
      const lp = [2, -1, 0.5, 0].map((v) => v - lse);
      const row0 = 0.8 * -lp[0]! + (0.2 * -lp.reduce((a, b) => a + b, 0)) / 4;
      const per = crossEntropy(x, y, { labelSmoothing: 0.2, reduction: 'none' }).dataSync();
      expect(per[0]).toBeCloseTo(row0, 5);
    });
  });

  it('rejects bad shapes, dtypes and options with clear errors, leaking nothing', () => {
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const x = tf.zeros([2, 3]);
      expect(() => crossEntropy(tf.zeros([2, 3, 1]), tf.tensor1d([0, 1], 'int32'))).toThrow(ShapeError);
      expect(() => crossEntropy(x, tf.tensor1d([0, 1, 2], 'int32'))).toThrow(/2 logits rows but 3 labels/);
      expect(() => crossEntropy(x, tf.tensor1d([0, 1], 'float32'))).toThrow(/int32 class labels/);
      expect(() => crossEntropy(x, tf.zeros([2, 4]))).toThrow(/soft targets \[2, 3\]/);
      expect(() => crossEntropy(x, tf.tensor1d([0, 1], 'int32'), { reduction: 'avg' as 'mean' })).toThrow(/Unknown reduction/);
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(() => new LabelSmoothingCrossEntropy(1)).toThrow(ConfigError);
    expect(() => createLoss({ type: 'focal' } as never)).toThrow(/Unknown loss 'focal'/);
  });

  it('createLoss rebuilds every loss from toConfig()', () => {
    for (const loss of [new CrossEntropyLoss(0.05), new LabelSmoothingCrossEntropy(0.1), new SoftTargetCrossEntropy()]) {
      const again = createLoss(loss.toConfig());
      expect(again.constructor).toBe(loss.constructor);
      expect(again.toConfig()).toEqual(loss.toConfig());
    }
  });
});

describe('crossEntropy on wasm', () => {
  it('equals the cpu value (tfjs-backend-wasm 4.22 writes int bits into a float32 OneHot)', async () => {
    const { selectBackend } = await import('../backend.js');
    const prev = tf.getBackend();
    const logits = [[1, 2, 3, 0], [0, 0, 0, 5]];
    const run = () => tf.tidy(() => crossEntropy(tf.tensor2d(logits), tf.tensor1d([2, 3], 'int32')).dataSync()[0]!);
    await tf.setBackend('cpu');
    const ref = run();
    await selectBackend('wasm', { quiet: true });
    try {
      expect(run()).toBeCloseTo(ref, 6);
      expect(ref).toBeGreaterThan(0.1);
    } finally {
      await tf.setBackend(prev);
    }
  });
});
