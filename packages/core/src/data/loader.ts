import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { toFloatImage } from './image.js';
import type { BatchTransform } from './mix.js';
import { Rng } from './rng.js';
import { deriveSeed } from './seed.js';
import type { Transform } from './transforms.js';
import type { Batch, BatchSource, Dataset, Sample } from './types.js';

export interface DataLoaderOptions {
  batchSize: number;
  /** Reshuffle every epoch; the order depends only on (seed, epoch). Default false. */
  shuffle?: boolean;
  /** Seeds shuffling and every random transform. Default 0. */
  seed?: number;
  /** Drop the last incomplete batch. Default false. */
  dropLast?: boolean;
  /** Batches prepared ahead of the one being consumed (async datasets decode them meanwhile). Default 2; 0 disables. */
  prefetch?: number;
  /** Per-sample transform on the [0, 1] float image (augmentation, resize, crop…). */
  transform?: Transform;
  /** Repeat a grayscale channel to this many channels after `transform` (Fashion-MNIST into RGB models). */
  channels?: number;
  /** Normalisation after `transform` and `channels` (model-card mean/std, for [0, 1] pixels). */
  mean?: readonly number[];
  std?: readonly number[];
  /** Batch transform (MixUp/CutMix): `y` becomes float32 soft targets `[B, numClasses]`. */
  batchTransform?: BatchTransform;
}

interface Prepared {
  images: Float32Array;
  shape: [number, number, number, number];
  labels: Int32Array;
  targets?: Float32Array;
}

// setImmediate runs after pending I/O callbacks (Node); browsers only have setTimeout.
const yieldToEventLoop: () => Promise<void> =
  typeof setImmediate === 'function' ? () => new Promise((r) => setImmediate(r)) : () => new Promise((r) => setTimeout(r, 0));

// Stream tags keep the shuffle, per-sample and per-batch random streams apart.
const SHUFFLE = 1;
const SAMPLE = 2;
const BATCH = 3;

/**
 * Batches a `Dataset` for training and evaluation. Deterministic: the order of epoch e depends
 * only on (seed, e), and the augmentation of the example at position p of epoch e only on
 * (seed, e, p), so `epoch(e, { startBatch })` yields exactly the batches an uninterrupted epoch
 * would have from there, without decoding the skipped ones. Tensors are created only when a
 * batch is handed over, so an abandoned iteration leaks nothing.
 */
export class DataLoader implements BatchSource {
  readonly dataset: Dataset;
  readonly batchSize: number;
  readonly numBatches: number;
  readonly numExamples: number;
  readonly numClasses: number;
  readonly classNames: readonly string[];
  private readonly options: DataLoaderOptions;

  constructor(dataset: Dataset, options: DataLoaderOptions) {
    const { batchSize } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new ConfigError(`DataLoader: batchSize must be a positive integer, got ${batchSize}`);
    if (dataset.length < 1) throw new ConfigError('DataLoader: the dataset is empty');
    const prefetch = options.prefetch ?? 2;
    if (!Number.isInteger(prefetch) || prefetch < 0) throw new ConfigError(`DataLoader: prefetch must be an integer ≥ 0, got ${prefetch}`);
    if ((options.mean === undefined) !== (options.std === undefined)) throw new ConfigError('DataLoader: give both mean and std, or neither');
    if (options.std?.some((s) => !(s > 0))) throw new ConfigError(`DataLoader: std must be positive, got [${options.std.join(', ')}]`);
    this.dataset = dataset;
    this.batchSize = batchSize;
    this.options = { ...options, prefetch };
    this.numBatches = options.dropLast ? Math.floor(dataset.length / batchSize) : Math.ceil(dataset.length / batchSize);
    if (this.numBatches === 0) {
      throw new ConfigError(`DataLoader: dropLast with batchSize ${batchSize} leaves no batch of a ${dataset.length}-example dataset`);
    }
    this.numExamples = options.dropLast ? this.numBatches * batchSize : dataset.length;
    this.numClasses = dataset.numClasses;
    this.classNames = dataset.classNames;
  }

  /** The dataset indices of epoch `epoch`, in the order they are served. */
  order(epoch: number): Int32Array {
    const n = this.dataset.length;
    if (this.options.shuffle) return new Rng(deriveSeed(this.options.seed ?? 0, SHUFFLE, epoch)).permutation(n);
    const identity = new Int32Array(n);
    for (let i = 0; i < n; i++) identity[i] = i;
    return identity;
  }

