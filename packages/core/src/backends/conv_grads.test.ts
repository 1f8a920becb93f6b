import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTestWasm } from '../testing/backend.js';
import { depthwiseGradLoops, input, numDataIds, runOn, scaledError, type KernelInput, type KernelOutput } from './__fixtures__/kernel_harness.js';
import { installCpuKernels, installedKernels, installWasmKernels, restoreStockKernels } from './install.js';

// These tests compare backends with each other, so they pick backends themselves instead of
// setTestBackend(): the reference is tfjs's stock cpu kernel, run on the same inputs.

const TOL = 1e-5;

type Pad = 'same' | 'valid' | number | number[][];
interface ConvCase {
  name: string;
  x: [number, number, number, number];
  k: [number, number];
  co: number;
  strides: number | [number, number];
  pad: Pad;
}

const explicit = (t: number, b: number, l: number, r: number): number[][] => [
  [0, 0],
  [t, b],
  [l, r],
  [0, 0],
];

// Small shapes: the stock cpu Conv2DBackpropFilter is ~0.01 GFLOP/s.
const CONV_CASES: ConvCase[] = [
  { name: '1×1 s1 valid', x: [2, 5, 4, 3], k: [1, 1], co: 4, strides: 1, pad: 'valid' },
  { name: '1×1 s2 valid, odd size', x: [2, 7, 5, 3], k: [1, 1], co: 2, strides: 2, pad: 'valid' },
  { name: '1×1 s2 explicit bottom/right pad', x: [1, 6, 6, 2], k: [1, 1], co: 3, strides: 2, pad: explicit(0, 1, 0, 1) },
  { name: '2×2/2 patchify', x: [2, 8, 6, 3], k: [2, 2], co: 4, strides: 2, pad: 'valid' },
  { name: '2×2/2, odd size (crop)', x: [1, 7, 9, 2], k: [2, 2], co: 3, strides: 2, pad: 'valid' },
  { name: '2×2/2 same, odd size', x: [1, 7, 7, 2], k: [2, 2], co: 3, strides: 2, pad: 'same' },
  { name: '4×4/4 patchify', x: [2, 9, 8, 3], k: [4, 4], co: 5, strides: 4, pad: 'valid' },
  { name: '3×3 s1 same', x: [2, 6, 5, 3], k: [3, 3], co: 4, strides: 1, pad: 'same' },
  { name: '3×3 s1 valid', x: [1, 6, 7, 2], k: [3, 3], co: 3, strides: 1, pad: 'valid' },
  { name: '3×3 s2 same, odd size', x: [2, 7, 7, 3], k: [3, 3], co: 2, strides: 2, pad: 'same' },
  { name: '3×3 s2 same, even size', x: [1, 8, 6, 2], k: [3, 3], co: 3, strides: 2, pad: 'same' },
  { name: '3×3 s2 valid', x: [1, 9, 8, 2], k: [3, 3], co: 3, strides: 2, pad: 'valid' },
  { name: '3×3 s2 pad 1 (number)', x: [1, 8, 8, 2], k: [3, 3], co: 2, strides: 2, pad: 1 },
  { name: '3×3 s1 explicit asymmetric', x: [1, 5, 6, 2], k: [3, 3], co: 3, strides: 1, pad: explicit(1, 2, 2, 0) },
  { name: '3×3 strides [1,2] explicit', x: [1, 6, 7, 2], k: [3, 3], co: 2, strides: [1, 2], pad: explicit(1, 1, 1, 1) },
  { name: '7×7 s2 pad 3 (stem)', x: [1, 11, 11, 3], k: [7, 7], co: 4, strides: 2, pad: explicit(3, 3, 3, 3) },
  { name: '11×11 s1 same', x: [1, 12, 12, 2], k: [11, 11], co: 2, strides: 1, pad: 'same' },
  { name: '5×3 s3 same', x: [1, 10, 8, 2], k: [5, 3], co: 3, strides: 3, pad: 'same' },
  { name: '3×3 pad larger than kernel−1 (crop path)', x: [1, 5, 5, 2], k: [1, 1], co: 2, strides: 1, pad: explicit(1, 1, 1, 1) },
];

interface DwCase {
  name: string;
  x: [number, number, number, number];
  k: [number, number];
  m: number;
  strides: number;
  dilations: number;
  pad: Pad;
}

