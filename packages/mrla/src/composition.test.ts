import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Conv2FormerBlock } from '@vit/conv2former';
import { BatchNorm2d, Conv2d, Linear, Module, ReLU, Sequential } from '@vit/core';
import { MRLABasicBlock, MRLABottleneck, MRLAModule, WithMRLA } from './index.js';
import { setTestBackend } from '@vit/core/testing';

/**
 * A new small backbone composed from this package's blocks plus a block of another kind (a
 * Conv2Former block wrapped with MRLA), trained a few steps on a fixed synthetic batch.
 */
class TinyHybrid extends Module {
  readonly stem: Sequential;
  readonly stage1: Sequential;
  readonly stage2: Sequential;
  readonly head: Linear;

  constructor(numClasses: number) {
    super();
    const attn = (c: number) => new MRLAModule(c, { dimPerhead: 8 });
    this.stem = this.register('stem', new Sequential(new Conv2d(3, 16, 3, { padding: 1, bias: false }), new BatchNorm2d(16), new ReLU()));
    this.stage1 = this.register('stage1', new Sequential(new MRLABasicBlock(16, 16, { layerAttn: attn })));
    const down = new Sequential(new Conv2d(16, 32, 1, { stride: 2, bias: false }), new BatchNorm2d(32));
    this.stage2 = this.register(
      'stage2',
      new Sequential(
        new MRLABottleneck(16, 8, { stride: 2, downsample: down, layerAttn: attn, se: true }),
        new WithMRLA(new Conv2FormerBlock(32, { kernelSize: 3, mlpRatio: 2, layerScaleInitValue: 0.1 }), 32, { layerAttn: attn }),
      ),
    );
    this.head = this.register('head', new Linear(32, numClasses));
  }

  override forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      const f = this.stage2.forward(this.stage1.forward(this.stem.forward(x)));
      return this.head.forward(tf.mean(f, [1, 2])) as tf.Tensor2D;
    });
  }
}

describe('composition', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it('a hybrid backbone of MRLA blocks and a Conv2Former block trains (loss decreases)', () => {
    const before = tf.memory().numTensors;
    const model = new TinyHybrid(3);
    const x = tf.randomNormal([6, 8, 8, 3], 0, 1, 'float32', 11) as tf.Tensor4D;
    const labels = tf.tidy(() => tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1, 2], 'int32'), 3));
    const opt = tf.train.adam(1e-2);
    const vars = model.parameters({ trainableOnly: true });
    const loss = () => tf.losses.softmaxCrossEntropy(labels, model.forward(x)) as tf.Scalar;
    model.train();
    const losses: number[] = [];
    for (let step = 0; step < 8; step++) {
      const l = opt.minimize(loss, true, vars)!;
      losses.push(l.dataSync()[0]!);
      l.dispose();
    }
    model.eval();
    console.log(`[composition] losses ${losses.map((v) => v.toFixed(4)).join(' ')}`);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]!).toBeLessThan(losses[0]! * 0.8);
    opt.dispose();
    x.dispose();
    labels.dispose();
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
