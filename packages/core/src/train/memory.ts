import * as tf from '@tensorflow/tfjs-core';
import { OutOfMemoryError } from '../errors.js';
import { WasmAllocationError } from '../backends/errors.js';

/**
 * What a backend can hold, and what to do when a step would not fit.
 *
 * wasm: one WebAssembly memory of at most 4 GiB (wasm32) holds every tensor; growing past it aborts
 * the instance (`Aborted()`, or `memory access out of bounds` from a kernel), and nothing can be
 * read from it afterwards. Other backends have no fixed ceiling we can know in advance (tfjs-node
 * uses the process's memory; WebGPU's limits are per buffer).
 */
export const WASM_HEAP_LIMIT = 4 * 2 ** 30;

/** The bytes the current backend can hold at most, when it has a fixed ceiling (wasm), else undefined. */
export function backendMemoryLimit(backend = tf.getBackend()): number | undefined {
  return backend === 'wasm' ? WASM_HEAP_LIMIT : undefined;
}

/** Whether `err` is a backend running out of memory (wasm abort or out-of-bounds access, a failed allocation). */
export function isOutOfMemory(err: unknown): boolean {
  if (err instanceof OutOfMemoryError) return true;
  const msg = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return /Aborted\(|memory access out of bounds|Cannot enlarge memory|Out of memory|out of memory|OOM when allocating|Array buffer allocation failed|Invalid typed array length|Allocation failed/.test(msg);
}

export interface OutOfMemoryContext {
  /** What was running: 'a training step', 'evaluation'… */
  what: string;
  batchSize?: number;
  /** Micro-batch size and accumulation steps in use, when training. */
  microBatch?: number;
  /** Suggestions beyond the generic ones. */
  hints?: string[];
}

/** An `OutOfMemoryError` for `err` (a raw backend failure) saying what ran out and what to try. */
export function outOfMemoryError(err: unknown, ctx: OutOfMemoryContext): OutOfMemoryError {
  if (err instanceof OutOfMemoryError) return err;
  const backend = tf.getBackend() ?? 'unknown';
  const limit = backendMemoryLimit(backend);
  const where = limit ? `the ${backend} backend's ${(limit / 2 ** 30).toFixed(0)} GiB heap` : `memory on the ${backend} backend`;
  const batch = ctx.batchSize !== undefined ? ` at batch size ${ctx.batchSize}${ctx.microBatch !== undefined && ctx.microBatch < ctx.batchSize ? ` (micro-batches of ${ctx.microBatch})` : ''}` : '';
  const hints = [
    ...(ctx.hints ?? []),
    ...(ctx.batchSize !== undefined ? ['a smaller --batch-size, or --accum-steps N (the same update from N smaller micro-batches)'] : []),
    ...(ctx.what.includes('training') ? ['--grad-checkpointing (recompute each block in the backward pass instead of keeping it)'] : []),
    ...(backend !== 'tensorflow' ? ['--backend tensorflow (no heap ceiling; @tensorflow/tfjs-node, docs/backends.md)'] : []),
  ];
  const detail = err instanceof Error ? err.message.split('\n')[0]! : String(err);
  // An allocation refused before it happened (guardWasmMalloc) leaves the instance usable; an
  // abort or an out-of-bounds access does not.
  const dead = limit !== undefined && !(err instanceof WasmAllocationError);
  return new OutOfMemoryError(
    `Out of memory: ${ctx.what}${batch} did not fit in ${where} (${detail}).${dead ? ' The backend cannot be used any more in this process.' : ''} Try: ${hints.join('; ')}.`,
    backend,
    err,
  );
}

/** `err` as an `OutOfMemoryError` saying `ctx` when the backend ran out of memory, else `err` itself: `catch (e) { throw asOutOfMemory(e, ctx) }`. */
export function asOutOfMemory(err: unknown, ctx: OutOfMemoryContext): unknown {
  return isOutOfMemory(err) ? outOfMemoryError(err, ctx) : err;
}