const DW_CASES: DwCase[] = [
  { name: '3×3 s1 same', x: [2, 6, 5, 3], k: [3, 3], m: 1, strides: 1, dilations: 1, pad: 'same' },
  { name: '3×3 s2 same, odd size', x: [2, 7, 7, 3], k: [3, 3], m: 1, strides: 2, dilations: 1, pad: 'same' },
  { name: '3×3 s2 valid, multiplier 2', x: [1, 8, 7, 2], k: [3, 3], m: 2, strides: 2, dilations: 1, pad: 'valid' },
  { name: '7×7 s1 pad 3, multiplier 3', x: [2, 7, 7, 2], k: [7, 7], m: 3, strides: 1, dilations: 1, pad: explicit(3, 3, 3, 3) },
  { name: '11×11 s1 same', x: [1, 12, 11, 3], k: [11, 11], m: 1, strides: 1, dilations: 1, pad: 'same' },
  { name: '3×3 dilation 2 same', x: [1, 9, 8, 2], k: [3, 3], m: 1, strides: 1, dilations: 2, pad: 'same' },
  { name: '3×3 dilation 3 valid, multiplier 2', x: [1, 10, 9, 2], k: [3, 3], m: 2, strides: 1, dilations: 3, pad: 'valid' },
  { name: '2×2/2 depthwise patchify', x: [1, 8, 6, 3], k: [2, 2], m: 1, strides: 2, dilations: 1, pad: 'valid' },
  { name: '1×1 s2 multiplier 2', x: [1, 5, 5, 2], k: [1, 1], m: 2, strides: 2, dilations: 1, pad: 'valid' },
  { name: '5×5 s2 explicit asymmetric', x: [1, 9, 8, 2], k: [5, 5], m: 1, strides: 2, dilations: 1, pad: explicit(2, 1, 1, 2) },
  // Channels a multiple of 4: our SIMD kernels on wasm.
  { name: 'SIMD 3×3 s1 same, C 8', x: [2, 7, 6, 8], k: [3, 3], m: 1, strides: 1, dilations: 1, pad: 'same' },
  { name: 'SIMD 7×7 pad 3, C 4, odd width', x: [2, 9, 7, 4], k: [7, 7], m: 1, strides: 1, dilations: 1, pad: explicit(3, 3, 3, 3) },
  { name: 'SIMD 11×11 same, C 12', x: [1, 12, 13, 12], k: [11, 11], m: 1, strides: 1, dilations: 1, pad: 'same' },
  { name: 'SIMD 3×3 s2 same, C 4', x: [2, 9, 8, 4], k: [3, 3], m: 1, strides: 2, dilations: 1, pad: 'same' },
  { name: 'SIMD 3×3 dilation 2, C 8', x: [1, 10, 9, 8], k: [3, 3], m: 1, strides: 1, dilations: 2, pad: 'same' },
  { name: 'SIMD 2×2/2 valid, C 4', x: [1, 8, 8, 4], k: [2, 2], m: 1, strides: 2, dilations: 1, pad: 'valid' },
  { name: '5×5 multiplier 2, C 4 (composed path)', x: [1, 8, 7, 4], k: [5, 5], m: 2, strides: 1, dilations: 1, pad: 'same' },
];

function convShapes(c: ConvCase): { dy: number[]; filter: [number, number, number, number] } {
  const filter: [number, number, number, number] = [c.k[0], c.k[1], c.x[3], c.co];
  const info = tf.backend_util.computeConv2DInfo(c.x, filter, c.strides, 1, c.pad as 'same', undefined, false, 'channelsLast');
  return { dy: info.outShape, filter };
}

function dwShapes(c: DwCase): { dy: number[]; filter: [number, number, number, number] } {
  const filter: [number, number, number, number] = [c.k[0], c.k[1], c.x[3], c.m];
  const info = tf.backend_util.computeConv2DInfo(c.x, filter, c.strides, c.dilations, c.pad as 'same', undefined, true, 'channelsLast');
  return { dy: info.outShape, filter };
}

interface KernelCall {
  kernel: string;
  inputs: Record<string, KernelInput>;
  attrs: Record<string, unknown>;
  /** A direct loop, where tfjs's stock cpu kernel is not a valid reference. */
  loop?: () => KernelOutput;
  /** Whether the stock cpu kernel gets this case right (it ignores dilations). */
  stockValid: boolean;
}

