import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { setTestWasm } from '../testing/backend.js';
import { input, numDataIds, runOn, scaledError, type KernelInput, type KernelOutput } from './__fixtures__/kernel_harness.js';
import { installWasmKernels } from './install.js';
import { signWasm, sliceWasm, splitVWasm, transposeWasm } from './wasm_copy.js';

// Our wasm copy/reduction kernels against tfjs's stock cpu kernels on the same inputs; picks its
// backends itself (see conv_grads.test.ts).

beforeAll(async () => {
  await setTestWasm(); // the threaded build with VIT_TEST_WASM_THREADS=2
  installWasmKernels();
  await tf.setBackend('cpu');
});

async function same(kernel: string, inputs: Record<string, KernelInput>, attrs: Record<string, unknown>, tol = 0): Promise<void> {
  const ref = await runOn('cpu', kernel, inputs, attrs);
  await tf.setBackend('wasm');
  const before = numDataIds();
  const got = await runOn('wasm', kernel, inputs, attrs);
  expect(numDataIds()).toBe(before);
  expect(scaledError(got, ref)).toBeLessThanOrEqual(tol);
}

const ints = (shape: number[], vals: number[]): KernelInput => ({ shape, values: Int32Array.from(vals), dtype: 'int32' });

describe('Reverse', () => {
  for (const dims of [[0], [1], [2], [0, 1], [1, 2], [0, 2], [-1]]) {
    it(`axes ${dims.join(',')}`, async () => same(tf.Reverse, { x: input([3, 4, 5], 1) }, { dims }));
  }
  it('int32, rank 1', async () => same(tf.Reverse, { x: ints([5], [1, 2, 3, 4, 5]) }, { dims: [0] }));
});

describe('StridedSlice', () => {
  const x = input([5, 6, 7], 2);
  const cases: Array<[string, Record<string, unknown>]> = [
    ['strides 2', { begin: [0, 1, 0], end: [5, 6, 7], strides: [2, 2, 3] }],
    ['negative strides', { begin: [4, 5, 6], end: [0, 0, 0], strides: [-1, -2, -3] }],
    ['masks', { begin: [1, 0, 2], end: [0, 4, 0], strides: [1, 1, 2], beginMask: 2, endMask: 5 }],
    ['new axis', { begin: [0, 0, 0, 0], end: [0, 5, 6, 7], strides: [1, 2, 1, 2], newAxisMask: 1 }],
    ['simple (stock path)', { begin: [1, 1, 1], end: [3, 4, 5], strides: [1, 1, 1] }],
  ];
  for (const [name, a] of cases) {
    it(name, async () => same(tf.StridedSlice, { x }, { beginMask: 0, endMask: 0, ellipsisMask: 0, newAxisMask: 0, shrinkAxisMask: 0, ...a }));
  }
  it('shrink + stride: x[2, 0:6:2, 1:7:2] (tfjs cpu kernel gets it wrong; checked by hand)', async () => {
    const got = await runOn(
      'wasm',
      tf.StridedSlice,
      { x },
      { begin: [2, 0, 1], end: [3, 6, 7], strides: [1, 2, 2], beginMask: 0, endMask: 0, ellipsisMask: 0, newAxisMask: 0, shrinkAxisMask: 1 },
    );
    const expected: number[] = [];
    for (let j = 0; j < 6; j += 2) for (let k = 1; k < 7; k += 2) expected.push(x.values[(2 * 6 + j) * 7 + k]!);
    expect(got.shape).toEqual([3, 3]);
    expect(Array.from(got.values)).toEqual(expected.map((v) => Math.fround(v)));
  });
});

describe('Tile', () => {
  it('rank 3', async () => same(tf.Tile, { x: input([2, 3, 4], 3) }, { reps: [2, 1, 3] }));
  it('rank 1', async () => same(tf.Tile, { x: input([5], 4) }, { reps: [3] }));
  it('int32 rank 2', async () => same(tf.Tile, { x: ints([2, 2], [1, 2, 3, 4]) }, { reps: [3, 2] }));
});

describe('GatherV2', () => {
  const idx = ints([5], [3, 0, 3, 1, 2]);
  for (const axis of [0, 1, 2, -1]) {
    it(`axis ${axis}`, async () => same(tf.GatherV2, { x: input([4, 4, 4], 5), indices: idx }, { axis, batchDims: 0 }));
  }
  it('2-D indices, wide slices', async () => same(tf.GatherV2, { x: input([6, 40], 6), indices: ints([2, 2], [5, 0, 1, 5]) }, { axis: 0, batchDims: 0 }));
  it('batchDims 1', async () => same(tf.GatherV2, { x: input([2, 5, 3], 7), indices: ints([2, 3], [4, 0, 2, 1, 1, 3]) }, { axis: 1, batchDims: 1 }));
  it('rejects an index out of range', async () => {
    await tf.setBackend('wasm');
    const x = tf.zeros([3, 2]);
    expect(() => tf.gather(x, tf.tensor1d([0, 3], 'int32'))).toThrow(/index value 3 is not in \[0, 2\]/);
    x.dispose();
  });
});

