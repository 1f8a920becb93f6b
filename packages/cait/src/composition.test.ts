import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Conv2d, layerNorm, LayerNorm, Linear, Module, ModuleList, PatchEmbed, ReLU, ShapeError, timmMlp } from '@vit/core';
import {
  LayerScaleBlock,
  LayerScaleBlockClassAttention,
  talkingHeadAttention,
} from './index.js';
import { setTestBackend } from '@vit/core/testing';

/**
 * A block of another kind: a ConvNeXt/ConvMixer-style depthwise 3x3 token mixer with its own
 * LayerScale, run on the token grid (`[B, N, C]` ↔ `[B, h, w, C]`).
 */
class DepthwiseConvBlock extends Module {
  readonly norm: LayerNorm;
  readonly dwconv: Conv2d;
  readonly gamma: tf.Variable;

  constructor(
    readonly dim: number,
    readonly grid: [number, number],
  ) {
    super();
    this.gamma = this.addParameter('gamma', tf.fill([dim], 0.5));
    this.norm = this.register('norm', new LayerNorm(dim, { eps: 1e-6 }));
    this.dwconv = this.register('dwconv', new Conv2d(dim, dim, 3, { padding: 1, groups: dim }));
  }

  override forward(x: tf.Tensor): tf.Tensor {
    const [b, n, c] = x.shape as [number, number, number];
    if (n !== this.grid[0] * this.grid[1]) throw new ShapeError(`expected ${this.grid[0] * this.grid[1]} tokens, got ${n}`);
    return tf.tidy(() => {
      const map = tf.reshape(this.norm.forward(x), [b, this.grid[0], this.grid[1], c]);
      return tf.add(x, tf.mul(this.gamma, tf.reshape(this.dwconv.forward(map), [b, n, c])));
    });
  }
}

/** A new small backbone: conv patch stem → talking-heads block → depthwise-conv block → ReLU-MLP block → class attention → head. */
class TinyHybrid extends Module {
  readonly patch_embed: PatchEmbed;
  readonly pos_embed: tf.Variable;
  readonly cls_token: tf.Variable;
  readonly blocks: ModuleList;
  readonly cls_blocks: ModuleList;
  readonly norm: LayerNorm;
  readonly head: Linear;

  constructor(numClasses: number) {
    super();
    const dim = 16;
    const grid: [number, number] = [4, 4];
    const norm = layerNorm(1e-6);
    this.pos_embed = this.addParameter('pos_embed', tf.randomNormal([1, 16, dim], 0, 0.02, 'float32', 11));
    this.cls_token = this.addParameter('cls_token', tf.randomNormal([1, 1, dim], 0, 0.02, 'float32', 12));
    this.patch_embed = this.register('patch_embed', new PatchEmbed({ patchSize: 4, inChans: 3, embedDim: dim }));
    this.blocks = this.register(
      'blocks',
      new ModuleList([
        new LayerScaleBlock(dim, { numHeads: 2, qkvBias: true, normLayer: norm, initValues: 0.1 }),
        new DepthwiseConvBlock(dim, grid),
        new LayerScaleBlock(dim, {
          numHeads: 4,
          mlpRatio: 2,
          normLayer: norm,
          attnBlock: talkingHeadAttention,
          mlpBlock: timmMlp,
          actLayer: () => new ReLU(),
          initValues: 0.1,
        }),
      ]),
    );
    this.cls_blocks = this.register('cls_blocks', new ModuleList([new LayerScaleBlockClassAttention(dim, { numHeads: 2, qkvBias: true, normLayer: norm, initValues: 0.1 })]));
    this.norm = this.register('norm', new LayerNorm(dim, { eps: 1e-6 }));
    this.head = this.register('head', new Linear(dim, numClasses));
  }

  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let t = tf.add(this.patch_embed.forward(x), this.pos_embed);
      for (const blk of this.blocks) t = blk.forward(t);
      let cls = tf.tile(this.cls_token, [x.shape[0], 1, 1]);
      for (const blk of this.cls_blocks) cls = blk.forward(t, cls);
      return this.head.forward(tf.squeeze(this.norm.forward(cls), [1]));
    });
  }
}

describe('composition', () => {
  beforeAll(async () => {
    await setTestBackend();
    await tf.ready();
  });

  it('a new backbone from the CaiT blocks plus a depthwise-conv block trains with plain SGD (loss decreases)', () => {
    const before = tf.memory().numTensors;
    const model = new TinyHybrid(3);
    try {
      // Deterministic init (core's Linear/Conv2d draw unseeded): N(0, 1/fan_in) weights, zero biases,
      // unit norm weights; LayerScale and tokens keep their construction values.
      tf.tidy(() => {
        model.namedParameters().forEach(([name, v], i) => {
          if (/(^|\.)norm\d?\.weight$/.test(name)) v.assign(tf.onesLike(v));
          else if (name.endsWith('.bias')) v.assign(tf.zerosLike(v));
          else if (name.endsWith('weight')) {
            const fanIn = v.shape.slice(0, -1).reduce((a, b) => a * b, 1);
            v.assign(tf.randomNormal(v.shape, 0, 1 / Math.sqrt(fanIn), 'float32', 100 + i));
          }
        });
      });
      model.train();
      const x = tf.randomNormal([6, 16, 16, 3], 0, 1, 'float32', 21);
      const labels = tf.tidy(() => tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1, 2], 'int32'), 3));
      const vars = model.parameters();
      const lr = 0.05;
      const losses: number[] = [];
      for (let step = 0; step < 12; step++) {
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(labels, model.forward(x)) as tf.Scalar, vars);
          losses.push(value.dataSync()[0]!);
          if (step === 0) {
            // Every part of the composed network learns, the conv block included.
            for (const [name, v] of model.namedParameters()) {
              expect(grads[v.name], name).toBeDefined();
            }
            expect(tf.max(tf.abs(grads[(model.blocks.at(1) as DepthwiseConvBlock).dwconv.weight.name]!)).dataSync()[0]).toBeGreaterThan(0);
          }
          for (const v of vars) v.assign(tf.sub(v, tf.mul(grads[v.name]!, lr)));
        });
      }
      console.log(`[cait composition] SGD losses: ${losses.map((l) => l.toFixed(4)).join(' → ')}`);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(losses[losses.length - 1]!).toBeLessThan(losses[0]! * 0.8);
      for (let i = 1; i < losses.length; i++) expect(losses[i]!).toBeLessThan(losses[i - 1]! + 1e-3);
      x.dispose();
      labels.dispose();
    } finally {
      model.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