function calls(): Array<[string, KernelCall]> {
  const out: Array<[string, KernelCall]> = [];
  for (const c of CONV_CASES) {
    const { dy, filter } = convShapes(c);
    const common = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: undefined };
    out.push([
      `Conv2DBackpropFilter ${c.name}`,
      { kernel: tf.Conv2DBackpropFilter, inputs: { x: input(c.x, 1), dy: input(dy, 2) }, attrs: { ...common, filterShape: filter }, stockValid: true },
    ]);
    out.push([
      `Conv2DBackpropInput ${c.name}`,
      { kernel: tf.Conv2DBackpropInput, inputs: { dy: input(dy, 3), filter: input(filter, 4) }, attrs: { ...common, inputShape: c.x }, stockValid: true },
    ]);
  }
  for (const c of DW_CASES) {
    const { dy, filter } = dwShapes(c);
    const common = { strides: c.strides, dilations: c.dilations, pad: c.pad, dimRoundingMode: undefined };
    const loops = depthwiseGradLoops(c.x, filter, c.strides, c.dilations, c.pad);
    const [x, dyF, dyI, w] = [input(c.x, 5), input(dy, 6), input(dy, 7), input(filter, 8)];
    const stockValid = c.dilations === 1;
    out.push([
      `DepthwiseBackpropFilter ${c.name}`,
      {
        kernel: tf.DepthwiseConv2dNativeBackpropFilter,
        inputs: { x, dy: dyF },
        attrs: { ...common, filterShape: filter },
        loop: () => loops.filterGrad(x.values as Float32Array, dyF.values as Float32Array),
        stockValid,
      },
    ]);
    out.push([
      `DepthwiseBackpropInput ${c.name}`,
      {
        kernel: tf.DepthwiseConv2dNativeBackpropInput,
        inputs: { dy: dyI, filter: w },
        attrs: { ...common, inputShape: c.x },
        loop: () => loops.inputGrad(dyI.values as Float32Array, w.values as Float32Array),
        stockValid,
      },
    ]);
  }
  return out;
}

beforeAll(async () => {
  await setTestWasm(); // the threaded build with VIT_TEST_WASM_THREADS=2
  installWasmKernels();
  await tf.setBackend('cpu');
});

afterAll(() => {
  restoreStockKernels('cpu');
});

describe('conv backward kernels match the stock cpu kernels', () => {
  for (const [name, call] of calls()) {
    it(name, async () => {
      restoreStockKernels('cpu');
      const stock = await runOn('cpu', call.kernel, call.inputs, call.attrs);
      const ref = call.loop ? call.loop() : stock;
      // The loop reference is itself checked against tfjs wherever tfjs is right.
      if (call.loop && call.stockValid) expect(scaledError(stock, ref)).toBeLessThanOrEqual(TOL);
      installCpuKernels();
      const cpuOurs = await runOn('cpu', call.kernel, call.inputs, call.attrs);
      const before = numDataIds();
      const wasm = await runOn('wasm', call.kernel, call.inputs, call.attrs);
      expect(numDataIds()).toBe(before);
      expect(scaledError(wasm, ref)).toBeLessThanOrEqual(TOL);
      // cpu keeps tfjs's kernel where it is fast enough; that one is wrong with dilations.
      if (installedKernels('cpu').includes(call.kernel) || call.stockValid) expect(scaledError(cpuOurs, ref)).toBeLessThanOrEqual(TOL);
    });
  }
});

describe('NCHW data format', () => {
  it('Conv2DBackpropFilter and Conv2DBackpropInput on NCHW tensors match the NHWC results', async () => {
    const x = input([2, 7, 6, 3], 11);
    const dyShape = tf.backend_util.computeConv2DInfo([2, 7, 6, 3], [3, 3, 3, 4], 2, 1, 'same').outShape;
    const dy = input(dyShape, 12);
    const nchw = (v: KernelInput): KernelInput => {
      const t = tf.tidy(() => tf.transpose(tf.tensor(v.values, v.shape), [0, 3, 1, 2]));
      const r = { shape: t.shape, values: Float32Array.from(t.dataSync()) };
      t.dispose();
      return r;
    };
    await tf.setBackend('cpu');
    const [xc, dyc] = [nchw(x), nchw(dy)];
    const attrs = { strides: 2, pad: 'same', dimRoundingMode: undefined };
    const ref = await runOn('cpu', tf.Conv2DBackpropFilter, { x, dy }, { ...attrs, dataFormat: 'NHWC', filterShape: [3, 3, 3, 4] });
    const got = await runOn('wasm', tf.Conv2DBackpropFilter, { x: xc, dy: dyc }, { ...attrs, dataFormat: 'NCHW', filterShape: [3, 3, 3, 4] });
    expect(scaledError(got, ref)).toBeLessThanOrEqual(TOL);
    const w = input([3, 3, 3, 4], 13);
    const refIn = await runOn('cpu', tf.Conv2DBackpropInput, { dy, filter: w }, { ...attrs, dataFormat: 'NHWC', inputShape: [2, 7, 6, 3] });
    const gotIn = await runOn('wasm', tf.Conv2DBackpropInput, { dy: dyc, filter: w }, { ...attrs, dataFormat: 'NCHW', inputShape: [2, 3, 7, 6] });
    await tf.setBackend('cpu');
    const back = tf.tidy(() => tf.transpose(tf.tensor(gotIn.values, gotIn.shape), [0, 2, 3, 1]));
    expect(scaledError({ shape: back.shape, values: Float32Array.from(back.dataSync()) }, refIn)).toBeLessThanOrEqual(TOL);
    back.dispose();
  });
});

