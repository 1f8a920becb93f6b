import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError } from '../errors.js';
import { setTestBackend } from '../testing/backend.js';
import { DataLoader } from './loader.js';
import { ArrayDataset } from './memory.js';
import { MixUp } from './mix.js';
import { Compose, RandomCrop, RandomHorizontalFlip, Resize } from './transforms.js';
import type { Batch, Dataset, Sample } from './types.js';

beforeAll(async () => {
  await setTestBackend();
});

/** n 2x2x1 images; image i has every pixel = i (so a batch's x reveals its indices), label i % 3. */
function tiny(n: number): ArrayDataset {
  const images = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) images.fill(i, i * 4, i * 4 + 4);
  return new ArrayDataset(images, Uint8Array.from({ length: n }, (_, i) => i % 3), [2, 2, 1], ['a', 'b', 'c']);
}

/** Wraps a dataset, recording every get (and optionally answering asynchronously). */
class Spy implements Dataset {
  readonly gets: number[] = [];
  readonly log: string[] = [];
  constructor(
    readonly inner: Dataset,
    readonly delayMs?: number,
  ) {}
  get length() {
    return this.inner.length;
  }
  get imageShape() {
    return this.inner.imageShape;
  }
  get numClasses() {
    return this.inner.numClasses;
  }
  get classNames() {
    return this.inner.classNames;
  }
  get(i: number): Sample | Promise<Sample> {
    this.gets.push(i);
    this.log.push(`get ${i}`);
    const s = this.inner.get(i);
    if (this.delayMs === undefined) return s;
    return new Promise((r) => setTimeout(() => r(s as Sample), this.delayMs));
  }
}

async function collect(loader: DataLoader, epoch: number, startBatch?: number): Promise<Array<{ x: number[]; shape: number[]; y: number[]; labels: number[] }>> {
  const out = [];
  for await (const b of loader.epoch(epoch, { startBatch })) {
    out.push({ x: Array.from(b.x.dataSync()), shape: b.x.shape, y: Array.from(b.y.dataSync()), labels: Array.from(b.labels) });
    tf.dispose([b.x, b.y]);
  }
  return out;
}

const ids = (x: number[], per: number) => x.filter((_, k) => k % per === 0).map((v) => Math.round(v * 255));

