import * as tf from '@tensorflow/tfjs-core';
import { runStock, sizeOf, stockKernel, type BackendLike, type Info } from './kernel_util.js';
import { heapOffset, heapView, wasmMemory, type WasmBackend } from './matmul_wasm.js';
import { colSumFor } from './wasm_reduce.js';
import { copyPlanned, copyRunsFor, planRuns, type Axis } from './wasm_runs.js';
import { parallelElementwise, type PoolKernel } from './wasm_pool.js';
import { erfScalar, geluFor, geluGradScalar, geluScalar, unaryFor, type UnaryOp } from './wasm_unary.js';

/**
 * Data-movement and reduction kernels for wasm whose stock versions are scalar C++ loops with
 * per-element index arithmetic (measured on [16,32,32,64], 1 M elements, ns per element: Reverse
 * 82, GatherV2 94, Tile 138, StridedSlice 66, Unpack 35, Sum over leading or middle axes 3–20, against
 * ~0.5 for Add or Pad). Copies here move whole contiguous runs with `TypedArray.set` on views of
 * the wasm heap; reductions over a block of axes are a SIMD column sum.
 */

type Values = Float32Array | Int32Array | Uint8Array;
interface WasmCopyBackend extends BackendLike {
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: Values): Info;
  readSync(dataId: tf.DataId): unknown;
}
type KernelArgs = Parameters<tf.KernelFunc>[0];

const COPYABLE = new Set(['float32', 'int32', 'bool']);

const stock = (name: string, args: KernelArgs) => runStock(name, 'wasm', args);

/**
 * out[i0, …, ik] = src[begin0 + i0·step0, …] for every output index (steps may be negative).
 * Runs along the last axis are copied with `set` when its step is 1.
 */
function stridedCopy(src: Values, srcShape: number[], begin: number[], step: number[], outShape: number[], dst: Values): void {
  const rank = outShape.length;
  if (rank === 0) {
    dst[0] = src[0]!;
    return;
  }
  const strides = new Array<number>(rank);
  let s = 1;
  for (let d = rank - 1; d >= 0; d--) {
    strides[d] = s;
    s *= srcShape[d]!;
  }
  const last = rank - 1;
  const runLen = outShape[last]!;
  const lastStep = step[last]! * strides[last]!;
  const rows = sizeOf(outShape) / Math.max(runLen, 1);
  if (runLen === 0 || rows === 0) return;
  const idx = new Array<number>(rank).fill(0);
  let o = 0;
  for (let r = 0; r < rows; r++) {
    let from = begin[last]! * strides[last]!;
    for (let d = 0; d < last; d++) from += (begin[d]! + idx[d]! * step[d]!) * strides[d]!;
    if (lastStep === 1) {
      dst.set(src.subarray(from, from + runLen), o);
      o += runLen;
    } else {
      for (let j = 0; j < runLen; j++, from += lastStep) dst[o++] = src[from]!;
    }
    for (let d = last - 1; d >= 0; d--) {
      if (++idx[d]! < outShape[d]!) break;
      idx[d] = 0;
    }
  }
}

/** Output buffer and heap views (taken after the allocation, which may grow the heap). */
function output(backend: WasmCopyBackend, x: Info, shape: number[], dtype = x.dtype): { out: Info; src: Values; dst: Values } {
  const out = backend.makeOutput(shape, dtype);
  return { out, src: heapView(backend, x), dst: heapView(backend, out) };
}

/**
 * Identity shares the buffer (one more reference), as tfjs's cpu backend does; the stock wasm
 * kernel copies it. The engine runs Identity on every tensor it saves for the backward pass, so
 * the stock kernel copies most activations of a training step once more. Sharing is safe because
 * no kernel writes into its inputs and a variable's assign swaps buffers rather than writing.
 */
