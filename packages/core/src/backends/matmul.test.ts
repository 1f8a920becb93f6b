import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTestWasm } from '../testing/backend.js';
import { input, numDataIds, runOn, scaledError, type KernelInput, type KernelOutput } from './__fixtures__/kernel_harness.js';
import { installCpuKernels, installWasmKernels, restoreStockKernels } from './install.js';
import { enableWasmGemm, PER_BATCH_MIN_MACS, routeForwardProducts, wasmGemm } from './matmul_wasm.js';
import { relaxedSimd } from './wasm_asm.js';
import { gemmModuleBytes, type GemmFn } from './wasm_gemm.js';

// Compares wasm (with our kernels) against tfjs's stock cpu kernels on the same inputs; picks
// its backends itself (see conv_grads.test.ts).

const TOL = 1e-5;

beforeAll(async () => {
  await setTestWasm(); // the threaded build with VIT_TEST_WASM_THREADS=2
  installWasmKernels();
  await tf.setBackend('cpu');
  restoreStockKernels('cpu');
});

afterAll(() => {
  installCpuKernels();
});

async function compare(kernel: string, inputs: Record<string, KernelInput>, attrs: Record<string, unknown>, reference?: KernelOutput): Promise<number> {
  const ref = reference ?? (await runOn('cpu', kernel, inputs, attrs));
  await tf.setBackend('wasm');
  const before = numDataIds();
  const got = await runOn('wasm', kernel, inputs, attrs);
  expect(numDataIds()).toBe(before);
  return scaledError(got, ref);
}

/**
 * Stock cpu on operands tiled to the full batch first: its kernel indexes a broadcast batch as
 * `i % batch`, which is wrong when both operands broadcast ([2,1,…]·[1,3,…]).
 */
async function broadcastReference(a: KernelInput, b: KernelInput, ta: boolean, tb: boolean): Promise<KernelOutput> {
  await tf.setBackend('cpu');
  return tf.tidy(() => {
    const outer = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    const full = (v: KernelInput) => tf.broadcastTo(tf.tensor(v.values, v.shape), [...outer, ...v.shape.slice(-2)]);
    const y = tf.matMul(full(a), full(b), ta, tb);
    return { shape: y.shape, values: Float32Array.from(y.dataSync()) };
  });
}

const shapeOf = (outer: number[], r: number, c: number, t: boolean) => [...outer, t ? c : r, t ? r : c];

interface MatCase {
  name: string;
  outerA: number[];
  outerB: number[];
  m: number;
  k: number;
  n: number;
}

const CASES: MatCase[] = [
  { name: '2-D', outerA: [], outerB: [], m: 37, k: 29, n: 23 },
  { name: 'batched 3-D, per-batch path', outerA: [3], outerB: [3], m: 20, k: 16, n: 24 },
  { name: 'batched 3-D, tiny (stock loop)', outerA: [4], outerB: [4], m: 5, k: 7, n: 3 },
  { name: 'attention-like 4-D', outerA: [2, 3], outerB: [2, 3], m: 17, k: 16, n: 19 },
  { name: 'shared right operand (rank 2)', outerA: [2, 3], outerB: [], m: 11, k: 13, n: 9 },
  { name: 'shared right operand (batch 1)', outerA: [3], outerB: [1], m: 21, k: 13, n: 9 },
  { name: 'shared left operand', outerA: [1], outerB: [3], m: 21, k: 15, n: 18 },
  { name: 'both broadcast', outerA: [2, 1], outerB: [1, 3], m: 16, k: 17, n: 18 },
  { name: 'long inner dimension (K in chunks)', outerA: [2], outerB: [2], m: 13, k: 300, n: 21 },
  { name: '2-D, long inner dimension', outerA: [], outerB: [], m: 9, k: 530, n: 17 },
  { name: 'many rows (row chunks) and long K', outerA: [], outerB: [], m: 4500, k: 300, n: 3 },
];

for (const [label, gemm] of [
  ['SIMD kernel', true],
  ['XNNPACK fallback', false],
] as const) {
  describe(`BatchMatMul on wasm (${label}) matches stock cpu`, () => {
    beforeAll(() => enableWasmGemm(gemm));
    afterAll(() => enableWasmGemm(true));
    for (const c of CASES) {
      for (const [ta, tb] of [
        [false, false],
        [true, false],
        [false, true],
        [true, true],
      ] as const) {
        it(`${c.name}, transposeA=${ta} transposeB=${tb}`, async () => {
          const a = input(shapeOf(c.outerA, c.m, c.k, ta), 21);
          const b = input(shapeOf(c.outerB, c.k, c.n, tb), 22);
          const ref = await broadcastReference(a, b, ta, tb);
          expect(await compare(tf.BatchMatMul, { a, b }, { transposeA: ta, transposeB: tb }, ref)).toBeLessThanOrEqual(TOL);
        });
      }
    }
  });
}

