import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { layerNorm, LayerNorm, Linear, Module, ModuleList, ReLU, SiLU, type MlpFactory } from '@vit/core';
import { setTestBackend } from '@vit/core/testing';
import { Conv2FormerBlock } from '@vit/conv2former';
import {
  AttentionWithRelPos,
  ConvAttBlock,
  R2LAttentionPlusFFN,
  RegionViTPatchEmbed,
  type R2LBlockFactory,
} from './index.js';

/** A different MLP for the R2L blocks: a gated (SwiGLU-like) channel mixer on [..., C]. */
class GatedMlp extends Module {
  readonly fc1: Linear;
  readonly gate: Linear;
  readonly fc2: Linear;
  readonly act = new SiLU();
  constructor(inF: number, hidden: number, outF: number) {
    super();
    this.fc1 = this.register('fc1', new Linear(inF, hidden));
    this.gate = this.register('gate', new Linear(inF, hidden));
    this.fc2 = this.register('fc2', new Linear(hidden, outF));
  }
  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.fc2.forward(tf.mul(this.fc1.forward(x), this.act.forward(this.gate.forward(x)))));
  }
}
const gatedMlp: MlpFactory = (inF, o) => new GatedMlp(inF, o.hiddenFeatures, o.outFeatures ?? inF);

/**
 * A new small backbone: RegionViT's '1conv' local stem and 'linear' regional stem, a stage of R2L blocks
 * (window 2, the second block with a gated MLP and ReLU), a Conv2Former block (from @vit/conv2former)
 * on the local map between the stages, a widening 'sc' stage with PEG whose blocks use an attention
 * with another head count, then the RegionViT head (norm → mean of regional tokens → Linear).
 */
class TinyRegionHybrid extends Module {
  readonly local_embed: RegionViTPatchEmbed;
  readonly regional_embed: RegionViTPatchEmbed;
  readonly stages: ModuleList;
  readonly mixer: Conv2FormerBlock;
  readonly norm: LayerNorm;
  readonly head: Linear;
  constructor(numClasses: number) {
    super();
    this.local_embed = this.register('local_embed', new RegionViTPatchEmbed({ patchSize: 2, embedDim: 8, patchConvType: '1conv' }));
    this.regional_embed = this.register('regional_embed', new RegionViTPatchEmbed({ patchSize: 4, embedDim: 8, patchConvType: 'linear' }));
    let n = 0;
    const mixedBlocks: R2LBlockFactory = (dim, o) =>
      n++ === 0 ? new R2LAttentionPlusFFN(dim, o) : new R2LAttentionPlusFFN(dim, { ...o, mlpLayer: gatedMlp, actLayer: () => new ReLU() });
    this.stages = this.register(
      'stages',
      new ModuleList([
        new ConvAttBlock(8, 8, { windowSize: 2, numBlocks: 2, numHeads: 2, mlpRatio: 2, pool: 'c', normLayer: layerNorm(1e-6), blockLayer: mixedBlocks }),
        new ConvAttBlock(8, 16, {
          windowSize: 2,
          numBlocks: 1,
          numHeads: 2,
          pool: 'sc',
          peg: true,
          normLayer: layerNorm(1e-6),
          attnLayer: (dim, o) => new AttentionWithRelPos(dim, { ...o, numHeads: 4, qkvBias: true }),
        }),
      ]),
    );
    this.mixer = this.register('mixer', new Conv2FormerBlock(8, { kernelSize: 3, mlpRatio: 2, layerScaleInitValue: 0.5 }));
    this.norm = this.register('norm', new LayerNorm(16, { eps: 1e-6 }));
    this.head = this.register('head', new Linear(16, numClasses));
  }

  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let local = this.local_embed.forward(x);
      let regional = this.regional_embed.forward(x, true);
      [regional, local] = (this.stages.at(0) as ConvAttBlock).forward(regional, local);
      local = this.mixer.forward(local) as tf.Tensor4D;
      [regional] = (this.stages.at(1) as ConvAttBlock).forward(regional, local);
      return this.head.forward(tf.mean(this.norm.forward(regional), [1, 2]));
    });
  }
}

describe('composition', () => {
  beforeAll(async () => {
    await setTestBackend();
    await tf.ready();
  });

  it('a new backbone from the RegionViT blocks plus a Conv2Former block trains with plain SGD (loss decreases)', () => {
    const before = tf.memory().numTensors;
    const model = new TinyRegionHybrid(3);
    try {
      // Deterministic init (core's Linear/Conv2d draw unseeded): N(0, 1/fan_in) weights, zero biases,
      // unit norm weights, small relative-position tables.
      tf.tidy(() => {
        model.namedParameters().forEach(([name, v], i) => {
          if (/norm\d?\.weight$|\.proj\.0\.weight$|layer_scale|gamma/.test(name)) v.assign(tf.onesLike(v));
          else if (name.endsWith('.bias')) v.assign(tf.zerosLike(v));
          else if (name.endsWith('rel_pos')) v.assign(tf.randomNormal(v.shape, 0, 0.02, 'float32', 50 + i));
          else if (v.rank >= 2) {
            const fanIn = v.shape.slice(0, -1).reduce((a, b) => a * b, 1);
            v.assign(tf.randomNormal(v.shape, 0, 1 / Math.sqrt(fanIn), 'float32', 100 + i));
          }
        });
      });
      model.train();
      // 14x18 images: the regional grid (4x5 after symmetric padding) and the local map (7x9) need
      // padding and masks in both stages.
      const x = tf.randomNormal([6, 14, 18, 3], 0, 1, 'float32', 21);
      const labels = tf.tidy(() => tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1, 2], 'int32'), 3));
      const vars = model.parameters();
      const lr = 0.05;
      const losses: number[] = [];
      for (let step = 0; step < 10; step++) {
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(labels, model.forward(x)) as tf.Scalar, vars);
          losses.push(value.dataSync()[0]!);
          if (step === 0) {
            for (const [name, v] of model.namedParameters()) expect(grads[v.name], name).toBeDefined();
            // The Conv2Former block and the gated MLP learn too.
            expect(tf.max(tf.abs(grads[model.mixer.namedParameters()[0]![1].name]!)).dataSync()[0]).toBeGreaterThan(0);
            const gate = model.namedParameters().find(([k]) => k.endsWith('mlp.gate.weight'))!;
            expect(tf.max(tf.abs(grads[gate[1].name]!)).dataSync()[0]).toBeGreaterThan(0);
          }
          for (const v of vars) v.assign(tf.sub(v, tf.mul(grads[v.name]!, lr)));
        });
      }
      console.log(`[regionvit composition] SGD losses: ${losses.map((l) => l.toFixed(4)).join(' → ')}`);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(losses[losses.length - 1]!).toBeLessThan(losses[0]! * 0.8);
      x.dispose();
      labels.dispose();
    } finally {
      model.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
