import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend } from '../backend.js';
import { setColumnsChunk } from './conv_grads.js';
import { routeForwardProducts, wasmMemory } from './matmul_wasm.js';
import { ELEMENTWISE_PARALLEL_MIN, enableKernelThreads, kernelPool, kernelThreadLists } from './wasm_pool.js';
import { GELU_ERF, GELU_ERF_GRAD } from './wasm_copy.js';
import { LAYER_NORM } from './wasm_norm.js';

// This file's process runs the threaded wasm build (2 threads), so our GEMM hands work to a worker.

beforeAll(async () => {
  await initBackend('wasm', { quiet: true, wasmThreads: 2, env: false });
});

/** The product on one thread and on two: the values must be the same bit for bit. */
function both(f: () => tf.Tensor): { one: Float32Array; two: Float32Array; lists: number } {
  const values = () => {
    const t = f();
    const v = t.dataSync() as Float32Array;
    t.dispose();
    return v;
  };
  enableKernelThreads(false);
  const one = values();
  enableKernelThreads(true);
  const before = kernelThreadLists();
  const two = values();
  return { one, two, lists: kernelThreadLists() - before };
}

/** Lists handed to the worker while one product a·bᵀ of random operands of these shapes ran. */
function listsForProduct(as: number[], bs: number[]): number {
  const a = tf.randomNormal(as);
  const b = tf.randomNormal(bs);
  const before = kernelThreadLists();
  tf.matMul(a, b, false, true).dispose();
  tf.dispose([a, b]);
  return kernelThreadLists() - before;
}

async function workersReady(): Promise<void> {
  const pool = kernelPool(wasmMemory(tf.backend())!, 1)!;
  expect(pool, 'a worker pool on the shared heap').not.toBeNull();
  for (let i = 0; i < 200 && pool.ready() < 1; i++) await new Promise((r) => setTimeout(r, 25));
  expect(pool.ready()).toBe(1);
}

