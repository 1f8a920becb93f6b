import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { setTestWasm } from '../testing/backend.js';
import { layerNormLastAxis } from '../ops/norm.js';
import { installWasmKernels } from './install.js';

// Our runtime-assembled kernels walk the wasm heap with i32 pointers. Past 2 GiB a pointer is
// negative as a signed i32, so a loop that compared pointers signed stopped after one pass over
// a buffer that straddles 2^31: most of the output was never written (training at batch 128
// diverged, with gradients of 1e33 read from stale memory). Here the operands of every such
// kernel straddle 2^31 and the results must equal the same computation low in the heap.

const TWO_GIB = 2 ** 31;

// Each op runs synchronously for seconds: between them the worker answers vitest's RPC (a worker
// silent for 60 s fails the run with `Timeout calling "onTaskUpdate"`).
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

function offsetOf(t: tf.Tensor): number {
  const b = tf.backend() as unknown as { dataIdMap: { get(id: object): { memoryOffset: number } } };
  return b.dataIdMap.get(t.dataId).memoryOffset;
}

describe('wasm kernels on buffers that straddle 2 GiB', () => {
  it('exp, erf, transposed and batched matMuls, LayerNorm (forward and backward): the results of the cpu backend', async () => {
    await setTestWasm();
    installWasmKernels();
    const hole = 12 * 1024 * 1024;
    const ops: Array<[string, () => tf.Tensor[], (t: tf.Tensor[]) => tf.Tensor]> = [
      ['exp', () => [tf.randomNormal([hole / 4], 0, 2, 'float32', 1)], ([x]) => tf.exp(x!)],
      ['erf', () => [tf.randomNormal([hole / 4], 0, 2, 'float32', 2)], ([x]) => tf.erf(x!)],
      // Outputs of 12 MB: they are what lands in the straddling hole.
      ['matMul transposed', () => [tf.randomNormal([64, 1500], 0, 1, 'float32', 3), tf.randomNormal([64, 2048], 0, 1, 'float32', 4)], ([a, b]) => tf.matMul(a!, b!, true, false)],
      ['batched matMul', () => [tf.randomNormal([96, 128, 16], 0, 1, 'float32', 5), tf.randomNormal([96, 16, 256], 0, 1, 'float32', 6)], ([a, b]) => tf.matMul(a!, b!)],
      // dx of sum(LayerNorm(x)·x): both fused LayerNorm kernels run, the input x in the hole.
      [
        'LayerNorm',
        () => [tf.randomNormal([hole / 4 / 64, 64], 0, 2, 'float32', 7), tf.randomNormal([64], 1, 0.2, 'float32', 8), tf.randomNormal([64], 0, 1, 'float32', 9)],
        ([x, g, b]) => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(layerNormLastAxis(t, g!, b!, 1e-5), t)))(x!),
      ],
    ];
    // Fill the heap to just below 2^31, then free a 12 MB block across it: the allocator puts the
    // next buffers of that size in the hole (inputs of the unary ops, outputs of the matMuls).
    const fillers: tf.Tensor[] = [];
    const end = (t: tf.Tensor) => offsetOf(t) + t.size * 4;
    const wasmHeap = (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength;
    fillers.push(tf.zeros([Math.floor(Math.max(0, TWO_GIB - wasmHeap - hole) / 4)]));
    fillers.push(tf.zeros([Math.floor(Math.max(0, TWO_GIB - hole / 2 - end(fillers[0]!)) / 4)]));
    const straddle = tf.zeros([hole / 4]);
    const at = offsetOf(straddle);
    expect(at, 'the 12 MB block crosses 2^31').toBeLessThan(TWO_GIB);
    expect(at + hole).toBeGreaterThan(TWO_GIB);
    straddle.dispose();
    const results: Array<{ name: string; ins: Float32Array[]; shapes: number[][]; got: Float32Array; crossed: boolean }> = [];
    try {
      for (const [name, make, op] of ops) {
        const ins = make();
        const out = op(ins);
        const crossed = [...ins, out].some((t) => offsetOf(t) < TWO_GIB && end(t) > TWO_GIB);
        results.push({ name, ins: ins.map((t) => t.dataSync() as Float32Array), shapes: ins.map((t) => t.shape), got: out.dataSync() as Float32Array, crossed });
        tf.dispose([...ins, out]);
        await yieldToEventLoop();
      }
    } finally {
      tf.dispose(fillers);
    }
    await tf.setBackend('cpu');
    for (const [i, r] of results.entries()) {
      await yieldToEventLoop();
      const want = tf.tidy(() => ops[i]![2](r.ins.map((d, j) => tf.tensor(d, r.shapes[j]))).dataSync());
      let worst = 0;
      for (let j = 0; j < want.length; j++) worst = Math.max(worst, Math.abs(r.got[j]! - want[j]!) / Math.max(1, Math.abs(want[j]!)));
      expect(worst, r.name).toBeLessThan(1e-5);
    }
    // The allocator put these where the test wants them (the transposed product packs its operands
    // into scratch space of its own, which may land anywhere).
    const crossed = results.filter((r) => r.crossed).map((r) => r.name);
    expect(crossed, `crossed: ${crossed.join(', ')}`).toEqual(expect.arrayContaining(['exp', 'erf', 'batched matMul', 'LayerNorm']));
  });
});

