import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GELU } from '../nn/activation.js';
import { Conv2d } from '../nn/conv.js';
import { Linear } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import { LayerNorm } from '../nn/norm.js';
import { mergeHeads, scaledDotProductAttention, splitHeads } from '../ops/attention.js';
import { setTestWasm } from '../testing/backend.js';
import { values } from './__fixtures__/kernel_harness.js';
import { installGradientFixes } from './gradients.js';
import { installCpuKernels, installWasmKernels, restoreStockKernels } from './install.js';

// One training step of a small conv + attention net on stock cpu (the reference) and on wasm with
// our kernels: the loss and every gradient must agree to 1e-5. It exercises every replaced kernel
// through the layers our models use (fused conv/matMul, explicit padding, depthwise with a
// multiplier, strided and patchify convs, batched and transposed matMuls, gather).

class Block extends Module {
  readonly dw: Conv2d;
  readonly pw: Conv2d;
  readonly dw2: Conv2d;
  readonly norm: LayerNorm;
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly act = new GELU();
  readonly bias: tf.Variable;

  constructor(readonly dim: number, readonly heads: number, tokens: number, seed: number) {
    super();
    // Depthwise 7×7 with channel multiplier 2, then back to dim with a 1×1 conv.
    this.dw = this.register('dw', new Conv2d(dim, dim * 2, 7, { padding: 3, groups: dim, seed }));
    this.pw = this.register('pw', new Conv2d(dim * 2, dim, 1, { seed: seed + 2 }));
    // Depthwise 5×5, multiplier 1 (our SIMD kernels on wasm: dim is a multiple of 4).
    this.dw2 = this.register('dw2', new Conv2d(dim, dim, 5, { padding: 2, groups: dim, seed: seed + 3 }));
    this.norm = this.register('norm', new LayerNorm(dim));
    this.qkv = this.register('qkv', new Linear(dim, dim * 3, { seed: seed + 4 }));
    this.proj = this.register('proj', new Linear(dim, dim, { seed: seed + 6 }));
    this.fc1 = this.register('fc1', new Linear(dim, dim * 2, { seed: seed + 8 }));
    this.fc2 = this.register('fc2', new Linear(dim * 2, dim, { seed: seed + 10 }));
    // A relative-position-style table read through gather (its gradient is UnsortedSegmentSum).
    this.bias = this.addParameter('bias', tf.tensor2d(values([2 * tokens - 1, heads], seed + 12), [2 * tokens - 1, heads]));
  }

  override forward(x: tf.Tensor): tf.Tensor {
    const [b, h, w, c] = x.shape as [number, number, number, number];
    const n = h * w;
    const pw = this.pw;
    let y = tf.add(x, pw.forward(this.dw.forward(x)));
    y = tf.add(y, this.dw2.forward(y));
    let t = tf.reshape(y, [b, n, c]);
    const qkv = this.qkv.forward(this.norm.forward(t));
    const [q, k, v] = tf.split(qkv, 3, 2).map((p) => splitHeads(p, this.heads));
    const idx = tf.add(tf.reshape(tf.range(0, n, 1, 'int32'), [n, 1]), tf.reshape(tf.range(n - 1, -1, -1, 'int32'), [1, n]));
    const rel = tf.transpose(tf.reshape(tf.gather(this.bias, tf.reshape(idx, [n * n])), [n, n, this.heads]), [2, 0, 1]);
    const att = mergeHeads(scaledDotProductAttention(q!, k!, v!, { bias: rel }));
    t = tf.add(t, this.proj.forward(att));
    t = tf.add(t, this.fc2.forward(this.act.forward(this.fc1.forward(t))));
    y = tf.reshape(t, [b, h, w, c]);
    return y;
  }
}

class ToyNet extends Module {
  readonly stem: Conv2d;
  readonly block1: Block;
  readonly down: Conv2d;
  readonly block2: Block;
  readonly stem4: Conv2d;
  readonly head: Linear;

  constructor() {
    super();
    this.stem = this.register('stem', new Conv2d(3, 8, 2, { stride: 2, seed: 1 }));
    this.block1 = this.register('block1', new Block(8, 2, 64, 10));
    this.down = this.register('down', new Conv2d(8, 16, 3, { stride: 2, padding: 1, seed: 30 }));
    this.block2 = this.register('block2', new Block(16, 2, 16, 40));
    this.stem4 = this.register('stem4', new Conv2d(3, 16, 4, { stride: 4, seed: 60 }));
    this.head = this.register('head', new Linear(16, 5, { seed: 70 }));
  }

  override forward(x: tf.Tensor): tf.Tensor {
    let y = this.block1.forward(this.stem.forward(x));
    // A 4×4/4 patchify branch joins at the next resolution.
    y = this.block2.forward(tf.add(this.down.forward(y), this.stem4.forward(x)));
    return this.head.forward(tf.mean(y, [1, 2]));
  }
}

function step(net: ToyNet, x: tf.Tensor, labels: tf.Tensor): { loss: number; grads: Map<string, Float32Array> } {
  const params = net.namedParameters();
  const vars = params.map(([, v]) => v);
  const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(labels, net.forward(x)) as tf.Scalar, vars);
  const byName = new Map<string, Float32Array>();
  for (const [name, p] of params) byName.set(name, Float32Array.from(grads[p.name]!.dataSync()));
  const loss = value.dataSync()[0]!;
  tf.dispose([value, ...Object.values(grads)]);
  return { loss, grads: byName };
}

let net: ToyNet;

beforeAll(async () => {
  await setTestWasm(); // the threaded build with VIT_TEST_WASM_THREADS=2
  installWasmKernels();
  await tf.setBackend('cpu');
  restoreStockKernels('cpu');
  installGradientFixes();
  net = new ToyNet();
});

afterAll(() => {
  net.dispose();
  installCpuKernels();
});

describe('a training step of a conv + attention net', () => {
  it('wasm with our kernels matches stock cpu: loss and every gradient within 1e-5', async () => {
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      const x = tf.tensor4d(values([2, 16, 16, 3], 3), [2, 16, 16, 3]);
      const labels = tf.tidy(() => tf.oneHot(tf.tensor1d([1, 4], 'int32'), 5));
      const r = step(net, x, labels);
      tf.dispose([x, labels]);
      return r;
    };
    const ref = await run('cpu');
    const tensorsBefore = tf.memory().numTensors;
    const got = await run('wasm');
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(Math.abs(got.loss - ref.loss)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(ref.loss)));
    expect([...got.grads.keys()].sort()).toEqual([...ref.grads.keys()].sort());
    const worst: Array<[string, number]> = [];
    for (const [name, r] of ref.grads) {
      const g = got.grads.get(name)!;
      let maxAbs = 0;
      let scale = 1;
      for (let i = 0; i < r.length; i++) {
        maxAbs = Math.max(maxAbs, Math.abs(g[i]! - r[i]!));
        scale = Math.max(scale, Math.abs(r[i]!));
      }
      // Every gradient is non-trivial, so a kernel returning zeros cannot pass.
      expect(
        r.some((v) => v !== 0),
        name,
      ).toBe(true);
      worst.push([name, maxAbs / scale]);
    }
    for (const [name, err] of worst) expect(err, name).toBeLessThanOrEqual(1e-5);
  });
});
