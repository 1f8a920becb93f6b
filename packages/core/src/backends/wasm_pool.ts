import { nodeBuiltins } from '../platform/index.js';
import { isShared } from './wasm_asm.js';
import { gemmModuleBytes } from './wasm_gemm.js';
import { wasmThreadsStatus } from './wasm_threads.js';
import { geluModuleBytes, unaryModuleBytes } from './wasm_unary.js';

/*
 * Our kernels on every core. XNNPACK's operators run on the threaded build's pthread pool, but
 * ours (the GEMM of every transposed and batched product, the 1×1 convolutions and Linear layers,
 * GELU, exp, erf) ran on the main thread alone, so a training step on 2 cores spent most of its
 * time on one. Here the main thread hands lists of kernel calls to Node worker threads that
 * instantiate the same modules on the same shared heap, runs its own list, and waits for theirs
 * (`Atomics.wait`; a list is far longer than a wake-up). Each list writes its own part of the
 * output (rows, columns or batches of a product, a range of elements) and keeps each output
 * element's arithmetic, so results equal the one-thread kernels' bit for bit. Where a worker has
 * not started yet (they start on first use) or cannot, the main thread runs its list too.
 *
 * Node only: a browser's main thread may not block in `Atomics.wait`, and the single-threaded
 * build's heap is not shared.
 */

/** The kernels every pool runs: the module (shared-memory import) and its exported function. */
const KERNELS = {
  gemm: [() => gemmModuleBytes(true), 'gemm'],
  exp: [() => unaryModuleBytes('exp', true), 'unary'],
  erf: [() => unaryModuleBytes('erf', true), 'unary'],
  sign: [() => unaryModuleBytes('sign', true), 'unary'],
  gelu: [() => geluModuleBytes(false, true), 'gelu'],
  gelu_grad: [() => geluModuleBytes(true, true), 'gelu_grad'],
} as const;
/** A built-in kernel, or one registered with `KernelPool.register` (e.g. `dwconv:64`). */
export type PoolKernel = keyof typeof KERNELS | `${string}:${string}`;

/** One call: the kernel and its (i32) arguments. */
export type PoolCall = [PoolKernel, ...number[]];

/** Int32 slots per call: the kernel's index, then up to 15 arguments. */
const ARGS = 16;
/** Calls per worker per round (the control buffer's capacity; longer lists run here). */
const CAPACITY = 4096;
/** Int32 slots per worker in the control block (128 bytes: no two workers share a cache line). */
const SLOT = 32;
const SEQ = 0;
const DONE = 1;
const READY = 2;
const FAILED = 3;
const COUNT = 4;