describe('wasm kernels with their scratch memory above 2 GiB', () => {
  it('column convolutions (forward, both gradients), a Linear with its bias fused, split: the results of the cpu backend', async () => {
    await setTestWasm();
    installWasmKernels();
    // Fill the heap past 2^31: what our kernels allocate next (columns, packed panels, the padded
    // bias) lies above it, where `_malloc` returns a negative i32 (a typed array there threw
    // "Start offset -1989165712 is outside the bounds of the buffer" in a 224-px training run).
    const wasmHeap = (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength;
    const filler = tf.zeros([Math.floor(Math.max(0, TWO_GIB + 64 * 2 ** 20 - wasmHeap) / 4)]);
    const probe = tf.zeros([1024]);
    expect(offsetOf(probe), 'new buffers land above 2^31').toBeGreaterThan(TWO_GIB);
    probe.dispose();
    const ops: Array<[string, () => tf.Tensor[], (t: tf.Tensor[]) => tf.Tensor]> = [
      [
        'conv forward, padded (im2col fills zeros)',
        () => [tf.randomNormal([3, 10, 9, 16], 0, 1, 'float32', 11), tf.randomNormal([3, 3, 16, 24], 0, 0.2, 'float32', 12)],
        ([x, w]) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'),
      ],
      [
        'conv gradients (input: col2im; filter on a 6×6 map: columns)',
        () => [tf.randomNormal([3, 6, 6, 16], 0, 1, 'float32', 13), tf.randomNormal([3, 3, 16, 24], 0, 0.2, 'float32', 14)],
        ([x, w]) => {
          const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same'))))([x!, w!]);
          return tf.concat([tf.reshape(gx!, [-1]), tf.reshape(gw!, [-1])]);
        },
      ],
      [
        'Linear with bias',
        () => [tf.randomNormal([200, 48], 0, 1, 'float32', 15), tf.randomNormal([48, 20], 0, 1, 'float32', 16), tf.randomNormal([20], 0, 1, 'float32', 17)],
        ([a, b, c]) => tf.fused.matMul({ a: a!, b: b!, bias: c! }),
      ],
      ['split and transpose', () => [tf.randomNormal([6, 7, 3 * 8], 0, 1, 'float32', 18)], ([x]) => tf.transpose(tf.split(x!, 3, 2)[1]!, [1, 0, 2])],
    ];
    const results: Array<{ ins: Float32Array[]; shapes: number[][]; got: Float32Array }> = [];
    try {
      for (const [, make, op] of ops) {
        const ins = make();
        const out = op(ins);
        results.push({ ins: ins.map((t) => t.dataSync() as Float32Array), shapes: ins.map((t) => t.shape), got: out.dataSync() as Float32Array });
        tf.dispose([...ins, out]);
        await yieldToEventLoop();
      }
    } finally {
      filler.dispose();
    }
    await tf.setBackend('cpu');
    for (const [i, r] of results.entries()) {
      const want = tf.tidy(() => ops[i]![2](r.ins.map((d, j) => tf.tensor(d, r.shapes[j]))).dataSync());
      expect(r.got.length, ops[i]![0]).toBe(want.length);
      // Relative to the largest value: sums of a few hundred products in another order.
      let worst = 0;
      let scale = 1;
      for (let j = 0; j < want.length; j++) {
        worst = Math.max(worst, Math.abs(r.got[j]! - want[j]!));
        scale = Math.max(scale, Math.abs(want[j]!));
      }
      expect(worst / scale, ops[i]![0]).toBeLessThan(1e-5);
    }
  });
});
