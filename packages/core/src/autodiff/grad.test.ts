import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm2d, LayerNorm } from '../nn/norm.js';
import { Conv2d } from '../nn/conv.js';
import { Linear } from '../nn/linear.js';
import { GELU } from '../nn/activation.js';
import { Module } from '../nn/module.js';
import { scaledDotProductAttention, splitHeads, mergeHeads } from '../ops/attention.js';
import { measurePeakBytes } from '../bench/memory.js';
import { valueAndGrads, valueAndGradsOf } from './grad.js';

class Net extends Module {
  readonly conv = this.register('conv', new Conv2d(3, 8, 3, { padding: 1, stride: 2, seed: 1 }));
  readonly bn = this.register('bn', new BatchNorm2d(8));
  readonly dw = this.register('dw', new Conv2d(8, 8, 5, { padding: 2, groups: 8, seed: 2 }));
  readonly norm = this.register('norm', new LayerNorm(8));
  readonly qkv = this.register('qkv', new Linear(8, 24, { seed: 3 }));
  readonly act = this.register('act', new GELU());
  readonly head = this.register('head', new Linear(8, 5, { seed: 4 }));
  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let y = tf.relu(this.bn.forward(this.conv.forward(x)));
      y = tf.add(y, this.dw.forward(y));
      const [b, h, w, c] = y.shape as number[];
      let t = tf.reshape(y, [b!, h! * w!, c!]);
      const [q, k, v] = tf.split(this.qkv.forward(this.norm.forward(t)), 3, 2).map((p) => splitHeads(p, 2));
      t = tf.add(t, this.act.forward(mergeHeads(scaledDotProductAttention(q!, k!, v!))));
      // x·x, a concat and a slice, and a product with a constant: the pruning rules' cases.
      t = tf.concat([tf.mul(t, t), tf.mul(t, 0.5)], 1);
      t = tf.slice(t, [0, 1, 0], [-1, -1, -1]);
      return this.head.forward(tf.mean(t, 1));
    });
  }
}

const input = () => tf.tidy(() => tf.sin(tf.reshape(tf.range(0, 2 * 8 * 8 * 3, 1, 'float32'), [2, 8, 8, 3])));

