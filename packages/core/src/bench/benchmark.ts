import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { AdamW } from '../optim/adam.js';
import { globalNorm } from '../optim/clip.js';
import { valueAndGrads } from '../autodiff/grad.js';
import { measurePeakBytes } from './memory.js';

/** A model the benchmark can drive: NHWC in, logits `[B, classes]` out. */
/** The updates a benchmarked training step can run: plain SGD (the default), or AdamW as `vit train` runs it. */
export const BENCH_OPTIMIZERS = ['sgd', 'adamw'] as const;

export interface BenchmarkableModel extends Pick<Module, 'train' | 'eval' | 'parameters' | 'numParams'> {
  forward(x: tf.Tensor4D): tf.Tensor;
  setGradCheckpointing?(enable?: boolean): unknown;
  readonly gradCheckpointing?: boolean;
}

export interface BenchmarkOptions {
  /** Images per step (default 8). */
  batchSize?: number;
  /** Input height and width: one number for square (default 224). */
  inputSize?: number | [number, number];
  /** Input channels (default 3). */
  channels?: number;
  /** Measure inference (eval mode, no gradients); default true. */
  forward?: boolean;
  /** Measure a training step: forward, softmax cross-entropy on random labels, backward, update (`optimizer`; train mode); default true. */
  train?: boolean;
  /** Untimed runs before timing each phase: WebGPU compiles shaders, wasm and tensorflow warm caches (default 2). */
  warmup?: number;
  /** Timed runs per phase; the median is reported (default 5). */
  runs?: number;
  /** Stop timing a phase early once this many milliseconds are spent (after at least one timed run). */
  maxPhaseMs?: number;
  /** Measure peak tensor memory (`measurePeakBytes`) in one extra, untimed run per phase (default true). */
  memory?: boolean;
  /**
   * The update of a training step. 'sgd' (default): tfjs's plain SGD, the backward pass's cost and
   * little else. 'adamw': what `Trainer` runs (our AdamW with weight decay 0.05, plus the global
   * gradient norm it reads back every step), so the images/s predict `fit`'s speed.
   */
  optimizer?: (typeof BENCH_OPTIMIZERS)[number];
  /** Learning rate of the update (default 1e-3; small so repeated steps stay finite). */
  learningRate?: number;
  /** Time the training step with activation checkpointing (`setGradCheckpointing`) on; the forward phase is unaffected. */
  gradCheckpointing?: boolean;
  /** Seed of the random input and labels (default 0). */
  seed?: number;
  /** Called after every run, for progress output. */
  onRun?: (phase: 'forward' | 'train', kind: 'warmup' | 'timed', index: number, ms: number) => void;
}

export interface PhaseResult {
  /** Median of the timed runs, milliseconds per step. */
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** Every timed run, in order. */
  runsMs: number[];
  /** batchSize / median. */
  imagesPerSec: number;
  /** The first warm-up run (shader compilation, first-call allocation). */
  firstMs: number;
  /** Peak bytes of tensor buffers alive during one step (weights and optimizer state included); distinct buffers (`measurePeakBytes`). */
  peakBytes?: number;
  /**
   * What one step adds at its peak to what was alive before it (weights, optimizer state, the
   * input): activations, what autodiff saves, gradients. The counterpart of PyTorch's peak RSS
   * over the built model (`../shared/perf`'s `train_extra_mb`).
   */
  stepBytes?: number;
  /** Tensors a step left behind (should be 0; the benchmark disposes what it creates). */
  leakedTensors: number;
}

