import { nodeBuiltins } from '../platform/index.js';
import { isShared } from './wasm_asm.js';
import { gemmModuleBytes, type GemmFn } from './wasm_gemm.js';

/*
 * Our GEMM on every core. XNNPACK's products run on the threaded build's pthread pool, but ours
 * (every transposed and batched product: the whole backward pass of a Linear or a convolution, and
 * attention) ran on the main thread alone, so a training step on 2 cores spent most of its time on
 * one. Here the main thread hands lists of `gemm` calls to Node worker threads that instantiate the
 * same kernel on the same shared heap, runs its own list, and waits for theirs (`Atomics.wait`;
 * a product is far longer than a wake-up). Each list writes its own rows, columns or batches of
 * the output and keeps each output element's summation order, so results equal the one-thread
 * kernel's bit for bit. Where a worker has not started yet (they start on first use) or cannot,
 * the main thread runs its list too.
 *
 * Node only: a browser's main thread may not block in `Atomics.wait`, and the single-threaded
 * build's heap is not shared.
 */

/** Arguments of one `gemm` call (see `GemmFn`). */
export type GemmCall = Parameters<GemmFn>;
const ARGS = 14;

/** Calls per worker per round (the control buffer's capacity; longer lists run in rounds). */
const CAPACITY = 4096;
/** Int32 slots per worker in the control block (128 bytes: no two workers share a cache line). */
const SLOT = 32;
const SEQ = 0;
const DONE = 1;
const READY = 2;
const FAILED = 3;
const COUNT = 4;

/** The worker: instantiate the kernel on the shared heap, then run each list it is given. */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, control, calls, index, capacity, args, slot } = workerData;
const ctl = new Int32Array(control, index * slot * 4, slot);
const list = new Int32Array(calls, index * capacity * args * 4, capacity * args);
const gemm = new WebAssembly.Instance(module, { env: { memory } }).exports.gemm;
Atomics.store(ctl, ${READY}, 1);
let seen = 0;
for (;;) {
  Atomics.wait(ctl, ${SEQ}, seen);
  seen = Atomics.load(ctl, ${SEQ});
  try {
    const n = ctl[${COUNT}];
    for (let i = 0; i < n; i++) {
      const o = i * args;
      gemm(list[o], list[o + 1], list[o + 2], list[o + 3], list[o + 4], list[o + 5], list[o + 6], list[o + 7], list[o + 8], list[o + 9], list[o + 10], list[o + 11], list[o + 12], list[o + 13]);
    }
  } catch (e) {
    Atomics.store(ctl, ${FAILED}, 1);
  }
  Atomics.store(ctl, ${DONE}, seen);
  Atomics.notify(ctl, ${DONE});
}
`;

interface NodeWorker {
  unref(): void;
  terminate(): Promise<number>;
  on(event: 'error' | 'exit', fn: (e?: unknown) => void): void;
}

export class GemmPool {
  private readonly control: Int32Array;
  private readonly calls: Int32Array;
  private readonly workers: NodeWorker[] = [];
  private dead = false;

  constructor(memory: WebAssembly.Memory, workers: number) {
    const wt = nodeBuiltins()!.workerThreads;
    const control = new SharedArrayBuffer(workers * SLOT * 4);
    const calls = new SharedArrayBuffer(workers * CAPACITY * ARGS * 4);
    this.control = new Int32Array(control);
    this.calls = new Int32Array(calls);
    const module = new WebAssembly.Module(gemmModuleBytes(true));
    for (let index = 0; index < workers; index++) {
      const w = new wt.Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { module, memory, control, calls, index, capacity: CAPACITY, args: ARGS, slot: SLOT },
      }) as unknown as NodeWorker;
      // Never keeps the process alive; an error only takes this worker out of the pool.
      w.unref();
      w.on('error', () => Atomics.store(this.control, index * SLOT + READY, 0));
      w.on('exit', () => Atomics.store(this.control, index * SLOT + READY, 0));
      this.workers.push(w);
    }
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
  run(gemm: GemmFn, lists: GemmCall[][]): void {
    const busy: number[] = [];
    const local: GemmCall[][] = [lists[0] ?? []];
    let w = 0;
    for (const list of lists.slice(1)) {
      while (w < this.workers.length && Atomics.load(this.control, w * SLOT + READY) !== 1) w++;
      if (this.dead || w >= this.workers.length || list.length > CAPACITY) {
        local.push(list);
        continue;
      }
      const base = w * CAPACITY * ARGS;
      list.forEach((call, i) => this.calls.set(call, base + i * ARGS));
      const slot = w * SLOT;
      this.control[slot + COUNT] = list.length;
      Atomics.add(this.control, slot + SEQ, 1);
      Atomics.notify(this.control, slot + SEQ);
      busy.push(w++);
      dispatched++;
    }
    let error: unknown;
    try {
      for (const list of local) for (const call of list) gemm(...call);
    } catch (e) {
      error = e;
    }
    let failed = false;
    for (const i of busy) {
      const slot = i * SLOT;
      const seq = Atomics.load(this.control, slot + SEQ);
      while (Atomics.load(this.control, slot + DONE) !== seq) Atomics.wait(this.control, slot + DONE, Atomics.load(this.control, slot + DONE), 1000);
      if (Atomics.exchange(this.control, slot + FAILED, 0) === 1) failed = true;
    }
    if (error !== undefined) throw error;
    if (failed) throw new Error('wasm GEMM: a worker thread failed to run its part of a product');
  }

  /** Stops the workers (tests; the pool of a backend lives as long as the process). */
  async close(): Promise<void> {
    this.dead = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

const pools = new WeakMap<WebAssembly.Memory, GemmPool | null>();
let enabled = true;
let dispatched = 0;

/** Turns the worker threads of our GEMM off (everything on the main thread) or on again: for tests and benchmarks. */
export function enableGemmThreads(on: boolean): void {
  enabled = on;
}

/** Lists of calls handed to worker threads so far, in this process (tests: proof that they ran). */
export function gemmThreadLists(): number {
  return dispatched;
}

/**
 * The pool of `workers` threads for this (shared) heap, made on first use; null where there is
 * none to be had (a browser, a heap that is not shared, a single thread).
 */
export function gemmPool(memory: WebAssembly.Memory, workers: number): GemmPool | null {
  if (!enabled) return null;
  let pool = pools.get(memory);
  if (pool === undefined) {
    pool = null;
    if (workers >= 1 && isShared(memory) && nodeBuiltins() && process.env.VIT_WASM_GEMM_THREADS !== '1') {
      try {
        pool = new GemmPool(memory, workers);
      } catch {
        pool = null;
      }
    }
    pools.set(memory, pool);
  }
  return pool;
}
