import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError } from '../errors.js';
import { REF } from './__fixtures__/reference.js';
import { expectClose, noLeak, seq } from './__fixtures__/helpers.js';
import { BatchNorm2d, GroupNorm, LayerNorm, LayerNorm2d } from './norm.js';
import { setTestBackend } from '../testing/backend.js';

beforeAll(async () => {
  await setTestBackend();
});

describe('LayerNorm', () => {
  it('matches PyTorch (biased variance, eps 1e-5)', () => {
    const ln = new LayerNorm(5);
    noLeak(() => {
      ln.loadStateDict({ weight: seq([5], 0.43, 0.7), bias: seq([5], 0.61, 0.2) });
      const x = tf.add(tf.mul(seq([2, 3, 5]), 3), 1.5);
      expectClose(ln.forward(x), REF.layernorm);
    });
    expect(ln.eps).toBe(1e-5);
    ln.dispose();
  });

  it('supports no affine / no bias and checks the last axis', () => {
    const plain = new LayerNorm(4, { elementwiseAffine: false });
    const noBias = new LayerNorm(4, { bias: false });
    expect(Object.keys(plain.stateDict())).toEqual([]);
    expect(Object.keys(noBias.stateDict())).toEqual(['weight']);
    noLeak(() => {
      const y = plain.forward(seq([3, 4]));
      const { mean, variance } = tf.moments(y, -1);
      expectClose(mean, [0, 0, 0]);
      // var/(var + eps) with eps 1e-5 on rows of variance ~0.05.
      expectClose(variance, [1, 1, 1], 1e-3);
    });
    expect(() => plain.forward(tf.zeros([2, 5]))).toThrow('LayerNorm expected input [..., 4], got shape [2,5]');
    plain.dispose();
    noBias.dispose();
  });
});

describe('LayerNorm2d', () => {
  it('matches the RegionViT channels-first form with [1, C, 1, 1] params', () => {
    const ln = new LayerNorm2d(4, { eps: 1e-5, paramShape: [1, 4, 1, 1] });
    expect(ln.weight.shape).toEqual([1, 4, 1, 1]);
    noLeak(() => {
      ln.loadStateDict({ weight: seq([1, 4, 1, 1], 0.43, 0.7), bias: seq([1, 4, 1, 1], 0.61, 0.2) });
      const x = tf.add(tf.mul(seq([2, 2, 3, 4]), 2), 0.5);
      expectClose(ln.forward(x), REF.layernorm2d);
    });
    ln.dispose();
  });

  it('defaults to [C] params and eps 1e-6, equal to LayerNorm over C', () => {
    const ln2 = new LayerNorm2d(4);
    const ln = new LayerNorm(4, { eps: 1e-6 });
    expect(ln2.weight.shape).toEqual([4]);
    expect(ln2.eps).toBe(1e-6);
    noLeak(() => {
      const x = seq([1, 3, 3, 4]);
      expectClose(ln2.forward(x), Array.from(ln.forward(x).dataSync()), 1e-6);
    });
    expect(() => new LayerNorm2d(4, { paramShape: [1, 2, 2, 1] })).toThrow(ConfigError);
    expect(() => ln2.forward(tf.zeros([1, 3, 3, 5]))).toThrow(ShapeError);
    ln.dispose();
    ln2.dispose();
  });
});

describe('BatchNorm2d', () => {
  function makeBn(): BatchNorm2d {
    const bn = new BatchNorm2d(3);
    tf.tidy(() => {
      bn.weight!.assign(seq([3], 0.43, 0.7));
      bn.bias!.assign(seq([3], 0.61, 0.2));
    });
    return bn;
  }

  it('train mode: batch stats, PyTorch running-stat update (unbiased var, momentum 0.1); eval: running stats', () => {
    const bn = makeBn();
    expect(Object.keys(bn.stateDict())).toEqual(['weight', 'bias', 'running_mean', 'running_var']);
    expect(bn.namedBuffers().map(([n]) => n)).toEqual(['running_mean', 'running_var']);
    noLeak(() => {
      const x = tf.add(tf.mul(seq([2, 3, 3, 3]), 2), 0.7);
      expectClose(bn.forward(x), REF.bn_train.y);
      expectClose(bn.running_mean!, REF.bn_train.running_mean);
      expectClose(bn.running_var!, REF.bn_train.running_var);
      const x2 = tf.sub(tf.mul(seq([2, 3, 3, 3], 0.23, 0.9), 1.5), 0.3);
      expectClose(bn.forward(x2), REF.bn_train2.y);
      expectClose(bn.running_mean!, REF.bn_train2.running_mean);
      expectClose(bn.running_var!, REF.bn_train2.running_var);
      bn.eval();
      expectClose(bn.forward(x), REF.bn_eval);
      // Eval leaves the running stats alone.
      expectClose(bn.running_mean!, REF.bn_train2.running_mean);
    });
    bn.dispose();
  });

  it('without running stats uses batch stats in eval too; rejects 1 value per channel in training', () => {
    const bn = new BatchNorm2d(2, { trackRunningStats: false, affine: false });
    expect(Object.keys(bn.stateDict())).toEqual([]);
    bn.eval();
    noLeak(() => {
      const { mean } = tf.moments(bn.forward(seq([2, 2, 2, 2])), [0, 1, 2]);
      expectClose(mean, [0, 0]);
    });
    const bn2 = new BatchNorm2d(2);
    expect(() => bn2.forward(tf.zeros([1, 1, 1, 2]))).toThrow(ShapeError);
    expect(() => bn2.forward(tf.zeros([1, 4, 4, 3]))).toThrow('expected NHWC input with 2 channels, got shape [1,4,4,3]');
    bn.dispose();
    bn2.dispose();
  });
});

describe('GroupNorm', () => {
  for (const g of [1, 2] as const) {
    it(`GroupNorm(${g}, 4) matches PyTorch`, () => {
      const gn = new GroupNorm(g, 4);
      noLeak(() => {
        gn.loadStateDict({ weight: seq([4], 0.43, 0.7), bias: seq([4], 0.61, 0.2) });
        const x = tf.add(tf.mul(seq([2, 3, 3, 4]), 2), 0.3);
        expectClose(gn.forward(x), g === 1 ? REF.groupnorm1 : REF.groupnorm2);
      });
      gn.dispose();
    });
  }

  it('checks divisibility and channels', () => {
    expect(() => new GroupNorm(3, 4)).toThrow('GroupNorm numChannels (4) must be divisible by numGroups (3)');
    const gn = new GroupNorm(2, 4);
    expect(() => gn.forward(tf.zeros([1, 2, 2, 6]))).toThrow(ShapeError);
    gn.dispose();
  });
});
