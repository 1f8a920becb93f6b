import * as tf from '@tensorflow/tfjs-core';
import { runStock, scoped, sizeOf, type BackendLike, type Info, type Scope } from './kernel_util.js';
import { gemmFor, type GemmFn } from './wasm_gemm.js';
import { keepsUpWithXnnpack, kernelThreads, type PoolCall } from './wasm_pool.js';

/**
 * BatchMatMul for the wasm backend. tfjs-backend-wasm 4.22 sends a product to XNNPACK's
 * fully-connected operator (~30 GFLOP/s) only when both operands have batch 1 and neither is
 * transposed; everything else — every backward matMul (they all transpose an operand) and every
 * batched product (attention) — runs a scalar C++ loop at ~1–2 GFLOP/s. This kernel keeps the
 * XNNPACK case (folding an untransposed right operand shared by the whole batch into it) and
 * sends the rest to our WebAssembly SIMD kernel (wasm_gemm.ts), which reads transposed and
 * broadcast operands through strides, straight from the backend's memory.
 * Where that kernel cannot be instantiated (no SIMD, or the module's memory is not reachable), it
 * falls back to XNNPACK: a right operand shared by the batch is folded into one `[B·M, K]·[K, N]` call,
 * otherwise the transposes are materialised and XNNPACK runs once per batch on *views* (ids
 * registered on offsets inside the batched buffers, so nothing is sliced or copied).
 * Both paths use tfjs-backend-wasm internals (`dataIdMap`, the module's memory, `_BatchMatMul`);
 * they are checked, and the stock kernel runs when they are missing.
 */

interface WasmModule {
  HEAPU8: Uint8Array;
  asm?: { memory?: unknown };
  wasmExports?: { memory?: unknown };
  /** The threaded build imports its (shared) memory instead of exporting it; the glue puts it here. */
  wasmMemory?: unknown;
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  _BatchMatMul(aId: number, aShape: number, aRank: number, bId: number, bShape: number, bRank: number, tA: number, tB: number, outId: number): void;
  tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
}
export interface WasmBackend extends BackendLike {
  wasm: WasmModule;
  dataIdMap: { get(dataId: tf.DataId): { id: number; memoryOffset: number } | undefined };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: Float32Array): Info;
}

function hasInternals(b: unknown): b is WasmBackend {
  const w = (b as Partial<WasmBackend>).wasm;
  return (
    w != null &&
    typeof w._BatchMatMul === 'function' &&
    typeof w._malloc === 'function' &&
    typeof w.tfjs?.registerTensor === 'function' &&
    typeof (b as WasmBackend).dataIdMap?.get === 'function' &&
    typeof (b as WasmBackend).dataIdNextNumber === 'number'
  );
}

/** XNNPACK fallback only: products per batch below this many multiply-adds stay on the stock loop. */
export const PER_BATCH_MIN_MACS = 4096;

/** The inner dimension is processed in chunks of this many (the packed panels stay in cache). */
export const GEMM_K_CHUNK = 256;
/** Rows of A per call (bounds the packed copy of A in the scratch buffer). */
export const GEMM_M_CHUNK = 2048;

let gemmEnabled = true;
let forwardOnOurs = true;

/**
 * Whether the plain products (batch 1, untransposed: Linear layers, 1×1 stride-1 convolutions) run
 * on our kernel (default, wherever ours has as many threads as XNNPACK: not on a browser page
 * with threads) or on XNNPACK's. Ours, with fused multiply-adds and our worker threads,
 * measured 1.1–1.6× XNNPACK's speed on the 1×1 convolutions of ConvNeXt-style blocks and 1.35–1.8×
 * on large matMuls (2 threads, 2 cores); `false` is for comparisons.
 */
export function routeForwardProducts(on: boolean): void {
  forwardOnOurs = on;
}

/**
 * Whether a plain product goes to our kernel: routed there (the default), and ours runs on as
 * many threads as XNNPACK (in a browser page with threads XNNPACK keeps them).
 */
function plainOnOurs(backend: unknown): boolean {
  if (!forwardOnOurs || !wasmGemm(backend)) return false;
  const memory = wasmMemory(backend);
  return memory !== null && keepsUpWithXnnpack(memory);
}

