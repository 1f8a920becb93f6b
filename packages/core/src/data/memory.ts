import { ConfigError, ShapeError } from '../errors.js';
import { Rng } from './rng.js';
import type { Dataset, Sample } from './types.js';

/**
 * Images held in one contiguous uint8 buffer (N×H×W×C) with their labels: what the IDX and
 * CIFAR readers produce. `get` returns a view, not a copy (transforms never write their input).
 */
export class ArrayDataset implements Dataset {
  readonly length: number;
  readonly imageShape: readonly [number, number, number];
  readonly numClasses: number;
  readonly classNames: readonly string[];
  readonly images: Uint8Array;
  readonly labels: Uint8Array | Int32Array;
  private readonly stride: number;

  constructor(
    images: Uint8Array,
    labels: Uint8Array | Int32Array,
    imageShape: readonly [number, number, number],
    classNames: readonly string[],
  ) {
    this.stride = imageShape[0] * imageShape[1] * imageShape[2];
    if (images.length !== labels.length * this.stride) {
      throw new ShapeError(
        `ArrayDataset: ${labels.length} labels need ${labels.length * this.stride} image bytes (${imageShape.join('x')} each), got ${images.length}`,
      );
    }
    labels.forEach((l, i) => {
      if (!(l >= 0 && l < classNames.length)) {
        throw new ShapeError(`ArrayDataset: label ${l} of example ${i} is outside [0, ${classNames.length})`);
      }
    });
    this.images = images;
    this.labels = labels;
    this.length = labels.length;
    this.imageShape = imageShape;
    this.classNames = classNames;
    this.numClasses = classNames.length;
  }

  get(index: number): Sample {
    checkIndex(index, this.length);
    return { image: this.images.subarray(index * this.stride, (index + 1) * this.stride), label: this.labels[index]! };
  }

  /** Label of one example without touching its pixels. */
  labelOf(index: number): number {
    return this.labels[index]!;
  }
}

export function checkIndex(index: number, length: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= length) {
    throw new RangeError(`Dataset index ${index} is out of range [0, ${length})`);
  }
}

/** The examples of `dataset` at `indices`, in that order. */
export class Subset implements Dataset {
  readonly length: number;
  readonly imageShape: readonly [number, number, number];
  readonly numClasses: number;
  readonly classNames: readonly string[];
  constructor(
    readonly dataset: Dataset,
    readonly indices: Int32Array,
  ) {
    for (const i of indices) checkIndex(i, dataset.length);
    this.length = indices.length;
    this.imageShape = dataset.imageShape;
    this.numClasses = dataset.numClasses;
    this.classNames = dataset.classNames;
  }
  get(index: number): Sample | Promise<Sample> {
    checkIndex(index, this.length);
    return this.dataset.get(this.indices[index]!);
  }
}

async function labelsOf(dataset: Dataset): Promise<Int32Array> {
  const out = new Int32Array(dataset.length);
  const fast = (dataset as Partial<ArrayDataset>).labelOf?.bind(dataset);
  for (let i = 0; i < dataset.length; i++) out[i] = fast ? fast(i) : (await dataset.get(i)).label;
  return out;
}

/**
 * Splits off a validation set of `valSize` examples (a count, or a fraction of the dataset),
 * stratified by class and seeded: `{ train, val }` never share an example.
 */
export async function splitDataset(
  dataset: Dataset,
  options: { valSize: number; seed?: number },
): Promise<{ train: Subset; val: Subset }> {
  const n = dataset.length;
  const valSize = options.valSize < 1 ? Math.round(options.valSize * n) : options.valSize;
  if (!(Number.isInteger(valSize) && valSize > 0 && valSize < n)) {
    throw new ConfigError(`splitDataset: valSize must be a fraction in (0, 1) or a count in [1, ${n - 1}], got ${options.valSize}`);
  }
  const labels = await labelsOf(dataset);
  const rng = new Rng(options.seed ?? 0);
  const byClass: number[][] = Array.from({ length: dataset.numClasses }, () => []);
  for (const i of rng.permutation(n)) byClass[labels[i]!]!.push(i);
  // Largest-remainder allocation keeps every class's share as close to valSize/n as possible.
  const quotas = byClass.map((c) => (c.length * valSize) / n);
  const take = quotas.map(Math.floor);
  let left = valSize - take.reduce((a, b) => a + b, 0);
  const order = quotas.map((q, k) => [q - Math.floor(q), k] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [, k] of order) {
    if (left <= 0) break;
    if (take[k]! < byClass[k]!.length) {
      take[k]!++;
      left--;
    }
  }
  const val: number[] = [];
  const train: number[] = [];
  byClass.forEach((c, k) => {
    val.push(...c.slice(0, take[k]));
    train.push(...c.slice(take[k]));
  });
  const sorted = (a: number[]) => Int32Array.from(a).sort();
  return { train: new Subset(dataset, sorted(train)), val: new Subset(dataset, sorted(val)) };
}

/**
 * A seeded subset with `perClass` examples of every class (fewer where a class has fewer), in
 * dataset order: quick runs and smoke tests on a balanced slice.
 */
export async function balancedSubset(dataset: Dataset, perClass: number, seed = 0): Promise<Subset> {
  const labels = await labelsOf(dataset);
  const rng = new Rng(seed);
  const counts = new Int32Array(dataset.numClasses);
  const picked: number[] = [];
  for (const i of rng.permutation(dataset.length)) {
    const l = labels[i]!;
    if (counts[l]! < perClass) {
      counts[l]!++;
      picked.push(i);
    }
  }
  return new Subset(dataset, Int32Array.from(picked).sort());
}