export function identityWasm(args: KernelArgs): Info | Info[] {
  const { x } = args.inputs as { x: Info };
  if (x.dtype === 'string') return stock(tf.Identity, args);
  (args.backend as WasmCopyBackend).incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
}

export function reverseWasm(args: KernelArgs): Info | Info[] {
  const { x } = args.inputs as { x: Info };
  const { dims } = args.attrs as unknown as tf.ReverseAttrs;
  if (!COPYABLE.has(x.dtype)) return stock(tf.Reverse, args);
  const axes = tf.util.parseAxisParam(dims, x.shape);
  const backend = args.backend as WasmCopyBackend;
  const { out, src, dst } = output(backend, x, [...x.shape]);
  const begin = x.shape.map((d, i) => (axes.includes(i) ? d - 1 : 0));
  const step = x.shape.map((_, i) => (axes.includes(i) ? -1 : 1));
  stridedCopy(src, x.shape, begin, step, x.shape, dst);
  return out;
}

export function stridedSliceWasm(args: KernelArgs): Info | Info[] {
  const { x } = args.inputs as { x: Info };
  const a = args.attrs as unknown as tf.StridedSliceAttrs;
  if (!COPYABLE.has(x.dtype)) return stock(tf.StridedSlice, args);
  const info = tf.slice_util.sliceInfo(x.shape, a.begin, a.end, a.strides, a.beginMask, a.endMask, a.ellipsisMask, a.newAxisMask, a.shrinkAxisMask);
  if (info.isIdentity || info.isSimpleSlice || info.finalShapeSparse.some((d) => d === 0)) return stock(tf.StridedSlice, args);
  const dense = x.shape.map((_, i) => {
    const st = info.strides[i]!;
    return Math.max(0, st > 0 ? Math.ceil((info.end[i]! - info.begin[i]!) / st) : Math.ceil((info.begin[i]! - info.end[i]!) / -st));
  });
  const backend = args.backend as WasmCopyBackend;
  const { out, src, dst } = output(backend, x, info.finalShape);
  stridedCopy(src, x.shape, info.begin, info.strides, dense, dst);
  return out;
}

