// Tiny models and an in-memory BatchSource for the Trainer tests (not part of the public API).
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../../data/rng.js';
import type { Batch, BatchSource } from '../../data/types.js';
import { BatchNorm2d, Conv2d, Dropout, Linear, Module } from '../../nn/index.js';

/** Flatten → Linear → ReLU → Dropout → Linear. Seeded init. */
export class TinyMlp extends Module {
  readonly fc1: Linear;
  readonly drop: Dropout;
  readonly fc2: Linear;
  constructor(readonly inFeatures: number, hidden: number, classes: number, options: { seed?: number; dropout?: number } = {}) {
    super();
    const seed = options.seed ?? 1;
    this.fc1 = this.register('fc1', new Linear(inFeatures, hidden, { seed }));
    this.drop = this.register('drop', new Dropout(options.dropout ?? 0));
    this.fc2 = this.register('fc2', new Linear(hidden, classes, { seed: seed + 10 }));
  }
  forward(x: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => {
      const flat = tf.reshape(x, [x.shape[0]!, this.inFeatures]);
      return this.fc2.forward(this.drop.forward(tf.relu(this.fc1.forward(flat)))) as tf.Tensor2D;
    });
  }
}

/** Conv3x3 (stride 2) → BatchNorm → ReLU → global mean → Dropout → Linear: buffers and conv grads, kept tiny. */
export class TinyConvNet extends Module {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;
  readonly drop: Dropout;
  readonly head: Linear;
  constructor(inChannels: number, width: number, classes: number, options: { seed?: number; dropout?: number } = {}) {
    super();
    const seed = options.seed ?? 3;
    this.conv = this.register('conv', new Conv2d(inChannels, width, 3, { stride: 2, padding: 1, seed }));
    this.bn = this.register('bn', new BatchNorm2d(width));
    this.drop = this.register('drop', new Dropout(options.dropout ?? 0));
    this.head = this.register('head', new Linear(width, classes, { seed: seed + 10 }));
  }
  forward(x: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => {
      const f = tf.relu(this.bn.forward(this.conv.forward(x)));
      return this.head.forward(this.drop.forward(tf.mean(f, [1, 2]))) as tf.Tensor2D;
    });
  }
}

export interface ToySourceOptions {
  n: number;
  classes: number;
  shape: [number, number, number];
  batchSize: number;
  seed?: number;
  /** Seed of the data itself (prototypes and noise); default 7. */
  dataSeed?: number;
  shuffle?: boolean;
  noise?: number;
  /** Targets as soft one-hot rows with this label smoothing instead of int labels. */
  softTargets?: number;
  /** Make this (0-based global) batch index's images NaN, to trip the NaN guard. */
  nanAtBatch?: { epoch: number; batch: number };
}

/**
 * Class prototypes plus noise, drop-last batching, a per-(seed, epoch) shuffle: deterministic for
 * (seed, epoch), resumable at any batch, as the BatchSource contract asks.
 */
export function toySource(o: ToySourceOptions): BatchSource & { images: Float32Array; labels: Int32Array } {
  const [h, w, c] = o.shape;
  const size = h * w * c;
  const rng = new Rng(o.dataSeed ?? 7);
  const protos = Array.from({ length: o.classes }, () => Float32Array.from({ length: size }, () => rng.normal()));
  const images = new Float32Array(o.n * size);
  const labels = new Int32Array(o.n);
  for (let i = 0; i < o.n; i++) {
    const label = i % o.classes;
    labels[i] = label;
    for (let j = 0; j < size; j++) images[i * size + j] = protos[label]![j]! + (o.noise ?? 0.5) * rng.normal();
  }
  const numBatches = Math.floor(o.n / o.batchSize);
  const classNames = Array.from({ length: o.classes }, (_, i) => `class${i}`);
  return {
    numBatches,
    numExamples: numBatches * o.batchSize,
    numClasses: o.classes,
    classNames,
    images,
    labels,
    async *epoch(epoch: number, options: { startBatch?: number } = {}): AsyncGenerator<Batch> {
      const order = o.shuffle === false ? Int32Array.from({ length: o.n }, (_, i) => i) : new Rng((o.seed ?? 0) * 1000 + epoch).permutation(o.n);
      for (let b = options.startBatch ?? 0; b < numBatches; b++) {
        const x = new Float32Array(o.batchSize * size);
        const lab = new Int32Array(o.batchSize);
        for (let i = 0; i < o.batchSize; i++) {
          const src = order[b * o.batchSize + i]!;
          x.set(images.subarray(src * size, (src + 1) * size), i * size);
          lab[i] = labels[src]!;
        }
        if (o.nanAtBatch && o.nanAtBatch.epoch === epoch && o.nanAtBatch.batch === b) x.fill(NaN);
        const y =
          o.softTargets !== undefined
            ? tf.tidy(() => tf.add(tf.mul(tf.oneHot(tf.tensor1d(lab, 'int32'), o.classes), 1 - o.softTargets!), o.softTargets! / o.classes) as tf.Tensor2D)
            : tf.tensor1d(lab, 'int32');
        yield { x: tf.tensor4d(x, [o.batchSize, h, w, c]), y, labels: lab };
      }
    },
  };
}

/** Every parameter and buffer's bytes, by name, for bit-exact comparisons. */
export function snapshot(m: Module): Record<string, Float32Array> {
  return Object.fromEntries(Object.entries(m.stateDict()).map(([k, t]) => [k, Float32Array.from(t.dataSync() as Float32Array)]));
}

/** True when two snapshots are identical bit for bit (NaN-safe: compares the bytes). */
export function bitEqual(a: Record<string, Float32Array>, b: Record<string, Float32Array>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  if (ka.join() !== kb.join()) return false;
  return ka.every((k) => {
    const x = new Uint32Array(a[k]!.buffer);
    const y = new Uint32Array(b[k]!.buffer);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  });
}