describe('Unpack', () => {
  for (const axis of [0, 1, -1]) {
    it(`axis ${axis}`, async () => {
      const x = input([3, 4, 2], 8);
      const unstack = async (backend: string): Promise<KernelOutput[]> => {
        await tf.setBackend(backend);
        return tf.tidy(() => tf.unstack(tf.tensor(x.values, x.shape), axis).map((t) => ({ shape: t.shape, values: Float32Array.from(t.dataSync()) })));
      };
      const ref = await unstack('cpu');
      const got = await unstack('wasm');
      expect(got.length).toBe(ref.length);
      got.forEach((g, i) => expect(scaledError(g, ref[i]!)).toBe(0));
    });
  }
});

describe('Sum and Mean over leading axes', () => {
  for (const kernel of [tf.Sum, tf.Mean]) {
    for (const [axis, keepDims] of [
      [[0, 1, 2], false],
      [[0, 1], true],
      [0, false],
      [[1, 2], false],
      [[3], false],
    ] as const) {
      it(`${kernel} axis ${JSON.stringify(axis)} keepDims ${keepDims}`, async () => same(kernel, { x: input([4, 5, 6, 7], 9) }, { axis, keepDims }, 1e-6));
    }
  }
});

describe('Identity', () => {
  it('shares the buffer: clone costs no copy and outlives the original', async () => {
    await tf.setBackend('wasm');
    const before = numDataIds();
    const x = tf.tensor1d([1, 2, 3]);
    const y = tf.clone(x);
    expect(numDataIds()).toBe(before + 1);
    x.dispose();
    expect(Array.from(await y.data())).toEqual([1, 2, 3]);
    y.dispose();
    expect(numDataIds()).toBe(before);
  });
});

describe('Exp and Erf', () => {
  const specials = [0, -0, 1, -1, 0.5, 3.7, -3.7, 10, -10, 20, 80, -80, 88, -87, -95, -120, 100, Infinity, -Infinity, NaN, 1e-8, -1e-8];
  const x: KernelInput = {
    shape: [specials.length + 1001],
    values: Float32Array.from([...specials, ...Array.from({ length: 1001 }, (_, i) => (i - 500) / 40)]),
  };
  it('exp matches Math.exp to 2 ulp (relative 2.4e-7), with ±Inf, NaN and underflow', async () => {
    const got = await runOn('wasm', tf.Exp, { x }, {});
    x.values.forEach((v, i) => {
      const ref = Math.fround(Math.exp(v));
      const g = got.values[i]!;
      if (Number.isNaN(ref)) expect(g).toBeNaN();
      else if (!Number.isFinite(ref) || ref < 1.2e-38) expect(g === ref || Math.abs(g - ref) < 1.3e-38, `exp(${v}) = ${g}`).toBe(true);
      else if (v <= 88.3) expect(Math.abs(g - ref) / ref, `exp(${v})`).toBeLessThanOrEqual(2.4e-7);
    });
  });
  it('sign equals Math.sign exactly (±0 and NaN kept), on every length (SIMD body and leftovers)', async () => {
    expect(tf.getKernel(tf.Sign, 'wasm')?.kernelFunc).toBe(signWasm);
    for (const n of [x.shape[0]!, 7, 3]) {
      const got = await runOn('wasm', tf.Sign, { x: { shape: [n], values: x.values.subarray(0, n) } }, {});
      for (let i = 0; i < n; i++) expect(Object.is(got.values[i], Math.sign(x.values[i]!)), `sign(${x.values[i]})`).toBe(true);
    }
  });
  it('erf matches the cpu kernel (same formula) and Math-level erf to 1.5e-7', async () => {
    const ref = await runOn('cpu', tf.Erf, { x }, {});
    const got = await runOn('wasm', tf.Erf, { x }, {});
    x.values.forEach((v, i) => {
      if (Number.isNaN(v)) expect(got.values[i]).toBeNaN();
      else expect(Math.abs(got.values[i]! - ref.values[i]!), `erf(${v})`).toBeLessThanOrEqual(3e-7);
    });
  });
});