/** Turns our SIMD kernel off (XNNPACK fallbacks only), for tests and benchmarks. */
export function enableWasmGemm(enabled: boolean): void {
  gemmEnabled = enabled;
}

/** Our SIMD kernel on this backend's memory, or null (no SIMD, other internals). */
export function wasmGemm(backend: unknown): GemmFn | null {
  if (!gemmEnabled) return null;
  const memory = wasmMemory(backend);
  return memory ? gemmFor(memory) : null;
}

/**
 * The WebAssembly.Memory of a tfjs wasm backend, if it exposes one: the single-threaded builds
 * export it, the threaded build imports it (a shared memory) and its glue keeps it as
 * `Module.wasmMemory`.
 */
export function wasmMemory(backend: unknown): WebAssembly.Memory | null {
  const w = (backend as Partial<WasmBackend>).wasm;
  const memory = w?.asm?.memory ?? w?.wasmExports?.memory ?? w?.wasmMemory;
  return memory instanceof WebAssembly.Memory && hasInternals(backend) ? memory : null;
}

const HEAP_VIEWS = [
  ['HEAP8', Int8Array],
  ['HEAP16', Int16Array],
  ['HEAP32', Int32Array],
  ['HEAPU8', Uint8Array],
  ['HEAPU16', Uint16Array],
  ['HEAPU32', Uint32Array],
  ['HEAPF32', Float32Array],
  ['HEAPF64', Float64Array],
] as const;

/**
 * Re-creates the module's heap views (`Module.HEAPU8`…, which tfjs reads) when the memory has grown
 * since they were made. A non-shared memory detaches its old buffer on growth and emscripten's glue
 * replaces the views at once; a shared one (the threaded build) keeps the old SharedArrayBuffer,
 * which still sees only the old length, and the glue replaces the views only when the growth
 * happened on the main thread. Cheap when nothing changed (one identity check).
 */
export function refreshHeapViews(backend: unknown): void {
  const w = (backend as Partial<WasmBackend>).wasm;
  const memory = wasmMemory(backend);
  if (!w || !memory) return;
  const buffer = memory.buffer;
  if (w.HEAPU8.buffer === buffer) return;
  const views = w as unknown as Record<string, unknown>;
  for (const [name, View] of HEAP_VIEWS) if (name in views) views[name] = new View(buffer);
}

/** The heap's current buffer, for views we make ourselves (after any allocation). */
export function heapBuffer(backend: WasmBackend): ArrayBufferLike {
  refreshHeapViews(backend);
  return backend.wasm.HEAPU8.buffer;
}

/** `backend.typedArrayFromHeap(t)` on the heap as it is now (see `refreshHeapViews`). */
export function heapView<T extends Float32Array | Int32Array | Uint8Array = Float32Array | Int32Array | Uint8Array>(backend: unknown, t: Info): T {
  refreshHeapViews(backend);
  return (backend as { typedArrayFromHeap(info: Info): T }).typedArrayFromHeap(t);
}

/**
 * `bytes` from the wasm heap's allocator, as an unsigned byte address: `_malloc` returns an i32,
 * negative past 2 GiB (a typed array at that offset throws "Start offset … is outside the bounds";
 * tfjs does the same `>>> 0`). Passed back into wasm, the number wraps to the same i32 bits.
 */
export function wasmMalloc(backend: WasmBackend, bytes: number): number {
  return backend.wasm._malloc(bytes) >>> 0;
}

/** Byte offset of a tensor's data in the wasm heap. */
export function heapOffset(backend: WasmBackend, t: Info): number {
  return backend.dataIdMap.get(t.dataId)!.memoryOffset;
}

type KernelArgs = Parameters<tf.KernelFunc>[0];

const stock = (name: string, args: KernelArgs) => runStock(name, 'wasm', args) as Info;

