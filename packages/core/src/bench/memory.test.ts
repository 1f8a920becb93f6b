import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { valueAndGrads } from '../autodiff/grad.js';
import { GELU } from '../nn/activation.js';
import { Conv2d } from '../nn/conv.js';
import { Linear } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import { BatchNorm2d, LayerNorm } from '../nn/norm.js';
import { setTestBackend, testBackendName } from '../testing/backend.js';
import { measurePeakBytes, trackBuffers } from './memory.js';

/** L × (conv 3×3 → BatchNorm → ReLU), all at one activation size. */
class ConvStack extends Module {
  readonly layers: Array<[Conv2d, BatchNorm2d]> = [];
  constructor(readonly depth: number, readonly width: number) {
    super();
    for (let i = 0; i < depth; i++) {
      this.layers.push([this.register(`conv${i}`, new Conv2d(width, width, 3, { padding: 1, bias: false, seed: i })), this.register(`bn${i}`, new BatchNorm2d(width))]);
    }
  }
  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let h = x;
      for (const [conv, bn] of this.layers) h = tf.tidy(() => tf.relu(bn.forward(conv.forward(h))));
      return h;
    });
  }
}

/** L × pre-norm MLP blocks with residuals: x + fc2(GELU(fc1(LN(x)))), hidden 2× wide. */
class MlpStack extends Module {
  readonly blocks: Array<[LayerNorm, Linear, GELU, Linear]> = [];
  constructor(readonly depth: number, readonly dim: number) {
    super();
    for (let i = 0; i < depth; i++) {
      this.blocks.push([
        this.register(`norm${i}`, new LayerNorm(dim)),
        this.register(`fc1_${i}`, new Linear(dim, 2 * dim, { seed: 2 * i })),
        this.register(`act${i}`, new GELU()),
        this.register(`fc2_${i}`, new Linear(2 * dim, dim, { seed: 2 * i + 1 })),
      ]);
    }
  }
  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let h = x;
      for (const [norm, fc1, act, fc2] of this.blocks) h = tf.tidy(() => tf.add(h, fc2.forward(act.forward(fc1.forward(norm.forward(h))))));
      return h;
    });
  }
}

async function stepPeak(model: Module, x: tf.Tensor): Promise<number> {
  model.train();
  const vars = model.parameters({ trainableOnly: true });
  const m = await measurePeakBytes(() => {
    const { value, grads } = valueAndGrads(() => tf.mean(tf.square(model.forward(x))) as tf.Scalar, vars);
    tf.dispose([value, ...Object.values(grads)]);
  });
  expect(m.newBytes).toBe(0);
  return m.peakBytes;
}

describe('training-step memory', () => {
  beforeAll(async () => {
    // These bounds are about what autodiff keeps, counted in tfjs's buffers. On tfjs-node every
    // reshape and clone is a new handle (TensorFlow may share the storage; tfjs cannot see it), so
    // the count there includes views: measure on cpu instead.
    if (testBackendName() === 'tensorflow') await tf.setBackend('cpu');
    else await setTestBackend();
  });

  it('trackBuffers counts a buffer once however many tensors share it, and measurePeakBytes sees transients', async () => {
    const t = trackBuffers();
    const start = t.current;
    const a = tf.zeros([1024]);
    const views = [tf.reshape(a, [32, 32]), a.clone(), tf.reshape(a, [2, 512])];
    expect(t.current - start).toBe(4096);
    tf.dispose([a, ...views]);
    expect(t.current - start).toBe(0);
    t.stop();
    const m = await measurePeakBytes(() => tf.tidy(() => tf.sum(tf.add(tf.ones([256]), 1))).dispose());
    expect(m.peakBytes).toBeGreaterThanOrEqual(2 * 1024);
    expect(m.newBytes).toBe(0);
  });

  it('a conv → BatchNorm → ReLU stack keeps about two activations per layer (conv input and BatchNorm input), not the 6–7 of composed ops under tfjs autodiff', async () => {
    const depth = 6;
    const model = new ConvStack(depth, 8);
    const x = tf.randomNormal([4, 16, 16, 8], 0, 1, 'float32', 1);
    const act = 4 * 16 * 16 * 8 * 4;
    const peak = await stepPeak(model, x);
    // Per layer: the conv's input and the BatchNorm's input; then the backward pass's frontier
    // (a few activation-sized gradients and a BatchNorm's temporaries).
    expect(peak).toBeLessThan((2 * depth + 8) * act);
    expect(peak).toBeGreaterThan(2 * depth * act * 0.9);
    tf.dispose(x);
    model.dispose();
  });

  it('pre-norm MLP blocks keep LN input, LN output, fc1 output and GELU output per block (PyTorch keeps the same)', async () => {
    const depth = 6;
    const model = new MlpStack(depth, 16);
    const x = tf.randomNormal([64, 16], 0, 1, 'float32', 2);
    const act = 64 * 16 * 4;
    // Per block: x (LN input, also the residual), LN output (fc1 input), fc1 output (GELU input,
    // 2× wide) and the GELU output (fc2 input, 2× wide): 6 activation units; then the backward
    // pass's frontier (a GELU backward at 2× width holds a few temporaries).
    const peak = await stepPeak(model, x);
    expect(peak).toBeLessThan((6 * depth + 14) * act);
    tf.dispose(x);
    model.dispose();
  });

  it('activation checkpointing holds block inputs only, plus one block recomputed at a time', async () => {
    const depth = 6;
    const plain = new MlpStack(depth, 16);
    const x = tf.randomNormal([64, 16], 0, 1, 'float32', 3);
    const act = 64 * 16 * 4;
    const before = await stepPeak(plain, x);
    // Blocks as units: wrap each block's computation in a module of its own.
    class Block extends Module {
      constructor(readonly parts: [LayerNorm, Linear, GELU, Linear]) {
        super();
        parts.forEach((p, i) => this.register(`p${i}`, p));
      }
      override forward(h: tf.Tensor): tf.Tensor {
        const [norm, fc1, act, fc2] = this.parts;
        return tf.tidy(() => tf.add(h, fc2.forward(act.forward(fc1.forward(norm.forward(h))))));
      }
    }
    class Net extends Module {
      readonly blocks: Block[];
      constructor(src: MlpStack) {
        super();
        this.blocks = src.blocks.map((b, i) => this.register(`b${i}`, new Block(b)));
      }
      override forward(h: tf.Tensor): tf.Tensor {
        return tf.tidy(() => this.blocks.reduce((y, b) => b.forward(y), h));
      }
      protected override gradCheckpointUnits(): Module[] {
        return this.blocks;
      }
    }
    const net = new Net(plain).setGradCheckpointing(true);
    const after = await stepPeak(net, x);
    // One input per block, one block's 6 units while it is recomputed, and that block's frontier.
    expect(after).toBeLessThan((depth + 6 + 14) * act);
    expect(after).toBeLessThan(before * 0.6);
    tf.dispose(x);
    net.dispose();
  });
});
