import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { vjp } from './grad.js';

/**
 * Activation checkpointing (timm's `set_grad_checkpointing`, PyTorch's `torch.utils.checkpoint`):
 * a checkpointed function runs its forward without recording anything for the backward pass but
 * its inputs, and its backward pass runs the forward again, under a tape, to get the gradients. A
 * network of checkpointed blocks then holds one tensor per block boundary instead of every
 * block's intermediates, for about one extra forward pass of compute.
 *
 * The recomputation must be the same computation: random draws (Dropout, DropPath take their
 * seeds from `Math.random`) are recorded in the first pass and replayed in the second, and layers
 * with side effects in training (BatchNorm's running statistics) skip them while
 * `isRecomputing()` is true.
 */

let recomputing = 0;
const PLAIN = Symbol('vit.plainForward');

let recomputations = 0;

/** How many checkpointed forwards have been recomputed in this process (for tests and benchmarks). */
export function recomputeCount(): number {
  return recomputations;
}

/** True while a checkpointed function's forward runs again in the backward pass. */
export function isRecomputing(): boolean {
  return recomputing > 0;
}

interface EngineInternals {
  state: { gradientDepth: number; kernelDepth: number };
  runKernelFunc(params: {
    forwardFunc: (backend: unknown, save: (tensors: tf.Tensor[]) => void) => tf.Tensor | tf.Tensor[];
    backwardsFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => Record<string, () => tf.Tensor>;
    inputs: Record<string, tf.Tensor>;
  }): tf.Tensor | tf.Tensor[];
}

/** True when a gradient tape is recording ops here (inside `valueAndGrads`, `tf.grad`…, outside any kernel). */
export function isRecording(): boolean {
  const s = (tf.engine() as unknown as EngineInternals).state;
  return s.gradientDepth > 0 && s.kernelDepth === 0;
}

/** Runs `fn` with `Math.random` answering from `draws` (replay) or recording into it. */
function withDraws<T>(draws: number[], replay: boolean, fn: () => T): T {
  const original = Math.random;
  let i = 0;
  Math.random = replay
    ? () => (i < draws.length ? draws[i++]! : original())
    : () => {
        const v = original();
        draws.push(v);
        return v;
      };
  try {
    return fn();
  } finally {
    Math.random = original;
  }
}

/**
 * `fn(...inputs)` (one tensor or an array of tensors) without keeping its intermediates for the
 * backward pass: only `inputs` are kept, and the backward pass recomputes `fn` to get the
 * gradients of `inputs` and of `params` (the trainable variables `fn` reads). With no tape
 * recording (inference) it is just `fn(...inputs)`. `fn` must be synchronous and must read no
 * trainable variable outside `params` (its gradient would be lost).
 */
export function checkpoint<T extends tf.Tensor | tf.Tensor[]>(fn: (...inputs: tf.Tensor[]) => T, inputs: tf.Tensor[], params: tf.Variable[]): T {
  if (!isRecording()) return fn(...inputs);
  const draws: number[] = [];
  let multi = false;
  const all: tf.Tensor[] = [...inputs, ...params];
  const named: Record<string, tf.Tensor> = {};
  all.forEach((t, i) => (named[i] = t));
  const out = (tf.engine() as unknown as EngineInternals).runKernelFunc({
    inputs: named,
    forwardFunc: (_backend, save) => {
      const y = withDraws(draws, false, () => fn(...inputs));
      multi = Array.isArray(y);
      save(inputs);
      return y;
    },
    backwardsFunc: (dy, saved) => {
      const dys = Array.isArray(dy) ? dy : [dy];
      recomputing++;
      recomputations++;
      let r: { values: tf.Tensor[]; grads: Array<tf.Tensor | null> };
      // Only float inputs have gradients (a boolean mask passed along has none).
      const diff = saved.map((t, i) => (t.dtype === 'float32' ? i : -1)).filter((i) => i >= 0);
      try {
        const xs = [...diff.map((i) => saved[i]!), ...params];
        r = withDraws(draws, true, () =>
          vjp(
            () => {
              const y = fn(...saved);
              return Array.isArray(y) ? y : [y];
            },
            xs,
            dys,
          ),
        );
      } finally {
        recomputing--;
      }
      tf.dispose(r.values);
      const grads: Record<string, () => tf.Tensor> = {};
      const at = new Map<number, number>();
      diff.forEach((i, j) => at.set(i, j));
      all.forEach((t, i) => {
        const j = i < inputs.length ? at.get(i) : diff.length + (i - inputs.length);
        const g = (j === undefined ? null : r.grads[j]) ?? tf.zeros(t.shape, 'float32');
        grads[i] = () => g;
      });
      return grads;
    },
  });
  return (multi ? out : Array.isArray(out) ? out[0] : out) as T;
}

