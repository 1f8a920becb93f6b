import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Conv2d, LayerNorm, Linear, Mlp, Module, ModuleList } from '@vit/core';
import { setTestBackend } from '@vit/core/testing';
import { Conv2FormerBlock } from '@vit/conv2former';
import {
  Block,
  ConvFFNBlock,
  DTM,
  HiLo,
} from './index.js';

/** A token-based ViT block (pre-norm, timm Mlp) whose attention is a standalone HiLo on `[B, N, C]` (padded to its window). */
class TokenHiLoBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: HiLo;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  constructor(dim: number) {
    super();
    this.norm1 = this.register('norm1', new LayerNorm(dim));
    this.attn = this.register('attn', new HiLo(dim, { numHeads: 2, windowSize: 2, alpha: 0.5, qkvBias: true, padToWindow: true }));
    this.norm2 = this.register('norm2', new LayerNorm(dim));
    this.mlp = this.register('mlp', new Mlp(dim, { hiddenFeatures: dim * 2 }));
  }
  override forward(t: tf.Tensor, size: [number, number]): tf.Tensor {
    return tf.tidy(() => {
      const y = tf.add(t, this.attn.forward(this.norm1.forward(t), size));
      return tf.add(y, this.mlp.forward(this.norm2.forward(y)));
    });
  }
}

/**
 * A new small hybrid backbone: a Conv2Former block (from @vit/conv2former) and a ConvFFN block at
 * stride 2, the seed's DCNv2 token merging, a LITv2 HiLo block, another DTM
 * (official DCNv1) and a token-based block with HiLo used standalone.
 */
class TinyHybrid extends Module {
  readonly stem: Conv2d;
  readonly stage1: ModuleList;
  readonly merge1: DTM;
  readonly stage2: Block;
  readonly merge2: DTM;
  readonly stage3: TokenHiLoBlock;
  readonly head: Linear;
  constructor(numClasses: number) {
    super();
    this.stem = this.register('stem', new Conv2d(3, 8, 2, { stride: 2 }));
    this.stage1 = this.register('stage1', new ModuleList([new Conv2FormerBlock(8, { kernelSize: 3, mlpRatio: 2, layerScaleInitValue: 0.5 }), new ConvFFNBlock(8, { mlpRatio: 2 })]));
    this.merge1 = this.register('merge1', new DTM(8, { kind: 'dcnv2' }));
    this.stage2 = this.register('stage2', new Block(16, { numHeads: 4, localWs: 2, alpha: 0.5, qkvBias: true, mlpRatio: 2, padToWindow: true }));
    this.merge2 = this.register('merge2', new DTM(16, { outDim: 16, allowOdd: true }));
    this.stage3 = this.register('stage3', new TokenHiLoBlock(16));
    this.head = this.register('head', new Linear(16, numClasses));
  }
  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let y = this.stem.forward(x);
      for (const b of this.stage1) y = b.forward(y) as tf.Tensor;
      y = this.stage2.forward(this.merge1.forward(y));
      y = this.merge2.forward(y);
      const [b, h, w, c] = y.shape as [number, number, number, number];
      const t = this.stage3.forward(tf.reshape(y, [b, h * w, c]), [h, w]);
      return this.head.forward(tf.mean(t, 1));
    });
  }
}

describe('composition', () => {
  beforeAll(async () => {
    await setTestBackend();
    await tf.ready();
  });

  it('a hybrid backbone from LITv2 blocks, a Conv2Former block and standalone HiLo trains: the loss goes down', () => {
    const before = tf.memory().numTensors;
    const model = new TinyHybrid(2);
    model.train();
    // Two classes told apart by where a bright square sits (left vs right half): 20×20 → 10 → 5 → 2 (the second DTM floors the odd map).
    const n = 8;
    const [x, y] = tf.tidy(() => {
      const labels = tf.tensor1d([0, 1, 0, 1, 0, 1, 0, 1], 'int32');
      const noise = tf.mul(tf.randomNormal([n, 20, 20, 3], 0, 1, 'float32', 7), 0.3);
      const left = tf.pad(tf.ones([1, 10, 10, 3]), [[0, 0], [5, 5], [0, 10], [0, 0]]);
      const right = tf.pad(tf.ones([1, 10, 10, 3]), [[0, 0], [5, 5], [10, 0], [0, 0]]);
      const sel = tf.reshape(tf.cast(labels, 'float32'), [n, 1, 1, 1]);
      return [tf.add(noise, tf.add(tf.mul(left, tf.sub(1, sel)), tf.mul(right, sel))), tf.oneHot(labels, 2)];
    });
    const params = model.parameters({ trainableOnly: true });
    const offsetBefore = tf.tidy(() => model.merge2.dconv.stateDict()['conv_offset.weight']!.clone());
    const opt = tf.train.adam(0.01);
    const losses: number[] = [];
    for (let step = 0; step < 5; step++) {
      const loss = opt.minimize(() => tf.losses.softmaxCrossEntropy(y, model.forward(x) as tf.Tensor2D) as tf.Scalar, true, params)!;
      losses.push(loss.dataSync()[0]!);
      loss.dispose();
    }
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]!).toBeLessThan(losses[0]! * 0.5);
    // The deformable offsets (zero-initialised, official) learned through the sampler's gradient.
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(model.merge2.dconv.stateDict()['conv_offset.weight']!, offsetBefore))).dataSync()[0])).toBeGreaterThan(0);
    expect(Object.keys(model.stateDict())).toEqual(
      expect.arrayContaining(['stage1.0.layer_scale_1', 'stage1.1.mlp.dwconv.dwconv.weight', 'merge1.mask.weight', 'stage2.attn.h_qkv.weight', 'merge2.dconv.conv_offset.bias', 'stage3.attn.l_kv.weight']),
    );
    offsetBefore.dispose();
    opt.dispose();
    tf.dispose([x, y]);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