describe('valueAndGrads', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('gives tfjs variableGrads values and gradients bit for bit, and leaks nothing', async () => {
    const net = new Net();
    net.train();
    const x = input();
    const vars = net.parameters({ trainableOnly: true });
    const lossOf = () => tf.sum(tf.square(net.forward(x))) as tf.Scalar;
    const ref = tf.variableGrads(lossOf, vars);
    const before = tf.memory().numTensors;
    const ours = valueAndGrads(lossOf, vars);
    expect(Object.keys(ours.grads).sort()).toEqual(Object.keys(ref.grads).sort());
    expect(await ours.value.data()).toEqual(await ref.value.data());
    for (const [name, g] of Object.entries(ref.grads)) {
      expect(Array.from(await ours.grads[name]!.data()), name).toEqual(Array.from(await g.data()));
    }
    tf.dispose([ours.value, ...Object.values(ours.grads)]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([ref.value, ...Object.values(ref.grads), x]);
    net.dispose();
  });

  it('gives input gradients (a non-variable x), null for an x the value does not use, and honours dy', async () => {
    const x = tf.tensor2d([[1, -2, 3], [0.5, 4, -1]]);
    const unused = tf.tensor1d([1, 2]);
    const w = tf.tensor2d([[0.1, 0.2], [0.3, -0.4], [0.5, 0.6]]);
    const dy = tf.tensor2d([[1, 2], [3, 4]]);
    const f = () => tf.relu(tf.matMul(x, w));
    const ref = tf.engine().gradients(f, [x, w], dy, true);
    const before = tf.memory().numTensors;
    const ours = valueAndGradsOf(f, [x, unused, w], dy);
    expect(ours.grads[1]).toBeNull();
    expect(await ours.grads[0]!.array()).toEqual(await ref.grads[0]!.array());
    expect(await ours.grads[2]!.array()).toEqual(await ref.grads[1]!.array());
    tf.dispose([ours.value, ...ours.grads.filter((g): g is tf.Tensor => g !== null)]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, unused, w, dy, ref.value, ...ref.grads]);
  });

  it('holds far less at its peak than tf.variableGrads on a deep stack of layers', async () => {
    const layers = Array.from({ length: 12 }, (_, i) => new Linear(64, 64, { seed: i }));
    const x = tf.randomNormal([256, 64], 0, 1, 'float32', 0);
    const vars = layers.flatMap((l) => l.parameters());
    const lossOf = () =>
      tf.tidy(() => {
        let h: tf.Tensor = x;
        // One tidy per layer, as every Module's forward: only what autodiff saves outlives a layer.
        for (const l of layers) h = tf.tidy(() => tf.add(h, tf.relu(l.forward(h))));
        return tf.mean(tf.square(h)) as tf.Scalar;
      });
    const peak = async (run: () => { value: tf.Tensor; grads: tf.NamedTensorMap }) => {
      const m = await measurePeakBytes(() => {
        const { value, grads } = run();
        tf.dispose([value, ...Object.values(grads)]);
      });
      expect(m.newBytes).toBe(0);
      return m.peakBytes;
    };
    const theirs = await peak(() => tf.variableGrads(lossOf, vars));
    const ours = await peak(() => valueAndGrads(lossOf, vars));
    // 12 blocks of [256, 64] activations (64 KB each): tfjs keeps every activation and every
    // gradient to the end; we keep what the backward reads and a few gradients at a time.
    const act = 256 * 64 * 4;
    expect(ours).toBeLessThan(theirs * 0.6);
    expect(ours).toBeLessThan(act * (2 * 12 + 6));
    tf.dispose(x);
    for (const l of layers) l.dispose();
  });

  it('works inside a gradient function (recomputation) and falls back to tfjs under another tape', async () => {
    const w = tf.variable(tf.tensor1d([0.5, -1.5, 2]));
    const x = tf.tensor1d([1, 2, 3]);
    // A customGrad whose backward recomputes its forward under valueAndGradsOf.
    const recompute = tf.customGrad(((xi: tf.Tensor, wi: tf.Tensor, save: tf.GradSaveFunc) => {
      save([xi, wi]);
      return {
        value: tf.sum(tf.mul(tf.tanh(xi), wi)),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [sx, sw] = saved as [tf.Tensor, tf.Tensor];
          const r = valueAndGradsOf(() => tf.sum(tf.mul(tf.tanh(sx), sw)), [sx, sw], dy as tf.Tensor);
          r.value.dispose();
          return r.grads as tf.Tensor[];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    const direct = tf.variableGrads(() => tf.sum(tf.mul(tf.tanh(x), w)) as tf.Scalar, [w]);
    const viaRecompute = valueAndGrads(() => recompute(x, w) as tf.Scalar, [w]);
    expect(await viaRecompute.grads[w.name]!.array()).toEqual(await direct.grads[w.name]!.array());
    // Under tfjs's own autodiff too: its tape is still active in its backward pass and read at its end.
    const tfjsRecompute = tf.variableGrads(() => recompute(x, w) as tf.Scalar, [w]);
    expect(await tfjsRecompute.grads[w.name]!.array()).toEqual(await direct.grads[w.name]!.array());
    tf.dispose([tfjsRecompute.value, ...Object.values(tfjsRecompute.grads)]);
    // Second order through tfjs: d/dx of (d/dx sum(x³)) = 6x.
    const g2 = tf.grad((xi: tf.Tensor) => {
      const { value, grads } = valueAndGradsOf(() => tf.sum(tf.pow(xi, 3)), [xi]);
      value.dispose();
      return tf.sum(grads[0]!);
    })(x);
    expect(await g2.array()).toEqual([6, 12, 18]);
    tf.dispose([w, x, direct.value, viaRecompute.value, g2, ...Object.values(direct.grads), ...Object.values(viaRecompute.grads)]);
  });

  it('refuses a non-scalar value in valueAndGrads and a dy of the wrong shape', () => {
    const w = tf.variable(tf.ones([3]));
    const before = tf.memory().numTensors;
    expect(() => valueAndGrads(() => tf.mul(w, 2) as unknown as tf.Scalar, [w])).toThrow(/must return a scalar, got rank 1/);
    const dy = tf.ones([2]);
    expect(() => valueAndGradsOf(() => tf.mul(w, 2), [w], dy)).toThrow(/dy must be float32 of the value's shape \[3\]/);
    dy.dispose();
    expect(tf.memory().numTensors).toBe(before);
    w.dispose();
  });
});