describe('our wasm kernels on two threads', () => {
  // (Not checkTensorLeaks: it would set the test backend, cpu, in place of the threaded wasm one.)
  let tensors = 0;
  beforeEach(() => {
    tensors = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors).toBe(tensors);
  });

  const cases: Array<[string, number[], number[], boolean, boolean]> = [
    // Rows split: a Linear's input gradient (dy · Wᵀ).
    ['rows: [1100, 96]·[384, 96]ᵀ', [1100, 96], [384, 96], false, true],
    // Columns split: few rows (a filter gradient xᵀ · dy over many pixels, K in chunks).
    ['columns: [3, 3000]ᵀ·[3000, 200]', [3000, 3], [3000, 200], true, false],
    // Whole batches: attention's q · kᵀ.
    ['batches: [12, 197, 32]·[12, 197, 32]ᵀ', [12, 197, 32], [12, 197, 32], false, true],
    // A broadcast right operand, batch 3 (not divisible by 2: rows split).
    ['broadcast: [3, 700, 64]ᵀ·[64, 130]', [3, 64, 700], [64, 130], true, false],
  ];
  for (const [name, as, bs, ta, tb] of cases) {
    it(`${name}: equal bit for bit to one thread, close to the cpu backend`, async () => {
      await workersReady();
      const a = tf.randomNormal(as, 0, 1, 'float32', 1);
      const b = tf.randomNormal(bs, 0, 1, 'float32', 2);
      const f = () => tf.matMul(a, b, ta, tb);
      const { one, two, lists } = both(f);
      expect(lists, 'lists run by the worker').toBeGreaterThan(0);
      expect(two).toEqual(one);
      const av = a.arraySync();
      const bv = b.arraySync();
      tf.dispose([a, b]);
      await tf.setBackend('cpu');
      const want = tf.tidy(() => tf.matMul(tf.tensor(av as number[]), tf.tensor(bv as number[]), ta, tb).dataSync());
      await tf.setBackend('wasm');
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(two[i]! - want[i]!) / Math.max(1, Math.abs(want[i]!)));
      expect(worst).toBeLessThan(1e-4); // sums of up to 3000 products in another order
    });
  }

  it('Linear layers with a bias (fused into the kernel), rows and columns split: equal to one thread', async () => {
    await workersReady();
    routeForwardProducts(true); // (the default)
    {
      for (const [m, k, n] of [
        [1100, 96, 50],
        [6, 3000, 203],
      ]) {
        const a = tf.randomNormal([m!, k!], 0, 1, 'float32', 3);
        const w = tf.randomNormal([k!, n!], 0, 1, 'float32', 4);
        const bias = tf.randomNormal([n!], 0, 1, 'float32', 5);
        const { one, two, lists } = both(() => tf.fused.matMul({ a, b: w, bias }));
        expect(lists).toBeGreaterThan(0);
        expect(two).toEqual(one);
        const want = tf.tidy(() => tf.add(tf.matMul(a, w), bias).dataSync());
        let worst = 0;
        for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(two[i]! - want[i]!) / Math.max(1, Math.abs(want[i]!)));
        expect(worst, `[${m}, ${k}]·[${k}, ${n}] + bias`).toBeLessThan(1e-4);
        tf.dispose([a, w, bias]);
      }
    }
  });

  it('exp, erf, sign, GELU and its gradient over ranges of elements: equal bit for bit to one thread', async () => {
    await workersReady();
    const n = ELEMENTWISE_PARALLEL_MIN * 3 + 7; // ragged: the last range and the JS tail
    const x = tf.randomNormal([n], 0, 2, 'float32', 6);
    const dy = tf.randomNormal([n], 0, 1, 'float32', 7);
    const ops: Array<[string, () => tf.Tensor]> = [
      ['exp', () => tf.exp(x)],
      ['erf', () => tf.erf(x)],
      ['sign', () => tf.sign(x)],
      [GELU_ERF, () => tf.engine().runKernel(GELU_ERF, { x }) as tf.Tensor],
      [GELU_ERF_GRAD, () => tf.engine().runKernel(GELU_ERF_GRAD, { x, dy }) as tf.Tensor],
    ];
    for (const [name, f] of ops) {
      const { one, two, lists } = both(f);
      expect(lists, name).toBeGreaterThan(0);
      expect(two, name).toEqual(one);
    }
    tf.dispose([x, dy]);
  });

  it('depthwise 7×7 convolution and its input gradient, images shared out: equal bit for bit to one thread', async () => {
    await workersReady();
    const x = tf.randomNormal([4, 20, 20, 64], 0, 1, 'float32', 8);
    const w = tf.randomNormal([7, 7, 64, 1], 0, 0.2, 'float32', 9);
    const fwd = both(() => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'));
    expect(fwd.lists).toBeGreaterThan(0);
    expect(fwd.two).toEqual(fwd.one);
    const grad = both(() => tf.grad((t: tf.Tensor) => tf.sum(tf.square(tf.depthwiseConv2d(t as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'))))(x));
    expect(grad.lists).toBeGreaterThan(0);
    expect(grad.two).toEqual(grad.one);
    tf.dispose([x, w]);
  });

  it('3×3 convolution gradients on our kernel (filter: one product per filter row, or columns; input: columns, then col2im; in chunks of images): equal bit for bit to one thread, close to the cpu backend', async () => {
    await workersReady();
    const xs = [4, 15, 17, 16];
    const ws = [3, 3, 16, 40];
    const values = (shape: number[], std: number, seed: number) => tf.tidy(() => tf.randomNormal(shape, 0, std, 'float32', seed).dataSync() as Float32Array);
    const xv = values(xs, 1, 10);
    const wv = values(ws, 0.2, 11);
    const dyv = values([4, 15, 17, 40], 1, 12);
    // y, dX and dW of a 'same' conv (and of a 'valid' one), through the engine's gradient.
    const grads = (pad: 'same' | 'valid', dy: Float32Array, stride = 1) => {
      const x = tf.tensor4d(xv, xs as [number, number, number, number]);
      const w = tf.tensor4d(wv, ws as [number, number, number, number]);
      const out = tf.tidy(() => {
        const y = tf.conv2d(x, w, stride, pad);
        const probe = tf.tensor(dy.subarray(0, y.size), y.shape);
        const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad), probe)))([x, w]);
        return tf.concat([tf.reshape(y, [-1]), tf.reshape(gx!, [-1]), tf.reshape(gw!, [-1])]);
      });
      tf.dispose([x, w]);
      return out;
    };
    // Filter gradients: 'same' stride 1 on this map takes the shift-GEMM, the others columns.
    const whole = { floats: 1 << 22, minRows: 512 };
    const single = { floats: 1, minRows: 1 }; // one image per chunk of columns
    const cases: Array<['same' | 'valid', number, { floats: number; minRows: number }]> = [
      ['same', 1, whole],
      ['valid', 1, whole],
      ['same', 2, whole],
      ['valid', 2, whole],
      ['same', 1, single],
      ['valid', 2, single],
    ];
    for (const [pad, stride, chunk] of cases) {
      const name = `${pad}, stride ${stride}, ${chunk === single ? 'an image per chunk' : 'one chunk'}`;
      const prev = setColumnsChunk(chunk);
      let r: ReturnType<typeof both>;
      try {
        r = both(() => grads(pad, dyv, stride));
      } finally {
        setColumnsChunk(prev);
      }
      // (Products of one small image each stay on one thread.)
      if (chunk === whole) expect(r.lists, name).toBeGreaterThan(0);
      expect(r.two, name).toEqual(r.one);
      await tf.setBackend('cpu');
      const ref = grads(pad, dyv, stride);
      const want = ref.dataSync() as Float32Array;
      ref.dispose();
      await tf.setBackend('wasm');
      let err = 0;
      let scale = 1;
      for (let i = 0; i < want.length; i++) {
        err = Math.max(err, Math.abs(r.two[i]! - want[i]!));
        scale = Math.max(scale, Math.abs(want[i]!));
      }
      expect(err / scale, name).toBeLessThan(1e-5);
    }
  });

  it('convolutions on our kernel (im2col, one product per chunk of images): bias and activation, strides, padding; equal bit for bit to one thread, close to the cpu backend', async () => {
    await workersReady();
    const cases: Array<{ name: string; x: number[]; w: number[]; stride: number; pad: 'same' | 'valid' | [[0, 0], [number, number], [number, number], [0, 0]]; ours: boolean }> = [
      { name: '3×3 same, bias + relu', x: [3, 14, 13, 16], w: [3, 3, 16, 72], stride: 1, pad: 'same', ours: true },
      { name: '5×5 stride 2 valid', x: [2, 33, 31, 8], w: [5, 5, 8, 40], stride: 2, pad: 'valid', ours: true },
      { name: '3×3 stride 2, explicit uneven padding', x: [2, 24, 24, 24], w: [3, 3, 24, 48], stride: 2, pad: [[0, 0], [2, 0], [1, 2], [0, 0]], ours: true },
      { name: '1×1 stride 2 (a downsample)', x: [4, 16, 16, 64], w: [1, 1, 64, 128], stride: 2, pad: 'valid', ours: true },
      { name: 'a 3×3 stem on RGB (27 columns: XNNPACK)', x: [4, 32, 32, 3], w: [3, 3, 3, 64], stride: 1, pad: 'same', ours: false },
      { name: 'an image whose columns would pass 32 MiB (121²·576 floats: XNNPACK)', x: [1, 121, 121, 64], w: [3, 3, 64, 16], stride: 1, pad: 'same', ours: false },
    ];
    for (const c of cases) {
      const xv = tf.tidy(() => tf.randomNormal(c.x, 0, 1, 'float32', 20).dataSync() as Float32Array);
      const wv = tf.tidy(() => tf.randomNormal(c.w, 0, 0.2, 'float32', 21).dataSync() as Float32Array);
      const bv = tf.tidy(() => tf.randomNormal([c.w[3]!], 0, 0.5, 'float32', 22).dataSync() as Float32Array);
      const conv = () =>
        tf.tidy(() =>
          tf.fused.conv2d({
            x: tf.tensor4d(xv, c.x as [number, number, number, number]),
            filter: tf.tensor4d(wv, c.w as [number, number, number, number]),
            bias: tf.tensor1d(bv),
            strides: c.stride,
            pad: c.pad,
            activation: 'relu',
          }),
        );
      const prev = setColumnsChunk({ floats: 1, minRows: 256 }); // several chunks of images
      let r: ReturnType<typeof both>;
      try {
        r = both(conv);
      } finally {
        setColumnsChunk(prev);
      }
      if (c.ours) expect(r.lists, c.name).toBeGreaterThan(0);
      else expect(r.lists, c.name).toBe(0);
      expect(r.two, c.name).toEqual(r.one);
      await tf.setBackend('cpu');
      const want = conv();
      const ref = want.dataSync() as Float32Array;
      want.dispose();
      await tf.setBackend('wasm');
      expect(r.two.length, c.name).toBe(ref.length);
      let err = 0;
      let scale = 1;
      for (let i = 0; i < ref.length; i++) {
        err = Math.max(err, Math.abs(r.two[i]! - ref[i]!));
        scale = Math.max(scale, Math.abs(ref[i]!));
      }
      expect(err / scale, c.name).toBeLessThan(2e-5);
    }
  });

  it('LayerNorm forward, rows shared out: equal bit for bit to one thread', async () => {
    await workersReady();
    const x = tf.randomNormal([3001, 96], 0, 2, 'float32', 10);
    const g = tf.randomNormal([96], 1, 0.1, 'float32', 11);
    const b = tf.randomNormal([96], 0, 0.1, 'float32', 12);
    for (const [name, ins] of [
      ['γ, β', { x, gamma: g, beta: b }],
      ['no affine', { x }],
    ] as const) {
      const r = both(() =>
        tf.tidy(() => {
          const [y, mean, rstd] = tf.engine().runKernel(LAYER_NORM, ins as unknown as tf.NamedTensorMap, { eps: 1e-6 }) as tf.Tensor[];
          return tf.concat([tf.reshape(y!, [-1]), tf.reshape(mean!, [-1]), tf.reshape(rstd!, [-1])]);
        }),
      );
      expect(r.lists, name).toBeGreaterThan(0);
      expect(r.two, name).toEqual(r.one);
    }
    tf.dispose([x, g, b]);
  });

  it('small products stay on the main thread', async () => {
    await workersReady();
    expect(listsForProduct([40, 30], [50, 30])).toBe(0);
  });

  it("a worker's trap fails the product with an error (no hang, nothing left running)", async () => {
    await workersReady();
    const memory = wasmMemory(tf.backend())!;
    const pool = kernelPool(memory, 1)!;
    const beyond = memory.buffer.byteLength + 4096; // past the heap: the kernel's first load traps
    expect(() => pool.run([[], [['gemm', beyond, beyond, beyond, beyond, 8, 8, 8, 32, 4, 32, 4, 32, 1, 0, 0]]])).toThrow(/a worker thread failed/);
    // The pool still works afterwards.
    expect(listsForProduct([600, 64], [300, 64])).toBeGreaterThan(0);
  });
});
