import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { OutOfMemoryError } from '../errors.js';
import { Conv2d, LayerNorm2d, Linear, Module } from '../nn/index.js';
import { AdamW } from '../optim/index.js';
import { setTestBackend } from '../testing/backend.js';
import { TinyConvNet, snapshot, toySource } from './__fixtures__/toy.js';
import { isOutOfMemory, Trainer } from './index.js';

/** Conv → LayerNorm2d → GELU-free head: no BatchNorm, so micro-batches give the whole batch's update. */
class NoBnNet extends Module {
  readonly conv = this.register('conv', new Conv2d(2, 8, 3, { padding: 1, seed: 21 }));
  readonly norm = this.register('norm', new LayerNorm2d(8));
  readonly head = this.register('head', new Linear(8, 4, { seed: 22 }));
  override forward(x: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => this.head.forward(tf.mean(tf.relu(this.norm.forward(this.conv.forward(x))), [1, 2])) as tf.Tensor2D);
  }
}

const source = () => toySource({ n: 48, classes: 4, shape: [6, 6, 2], batchSize: 12, seed: 3 });

async function train(model: Module, options: Partial<ConstructorParameters<typeof Trainer>[0]> = {}) {
  const notices: string[] = [];
  const trainer = new Trainer({ model, optimizer: new AdamW(model, { lr: 1e-2, weightDecay: 0.05 }), onNotice: (m) => notices.push(m), ...options });
  const res = await trainer.fit(source(), { epochs: 2 });
  return { res, notices, weights: snapshot(model) };
}

function maxRelDiff(a: Record<string, Float32Array>, b: Record<string, Float32Array>): number {
  let worst = 0;
  for (const [k, va] of Object.entries(a)) {
    const vb = b[k]!;
    for (let i = 0; i < va.length; i++) worst = Math.max(worst, Math.abs(va[i]! - vb[i]!) / Math.max(1e-3, Math.abs(va[i]!)));
  }
  return worst;
}

