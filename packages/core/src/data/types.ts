import type * as tf from '@tensorflow/tfjs-core';

/**
 * The contract between data loading and training. A `Batch` is owned by whoever receives it:
 * the consumer disposes `x` and `y`.
 */
export interface Batch {
  /** Images, NHWC float32, already transformed and normalised. */
  x: tf.Tensor4D;
  /** Targets: int32 class labels `[B]`, or float32 soft targets `[B, numClasses]` (MixUp/CutMix, label smoothing done by the loader). */
  y: tf.Tensor1D | tf.Tensor2D;
  /** The hard labels of the batch (for accuracy and confusion matrices, even when `y` is soft). */
  labels: Int32Array;
}

/** One decoded example: an HWC image (uint8 0–255 or float32) and its class. */
export interface Sample {
  image: Uint8Array | Float32Array;
  label: number;
}

/** A random-access dataset of labelled images. `get` may be async (decoding files). */
export interface Dataset {
  readonly length: number;
  /** `[height, width, channels]` of every sample (readers that decode images of varying size resize first). */
  readonly imageShape: readonly [number, number, number];
  readonly numClasses: number;
  readonly classNames: readonly string[];
  get(index: number): Sample | Promise<Sample>;
}

/**
 * What the Trainer consumes: batches of one epoch, deterministic for (seed, epoch), so a run
 * resumed at `startBatch` of an epoch sees exactly the batches the interrupted run would have.
 */
export interface BatchSource {
  /** Batches per epoch. */
  readonly numBatches: number;
  /** Examples per epoch (after drop-last). */
  readonly numExamples: number;
  readonly numClasses: number;
  readonly classNames: readonly string[];
  epoch(epoch: number, options?: { startBatch?: number }): AsyncIterable<Batch>;
}