  async *epoch(epoch: number, options: { startBatch?: number } = {}): AsyncGenerator<Batch> {
    const startBatch = options.startBatch ?? 0;
    if (!Number.isInteger(startBatch) || startBatch < 0 || startBatch > this.numBatches) {
      throw new ConfigError(`DataLoader: startBatch must be in [0, ${this.numBatches}], got ${startBatch}`);
    }
    const order = this.order(epoch);
    const prefetch = this.options.prefetch!;
    const pending: Promise<Prepared>[] = [];
    let next = startBatch;
    const fill = (depth: number) => {
      while (pending.length < depth && next < this.numBatches) {
        const p = this.prepare(order, epoch, next++);
        // Failures surface when the batch is awaited; this only silences the unhandled-rejection
        // warning for batches prefetched past an abandoned iteration.
        p.catch(() => undefined);
        pending.push(p);
      }
    };
    for (;;) {
      fill(prefetch + 1);
      const head = pending.shift();
      if (!head) return;
      const prepared = await head;
      // While the consumer works on this batch, the next `prefetch` are being prepared.
      fill(prefetch);
      yield this.toBatch(prepared);
    }
  }

  private toBatch(p: Prepared): Batch {
    const x = tf.tensor4d(p.images, p.shape, 'float32');
    const y = p.targets
      ? tf.tensor2d(p.targets, [p.shape[0], this.numClasses], 'float32')
      : tf.tensor1d(p.labels, 'int32');
    return { x, y, labels: p.labels };
  }

  private async prepare(order: Int32Array, epoch: number, b: number): Promise<Prepared> {
    // Let the consumer's current step run first; a prefetched batch is built in the gaps.
    await yieldToEventLoop();
    const { transform, channels, mean, std, batchTransform } = this.options;
    const seed = this.options.seed ?? 0;
    const start = b * this.batchSize;
    const end = Math.min(start + this.batchSize, this.dataset.length);
    const B = end - start;
    const got: Array<Sample | Promise<Sample>> = [];
    for (let i = start; i < end; i++) got.push(this.dataset.get(order[i]!));
    const samples = got.some((s) => s instanceof Promise) ? await Promise.all(got) : (got as Sample[]);
    const labels = new Int32Array(B);
    let images: Float32Array | undefined;
    let shape: [number, number, number, number] = [B, 0, 0, 0];
    let per = 0;
    const [h0, w0, c0] = this.dataset.imageShape;
    for (let i = 0; i < B; i++) {
      const sample = samples[i]!;
      // Without a transform the sample goes straight from its storage into the batch.
      let src: Uint8Array | Float32Array = sample.image;
      let [h, w, cin] = [h0, w0, c0];
      if (transform) {
        const img = transform.apply(toFloatImage(sample.image, this.dataset.imageShape), new Rng(deriveSeed(seed, SAMPLE, epoch, start + i)));
        [src, h, w, cin] = [img.data, img.height, img.width, img.channels];
      } else if (src.length !== h * w * cin) {
        throw new ShapeError(`DataLoader: example ${order[start + i]} has ${src.length} values, the dataset declares ${h}x${w}x${cin}`);
      }
      const cout = channels ?? cin;
      if (cout !== cin && cin !== 1) {
        throw new ShapeError(`DataLoader: channels: ${cout} can only expand 1-channel images, got ${cin} channels`);
      }
      if (!images) {
        shape = [B, h, w, cout];
        per = h * w * cout;
        images = new Float32Array(B * per);
        if (mean && (mean.length !== cout || std!.length !== cout)) {
          throw new ShapeError(`DataLoader: mean/std have ${mean.length}/${std!.length} values but images have ${cout} channels`);
        }
      } else if (h !== shape[1] || w !== shape[2] || cout !== shape[3]) {
        throw new ShapeError(
          `DataLoader: example ${order[start + i]} is ${h}x${w}x${cout} after transforms, the batch's first is ${shape[1]}x${shape[2]}x${shape[3]} (add a Resize or crop to a fixed size)`,
        );
      }
      // uint8 → [0, 1], channel expansion and normalisation fused into one affine copy per channel.
      const unit = src instanceof Uint8Array ? 1 / 255 : 1;
      const scale = new Float64Array(cout);
      const shift = new Float64Array(cout);
      for (let c = 0; c < cout; c++) {
        scale[c] = mean ? unit / std![c]! : unit;
        shift[c] = mean ? -mean[c]! / std![c]! : 0;
      }
      const pixels = h * w;
      let o = i * per;
      if (cout === 1) {
        const a = scale[0]!;
        const b = shift[0]!;
        for (let p = 0; p < pixels; p++) images[o++] = src[p]! * a + b;
      } else if (cin === 1) {
        for (let p = 0; p < pixels; p++) {
          const v = src[p]!;
          for (let c = 0; c < cout; c++) images[o++] = v * scale[c]! + shift[c]!;
        }
      } else {
        for (let p = 0, q = 0; p < pixels; p++) {
          for (let c = 0; c < cout; c++) images[o++] = src[q++]! * scale[c]! + shift[c]!;
        }
      }
      labels[i] = sample.label;
    }
    if (!batchTransform) return { images: images!, shape, labels };
    const mixed = batchTransform.apply(
      { images: images!, shape, labels, numClasses: this.numClasses },
      new Rng(deriveSeed(seed, BATCH, epoch, b)),
    );
    return { images: mixed.images, shape, labels, targets: mixed.targets };
  }
}