/**
 * Makes each module's `forward` checkpointed (`enable`) or plain again. The modules are the units
 * of recomputation: a model's blocks or stages. Each call of a wrapped forward is checkpointed with
 * its tensor arguments as inputs and the module's trainable parameters as params; non-tensor
 * arguments pass through unchanged.
 */
export function setModuleCheckpointing(modules: Iterable<Module>, enable: boolean): void {
  for (const m of modules) {
    const holder = m as unknown as { forward: (...args: unknown[]) => unknown; [PLAIN]?: (...args: unknown[]) => unknown };
    if (enable) {
      if (holder[PLAIN]) continue;
      const plain = holder.forward;
      holder[PLAIN] = plain;
      holder.forward = function (this: Module, ...args: unknown[]) {
        if (!isRecording()) return plain.apply(this, args);
        // Tensors anywhere in the arguments (a mask inside an options object too) are inputs: the
        // recomputation runs after the caller has freed its own copies.
        const { leaves, rebuild } = tensorLeaves(args);
        if (leaves.length === 0) throw new ConfigError(`${m.constructor.name}: a checkpointed forward needs at least one tensor argument`);
        const run = (...ts: tf.Tensor[]) => {
          const y = plain.apply(this, rebuild(ts));
          if (!(y instanceof tf.Tensor) && !(Array.isArray(y) && y.every((t) => t instanceof tf.Tensor))) {
            throw new ConfigError(`${m.constructor.name}: a checkpointed forward must return a tensor or an array of tensors`);
          }
          return y as tf.Tensor | tf.Tensor[];
        };
        return checkpoint(run, leaves, m.parameters({ trainableOnly: true }));
      };
    } else if (holder[PLAIN]) {
      holder.forward = holder[PLAIN];
      delete holder[PLAIN];
    }
  }
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);

/** The tensors in `args` (at the top level, in arrays and plain objects) and a way to rebuild `args` with others in their places. */
function tensorLeaves(args: unknown[]): { leaves: tf.Tensor[]; rebuild: (ts: tf.Tensor[]) => unknown[] } {
  const leaves: tf.Tensor[] = [];
  const walk = (v: unknown): unknown => {
    if (v instanceof tf.Tensor) {
      leaves.push(v);
      return LEAF;
    }
    if (Array.isArray(v)) return v.map(walk);
    if (isPlainObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  const shape = args.map(walk);
  const rebuild = (ts: tf.Tensor[]) => {
    let i = 0;
    const fill = (v: unknown): unknown => {
      if (v === LEAF) return ts[i++];
      if (Array.isArray(v)) return v.map(fill);
      if (isPlainObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fill(x)]));
      return v;
    };
    return shape.map(fill);
  };
  return { leaves, rebuild };
}

const LEAF = Symbol('vit.tensorLeaf');

/** Whether `setModuleCheckpointing` wrapped this module's forward. */
export function isCheckpointed(m: Module): boolean {
  return (m as unknown as { [PLAIN]?: unknown })[PLAIN] !== undefined;
}
