import * as tf from '@tensorflow/tfjs-core';

/**
 * Bytes of distinct tensor buffers, live and at their peak, while a tracker runs.
 *
 * `tf.memory().numBytes` and `tf.profile`'s `peakBytes` count bytes per tensor OBJECT: a reshape,
 * a clone and each tensor autodiff saves for the backward pass share their data but are counted
 * again, so they overstate what is allocated (by 2× and more in a training step). This counts a
 * buffer when the engine first registers its data id and uncounts it when the backend frees it,
 * which is what the backend really holds (a kernel's own scratch space aside).
 */
export interface BufferTracker {
  /** Bytes of buffers alive now (all of them, not only those made since `start`). */
  readonly current: number;
  /** Largest `current` seen since start (or the last `resetPeak`). */
  readonly peak: number;
  resetPeak(): void;
  stop(): void;
}

interface EngineHooks {
  state: { tensorInfo: WeakMap<object, { bytes: number }> };
  trackTensor(a: tf.Tensor, backend?: unknown): void;
  removeDataId(dataId: object, backend: unknown): void;
}

interface Counter {
  current: number;
  peak: number;
}

const active = new Set<Counter>();
let installed: { trackTensor: EngineHooks['trackTensor']; removeDataId: EngineHooks['removeDataId']; engine: EngineHooks } | null = null;
/** Bytes of every buffer registered while any tracker was installed, by data id (0 before). */
let live = 0;
let seeded = false;

function install(): void {
  const engine = tf.engine() as unknown as EngineHooks;
  if (installed && installed.engine === engine) return;
  const trackTensor = engine.trackTensor;
  const removeDataId = engine.removeDataId;
  installed = { trackTensor, removeDataId, engine };
  engine.trackTensor = function (this: EngineHooks, a: tf.Tensor, backend?: unknown) {
    const isNew = !this.state.tensorInfo.has(a.dataId);
    trackTensor.call(this, a, backend);
    if (isNew) {
      live += this.state.tensorInfo.get(a.dataId)?.bytes ?? 0;
      for (const c of active) if (live > c.peak) c.peak = live;
    }
  };
  engine.removeDataId = function (this: EngineHooks, dataId: object, backend: unknown) {
    const info = this.state.tensorInfo.get(dataId);
    if (info) live -= info.bytes;
    removeDataId.call(this, dataId, backend);
  };
}

function uninstall(): void {
  if (!installed || active.size > 0) return;
  installed.engine.trackTensor = installed.trackTensor;
  installed.engine.removeDataId = installed.removeDataId;
  installed = null;
}

/**
 * Starts counting distinct buffer bytes. Buffers that exist before the first tracker starts are
 * unknown to it; `current` counts from `tf.memory()` at that moment, which is exact when no
 * tensor then shares data (true after a `tidy`, where only weights and kept results live).
 */
export function trackBuffers(): BufferTracker {
  if (active.size === 0 && !seeded) {
    live = tf.memory().numBytes;
    seeded = true;
  }
  install();
  const c: Counter = { current: 0, peak: live };
  active.add(c);
  return {
    get current() {
      return live;
    },
    get peak() {
      return c.peak;
    },
    resetPeak() {
      c.peak = live;
    },
    stop() {
      active.delete(c);
      if (active.size === 0) {
        seeded = false;
        uninstall();
      }
    },
  };
}

/**
 * Runs `f` and returns its result with the peak of distinct buffer bytes while it ran, over what
 * was alive when it started (`peakBytes`), what it left alive (`newBytes`) and what was alive
 * before (`startBytes`).
 */
export async function measurePeakBytes<T>(f: () => T | Promise<T>): Promise<{ result: T; peakBytes: number; newBytes: number; startBytes: number }> {
  const t = trackBuffers();
  const start = t.current;
  try {
    const result = await f();
    return { result, peakBytes: t.peak - start, newBytes: t.current - start, startBytes: start };
  } finally {
    t.stop();
  }
}