/** Index of operand batch `i` of an output batch, under numpy broadcasting of the outer dims. */
function batchIndexer(outer: number[], operandOuter: number[]): (i: number) => number {
  const n = operandOuter.length;
  if (sizeOf(operandOuter) === sizeOf(outer)) return (i) => i;
  if (sizeOf(operandOuter) === 1) return () => 0;
  const shift = outer.length - n;
  return (i) => {
    let idx = 0;
    let stride = 1;
    let rem = i;
    const digits: number[] = new Array<number>(outer.length);
    for (let d = outer.length - 1; d >= 0; d--) {
      digits[d] = rem % outer[d]!;
      rem = Math.floor(rem / outer[d]!);
    }
    for (let d = n - 1; d >= 0; d--) {
      const dim = operandOuter[d]!;
      if (dim !== 1) idx += digits[d + shift]! * stride;
      stride *= dim;
    }
    return idx;
  };
}

/** `[…, r, c]` → `[batch, c, r]` (last two axes swapped), as a materialised tensor. */
function swapLast(s: Scope, x: Info, batch: number, r: number, c: number): Info {
  return s.transpose(s.reshape(x, [batch, r, c]), [0, 2, 1]);
}

export function batchMatMulWasm(args: KernelArgs): Info {
  const { a, b } = args.inputs as { a: Info; b: Info };
  const { transposeA, transposeB } = args.attrs as unknown as tf.BatchMatMulAttrs;
  const backend = args.backend;
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || !hasInternals(backend)) return stock(tf.BatchMatMul, args);
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const kb = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
  const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  if (k !== kb) {
    throw new Error(
      `Error in matMul: inner shapes (${k}) and (${kb}) of Tensors with shapes ${a.shape} and ${b.shape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  const batchA = sizeOf(outerA);
  const batchB = sizeOf(outerB);
  const batch = sizeOf(outer);
  const outShape = [...outer, m, n];
  const ours = plainOnOurs(backend);
  if (batch * m * n === 0 || k === 0 || (batch === 1 && !transposeA && !transposeB && !ours)) return stock(tf.BatchMatMul, args);
  if (batchB === 1 && batch === batchA && !transposeA && !transposeB && ours) {
    // A right operand shared by the whole batch: one product of batch·m rows.
    return plainProduct(backend, wasmGemm(backend)!, a, b, batch * m, k, n, outShape);
  }
  if (batchB === 1 && batch === batchA && !transposeA && !transposeB) {
    // A right operand shared by the whole batch (x[B, N, C]·W[C, D]): one XNNPACK call.
    return scoped(backend, 'wasm', (s) => {
      const y = s.run(tf.BatchMatMul, { a: s.reshape(a, [1, batch * m, k]), b: s.reshape(b, [1, k, n]) }, { transposeA: false, transposeB: false }, true);
      return s.reshape(y, outShape);
    });
  }
  const dims: BatchDims = { ia: batchIndexer(outer, outerA), ib: batchIndexer(outer, outerB), batch, m, k, n };
  const gemm = wasmGemm(backend);
  if (gemm) {
    const out = backend.makeOutput(outShape, 'float32');
    try {
      gemmBatches(backend, gemm, heapOffset(backend, a), heapOffset(backend, b), heapOffset(backend, out), transposeA, transposeB, dims);
    } catch (e) {
      backend.disposeData(out.dataId);
      throw e;
    }
    return out;
  }
  // (The stock loop only for unbroadcast batches: tfjs's cpu kernel, for one, mis-indexes
  // [2,1,…]·[1,3,…].)
  if (batchA === batch && batchB === batch && m * n * k < PER_BATCH_MIN_MACS) return stock(tf.BatchMatMul, args);
  return scoped(backend, 'wasm', (s) => {
    if (batchB === 1 && batch === batchA) {
      // One shared right operand: a single [batch·m, k]·[k, n] product.
      const a2 = transposeA ? swapLast(s, a, batchA, k, m) : a;
      const b2 = transposeB ? swapLast(s, b, 1, n, k) : b;
      const y = s.run(tf.BatchMatMul, { a: s.reshape(a2, [1, batch * m, k]), b: s.reshape(b2, [1, k, n]) }, { transposeA: false, transposeB: false }, true);
      return s.reshape(y, outShape);
    }
    const a3 = transposeA ? swapLast(s, a, batchA, k, m) : s.reshape(a, [batchA, m, k]);
    const b3 = transposeB ? swapLast(s, b, batchB, n, k) : s.reshape(b, [batchB, k, n]);
    const out = s.adopt(backend.makeOutput([batch, m, n], 'float32'));
    perBatch(backend, a3, b3, out, dims);
    return s.reshape(out, outShape);
  });
}

/** A broadcast batch of [m, k]·[k, n] products: output batch i multiplies A's batch ia(i) by B's ib(i). */
interface BatchDims {
  ia: (i: number) => number;
  ib: (i: number) => number;
  batch: number;
  m: number;
  k: number;
  n: number;
}

/** Products below this many multiply-adds stay on one thread (a wake-up costs more than they take). */
export const GEMM_PARALLEL_MIN_MACS = 1 << 20;

/**
 * Builds per-thread lists of `gemm` calls. A thread repacks B's panels only when its previous call
 * packed other ones (the same B pointer, K chunk and columns leave its scratch panels valid).
 */
class CallLists {
  readonly lists: PoolCall[][];
  private readonly packed: string[];
  constructor(
    threads: number,
    private readonly scratch: number,
    private readonly scratchBytes: number,
  ) {
    this.lists = Array.from({ length: threads }, () => []);
    this.packed = new Array<string>(threads).fill('');
  }
  /** `bias`: the byte address of this call's first bias column, or 0; used by the first K chunk only. */
  add(t: number, a: number, b: number, c: number, rows: number, cols: number, kk: number, st: Strides, acc: boolean, bias: number): void {
    if (rows <= 0 || cols <= 0) return;
    const key = `${b}:${kk}:${cols}`;
    const pack = this.packed[t] === key ? 0 : 1;
    this.packed[t] = key;
    this.lists[t]!.push(['gemm', a, b, c, this.scratch + t * this.scratchBytes, rows, cols, kk, st.sam, st.sak, st.sbk, st.sbn, st.ldc, pack, acc ? 1 : 0, acc ? 0 : bias]);
  }
}

interface Strides {
  sam: number;
  sak: number;
  sbk: number;
  sbn: number;
  ldc: number;
}

/**
 * Our kernel, once per output batch, K chunk and row chunk; operands read in place through
 * strides. On several threads, each takes whole batches (many products) or a share of each
 * product's rows (or, for a product of few rows, of its columns).
 */
function gemmBatches(
  backend: WasmBackend,
  gemm: GemmFn,
  aBase: number,
  bBase: number,
  cBase: number,
  tA: boolean,
  tB: boolean,
  { ia, ib, batch, m, k, n }: BatchDims,
  bias?: Info,
  accumulate = false,
): void {
  const kc = Math.min(k, GEMM_K_CHUNK);
  const mc = Math.min(m, GEMM_M_CHUNK);
  const { threads: available, pool } = kernelThreads(wasmMemory(backend), batch * m * n * k >= GEMM_PARALLEL_MIN_MACS);
  // Whole batches per thread where they divide well; else rows, or columns where there are fewer
  // rows than columns (each thread packs all of B for a share of the rows, all of A for a share
  // of the columns: the smaller operand is the one packed twice).
  const byBatch = available > 1 && (batch >= 4 * available || (batch >= available && batch % available === 0));
  const byCols = available > 1 && !byBatch && n >= 16 * available && (mc < 8 * available || mc < n);
  const threads = available > 1 && (byBatch || byCols || mc >= 8 * available) ? available : 1;
  const npad = Math.ceil(n / 8) * 8;
  // The kernel reads the bias 8 columns at a time: a copy padded to ⌈n/8⌉·8 after the scratch.
  const { scratch, bytes: scratchBytes } = gemmScratch(backend, threads, mc, n, kc, bias ? npad * 4 : 0);
  let biasPtr = 0;
  if (bias) {
    biasPtr = scratch + scratchBytes * threads;
    const heap = new Float32Array(heapBuffer(backend), biasPtr, npad);
    heap.set(heapView<Float32Array>(backend, bias));
    heap.fill(0, n);
  }
  // Byte strides of A[i, k] and B[k, j] inside one batch.
  const st: Strides = { sam: tA ? 4 : k * 4, sak: tA ? m * 4 : 4, sbk: tB ? 4 : n * 4, sbn: tB ? k * 4 : 4, ldc: n * 4 };
  const calls = new CallLists(threads, scratch, scratchBytes);
  const rowShare = Math.ceil(mc / 4 / threads) * 4;
  const colShare = Math.ceil(n / 8 / threads) * 8;
  for (let i = 0; i < batch; i++) {
    const ap = aBase + ia(i) * m * k * 4;
    const bp = bBase + ib(i) * k * n * 4;
    const cp = cBase + i * m * n * 4;
    const bt = byBatch ? Math.floor((i * threads) / batch) : 0;
    for (let k0 = 0; k0 < k; k0 += kc) {
      const kk = Math.min(kc, k - k0);
      for (let m0 = 0; m0 < m; m0 += mc) {
        const rows = Math.min(mc, m - m0);
        const [a0, b0, c0] = [ap + m0 * st.sam + k0 * st.sak, bp + k0 * st.sbk, cp + m0 * st.ldc];
        const acc = k0 > 0 || accumulate;
        if (threads === 1 || byBatch) calls.add(bt, a0, b0, c0, rows, n, kk, st, acc, biasPtr);
        else if (byCols)
          for (let t = 0; t < threads; t++) {
            const j0 = t * colShare;
            calls.add(t, a0, b0 + j0 * st.sbn, c0 + j0 * 4, rows, Math.min(colShare, n - j0), kk, st, acc, biasPtr && biasPtr + j0 * 4);
          }
        else for (let t = 0; t < threads; t++) calls.add(t, a0 + t * rowShare * st.sam, b0, c0 + t * rowShare * st.ldc, Math.min(rowShare, rows - t * rowShare), n, kk, st, acc, biasPtr);
      }
    }
  }
  runCalls(backend, gemm, calls, threads, pool, scratch);
}

/** `a` [·, k] · `b` [k, n] (+ `bias` [n], fused into the kernel) on our kernel, as `outShape`. */
export function plainProduct(backend: WasmBackend, gemm: GemmFn, a: Info, b: Info, m: number, k: number, n: number, outShape: number[], bias?: Info): Info {
  const out = backend.makeOutput(outShape, 'float32');
  try {
    productAt(backend, gemm, heapOffset(backend, a), heapOffset(backend, b), heapOffset(backend, out), m, k, n, { bias });
  } catch (e) {
    backend.disposeData(out.dataId);
    throw e;
  }
  return out;
}

/** Whether `bias` adds one value per output column (what the kernel can fuse). */
export const perColumn = (bias: Info | undefined, n: number): bias is Info => bias !== undefined && bias.dtype === 'float32' && sizeOf(bias.shape) === n && bias.shape[bias.shape.length - 1] === n;

/** One XNNPACK product per output batch on views into a3 [·, m, k], b3 [·, k, n] and out [batch, m, n]. */
function perBatch(
  backend: WasmBackend,
  a3: Info,
  b3: Info,
  out: Info,
  { ia, ib, batch, m, k, n }: BatchDims,
): void {
  const w = backend.wasm;
  const [aBase, bBase, oBase] = [a3, b3, out].map((t) => heapOffset(backend, t)) as [number, number, number];
  const view = (base: number, index: number, size: number): number => {
    const id = backend.dataIdNextNumber++;
    w.tfjs.registerTensor(id, size, base + index * size * 4);
    return id;
  };
  const bViews = new Map<number, number>();
  const shapes = wasmMalloc(backend, 24);
  try {
    new Int32Array(heapBuffer(backend), shapes, 6).set([1, m, k, 1, k, n]);
    // A right operand shared by several output batches keeps its view (and XNNPACK's packed copy).
    for (let i = 0; i < batch; i++) {
      const j = ib(i);
      let bId = bViews.get(j);
      if (bId === undefined) {
        bId = view(bBase, j, k * n);
        bViews.set(j, bId);
      }
      const aId = view(aBase, ia(i), m * k);
      const oId = view(oBase, i, m * n);
      w._BatchMatMul(aId, shapes, 3, bId, shapes + 12, 3, 0, 0, oId);
      // Disposing an id also frees the XNNPACK operator cached on it.
      w.tfjs.disposeData(aId);
      w.tfjs.disposeData(oId);
    }
  } finally {
    for (const id of bViews.values()) w.tfjs.disposeData(id);
    w._free(shapes);
  }
}

/**
 * _FusedMatMul (tf.fused.matMul: Linear layers) has the same slow path for transposed or batched
 * operands; route those through the kernel above, then bias and activation kernels.
 */
export function fusedMatMulWasm(args: KernelArgs): Info {
  const { a, b, bias, preluActivationWeights } = args.inputs as { a: Info; b: Info; bias?: Info; preluActivationWeights?: Info };
  const attrs = args.attrs as unknown as tf._FusedMatMulAttrs;
  const batchA = sizeOf(a.shape.slice(0, -2));
  const batchB = sizeOf(b.shape.slice(0, -2));
  const plain = !attrs.transposeA && !attrs.transposeB && batchA === 1 && batchB === 1;
  if ((plain && !plainOnOurs(args.backend)) || !hasInternals(args.backend)) return stock(tf._FusedMatMul, args);
  const gemm = wasmGemm(args.backend);
  if (plain && gemm && a.dtype === 'float32' && b.dtype === 'float32') {
    const [m, k] = a.shape.slice(-2) as [number, number];
    const n = b.shape[b.shape.length - 1]!;
    if (k !== b.shape[b.shape.length - 2] || m * n * k === 0) return stock(tf._FusedMatMul, args);
    const outShape = [...tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2)), m, n];
    const fuse = perColumn(bias, n);
    return scoped(args.backend, 'wasm', (s) => {
      const y = s.adopt(plainProduct(args.backend as WasmBackend, gemm, a, b, m, k, n, outShape, fuse ? bias : undefined));
      return s.biasAndActivation(y, fuse ? undefined : bias, attrs.activation, preluActivationWeights, attrs.leakyreluAlpha, '_FusedMatMul');
    });
  }
  return scoped(args.backend, 'wasm', (s) => {
    const y = s.adopt(batchMatMulWasm({ inputs: { a, b }, backend: args.backend, attrs: { transposeA: attrs.transposeA, transposeB: attrs.transposeB } }));
    return s.biasAndActivation(y, bias, attrs.activation, preluActivationWeights, attrs.leakyreluAlpha, '_FusedMatMul');
  });
}

/**
 * Stride-1 convolution arithmetic on our kernel with no im2col copy ("shift-GEMM"). With the batch
 * laid out as one tall padded map of width Wp (`[N·Hp·Wp, C]` rows of C floats), filter row a of a
 * k×k filter reads the map shifted by a·Wp pixels, and its k taps along the width read k
 * consecutive pixels: row r of that operand is the k·C floats from pixel r + a·Wp on, so it is a
 * matrix of k·C columns whose rows overlap (row stride C), read in place. Each filter row is one
 * product. `rows`: the pixels summed over, N·Hp·Wp less the largest shift and k − 1 (the
 * gradient dy, padded to the same layout, is zero on the border pixels and on those left out).
 * Each output element is computed by one thread with the same arithmetic whatever the thread
 * count. A filter gradient this way ran at 30–45 GFLOP/s on ResNet18's 3×3 layers (batch 32, 2
 * threads), XNNPACK's convolution over the batch axis at 20–30. The border pixels are extra work
 * (13% at 32×32, 2.25× at 4×4): on small maps the filter gradient runs as columns instead, and the
 * forward and input-gradient convolutions, which were no faster this way than XNNPACK's, run as
 * columns everywhere (conv_grads.ts).
 */
export interface ShiftGemm {
  rows: number;
  /** Per filter row, how many pixels the map is shifted by. */
  shifts: number[];
  /** Floats from one pixel of the map to the next (its channels). */
  rowStride: number;
}

/** Per-thread scratch for the kernel's packed panels (`bytes` each, for ≤ m rows, n columns, a K chunk kc), plus `extra` bytes after them. */
function gemmScratch(backend: WasmBackend, threads: number, m: number, n: number, kc: number, extra = 0): { scratch: number; bytes: number } {
  const bytes = (Math.ceil(n / 8) * 8 + Math.ceil(m / 4) * 4) * kc * 4;
  return { scratch: wasmMalloc(backend, bytes * threads + extra), bytes };
}

/** Runs per-thread call lists (on the pool where there are several), then frees `scratch`. */
function runCalls(backend: WasmBackend, gemm: GemmFn, calls: CallLists, threads: number, pool: ReturnType<typeof kernelThreads>['pool'], scratch: number): void {
  try {
    if (threads > 1 && pool) pool.run(calls.lists);
    else for (const [, ...args] of calls.lists[0]!) gemm(...(args as Parameters<GemmFn>));
  } finally {
    backend.wasm._free(scratch);
  }
}

/**
 * out[t] = A_tᵀ · d[0 … rows, :] for every filter row t (a filter gradient), A_t [rows, m] the m
 * floats from pixel r + shifts[t] of `a` on, `d` [rows, n] contiguous; out is [taps, m, n].
 * Threads take shares of the columns.
 */
export function shiftGemmPerTap(backend: WasmBackend, gemm: GemmFn, a: Info, d: Info, out: Info, g: ShiftGemm, m: number, n: number): void {
  const k = g.rows;
  const kc = Math.min(k, GEMM_K_CHUNK);
  const mc = Math.min(m, GEMM_M_CHUNK);
  const { threads: available, pool } = kernelThreads(wasmMemory(backend), m * n * k * g.shifts.length >= GEMM_PARALLEL_MIN_MACS);
  const threads = available > 1 && n >= 16 * available ? available : 1;
  const colShare = Math.ceil(n / 8 / threads) * 8;
  const { scratch, bytes } = gemmScratch(backend, threads, mc, colShare, kc);
  const st: Strides = { sam: 4, sak: g.rowStride * 4, sbk: n * 4, sbn: 4, ldc: n * 4 };
  const [aBase, dBase, cBase] = [a, d, out].map((t) => heapOffset(backend, t)) as [number, number, number];
  const calls = new CallLists(threads, scratch, bytes);
  g.shifts.forEach((shift, tap) => {
    for (let m0 = 0; m0 < m; m0 += mc) {
      const rows = Math.min(mc, m - m0);
      for (let k0 = 0; k0 < k; k0 += kc) {
        const a0 = aBase + ((shift + k0) * g.rowStride + m0) * 4;
        const c0 = cBase + (tap * m + m0) * n * 4;
        for (let t = 0; t < threads; t++) {
          const j0 = t * colShare;
          calls.add(t, a0, dBase + (k0 * n + j0) * 4, c0 + j0 * 4, rows, Math.min(colShare, n - j0), Math.min(kc, k - k0), st, k0 > 0, 0);
        }
      }
    }
  });
  runCalls(backend, gemm, calls, threads, pool, scratch);
}

/** The shift-GEMM layout of a stride-1 kh×kw conv over n padded hp×wp maps of `channels` floats per pixel. */
export function shiftLayout(n: number, hp: number, wp: number, kh: number, kw: number, channels: number): ShiftGemm {
  return { rows: n * hp * wp - ((kh - 1) * wp + kw - 1), shifts: Array.from({ length: kh }, (_, a) => a * wp), rowStride: channels };
}

/** Whether stride-1 convolutions should run on our kernel here (as plain products do). */
export function convOnOurs(backend: unknown): GemmFn | null {
  return plainOnOurs(backend) ? wasmGemm(backend) : null;
}

/**
 * C[m, n] (+)= A · B at byte addresses on the heap, C row-major; A [m, k] (or [k, m] read
 * transposed when `tA`), B [k, n] (or [n, k] when `tB`), read through strides; on our kernel and
 * its threads. `bias` [n] is fused; `accumulate` adds to C (then no bias): a convolution's products
 * over its columns.
 */
export function productAt(
  backend: WasmBackend,
  gemm: GemmFn,
  a: number,
  b: number,
  c: number,
  m: number,
  k: number,
  n: number,
  { tA = false, tB = false, bias, accumulate = false }: { tA?: boolean; tB?: boolean; bias?: Info; accumulate?: boolean } = {},
): void {
  gemmBatches(backend, gemm, a, b, c, tA, tB, { ia: () => 0, ib: () => 0, batch: 1, m, k, n }, accumulate ? undefined : bias, accumulate);
}