describe('Trainer gradient accumulation and micro-batching', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it('N micro-batches of B/N (and uneven ones) give the update of one batch of B, to float rounding, without BatchNorm', async () => {
    const whole = await train(new NoBnNet());
    const four = await train(new NoBnNet(), { accumSteps: 4 });
    const uneven = await train(new NoBnNet(), { microBatch: 5 }); // 12 = 5 + 5 + 2
    expect(whole.res.steps).toBe(8);
    expect(four.res.steps).toBe(8);
    expect(uneven.res.steps).toBe(8);
    expect(maxRelDiff(whole.weights, four.weights)).toBeLessThan(1e-4);
    expect(maxRelDiff(whole.weights, uneven.weights)).toBeLessThan(1e-4);
    // The reported loss is the batch's mean loss, whichever way it was computed.
    const l = (r: typeof whole) => r.res.history.epochs.map((e) => e.trainLoss);
    l(four).forEach((v, i) => expect(v).toBeCloseTo(l(whole)[i]!, 5));
    expect(four.res.history.epochs.map((e) => e.trainAcc)).toEqual(whole.res.history.epochs.map((e) => e.trainAcc));
    // The split itself is exercised: accumulated gradients are not the whole batch's bit for bit.
    expect(maxRelDiff(whole.weights, four.weights)).toBeGreaterThan(0);
  });

  it('leaks no tensor across accumulated steps', async () => {
    const model = new NoBnNet();
    const trainer = new Trainer({ model, optimizer: new AdamW(model, { lr: 1e-2 }), accumSteps: 3, onNotice: () => {} });
    await trainer.fit(source(), { epochs: 1 });
    const after1 = tf.memory().numTensors;
    await trainer.fit(source(), { epochs: 3 });
    expect(tf.memory().numTensors).toBe(after1);
    expect(trainer.step).toBe(12);
  });

  it('with BatchNorm, each micro-batch is normalised with its own statistics (as in PyTorch): a different update', async () => {
    const whole = await train(new TinyConvNet(2, 8, 4, { seed: 4 }));
    const split = await train(new TinyConvNet(2, 8, 4, { seed: 4 }), { accumSteps: 3 });
    expect(maxRelDiff(whole.weights, split.weights)).toBeGreaterThan(1e-4);
    expect(split.res.status).toBe('completed');
    // An automatic split says what BatchNorm will see.
    const bnNet = new TinyConvNet(2, 8, 4, { seed: 4 });
    const auto = await train(bnNet, { memoryLimit: (tf.memory().numBytes + 3 * bnNet.numParams() * 4 + 3 * 6 * 6 * 8 * 4 * 8) / 0.85 });
    expect(auto.notices).toHaveLength(1);
    expect(auto.notices[0]).toMatch(/BatchNorm sees \d+ images at a time/);
  });

  it("'auto' measures a step, splits a batch that would not fit the memory limit, says so once, and trains as the same explicit split", async () => {
    // Peak bytes of a step at batch 12 (measured by the trainer itself at 2 and 4 images).
    const m = new NoBnNet();
    const live = tf.memory().numBytes;
    // Weights ×3 (reserve) + a little: enough for about 3 images a micro-batch, not 12.
    const perImage = 6 * 6 * 8 * 4 * 6;
    const limit = (live + 3 * m.numParams() * 4 + 3 * perImage) / 0.85;
    const auto = await train(m, { memoryLimit: limit });
    expect(auto.notices).toHaveLength(1);
    const micro = Number(/micro-batches of up to (\d+)/.exec(auto.notices[0]!)?.[1]);
    expect(micro).toBeGreaterThanOrEqual(1);
    expect(micro).toBeLessThan(12);
    expect(auto.notices[0]).toMatch(/a training step of 12 images needs about [\d.]+ GiB, more than the [\d.]+ GiB left on \w+/);
    // No BatchNorm here, so nothing to say about it (the split changes nothing).
    expect(auto.notices[0]).not.toMatch(/BatchNorm/);
    const explicit = await train(new NoBnNet(), { microBatch: micro, memoryLimit: limit * 100 });
    expect(explicit.notices).toHaveLength(0);
    expect(maxRelDiff(auto.weights, explicit.weights)).toBe(0);
    // No limit on this backend and none given: no split, no notice.
    const none = await train(new NoBnNet(), { microBatch: 'auto' });
    if (tf.getBackend() !== 'wasm') expect(none.notices).toHaveLength(0);
  });

  it('refuses a step that cannot fit even one image, before any update, naming what ran out and what to try', async () => {
    const model = new NoBnNet();
    const w0 = snapshot(model);
    const trainer = new Trainer({ model, optimizer: new AdamW(model, { lr: 1e-2 }), memoryLimit: 1024, onNotice: () => {} });
    const err = await trainer.fit(source(), { epochs: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect(String((err as Error).message)).toMatch(/Out of memory: a training step of even one image at batch size 12 did not fit .*Try: .*--accum-steps.*--grad-checkpointing/);
    expect(trainer.step).toBe(0);
    expect(maxRelDiff(w0, snapshot(model))).toBe(0);
  });

  it('a non-finite gradient norm names the parameters whose gradients are not finite', async () => {
    class SqrtScale extends NoBnNet {
      // d/ds √|s| is infinite at s = 0 while the loss stays finite.
      readonly scale = this.addParameter('scale', tf.zeros([1]));
      override forward(x: tf.Tensor): tf.Tensor2D {
        return tf.tidy(() => tf.add(super.forward(x), tf.sqrt(tf.abs(this.scale))) as tf.Tensor2D);
      }
    }
    const model = new SqrtScale();
    const err = await new Trainer({ model, optimizer: new AdamW(model, { lr: 1e-2 }), onNotice: () => {} }).fit(source(), { epochs: 1 }).catch((e: unknown) => e);
    expect(String((err as Error).message)).toMatch(/the gradient norm is (NaN|Infinity) \(non-finite in scale\) at epoch 0, batch 0, step 1/);
    model.dispose();
  });

  it('recognises the ways a backend runs out of memory', () => {
    for (const m of [
      'RuntimeError: Aborted(). Build with -sASSERTIONS for more info.',
      'RuntimeError: memory access out of bounds',
      'RangeError: Invalid typed array length: 1073741824',
      'Error: Cannot enlarge memory arrays to size 4294979584 bytes',
      'Error: OOM when allocating tensor with shape[256,64,224,224]',
    ]) {
      expect(isOutOfMemory(new Error(m)), m).toBe(true);
    }
    expect(isOutOfMemory(new Error('Shapes do not match'))).toBe(false);
  });
});