export function tileWasm(args: KernelArgs): Info | Info[] {
  const { x } = args.inputs as { x: Info };
  const { reps } = args.attrs as unknown as tf.TileAttrs;
  if (!COPYABLE.has(x.dtype) || x.shape.length === 0) return stock(tf.Tile, args);
  const backend = args.backend as WasmCopyBackend;
  const shape = x.shape.map((d, i) => d * reps[i]!);
  const { out, src, dst } = output(backend, x, shape);
  const rank = shape.length;
  const rowLen = x.shape[rank - 1]!;
  const rows = sizeOf(shape) / Math.max(shape[rank - 1]!, 1);
  if (rowLen === 0 || rows === 0) return out;
  const strides = tf.util.computeStrides(x.shape);
  const idx = new Array<number>(rank).fill(0);
  let o = 0;
  for (let r = 0; r < rows; r++) {
    let from = 0;
    for (let d = 0; d < rank - 1; d++) from += (idx[d]! % x.shape[d]!) * strides[d]!;
    const row = src.subarray(from, from + rowLen);
    for (let k = 0; k < reps[rank - 1]!; k++, o += rowLen) dst.set(row, o);
    for (let d = rank - 2; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}

export function gatherWasm(args: KernelArgs): Info | Info[] {
  const { x, indices } = args.inputs as { x: Info; indices: Info };
  const { axis, batchDims } = args.attrs as unknown as tf.GatherV2Attrs;
  if (!COPYABLE.has(x.dtype)) return stock(tf.GatherV2, args);
  const backend = args.backend as WasmCopyBackend;
  const parsedAxis = tf.util.parseAxisParam(axis, x.shape)[0]!;
  const dim = x.shape[parsedAxis]!;
  const idx = heapView(backend, indices);
  for (let i = 0; i < idx.length; i++) {
    if (!(idx[i]! >= 0 && idx[i]! <= dim - 1)) throw new Error(`GatherV2: the index value ${idx[i]} is not in [0, ${dim - 1}]`);
  }
  const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(x as tf.Tensor, indices as tf.Tensor, parsedAxis, batchDims);
  const { batchSize, outerSize, dimSize, sliceSize } = info;
  const perBatch = idx.length / Math.max(batchSize, 1);
  const { out, src, dst } = output(backend, x, info.outputShape);
  const ids = heapView(backend, indices); // again: the allocation may have grown the heap
  let o = 0;
  for (let b = 0; b < batchSize; b++) {
    for (let q = 0; q < outerSize; q++) {
      const base = (b * outerSize + q) * dimSize;
      for (let i = 0; i < perBatch; i++) {
        const from = (base + ids[b * perBatch + i]!) * sliceSize;
        if (sliceSize >= 16) dst.set(src.subarray(from, from + sliceSize), o);
        else for (let j = 0; j < sliceSize; j++) dst[o + j] = src[from + j]!;
        o += sliceSize;
      }
    }
  }
  return out;
}

export function unpackWasm(args: KernelArgs): Info | Info[] {
  const { value } = args.inputs as { value: Info };
  const { axis } = args.attrs as unknown as tf.UnpackAttrs;
  const ax = axis < 0 ? axis + value.shape.length : axis;
  const num = value.shape[ax]!;
  const outShape = value.shape.filter((_, i) => i !== ax);
  const begin = new Array<number>(value.shape.length).fill(0);
  const size = [...value.shape];
  size[ax] = 1;
  const slice = stockKernel(tf.Slice, 'wasm')!.kernelFunc;
  const reshape = stockKernel(tf.Reshape, 'wasm')!.kernelFunc;
  const backend = args.backend as WasmCopyBackend;
  const outs: Info[] = [];
  for (let i = 0; i < num; i++) {
    begin[ax] = i;
    const piece = slice({ inputs: { x: value }, backend, attrs: { begin: [...begin], size } }) as Info;
    outs.push(reshape({ inputs: { x: piece }, backend, attrs: { shape: outShape } }) as Info);
    backend.disposeData(piece.dataId);
  }
  return outs;
}

/**
 * Sum and Mean over one contiguous block of axes that is not the last ([pre, R, post] → [pre,
 * post]): our SIMD column sum (wasm_reduce.ts). The stock kernels transpose the reduced axes to the
 * end, then loop. Other axis sets, and reductions over the last axis (already fast), keep the
 * stock kernels.
 */
function blockReduce(args: KernelArgs, mean: boolean): Info | Info[] {
  const name = mean ? tf.Mean : tf.Sum;
  const { x } = args.inputs as { x: Info };
  const { axis, keepDims } = args.attrs as unknown as tf.SumAttrs;
  const axes = tf.util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
  const contiguous = axes.length > 0 && axes.every((a, i) => a === axes[0]! + i);
  const r = sizeOf(axes.map((a) => x.shape[a]!));
  const pre = sizeOf(x.shape.slice(0, axes[0] ?? 0));
  const post = sizeOf(x.shape) / Math.max(r * pre, 1);
  const memory = wasmMemory(args.backend);
  const colSum = memory ? colSumFor(memory) : null;
  if (!colSum || x.dtype !== 'float32' || !contiguous || post < 2 || r < 2) return stock(name, args);
  const backend = args.backend as WasmCopyBackend & WasmBackend;
  const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
  const out = backend.makeOutput(outShape, 'float32');
  colSum(heapOffset(backend, x), heapOffset(backend, out), pre, r, post);
  if (mean) {
    const y = heapView(backend, out);
    for (let i = 0; i < y.length; i++) y[i]! /= r;
  }
  return out;
}

export const sumWasm = (args: KernelArgs) => blockReduce(args, false);
export const meanWasm = (args: KernelArgs) => blockReduce(args, true);

/**
 * An elementwise float32 kernel through one of our SIMD functions (wasm_unary.ts): `simd` takes
 * the inputs' heap offsets, the output's and the element count, and handles ⌊n/4⌋·4 elements;
 * `scalar` computes the n % 4 leftovers in JS.
 */
function simdElementwise(
  args: KernelArgs,
  inputs: Info[],
  simd: (...offsetsAndCount: number[]) => void,
  scalar: (...values: number[]) => number,
  kernel: PoolKernel,
): Info {
  const backend = args.backend as WasmCopyBackend & WasmBackend;
  const shape = inputs[0]!.shape;
  const out = backend.makeOutput([...shape], 'float32');
  const n = sizeOf(shape);
  const pointers = [...inputs.map((t) => heapOffset(backend, t)), heapOffset(backend, out)];
  // On the pool's threads where it has them and n is large; else here.
  if (!parallelElementwise(wasmMemory(backend), kernel, pointers, n)) simd(...pointers, n);
  if (n % 4) {
    const xs = inputs.map((t) => heapView(backend, t));
    const ys = heapView(backend, out);
    for (let i = n - (n % 4); i < n; i++) ys[i] = scalar(...xs.map((v) => v[i]!));
  }
  return out;
}

/** Exp and Erf through our SIMD kernels; the stock kernel for other dtypes or without SIMD. */
const UNARY = { exp: [tf.Exp, Math.exp], erf: [tf.Erf, erfScalar], sign: [tf.Sign, Math.sign] } as const;

function unary(args: KernelArgs, op: UnaryOp): Info | Info[] {
  const { x } = args.inputs as { x: Info };
  const memory = wasmMemory(args.backend);
  const fn = memory ? unaryFor(memory, op) : null;
  const [name, scalar] = UNARY[op];
  if (!fn || x.dtype !== 'float32') return stock(name, args);
  return simdElementwise(args, [x], fn as (...a: number[]) => void, scalar, op);
}

export const expWasm = (args: KernelArgs) => unary(args, 'exp');
export const erfWasm = (args: KernelArgs) => unary(args, 'erf');
export const signWasm = (args: KernelArgs) => unary(args, 'sign');

/** Kernel names of the fused exact GELU (nn/activation.ts `geluErf` runs them where registered). */
export const GELU_ERF = 'VitGeluErf';
export const GELU_ERF_GRAD = 'VitGeluErfGrad';

/** y = GELU(x) in one SIMD pass (wasm_unary.ts), bit-identical to the composed kernels. */
export function geluWasm(args: KernelArgs): Info {
  const { x } = args.inputs as { x: Info };
  const memory = wasmMemory(args.backend);
  const fn = memory ? geluFor(memory, false) : null;
  if (!fn || x.dtype !== 'float32') throw new Error(`${GELU_ERF}: needs a float32 input on the wasm backend with SIMD`);
  return simdElementwise(args, [x], fn as (...a: number[]) => void, geluScalar, 'gelu');
}

/** dx = dy·GELU'(x) in one SIMD pass. */
export function geluGradWasm(args: KernelArgs): Info {
  const { x, dy } = args.inputs as { x: Info; dy: Info };
  const memory = wasmMemory(args.backend);
  const fn = memory ? geluFor(memory, true) : null;
  if (!fn || x.dtype !== 'float32' || dy.dtype !== 'float32') throw new Error(`${GELU_ERF_GRAD}: needs float32 inputs on the wasm backend with SIMD`);
  return simdElementwise(args, [x, dy], fn as (...a: number[]) => void, geluGradScalar as (...v: number[]) => number, 'gelu_grad');
}

/** Whether the fused GELU kernels can run here (wasm with SIMD: our assembler's modules instantiate). */
export function geluWasmAvailable(backend: unknown): boolean {
  const memory = wasmMemory(backend as Parameters<typeof wasmMemory>[0]);
  return !!memory && !!geluFor(memory, false) && !!geluFor(memory, true);
}

/** Row-major strides of a shape, in elements (tfjs's leave out the last one, 1). */
const stridesOf = (shape: number[]) => [...tf.util.computeStrides(shape), 1];

/**
 * The SIMD run copy of `x`'s block over `axes` (see planRuns), or null where it does not apply: no
 * SIMD, a dtype that is not 4 bytes, or data that moves one element at a time.
 */
function blockCopy(backend: WasmCopyBackend & WasmBackend, x: Info, axes: Axis[]): ((offset: number, out: Info) => void) | null {
  const memory = wasmMemory(backend);
  const fn = memory && (x.dtype === 'float32' || x.dtype === 'int32') ? copyRunsFor(memory) : null;
  const plan = fn ? planRuns(axes) : null;
  if (!fn || !plan) return null;
  // out ← the block at element `offset` of x
  return (offset, out) => copyPlanned(fn, heapOffset(backend, x) + offset * 4, heapOffset(backend, out), plan);
}

/**
 * Transpose where the last axis stays last (head splits and merges, window partitions): runs of
 * the last axis copied by our SIMD kernel. Other permutations move single elements: stock.
 */
export function transposeWasm(args: KernelArgs): Info | Info[] {
  const { x } = args.inputs as { x: Info };
  const { perm } = args.attrs as unknown as tf.TransposeAttrs;
  const st = stridesOf(x.shape);
  const axes = perm.map((p) => ({ n: x.shape[p]!, stride: st[p]! }));
  const backend = args.backend as WasmCopyBackend & WasmBackend;
  const copy = sizeOf(x.shape) > 0 ? blockCopy(backend, x, axes) : null;
  if (!copy) return stock(tf.Transpose, args);
  const out = backend.makeOutput(perm.map((p) => x.shape[p]!), x.dtype);
  copy(0, out);
  return out;
}

/** A slice of `x` as a new tensor through the SIMD run copy, or null where it does not apply. */
function sliceBlock(backend: WasmCopyBackend & WasmBackend, x: Info, begin: number[], size: number[]): Info | null {
  const st = stridesOf(x.shape);
  const copy = sizeOf(size) > 0 ? blockCopy(backend, x, size.map((n, d) => ({ n, stride: st[d]! }))) : null;
  if (!copy) return null;
  const out = backend.makeOutput([...size], x.dtype);
  copy(begin.reduce((o, b, d) => o + b * st[d]!, 0), out);
  return out;
}

/** Slice (the stock kernel copies in JS, one `set` per run: 4–15 ns per element on 3-D slices). */
export function sliceWasm(args: KernelArgs): Info | Info[] {
  const { x } = args.inputs as { x: Info };
  const { begin, size } = args.attrs as unknown as tf.SliceAttrs;
  const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
  return sliceBlock(args.backend as WasmCopyBackend & WasmBackend, x, b, s) ?? stock(tf.Slice, args);
}

/** SplitV: one block copy per piece (the qkv split of attention). */
export function splitVWasm(args: KernelArgs): Info | Info[] {
  const { x } = args.inputs as { x: Info };
  const { numOrSizeSplits, axis } = args.attrs as unknown as tf.SplitVAttrs;
  const ax = tf.util.parseAxisParam(axis, x.shape)[0]!;
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
  const backend = args.backend as WasmCopyBackend & WasmBackend;
  const begin = new Array<number>(x.shape.length).fill(0);
  const outs: Info[] = [];
  for (const n of sizes) {
    const size = [...x.shape];
    size[ax] = n;
    const piece = sliceBlock(backend, x, begin, size);
    if (!piece) {
      for (const o of outs) backend.disposeData(o.dataId);
      return stock(tf.SplitV, args);
    }
    outs.push(piece);
    begin[ax]! += n;
  }
  return outs;
}