export interface BenchmarkResult {
  backend: string;
  batchSize: number;
  /** `[B, H, W, C]`. */
  inputShape: [number, number, number, number];
  params: number;
  /** Bytes of tensors alive before the first step (weights and buffers). */
  baseBytes: number;
  forward?: PhaseResult;
  train?: PhaseResult;
  forwardImagesPerSec?: number;
  trainImagesPerSec?: number;
  /** The training step's update (present when the training step was measured). */
  optimizer?: (typeof BENCH_OPTIMIZERS)[number];
  /** Largest `peakBytes` over the measured phases. */
  peakBytes?: number;
  /** The training step ran with activation checkpointing. */
  gradCheckpointing?: boolean;
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function positiveInt(name: string, v: number, min = 1): number {
  if (!Number.isInteger(v) || v < min) throw new ConfigError(`benchmark: ${name} must be an integer ≥ ${min}, got ${v}`);
  return v;
}

/**
 * Throughput and peak memory of one model on the current backend. Each step ends with an
 * `await data()` of its result so asynchronous backends (WebGPU) are timed to completion, not to
 * submission. The model's parameters change during the training phase (update steps); its mode is
 * eval afterwards.
 */
export async function benchmarkModel(model: BenchmarkableModel, options: BenchmarkOptions = {}): Promise<BenchmarkResult> {
  const batchSize = positiveInt('batchSize', options.batchSize ?? 8);
  const [h, w] = typeof options.inputSize === 'number' ? [options.inputSize, options.inputSize] : (options.inputSize ?? [224, 224]);
  positiveInt('inputSize', h);
  positiveInt('inputSize', w);
  const channels = positiveInt('channels', options.channels ?? 3);
  const warmup = positiveInt('warmup', options.warmup ?? 2, 0);
  const runs = positiveInt('runs', options.runs ?? 5);
  const doForward = options.forward ?? true;
  const doTrain = options.train ?? true;
  const memory = options.memory ?? true;
  const seed = options.seed ?? 0;
  const inputShape: [number, number, number, number] = [batchSize, h, w, channels];

  const x = tf.randomNormal(inputShape, 0, 1, 'float32', seed) as tf.Tensor4D;
  const result: BenchmarkResult = { backend: tf.getBackend(), batchSize, inputShape, params: model.numParams(), baseBytes: tf.memory().numBytes };
  const vars = model.parameters({ trainableOnly: true });
  const kind = options.optimizer ?? 'sgd';
  if (!BENCH_OPTIMIZERS.includes(kind)) throw new ConfigError(`benchmark: optimizer must be ${BENCH_OPTIMIZERS.join(' or ')}, got '${String(kind)}'`);
  const lr = options.learningRate ?? 1e-3;
  const sgd = kind === 'sgd' ? tf.train.sgd(lr) : undefined;
  const adamw = kind === 'adamw' ? new AdamW(vars, { lr, weightDecay: 0.05 }) : undefined;
  let labels: tf.Tensor | undefined;

  const forwardStep = async () => {
    const y = tf.tidy(() => model.forward(x));
    await y.data();
    y.dispose();
  };
  const lossOf = () => {
    const logits = model.forward(x) as tf.Tensor2D;
    labels ??= tf.keep(tf.oneHot(tf.randomUniform([batchSize], 0, logits.shape[1]!, 'int32', seed + 1) as tf.Tensor1D, logits.shape[1]!));
    return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
  };
  const trainStep = async () => {
    if (adamw) {
      // As Trainer.trainStep: gradients, their global norm read back with the loss, then the update.
      const { value, grads, norm } = tf.tidy(() => {
        const r = valueAndGrads(lossOf, vars);
        return { ...r, norm: globalNorm(r.grads) };
      });
      try {
        await Promise.all([value.data(), norm.data()]);
        adamw.step(grads);
      } finally {
        tf.dispose([value, norm, ...Object.values(grads)]);
      }
      return;
    }
    const loss = tf.tidy(() => {
      const { value, grads } = valueAndGrads(lossOf, vars);
      sgd!.applyGradients(grads);
      return value;
    });
    await loss.data();
    loss.dispose();
  };

  const phase = async (name: 'forward' | 'train', step: () => Promise<void>): Promise<PhaseResult> => {
    let firstMs = NaN;
    let afterFirst = 0;
    const times: number[] = [];
    let spent = 0;
    for (let i = 0; i < warmup + runs; i++) {
      const t = now();
      await step();
      const ms = now() - t;
      // The first train step creates the (kept) labels: count leaks from after it.
      if (i === 0) {
        firstMs = ms;
        afterFirst = tf.memory().numTensors;
      }
      if (i < warmup) {
        options.onRun?.(name, 'warmup', i, ms);
        continue;
      }
      times.push(ms);
      spent += ms;
      options.onRun?.(name, 'timed', i - warmup, ms);
      if (options.maxPhaseMs !== undefined && spent >= options.maxPhaseMs) break;
    }
    const leakedTensors = tf.memory().numTensors - afterFirst;
    const med = median(times);
    const r: PhaseResult = {
      medianMs: med,
      minMs: Math.min(...times),
      maxMs: Math.max(...times),
      runsMs: times,
      imagesPerSec: (batchSize * 1000) / med,
      firstMs,
      leakedTensors,
    };
    if (memory) {
      // Distinct buffers (tf.profile counts a buffer again for every tensor sharing it), over the
      // weights, optimizer state and input alive before the step.
      const m = await measurePeakBytes(step);
      r.peakBytes = m.startBytes + m.peakBytes;
      r.stepBytes = m.peakBytes;
    }
    return r;
  };

  try {
    if (doForward) {
      model.eval();
      result.forward = await phase('forward', forwardStep);
      result.forwardImagesPerSec = result.forward.imagesPerSec;
    }
    if (doTrain) {
      model.train();
      if (options.gradCheckpointing) {
        if (!model.setGradCheckpointing) throw new ConfigError('benchmark: this model has no setGradCheckpointing');
        model.setGradCheckpointing(true);
        result.gradCheckpointing = true;
      }
      result.train = await phase('train', trainStep);
      result.optimizer = kind;
      result.trainImagesPerSec = result.train.imagesPerSec;
    }
  } finally {
    if (options.gradCheckpointing) model.setGradCheckpointing?.(false);
    model.eval();
    x.dispose();
    labels?.dispose();
    sgd?.dispose();
    adamw?.dispose();
  }
  const peaks = [result.forward?.peakBytes, result.train?.peakBytes].filter((p): p is number => p !== undefined);
  if (peaks.length) result.peakBytes = Math.max(...peaks);
  return result;
}

/** `1234567` → `1.2 MB` (powers of 1024, as tf.memory counts). */
export function formatBytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