/** The worker: instantiate the kernels on the shared heap, then run each list it is given. */
const WORKER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { modules, memory, control, calls, index, capacity, args, slot, port } = workerData;
const ctl = new Int32Array(control, index * slot * 4, slot);
const list = new Int32Array(calls, index * capacity * args * 4, capacity * args);
const fns = modules.map(([module, name]) => new WebAssembly.Instance(module, { env: { memory } }).exports[name]);
Atomics.store(ctl, ${READY}, 1);
let seen = 0;
for (;;) {
  Atomics.wait(ctl, ${SEQ}, seen);
  seen = Atomics.load(ctl, ${SEQ});
  try {
    // Kernels registered since: posted before the list that needs them.
    for (let m; (m = receiveMessageOnPort(port)); ) fns[m.message.index] = new WebAssembly.Instance(m.message.module, { env: { memory } }).exports[m.message.name];
    const n = ctl[${COUNT}];
    for (let i = 0; i < n; i++) {
      const o = i * args;
      fns[list[o]](list[o + 1], list[o + 2], list[o + 3], list[o + 4], list[o + 5], list[o + 6], list[o + 7], list[o + 8], list[o + 9], list[o + 10], list[o + 11], list[o + 12], list[o + 13], list[o + 14], list[o + 15]);
    }
  } catch (e) {
    Atomics.store(ctl, ${FAILED}, 1);
  }
  Atomics.store(ctl, ${DONE}, seen);
  Atomics.notify(ctl, ${DONE});
}
`;

interface NodePort {
  postMessage(message: unknown): void;
  close(): void;
}

interface NodeWorker {
  unref(): void;
  terminate(): Promise<number>;
  on(event: 'error' | 'exit', fn: (e?: unknown) => void): void;
}

type Fn = (...args: number[]) => void;

export class KernelPool {
  private readonly control: Int32Array;
  private readonly calls: Int32Array;
  private readonly workers: NodeWorker[] = [];
  private readonly local: Fn[];
  private readonly index = new Map<PoolKernel, number>();
  private readonly ports: NodePort[] = [];
  private dead = false;

  constructor(memory: WebAssembly.Memory, workers: number) {
    const wt = nodeBuiltins()!.workerThreads;
    const control = new SharedArrayBuffer(workers * SLOT * 4);
    const calls = new SharedArrayBuffer(workers * CAPACITY * ARGS * 4);
    this.control = new Int32Array(control);
    this.calls = new Int32Array(calls);
    const names = Object.keys(KERNELS) as Array<keyof typeof KERNELS>;
    const modules = names.map((k) => [new WebAssembly.Module(KERNELS[k][0]()), KERNELS[k][1]] as const);
    names.forEach((k, i) => this.index.set(k, i));
    this.memory = memory;
    this.local = modules.map(([module, name]) => new WebAssembly.Instance(module, { env: { memory } }).exports[name] as Fn);
    for (let index = 0; index < workers; index++) {
      const { port1, port2 } = new wt.MessageChannel();
      const w = new wt.Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { modules, memory, control, calls, index, capacity: CAPACITY, args: ARGS, slot: SLOT, port: port2 },
        transferList: [port2],
      }) as unknown as NodeWorker;
      (port1 as unknown as { unref(): void }).unref();
      this.ports.push(port1 as unknown as NodePort);
      // Never keeps the process alive; an error only takes this worker out of the pool.
      w.unref();
      w.on('error', () => Atomics.store(this.control, index * SLOT + READY, 0));
      w.on('exit', () => Atomics.store(this.control, index * SLOT + READY, 0));
      this.workers.push(w);
    }
  }

  private readonly memory: WebAssembly.Memory;

  /**
   * Adds a kernel (`key` such as `dwconv:64`: a module built for one shape) to this pool, once:
   * `build(true)` makes its module for the shared heap, `name` is its exported function.
   */
  register(key: PoolKernel, build: (shared: boolean) => Uint8Array<ArrayBuffer>, name: string): void {
    if (this.index.has(key)) return;
    const module = new WebAssembly.Module(build(true));
    const index = this.local.length;
    this.local.push(new WebAssembly.Instance(module, { env: { memory: this.memory } }).exports[name] as Fn);
    this.index.set(key, index);
    for (const port of this.ports) port.postMessage({ index, module, name });
  }

  /** Workers that have started and can take a list now. */
  ready(): number {
    let n = 0;
    for (let i = 0; i < this.workers.length; i++) if (!this.dead && Atomics.load(this.control, i * SLOT + READY) === 1) n++;
    return n;
  }

  /**
   * Runs `lists[0]` here and each further list on a ready worker (here as well where none is
   * free), and returns when all are done.
   */
  run(lists: PoolCall[][]): void {
    const busy: number[] = [];
    const local: PoolCall[][] = [lists[0] ?? []];
    let w = 0;
    for (const list of lists.slice(1)) {
      while (w < this.workers.length && Atomics.load(this.control, w * SLOT + READY) !== 1) w++;
      if (this.dead || w >= this.workers.length || list.length > CAPACITY) {
        local.push(list);
        continue;
      }
      const base = w * CAPACITY * ARGS;
      list.forEach(([kernel, ...args], i) => {
        this.calls[base + i * ARGS] = this.kernelIndex(kernel);
        this.calls.set(args, base + i * ARGS + 1);
      });
      const slot = w * SLOT;
      this.control[slot + COUNT] = list.length;
      Atomics.add(this.control, slot + SEQ, 1);
      Atomics.notify(this.control, slot + SEQ);
      busy.push(w++);
      dispatched++;
    }
    let error: unknown;
    try {
      for (const list of local) for (const [kernel, ...args] of list) this.local[this.kernelIndex(kernel)]!(...args);
    } catch (e) {
      error = e;
    }
    // Wait for every worker even after an error here: they write into buffers the caller frees.
    let failed = false;
    for (const i of busy) {
      const slot = i * SLOT;
      const seq = Atomics.load(this.control, slot + SEQ);
      while (Atomics.load(this.control, slot + DONE) !== seq) Atomics.wait(this.control, slot + DONE, Atomics.load(this.control, slot + DONE), 1000);
      if (Atomics.exchange(this.control, slot + FAILED, 0) === 1) failed = true;
    }
    if (error !== undefined) throw error;
    if (failed) throw new Error('wasm kernels: a worker thread failed to run its part of an op');
  }

  private kernelIndex(kernel: PoolKernel): number {
    const i = this.index.get(kernel);
    if (i === undefined) throw new Error(`wasm kernels: '${kernel}' is not registered with the pool`);
    return i;
  }

  /** Stops the workers (tests; the pool of a backend lives as long as the process). */
  async close(): Promise<void> {
    this.dead = true;
    for (const port of this.ports) port.close();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

const pools = new WeakMap<WebAssembly.Memory, KernelPool | null>();
let enabled = true;
let dispatched = 0;

/** Turns the worker threads of our kernels off (everything on the main thread) or on again: for tests and benchmarks. */
export function enableKernelThreads(on: boolean): void {
  enabled = on;
}

/** Lists of calls handed to worker threads so far, in this process (tests: proof that they ran). */
export function kernelThreadLists(): number {
  return dispatched;
}

/**
 * The pool of `workers` threads for this (shared) heap, made on first use; null where there is
 * none to be had (a browser, a heap that is not shared, a single thread, `VIT_WASM_KERNEL_THREADS=1`).
 */
export function kernelPool(memory: WebAssembly.Memory, workers: number): KernelPool | null {
  if (!enabled) return null;
  let pool = pools.get(memory);
  if (pool === undefined) {
    pool = null;
    if (workers >= 1 && poolPossible(memory)) {
      try {
        pool = new KernelPool(memory, workers);
      } catch {
        pool = null;
      }
    }
    pools.set(memory, pool);
  }
  return pool;
}

/**
 * Threads our kernels may use on this heap now: the main thread and the pool's ready workers (the
 * pool has as many threads as the wasm backend's XNNPACK pool); one, and no pool, when the op is
 * too small to be worth a wake-up (`worthIt` false).
 */
export function kernelThreads(memory: WebAssembly.Memory | null, worthIt = true): { threads: number; pool: KernelPool | null } {
  if (!worthIt) return { threads: 1, pool: null };
  const want = wasmThreadsStatus().threads ?? 1;
  const pool = memory && want > 1 ? kernelPool(memory, want - 1) : null;
  return { threads: pool ? 1 + pool.ready() : 1, pool };
}

/**
 * Runs `call(start, count)` for consecutive ranges of `0 … n` (range starts a multiple of `align`),
 * one range per thread of `pool`.
 */
export function shareOut(pool: KernelPool, threads: number, n: number, align: number, call: (start: number, count: number) => PoolCall): void {
  const share = Math.ceil(n / align / threads) * align;
  const lists: PoolCall[][] = [];
  for (let t = 0; t < threads; t++) {
    const start = t * share;
    const count = Math.min(share, n - start);
    lists.push(count > 0 ? [call(start, count)] : []);
  }
  pool.run(lists);
}

/**
 * Whether our kernels have as many threads on this heap as XNNPACK has: then our GEMM (with FMA)
 * is the faster one for plain products too. Not on a browser page with threads, where ours run on
 * the main thread alone and XNNPACK on all of them.
 */
export function keepsUpWithXnnpack(memory: WebAssembly.Memory): boolean {
  const xnnpack = wasmThreadsStatus().threads ?? 1;
  return (xnnpack > 1 && poolPossible(memory) ? xnnpack : 1) >= xnnpack;
}

/**
 * Whether this heap can have a pool (Node, a shared heap, not turned off by the environment).
 * Independent of `enableKernelThreads` and of whether the workers have started, so which kernel
 * runs a product never depends on timing.
 */
function poolPossible(memory: WebAssembly.Memory): boolean {
  return isShared(memory) && !!nodeBuiltins() && process.env.VIT_WASM_KERNEL_THREADS !== '1';
}

/** Elementwise ops below this many elements stay on one thread. */
export const ELEMENTWISE_PARALLEL_MIN = 1 << 16;

/**
 * Runs an elementwise SIMD kernel `(…inputs, output, n)` over `n` elements, split in ranges of
 * whole vectors over the pool's threads where it is worth it; false where it is not (the caller
 * runs it itself). The kernels handle ⌊n/4⌋·4 elements, as on one thread.
 */
export function parallelElementwise(memory: WebAssembly.Memory | null, kernel: PoolKernel, pointers: number[], n: number): boolean {
  const { threads, pool } = kernelThreads(memory, n >= ELEMENTWISE_PARALLEL_MIN);
  if (!pool || threads < 2) return false;
  shareOut(pool, threads, n, 4, (start, count) => [kernel, ...pointers.map((p) => p + start * 4), count]);
  return true;
}