describe('Transpose, Slice and SplitV (SIMD run copies)', () => {
  it('are the kernels registered on wasm', () => {
    expect(tf.getKernel(tf.Transpose, 'wasm')?.kernelFunc).toBe(transposeWasm);
    expect(tf.getKernel(tf.Slice, 'wasm')?.kernelFunc).toBe(sliceWasm);
    expect(tf.getKernel(tf.SplitV, 'wasm')?.kernelFunc).toBe(splitVWasm);
  });
  // Shapes where runs have a leftover (5, 7 words), are whole vectors (8) or single words (1).
  const perms: Array<[number[], number[]]> = [
    [[4, 6, 3, 8], [0, 2, 1, 3]], // head split, whole-vector runs
    [[2, 5, 3, 2, 7], [2, 0, 3, 1, 4]], // qkv → [3, B, heads, N, d]: 4 outer loops (one in JS)
    [[3, 1, 4, 5], [1, 0, 2, 3]], // size-1 axes dropped, neighbours merged
    [[2, 3, 4, 2, 3, 5], [0, 3, 1, 4, 2, 5]], // window partition, rank 6
    [[6, 5], [1, 0]], // the last axis moves: stock
    [[4, 3, 9], [1, 0, 2]],
  ];
  for (const [shape, perm] of perms) {
    it(`transpose [${shape}] by [${perm}] equals the cpu kernel bit for bit`, async () => same(tf.Transpose, { x: input(shape, 11) }, { perm }));
  }
  it('transpose of int32', async () => same(tf.Transpose, { x: ints([2, 3, 5], Array.from({ length: 30 }, (_, i) => i * 7 - 100)) }, { perm: [1, 0, 2] }));
  const slices: Array<[number[], number[], number[]]> = [
    [[8, 13, 6], [0, 1, 0], [8, 12, 6]], // the class token dropped: merges to one run per image
    [[5, 7, 9], [1, 2, 3], [3, 4, 5]],
    [[2, 3, 4, 5, 6], [1, 0, 1, 2, 0], [1, 3, 2, 3, 6]],
    [[10, 4], [3, 0], [5, 4]], // contiguous: one run
    [[4, 9], [0, 8], [4, 1]], // single-word runs
  ];
  for (const [shape, begin, size] of slices) {
    it(`slice [${shape}] from [${begin}] size [${size}]`, async () => same(tf.Slice, { x: input(shape, 12) }, { begin, size }));
  }
  const splits: Array<[number[], number | number[], number]> = [
    [[6, 7, 3 * 12], 3, 2], // attention's qkv
    [[4, 5, 13], [3, 4, 6], -1], // uneven pieces with leftover words
    [[6, 4, 5], [1, 2, 3], 0], // contiguous pieces
    [[3, 8, 2, 5], 4, 1],
  ];
  for (const [shape, numOrSizeSplits, axis] of splits) {
    it(`splitV [${shape}] into ${JSON.stringify(numOrSizeSplits)} on axis ${axis}: every piece equals the cpu kernel's`, async () => {
      const x = input(shape, 13);
      const split = async (backend: string): Promise<KernelOutput[]> => {
        await tf.setBackend(backend);
        const before = numDataIds();
        const outs = tf.tidy(() => tf.split(tf.tensor(x.values, x.shape), numOrSizeSplits, axis).map((t) => ({ shape: t.shape, values: Float32Array.from(t.dataSync()) })));
        expect(numDataIds()).toBe(before);
        return outs;
      };
      const ref = await split('cpu');
      const got = await split('wasm');
      expect(got.length).toBe(ref.length);
      got.forEach((g, i) => expect(scaledError(g, ref[i]!)).toBe(0));
    });
  }
  it('splitV of bool keeps the stock kernel (1-byte elements)', async () => {
    await tf.setBackend('wasm');
    const [a, b] = tf.split(tf.tensor2d([true, false, true, true, false, false], [2, 3], 'bool'), [1, 2], 1);
    expect(Array.from(await a!.data())).toEqual([1, 1]);
    expect(Array.from(await b!.data())).toEqual([0, 1, 0, 0]);
    tf.dispose([a!, b!]);
  });
  it('gradients through split and transpose (backward runs the same kernels) match the cpu backend', async () => {
    const x = input([3, 4, 2, 6], 14);
    const grad = async (backend: string) => {
      await tf.setBackend(backend);
      return tf.tidy(() => {
        const xt = tf.tensor(x.values, x.shape);
        const g = tf.grad((t: tf.Tensor) => {
          const [p, q] = tf.split(tf.transpose(t, [0, 2, 1, 3]), [2, 4], 3);
          return tf.sum(tf.mul(tf.slice(p!, [0, 0, 1, 0], [3, 2, 3, 2]), tf.sin(tf.slice(q!, [0, 0, 0, 1], [3, 2, 3, 2]))));
        })(xt);
        return { shape: g.shape, values: Float32Array.from(g.dataSync()) };
      });
    };
    expect(scaledError(await grad('wasm'), await grad('cpu'))).toBeLessThanOrEqual(1e-6);
  });
});