describe('BatchMatMul plumbing', () => {
  it('the SIMD kernel builds on the wasm backend', async () => {
    await tf.setBackend('wasm');
    expect(wasmGemm(tf.backend())).toBeTypeOf('function');
  });

  it('uses fused multiply-adds where relaxed SIMD compiles (Node 20: the flag we set), and they change a product by float rounding only', () => {
    expect(relaxedSimd(), 'relaxed SIMD in this Node (--experimental-wasm-relaxed-simd set at run time)').toBe(true);
    const memory = new WebAssembly.Memory({ initial: 64 });
    const [m, n, k] = [37, 29, 301];
    const [a, b, c1, c2, scratch] = [0, m * k * 4, (m * k + k * n) * 4, (m * k + k * n + m * n) * 4, (m * k + k * n + 2 * m * n) * 4];
    const f = new Float32Array(memory.buffer);
    for (let i = 0; i < m * k + k * n; i++) f[i] = Math.sin(i * 0.37) * 3;
    const run = (fused: boolean, out: number) => {
      const gemm = new WebAssembly.Instance(new WebAssembly.Module(gemmModuleBytes(false, fused)), { env: { memory } }).exports.gemm as GemmFn;
      gemm(a, b, out, scratch, m, n, k, k * 4, 4, n * 4, 4, n * 4, 1, 0, 0);
      return f.slice(out / 4, out / 4 + m * n);
    };
    const fused = run(true, c1);
    const plain = run(false, c2);
    let worst = 0;
    let differ = 0;
    for (let i = 0; i < m * n; i++) {
      let want = 0;
      const row = Math.floor(i / n) * k;
      for (let j = 0; j < k; j++) want += f[row + j]! * f[m * k + j * n + (i % n)]!;
      worst = Math.max(worst, Math.abs(fused[i]! - want) / Math.max(1, Math.abs(want)), Math.abs(plain[i]! - want) / Math.max(1, Math.abs(want)));
      if (fused[i] !== plain[i]) differ++;
    }
    expect(worst).toBeLessThan(1e-5);
    // Where the CPU has FMA (x86-64 with FMA3, arm64) one rounding instead of two changes some sums.
    expect(differ, 'the fused kernel rounds once per multiply-add').toBeGreaterThan(0);
  });

  it("the fallback's per-batch threshold sits between the tiny and the per-batch cases above", () => {
    expect(5 * 7 * 3).toBeLessThan(PER_BATCH_MIN_MACS);
    expect(20 * 16 * 24).toBeGreaterThanOrEqual(PER_BATCH_MIN_MACS);
  });

  it('rejects mismatched inner dimensions like the stock kernel', async () => {
    await tf.setBackend('wasm');
    expect(() => tf.matMul(tf.zeros([2, 3, 4]), tf.zeros([2, 5, 6]))).toThrow(/inner shapes/);
  });
});

describe('_FusedMatMul on wasm matches stock cpu', () => {
  const acts: Array<[string, Record<string, unknown>]> = [
    ['linear', {}],
    ['relu', {}],
    ['leakyrelu', { leakyreluAlpha: 0.1 }],
    ['sigmoid', {}],
  ];
  for (const [activation, extra] of acts) {
    it(`batched, transposeB, bias, ${activation}`, async () => {
      const a = input([2, 19, 16], 31);
      const b = input([2, 21, 16], 32);
      const bias = input([21], 33);
      const err = await compare(tf._FusedMatMul, { a, b, bias }, { transposeA: false, transposeB: true, activation, ...extra });
      expect(err).toBeLessThanOrEqual(TOL);
    });
  }
  it('2-D transposeA with prelu weights', async () => {
    const a = input([16, 19], 34);
    const b = input([16, 21], 35);
    const alpha = input([21], 36);
    const err = await compare(tf._FusedMatMul, { a, b, preluActivationWeights: alpha }, { transposeA: true, transposeB: false, activation: 'prelu' });
    expect(err).toBeLessThanOrEqual(TOL);
  });
});

describe('plain products and 1×1 convolutions on our kernel (routeForwardProducts) match stock cpu', () => {
  // The default; the XNNPACK route (false) is what the tests above cover with the kernel off.
  beforeAll(() => routeForwardProducts(true));
  it('BatchMatMul [37, 300]·[300, 45] and a batch sharing its right operand', async () => {
    expect(await compare(tf.BatchMatMul, { a: input([1, 37, 300], 41), b: input([1, 300, 45], 42) }, { transposeA: false, transposeB: false })).toBeLessThanOrEqual(TOL);
    expect(await compare(tf.BatchMatMul, { a: input([3, 37, 30], 43), b: input([1, 30, 45], 44) }, { transposeA: false, transposeB: false })).toBeLessThanOrEqual(TOL);
  });
  it('_FusedMatMul with bias and relu', async () => {
    const err = await compare(tf._FusedMatMul, { a: input([37, 30], 45), b: input([30, 21], 46), bias: input([21], 47) }, { transposeA: false, transposeB: false, activation: 'relu' });
    expect(err).toBeLessThanOrEqual(TOL);
  });
  for (const [name, kernel, extra] of [
    ['Conv2D', tf.Conv2D, {}],
    ['FusedConv2D (bias, relu)', tf.FusedConv2D, { activation: 'relu' }],
  ] as const) {
    it(`${name} 1×1, stride 1, and a 3×3 one (stock)`, async () => {
      for (const [kh, pad] of [
        [1, 'same'],
        [1, 'valid'],
        [3, 'same'],
      ] as const) {
        const inputs: Record<string, KernelInput> = { x: input([2, 7, 9, 13], 48), filter: input([kh, kh, 13, 11], 49) };
        if (kernel === tf.FusedConv2D) inputs.bias = input([11], 50);
        const attrs = { strides: [1, 1], pad, dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: undefined, ...extra };
        expect(await compare(kernel, inputs, attrs), `${kh}×${kh} ${pad}`).toBeLessThanOrEqual(TOL);
      }
    });
  }
});
