import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { setTestBackend } from '../testing/backend.js';
import { LayerNorm, Linear, Module } from '../nn/index.js';
import { AdamW, SGD, paramGroupsWeightDecay, weightDecayPlan } from './index.js';

beforeAll(async () => {
  await setTestBackend();
});

/** A ViT-like toy: tokens, a position table, a relative-position table, LayerScale, norms, linears. */
class Toy extends Module {
  readonly cls_token = this.addParameter('cls_token', tf.zeros([1, 1, 4]));
  readonly pos_embed = this.addParameter('pos_embed', tf.zeros([1, 3, 4]));
  readonly table = this.addParameter('table', tf.zeros([5, 2]), { noWeightDecay: true });
  readonly relative_position_bias_table = this.addParameter('relative_position_bias_table', tf.zeros([9, 2]));
  readonly gamma_1 = this.addParameter('gamma_1', tf.ones([4]));
  readonly norm = this.register('norm', new LayerNorm(4));
  readonly fc = this.register('fc', new Linear(4, 3));
  readonly head = this.register('head', new Linear(3, 2, { bias: false }));
  readonly extra = this.addParameter('extra', tf.zeros([2, 2]));
  noWeightDecay(): string[] {
    return ['ext*'];
  }
  forward(x: tf.Tensor): tf.Tensor {
    return this.head.forward(this.fc.forward(this.norm.forward(x)));
  }
}

describe("timm's weight-decay parameter groups", () => {
  it('decays only the weight matrices; says why each other parameter is excluded', () => {
    const m = new Toy();
    const plan = Object.fromEntries(weightDecayPlan(m).map((d) => [d.name, d.decay ? 'decay' : d.reason]));
    expect(plan).toEqual({
      cls_token: 'pattern',
      pos_embed: 'pattern',
      table: 'declared',
      relative_position_bias_table: 'pattern',
      gamma_1: 'ndim<=1',
      extra: 'listed',
      'norm.weight': 'ndim<=1',
      'norm.bias': 'ndim<=1',
      'fc.weight': 'decay',
      'fc.bias': 'ndim<=1',
      'head.weight': 'decay',
    });
    // Without the default patterns the tokens and tables are decayed unless declared.
    const bare = weightDecayPlan(m, { patterns: [] }).filter((d) => d.decay).map((d) => d.name);
    expect(bare).toEqual(['cls_token', 'pos_embed', 'relative_position_bias_table', 'fc.weight', 'head.weight']);
    m.dispose();
  });

  it('the optimizer built on a Module uses the groups; frozen parameters are left out', () => {
    const m = new Toy();
    m.fc.requiresGrad(false);
    const opt = new AdamW(m, { lr: 1e-3, weightDecay: 0.05 });
    expect(opt.paramGroups.map((g) => [g.name, g.weightDecay, g.params.map((p) => p.name)])).toEqual([
      ['decay', 0.05, ['head.weight']],
      ['no_decay', 0, ['cls_token', 'pos_embed', 'table', 'relative_position_bias_table', 'gamma_1', 'extra', 'norm.weight', 'norm.bias']],
    ]);
    const flat = new SGD(m, { lr: 0.1, weightDecay: 1e-5, groupNoDecay: false });
    expect(flat.paramGroups).toHaveLength(1);
    expect(flat.paramGroups[0]!.weightDecay).toBe(1e-5);
    expect(flat.paramGroups[0]!.params).toHaveLength(9);
    const groups = paramGroupsWeightDecay(m, { weightDecay: 0.1, noWeightDecay: ['head.weight'] });
    expect(groups[0]!.params).toHaveLength(0);
    m.dispose();
  });

  it('a no-decay parameter keeps its value under AdamW while a decayed one shrinks', () => {
    const before = tf.memory().numTensors;
    const m = new Toy();
    const opt = new AdamW(m, { lr: 0.1, weightDecay: 0.5 });
    tf.tidy(() => {
      m.extra.assign(tf.ones([2, 2]));
      m.head.weight.assign(tf.ones([3, 2]));
    });
    // A zero gradient for every parameter: only decay can move them.
    const grads = new Map(opt.variables().map((v) => [v, tf.zerosLike(v)] as [tf.Variable, tf.Tensor]));
    opt.step(grads);
    expect(Array.from(m.extra.dataSync())).toEqual([1, 1, 1, 1]);
    for (const v of m.head.weight.dataSync()) expect(v).toBeCloseTo(1 - 0.1 * 0.5, 6);
    tf.dispose([...grads.values()]);
    opt.dispose();
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