describe('DepthToSpace on wasm', () => {
  it('matches stock cpu (NHWC)', async () => {
    const x = input([2, 3, 5, 12], 14);
    const ref = await runOn('cpu', tf.DepthToSpace, { x }, { blockSize: 2, dataFormat: 'NHWC' });
    const got = await runOn('wasm', tf.DepthToSpace, { x }, { blockSize: 2, dataFormat: 'NHWC' });
    expect(scaledError(got, ref)).toBe(0);
  });
  it('NCHW equals NHWC on transposed data (cpu has no NCHW kernel)', async () => {
    const x = input([2, 3, 5, 12], 15);
    const nhwc = await runOn('wasm', tf.DepthToSpace, { x }, { blockSize: 2, dataFormat: 'NHWC' });
    await tf.setBackend('cpu');
    const xc = tf.tidy(() => Float32Array.from(tf.transpose(tf.tensor(x.values, x.shape), [0, 3, 1, 2]).dataSync()));
    const got = await runOn('wasm', tf.DepthToSpace, { x: { shape: [2, 12, 3, 5], values: xc } }, { blockSize: 2, dataFormat: 'NCHW' });
    await tf.setBackend('cpu');
    const back = tf.tidy(() => Float32Array.from(tf.transpose(tf.tensor(got.values, got.shape), [0, 2, 3, 1]).dataSync()));
    expect(scaledError({ shape: nhwc.shape, values: back }, nhwc)).toBe(0);
  });
});

describe('depthwise forward on wasm', () => {
  const cases: Array<[string, [number, number, number, number], [number, number, number, number], number, number, Pad]> = [
    ['11×11 same, C 8', [2, 12, 11, 8], [11, 11, 8, 1], 1, 1, 'same'],
    ['7×7 explicit, C 4', [1, 9, 10, 4], [7, 7, 4, 1], 1, 1, explicit(3, 2, 1, 3)],
    ['3×3 dilation 2 valid, C 4', [1, 9, 9, 4], [3, 3, 4, 1], 1, 2, 'valid'],
    ['3×3 stride 2 (stock path)', [1, 9, 9, 4], [3, 3, 4, 1], 2, 1, 'same'],
    ['3×3 C 3 (stock path)', [1, 6, 6, 3], [3, 3, 3, 1], 1, 1, 'same'],
  ];
  for (const [name, xs, fs, strides, dilations, pad] of cases) {
    it(`DepthwiseConv2dNative ${name}`, async () => {
      const inputs = { x: input(xs, 51), filter: input(fs, 52) };
      const attrs = { strides, dilations, pad, dataFormat: 'NHWC', dimRoundingMode: undefined };
      const ref = await runOn('cpu', tf.DepthwiseConv2dNative, inputs, attrs);
      const before = numDataIds();
      const got = await runOn('wasm', tf.DepthwiseConv2dNative, inputs, attrs);
      expect(numDataIds()).toBe(before);
      expect(scaledError(got, ref)).toBeLessThanOrEqual(TOL);
    });
  }
  for (const activation of ['linear', 'relu', 'sigmoid', 'leakyrelu']) {
    it(`FusedDepthwiseConv2D with bias, ${activation}`, async () => {
      const inputs = { x: input([2, 8, 7, 8], 53), filter: input([5, 5, 8, 1], 54), bias: input([8], 55) };
      const attrs = { strides: 1, dilations: 1, pad: 'same', dataFormat: 'NHWC', dimRoundingMode: undefined, activation, leakyreluAlpha: 0.1 };
      const ref = await runOn('cpu', tf.FusedDepthwiseConv2D, inputs, attrs);
      const got = await runOn('wasm', tf.FusedDepthwiseConv2D, inputs, attrs);
      expect(scaledError(got, ref)).toBeLessThanOrEqual(TOL);
    });
  }
});