describe('DataLoader', () => {
  it('batches in order with the last batch short, or dropped', async () => {
    const l = new DataLoader(tiny(10), { batchSize: 4 });
    expect([l.numBatches, l.numExamples, l.numClasses]).toEqual([3, 10, 3]);
    const batches = await collect(l, 0);
    expect(batches.map((b) => b.shape)).toEqual([[4, 2, 2, 1], [4, 2, 2, 1], [2, 2, 2, 1]]);
    expect(batches.flatMap((b) => ids(b.x, 4))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(batches[1]!.y).toEqual([1, 2, 0, 1]);
    expect(batches[1]!.labels).toEqual([1, 2, 0, 1]);
    const d = new DataLoader(tiny(10), { batchSize: 4, dropLast: true });
    expect([d.numBatches, d.numExamples]).toEqual([2, 8]);
    expect((await collect(d, 0)).length).toBe(2);
  });

  it('shuffles by (seed, epoch) only, serving every example once per epoch', async () => {
    const mk = (seed: number) => new DataLoader(tiny(50), { batchSize: 8, shuffle: true, seed });
    const e0 = (await collect(mk(1), 0)).flatMap((b) => ids(b.x, 4));
    expect([...e0].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(e0).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect((await collect(mk(1), 0)).flatMap((b) => ids(b.x, 4))).toEqual(e0);
    // A fresh loader asked for epoch 3 directly gives the same order as one that ran epochs 0–2.
    const ran = mk(1);
    for (let e = 0; e < 3; e++) await collect(ran, e);
    expect((await collect(ran, 3)).flatMap((b) => ids(b.x, 4))).toEqual(Array.from(mk(1).order(3)));
    expect(Array.from(mk(1).order(1))).not.toEqual(e0);
    expect(Array.from(mk(2).order(0))).not.toEqual(e0);
  });

  it('resumes at startBatch with identical batches, without decoding the skipped ones', async () => {
    const opts = { batchSize: 4, shuffle: true, seed: 7, transform: new Compose([new RandomCrop(2, { padding: 1 }), new RandomHorizontalFlip()]) };
    const full = await collect(new DataLoader(tiny(21), opts), 2);
    const spy = new Spy(tiny(21));
    const loader = new DataLoader(spy, opts);
    const tail = await collect(loader, 2, 3);
    expect(tail).toEqual(full.slice(3));
    expect(spy.gets.length).toBe(21 - 12);
    expect(new Set(spy.gets)).toEqual(new Set(Array.from(loader.order(2).subarray(12))));
    expect(await collect(loader, 2, 6)).toEqual([]);
    await expect(collect(loader, 2, 7)).rejects.toThrow(/startBatch must be in \[0, 6\]/);
  });

  it('augments deterministically per seed', async () => {
    const t = new Compose([new RandomCrop(2, { padding: 1 }), new RandomHorizontalFlip()]);
    const a = await collect(new DataLoader(tiny(16), { batchSize: 16, seed: 3, transform: t }), 0);
    const b = await collect(new DataLoader(tiny(16), { batchSize: 16, seed: 3, transform: t }), 0);
    const c = await collect(new DataLoader(tiny(16), { batchSize: 16, seed: 4, transform: t }), 0);
    const a1 = await collect(new DataLoader(tiny(16), { batchSize: 16, seed: 3, transform: t }), 1);
    expect(a).toEqual(b);
    expect(a[0]!.x).not.toEqual(c[0]!.x);
    expect(a[0]!.x).not.toEqual(a1[0]!.x);
    // Padding zeros appear: the crop really moved.
    expect(a[0]!.x.some((v) => v === 0)).toBe(true);
  });

  it('repeats grayscale to 3 channels and normalises with mean/std', async () => {
    const l = new DataLoader(tiny(3), { batchSize: 3, channels: 3, mean: [0.5, 0, 1], std: [0.5, 2, 1], transform: new Resize([1, 1]) });
    const [b] = await collect(l, 0);
    expect(b!.shape).toEqual([3, 1, 1, 3]);
    const v = 2 / 255;
    [ (v - 0.5) / 0.5, v / 2, v - 1 ].forEach((e, k) => expect(b!.x[6 + k]).toBeCloseTo(e, 6));
    // The direct path (no transform) computes the same numbers as the transform path.
    const norm = { batchSize: 3, channels: 3, mean: [0.5, 0, 1], std: [0.5, 2, 1] };
    const direct = await collect(new DataLoader(tiny(3), norm), 0);
    const viaTransform = await collect(new DataLoader(tiny(3), { ...norm, transform: new Compose([]) }), 0);
    expect(direct[0]!.shape).toEqual([3, 2, 2, 3]);
    direct[0]!.x.forEach((v, k) => expect(v).toBeCloseTo(viaTransform[0]!.x[k]!, 6));
    expect(direct[0]!.x.slice(12, 15).map((v) => +v.toFixed(5))).toEqual([(1 / 255 - 0.5) / 0.5, 1 / 255 / 2, 1 / 255 - 1].map((v) => +v.toFixed(5)));
    await expect(collect(new DataLoader(tiny(3), { batchSize: 3, mean: [0, 0, 0], std: [1, 1, 1] }), 0)).rejects.toThrow(ShapeError);
    expect(() => new DataLoader(tiny(3), { batchSize: 3, mean: [0] })).toThrow(/both mean and std/);
  });

  it('produces soft targets with a batch transform', async () => {
    const l = new DataLoader(tiny(8), { batchSize: 4, shuffle: true, batchTransform: new MixUp(1, { labelSmoothing: 0.1 }) });
    for await (const b of l.epoch(0)) {
      expect(b.y.dtype).toBe('float32');
      expect(b.y.shape).toEqual([4, 3]);
      const sums = b.y.sum(1);
      Array.from(sums.dataSync()).forEach((s) => expect(s).toBeCloseTo(1, 5));
      expect(b.labels.length).toBe(4);
      tf.dispose([b.x, b.y, sums]);
    }
  });

  it('prefetches: the next batch is decoded while the current one is consumed', async () => {
    for (const prefetch of [0, 1]) {
      const spy = new Spy(tiny(12), 5);
      const l = new DataLoader(spy, { batchSize: 4, prefetch });
      for await (const b of l.epoch(0)) {
        spy.log.push('consume start');
        await new Promise((r) => setTimeout(r, 30)); // a training step that yields to the event loop
        spy.log.push('consume end');
        tf.dispose([b.x, b.y]);
      }
      const firstEnd = spy.log.indexOf('consume end');
      const readsBeforeFirstEnd = spy.log.slice(0, firstEnd).filter((s) => s.startsWith('get')).length;
      // Without prefetch only batch 0 is read before it is consumed; with it, batch 1 too.
      expect(readsBeforeFirstEnd).toBe(prefetch ? 8 : 4);
    }
  });

  it('leaks no tensors, even when an epoch is abandoned', async () => {
    const l = new DataLoader(tiny(40), { batchSize: 4, shuffle: true, batchTransform: new MixUp(0.5), prefetch: 3 });
    await collect(l, 0);
    const before = tf.memory().numTensors;
    await collect(l, 1);
    for await (const b of l.epoch(2)) {
      tf.dispose([b.x, b.y]);
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects bad options and inconsistent sample sizes', async () => {
    expect(() => new DataLoader(tiny(3), { batchSize: 0 })).toThrow(ConfigError);
    expect(() => new DataLoader(tiny(3), { batchSize: 4, dropLast: true })).toThrow(/leaves no batch/);
    expect(() => new DataLoader(tiny(3), { batchSize: 1, prefetch: -1 })).toThrow(/prefetch/);
    const ragged = { apply: (img: { height: number; width: number; channels: number; data: Float32Array }) => (img.data[0]! > 0.003 ? { ...img, height: 1, width: 4 } : img) };
    await expect(collect(new DataLoader(tiny(3), { batchSize: 3, transform: ragged }), 0)).rejects.toThrow(/example 1 is 1x4x1 after transforms, the batch's first is 2x2x1/);
  });
});

// Type check: a DataLoader is what the Trainer consumes.
const _asSource: (l: DataLoader) => AsyncIterable<Batch> = (l) => l.epoch(0);
void _asSource;
