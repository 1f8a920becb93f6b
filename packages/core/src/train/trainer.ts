import * as tf from '@tensorflow/tfjs-core';
import { valueAndGrads } from '../autodiff/grad.js';
import { requireTfjsGradients } from '../backends/gradients.js';
import { ConfigError, ShapeError, VitError } from '../errors.js';
import type { Batch, BatchSource } from '../data/types.js';
import { Rng } from '../data/rng.js';
import { CrossEntropyLoss, createLoss, type Loss, type LossConfig } from '../losses/index.js';
import { buildWithinBudget, type Module } from '../nn/module.js';
import { BatchNorm2d } from '../nn/norm.js';
import { clipGradNorm, globalNorm } from '../optim/clip.js';
import { restoreOptimizer } from '../optim/factory.js';
import type { Optimizer } from '../optim/optimizer.js';
import { createSchedule, type LRSchedule, type ScheduleConfig } from '../optim/schedules.js';
import { createModel } from '../registry/registry.js';
import { loadCheckpoint, saveCheckpoint, type CheckpointConfigInput, type SaveCheckpointOptions } from './checkpoint.js';
import { confusionMatrix, topKCorrect } from './metrics.js';
import { withSeededRandom } from './random.js';
import { asOutOfMemory, backendMemoryLimit, isOutOfMemory, outOfMemoryError } from './memory.js';
import { trackBuffers } from '../bench/memory.js';

interface StepTensors {
  value: tf.Scalar;
  grads: tf.NamedTensorMap;
  norm: tf.Scalar;
  pred: tf.Tensor;
}

/** One optimizer step, as callbacks see it. */
export interface StepInfo {
  epoch: number;
  /** Index of the batch within the epoch (0-based). */
  batch: number;
  numBatches: number;
  /** Optimizer steps done, this one included. */
  step: number;
  /** The batch's mean loss. */
  loss: number;
  /** Mean loss over the epoch so far. */
  epochLoss: number;
  /** Training accuracy over the epoch so far. */
  epochAcc: number;
  /** Learning rate used by this step (first parameter group). */
  lr: number;
  batchSize: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Examples trained this epoch so far, and the seconds they took (data loading included). */
  examples: number;
  seconds: number;
}

export interface EpochInfo {
  epoch: number;
  /** The `epochs` fit was asked for. */
  epochs: number;
  numBatches: number;
  numExamples: number;
  /** The batch the epoch starts at (non-zero when resuming mid-epoch). */
  startBatch: number;
}

/** Per-epoch metrics (history.json's `epochs`). Validation fields are absent without a validation set. */
export interface EpochRecord {
  epoch: number;
  /** Optimizer steps done at the end of the epoch. */
  step: number;
  /** Learning rate of the epoch's last step. */
  lr: number;
  trainLoss: number;
  trainAcc: number;
  valLoss?: number;
  valAcc?: number;
  valTop5?: number;
  /** Wall seconds of the training part (data loading included, callbacks excluded). */
  seconds: number;
  trainImagesPerSecond: number;
  valImagesPerSecond?: number;
}

export type MetricName = 'trainLoss' | 'trainAcc' | 'valLoss' | 'valAcc' | 'valTop5';

export interface History {
  epochs: EpochRecord[];
  /** Training loss every `logEvery` steps (the seeds record every 10th batch). */
  steps: Array<{ step: number; epoch: number; loss: number; lr: number }>;
}

export type FitStatus = 'completed' | 'stopped' | 'interrupted' | 'diverged' | 'failed';

export interface FitResult {
  status: FitStatus;
  /** Why the run ended early (early stopping, a callback's `stop`, abort, NaN, an error: 'failed'). */
  message?: string;
  /** Completed epochs and optimizer steps. */
  epochs: number;
  steps: number;
  history: History;
}

export interface FitStartInfo {
  epochs: number;
  startEpoch: number;
  startBatch: number;
  stepsPerEpoch: number;
  hasValidation: boolean;
}

/**
 * Hooks into `fit`. Every hook may be async (the trainer awaits it). A callback with state that
 * must survive a resume (best metric, patience counter) gives a `stateKey` and `getState`/`setState`:
 * the trainer stores it in its checkpoints.
 */
export interface Callback {
  readonly stateKey?: string;
  getState?(): unknown;
  setState?(state: unknown): void;
  onFitStart?(trainer: Trainer, info: FitStartInfo): void | Promise<void>;
  onEpochStart?(trainer: Trainer, info: EpochInfo): void | Promise<void>;
  onBatchEnd?(trainer: Trainer, info: StepInfo): void | Promise<void>;
  onEpochEnd?(trainer: Trainer, record: EpochRecord): void | Promise<void>;
  onFitEnd?(trainer: Trainer, result: FitResult): void | Promise<void>;
}

/** The trainer's resumable state (trainer.json). */
export interface TrainerState {
  /** The epoch in progress, or the next one. */
  epoch: number;
  /** Batches of `epoch` already trained. */
  batch: number;
  /** Optimizer steps done. */
  step: number;
  /** State of the RNG behind dropout / drop path. */
  rng: number[];
  /** Sums over the epoch in progress, so a mid-epoch resume reports the same epoch metrics. */
  running: { lossSum: number; correct: number; count: number; seconds: number; lr: number };
  history: History;
  /** Saved states of stateful callbacks, by `stateKey`. */
  callbacks: Record<string, unknown>;
}

export interface TrainerOptions {
  /** Any Module whose `forward(x: NHWC)` returns logits `[batch, classes]`. */
  model: Module;
  optimizer: Optimizer;
  /** Default: plain cross entropy (use `LabelSmoothingCrossEntropy(0.1)` for the seeds' recipe). */
  loss?: Loss;
  /** A schedule, or a function of the run's size (called by `fit`): `({stepsPerEpoch, epochs}) => new CosineAnnealingLR({tMax: stepsPerEpoch * epochs})`. */
  schedule?: LRSchedule | ((info: { stepsPerEpoch: number; epochs: number }) => LRSchedule);
  /** Clip the global gradient norm to this value (`clip_grad_norm_`). */
  clipGradNorm?: number;
  /** Seeds dropout / drop path during training (default 0). Data order is the BatchSource's own seed. */
  seed?: number;
  callbacks?: Callback[];
  /** Registered model name and options, written to checkpoints so `fromCheckpoint` can rebuild the model. */
  modelName?: string;
  modelOptions?: Record<string, unknown>;
  /** Extra JSON for checkpoints' config.json (dataset, command-line options…). */
  meta?: Record<string, unknown>;
  /** Record the training loss in `history.steps` every this many steps (default 10). */
  logEvery?: number;
  /**
   * Gradient accumulation: each batch is split into this many micro-batches whose gradients are
   * summed (each micro-batch's loss weighted by its share of the batch) before one optimizer step.
   * For a model without BatchNorm that is the update of the whole batch, to float rounding;
   * BatchNorm normalises each micro-batch with its own statistics (and updates its running
   * statistics once per micro-batch), as in PyTorch. Default 1.
   */
  accumSteps?: number;
  /**
   * The largest micro-batch: a number, `'auto'` or `'off'`. `'auto'` (the default) applies where
   * the backend has a memory ceiling (`memoryLimit`, wasm's 4 GiB heap): before the first step of
   * a batch shape the trainer measures a step's memory at 2 and 4 images, predicts it for the
   * batch, and splits batches that would not fit into micro-batches that do (saying so once
   * through `onNotice`).
   */
  microBatch?: number | 'auto' | 'off';
  /** Bytes a training step may use in all (weights and optimizer state included); default: the backend's ceiling (wasm 4 GiB), else none. */
  memoryLimit?: number;
  /** Activation checkpointing: `model.setGradCheckpointing(true)` (the model must support it). */
  gradCheckpointing?: boolean;
  /** One-line notices (automatic micro-batching). Default: `console.error`. */
  onNotice?: (message: string) => void;
}

export interface EvaluateOptions {
  /** Also return every example's top-1 prediction and label, and the confusion matrix. */
  returnPredictions?: boolean;
  /** The epoch whose batches to read from the source (default 0; validation sources ignore it). */
  epoch?: number;
}

export interface EvalResult {
  loss: number;
  top1: number;
  /** Top-k accuracy with k = min(5, classes). */
  top5: number;
  numExamples: number;
  /** Wall seconds of the pass, data loading included (as the seeds time it). */
  seconds: number;
  imagesPerSecond: number;
  predictions?: Int32Array;
  labels?: Int32Array;
  /** `confusion[true][predicted]`. */
  confusion?: number[][];
}

export interface PredictOptions {
  /** How many classes per example (default 5, at most the number of classes). */
  topK?: number;
  /** Batch size for a tensor input (default 64). */
  batchSize?: number;
  /** Names of the model's classes (a pretrained tag's label set: `loadPretrained(...).classNames`), returned as `classNames`. */
  classNames?: readonly string[];
}

export interface PredictResult {
  k: number;
  /** Per example, the k best classes, best first. */
  classes: number[][];
  /** Their softmax probabilities. */
  probabilities: number[][];
  /** True labels (when the input was a BatchSource). */
  labels?: number[];
  /** Class names (`options.classNames`, else the source's), when known: `classNames[classes[i][j]]`. */
  classNames?: readonly string[];
}

/** A training step whose loss or gradient norm is NaN or infinite. The update was not applied. */
export class NonFiniteLossError extends VitError {
  constructor(
    message: string,
    readonly epoch: number,
    readonly step: number,
    readonly loss: number,
    readonly gradNorm: number,
  ) {
    super(message, 'VIT_NONFINITE');
  }
}

interface StoppedBy {
  status: 'stopped' | 'interrupted';
  message: string;
}

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now()) / 1000;

function freshState(seed: number): TrainerState {
  return {
    epoch: 0,
    batch: 0,
    step: 0,
    rng: new Rng(seed).getState(),
    running: { lossSum: 0, correct: 0, count: 0, seconds: 0, lr: 0 },
    history: { epochs: [], steps: [] },
    callbacks: {},
  };
}

/**
 * Trains any Module that maps NHWC images to logits: `fit`, `evaluate` (loss, top-1, top-5,
 * throughput, optionally every prediction), `predict` (top-k). Each step runs inside `tf.tidy`,
 * so tensor count does not grow across steps and epochs; runs with the same seed, model init and
 * data repeat bit for bit, and a run resumed from any checkpoint (even mid-epoch) ends with the
 * weights of the uninterrupted run.
 */
export class Trainer {
  readonly model: Module;
  readonly optimizer: Optimizer;
  readonly loss: Loss;
  readonly clipGradNorm: number | undefined;
  readonly seed: number;
  readonly callbacks: Callback[];
  readonly modelName: string | undefined;
  readonly modelOptions: Record<string, unknown> | undefined;
  readonly meta: Record<string, unknown> | undefined;
  readonly logEvery: number;
  /** The resolved schedule (set by the constructor, or by `fit` for a schedule function). */
  schedule: LRSchedule | undefined;
  private readonly scheduleFactory: ((info: { stepsPerEpoch: number; epochs: number }) => LRSchedule) | undefined;
  private state: TrainerState;
  private readonly rng: Rng;
  private stoppedBy: StoppedBy | null = null;
  private classNames: readonly string[] | undefined;
  private running = false;
  /** True while the optimizer applies an update (an error then leaves no step boundary to save). */
  private partialUpdate = false;
  readonly accumSteps: number;
  readonly microBatch: number | 'auto' | 'off';
  readonly memoryLimit: number | undefined;
  private readonly onNotice: (message: string) => void;
  /** Micro-batch size per batch shape, once planned. */
  private readonly microPlans = new Map<string, number>();

  constructor(options: TrainerOptions) {
    const { model, optimizer } = options;
    if (!model || typeof (model as { forward?: unknown }).forward !== 'function') throw new ConfigError('Trainer needs a model (a Module with forward)');
    if (!optimizer || typeof optimizer.step !== 'function') throw new ConfigError('Trainer needs an optimizer');
    this.model = model;
    this.optimizer = optimizer;
    this.loss = options.loss ?? new CrossEntropyLoss();
    if (options.clipGradNorm !== undefined && !(options.clipGradNorm > 0)) throw new ConfigError(`clipGradNorm must be > 0, got ${options.clipGradNorm}`);
    this.clipGradNorm = options.clipGradNorm;
    this.seed = options.seed ?? 0;
    this.callbacks = [...(options.callbacks ?? [])];
    this.modelName = options.modelName;
    this.modelOptions = options.modelOptions;
    this.meta = options.meta;
    this.logEvery = options.logEvery ?? 10;
    if (!(Number.isInteger(this.logEvery) && this.logEvery >= 1)) throw new ConfigError(`logEvery must be a positive integer, got ${options.logEvery}`);
    if (typeof options.schedule === 'function') this.scheduleFactory = options.schedule;
    else this.schedule = options.schedule;
    this.state = freshState(this.seed);
    this.rng = new Rng(this.seed);
    this.accumSteps = options.accumSteps ?? 1;
    if (!(Number.isInteger(this.accumSteps) && this.accumSteps >= 1)) throw new ConfigError(`accumSteps must be a positive integer, got ${options.accumSteps}`);
    this.microBatch = options.microBatch ?? 'auto';
    if (!(this.microBatch === 'auto' || this.microBatch === 'off' || (Number.isInteger(this.microBatch) && this.microBatch >= 1))) {
      throw new ConfigError(`microBatch must be a positive integer, 'auto' or 'off', got ${String(options.microBatch)}`);
    }
    if (options.memoryLimit !== undefined && !(options.memoryLimit > 0)) throw new ConfigError(`memoryLimit must be a positive number of bytes, got ${options.memoryLimit}`);
    this.memoryLimit = options.memoryLimit;
    this.onNotice = options.onNotice ?? ((m) => console.error(m));
    if (options.gradCheckpointing) model.setGradCheckpointing(true);
  }

  /** Epoch in progress (or next), batches done in it, optimizer steps done. */
  get epoch(): number {
    return this.state.epoch;
  }
  get batch(): number {
    return this.state.batch;
  }
  get step(): number {
    return this.state.step;
  }
  get history(): History {
    return this.state.history;
  }

  /** Asks `fit` to stop after the current step (status 'stopped'); callbacks call it (early stopping). */
  stop(message = 'stopped by request'): void {
    this.stoppedBy ??= { status: 'stopped', message };
  }

  /** A copy of the resumable state, stateful callbacks included (what trainer.json holds). */
  getState(): TrainerState {
    const callbacks: Record<string, unknown> = { ...this.state.callbacks };
    for (const cb of this.callbacks) if (cb.stateKey && cb.getState) callbacks[cb.stateKey] = cb.getState();
    return JSON.parse(JSON.stringify({ ...this.state, rng: this.rng.getState(), callbacks })) as TrainerState;
  }

  /** Restores `getState()` (callbacks present now get their saved state back). */
  setState(state: TrainerState): void {
    const s = state as Partial<TrainerState>;
    for (const k of ['epoch', 'batch', 'step'] as const) {
      if (!(Number.isInteger(s[k]) && s[k]! >= 0)) throw new ConfigError(`Trainer state: '${k}' must be a non-negative integer, got ${String(s[k])}`);
    }
    if (!Array.isArray(s.rng) || s.rng.length !== 4) throw new ConfigError('Trainer state: rng must hold 4 words');
    if (!s.history || !Array.isArray(s.history.epochs) || !Array.isArray(s.history.steps)) throw new ConfigError('Trainer state: history is malformed');
    this.state = JSON.parse(JSON.stringify({ ...freshState(this.seed), ...state })) as TrainerState;
    this.rng.setState(this.state.rng);
    for (const cb of this.callbacks) {
      if (cb.stateKey && cb.setState && this.state.callbacks[cb.stateKey] !== undefined) cb.setState(this.state.callbacks[cb.stateKey]);
    }
  }

  /** Adds a callback; a saved state for its `stateKey` (from a restored checkpoint) is applied. */
  addCallback(cb: Callback): void {
    this.callbacks.push(cb);
    if (cb.stateKey && cb.setState && this.state.callbacks[cb.stateKey] !== undefined) cb.setState(this.state.callbacks[cb.stateKey]);
  }

  // ---------------------------------------------------------------------------------------------
  // Training

  /**
   * Trains until `epochs` epochs are complete (a total, not a count to add: a trainer restored at
   * epoch 3 and asked for 10 trains 7 more). Validates on `validation` after each epoch. Ends
   * early when a callback calls `stop` (status 'stopped') or `signal` aborts ('interrupted'); a
   * NaN/Inf loss or gradient ends it with `NonFiniteLossError` after the callbacks' `onFitEnd`
   * (status 'diverged'), without applying that step.
   */
  async fit(train: BatchSource, options: { epochs: number; validation?: BatchSource; signal?: AbortSignal }): Promise<FitResult> {
    const { epochs, validation, signal } = options;
    if (!(Number.isInteger(epochs) && epochs >= 1)) throw new ConfigError(`fit epochs must be a positive integer, got ${epochs}`);
    if (!train || typeof train.epoch !== 'function') throw new ConfigError('fit needs a BatchSource (numBatches, numExamples, epoch(e))');
    if (!(train.numBatches > 0)) throw new ConfigError(`The training data has no batches (numBatches ${train.numBatches}); is the dataset smaller than one batch with dropLast?`);
    if (this.running) throw new VitError('fit is already running on this trainer', 'VIT_TRAIN');
    requireTfjsGradients();
    this.running = true;
    this.stoppedBy = null;
    // A previous fit that failed inside an optimizer update must not keep later failures from saving.
    this.partialUpdate = false;
    this.classNames = train.classNames;
    if (this.scheduleFactory && !this.schedule) this.schedule = this.scheduleFactory({ stepsPerEpoch: train.numBatches, epochs });
    const wasTraining = this.model.training;
    let result: FitResult | undefined;
    try {
      for (const cb of this.callbacks) {
        await cb.onFitStart?.(this, { epochs, startEpoch: this.state.epoch, startBatch: this.state.batch, stepsPerEpoch: train.numBatches, hasValidation: !!validation });
      }
      while (this.state.epoch < epochs && !this.stoppedBy) {
        const epoch = this.state.epoch;
        if (signal?.aborted) {
          this.stoppedBy = { status: 'interrupted', message: `interrupted before epoch ${epoch}, batch ${this.state.batch}` };
          break;
        }
        if (this.state.batch === 0) this.state.running = { lossSum: 0, correct: 0, count: 0, seconds: 0, lr: this.optimizer.lr };
        for (const cb of this.callbacks) {
          await cb.onEpochStart?.(this, { epoch, epochs, numBatches: train.numBatches, numExamples: train.numExamples, startBatch: this.state.batch });
        }
        await this.trainEpoch(train, epoch, signal);
        if (this.state.batch < train.numBatches) break; // stopped mid-epoch
        const r = this.state.running;
        const record: EpochRecord = {
          epoch,
          step: this.state.step,
          lr: r.lr,
          trainLoss: r.count ? r.lossSum / r.count : NaN,
          trainAcc: r.count ? r.correct / r.count : NaN,
          seconds: r.seconds,
          trainImagesPerSecond: r.seconds > 0 ? r.count / r.seconds : 0,
        };
        if (validation) {
          const ev = await this.evaluate(validation);
          record.valLoss = ev.loss;
          record.valAcc = ev.top1;
          record.valTop5 = ev.top5;
          record.valImagesPerSecond = ev.imagesPerSecond;
        }
        this.state.history.epochs.push(record);
        this.state.epoch = epoch + 1;
        this.state.batch = 0;
        this.state.running = { lossSum: 0, correct: 0, count: 0, seconds: 0, lr: this.optimizer.lr };
        for (const cb of this.callbacks) await cb.onEpochEnd?.(this, record);
      }
      const stopped = this.stoppedBy as StoppedBy | null;
      result = {
        status: stopped ? stopped.status : 'completed',
        ...(stopped ? { message: stopped.message } : {}),
        epochs: this.state.epoch,
        steps: this.state.step,
        history: this.state.history,
      };
    } catch (err) {
      if (err instanceof NonFiniteLossError) {
        const diverged: FitResult = { status: 'diverged', message: err.message, epochs: this.state.epoch, steps: this.state.step, history: this.state.history };
        for (const cb of this.callbacks) await cb.onFitEnd?.(this, diverged);
        const saved = this.lastSavedCheckpoint();
        err.message += saved ? ` The last good checkpoint is '${saved}'.` : ' No checkpoint was written after it.';
      } else if (err instanceof Error && !isOutOfMemory(err) && !this.partialUpdate) {
        // Any other failure (a corrupt image met mid-epoch, a full disk…) happens between steps:
        // the callbacks see status 'failed' (ModelCheckpoint saves last/), so the run can resume
        // once the cause is fixed. Out of memory is left alone: an aborted wasm instance cannot
        // be read any more.
        const failed: FitResult = { status: 'failed', message: err.message, epochs: this.state.epoch, steps: this.state.step, history: this.state.history };
        try {
          for (const cb of this.callbacks) await cb.onFitEnd?.(this, failed);
          const saved = this.lastSavedCheckpoint();
          if (saved) err.message += ` (The run was saved to '${saved}' at epoch ${this.state.epoch + 1}, batch ${this.state.batch}: it can resume from there.)`;
        } catch (saveErr) {
          err.message += ` (Saving the run after this failed too: ${(saveErr as Error).message})`;
        }
      }
      throw err;
    } finally {
      this.running = false;
      this.model.train(wasTraining);
    }
    for (const cb of this.callbacks) await cb.onFitEnd?.(this, result);
    return result;
  }

  /** The checkpoint a callback (ModelCheckpoint) saved last, to name in an error. */
  private lastSavedCheckpoint(): string | undefined {
    return this.callbacks.map((c) => (c as { lastSaved?: unknown }).lastSaved).find((p): p is string => typeof p === 'string');
  }

  private async trainEpoch(train: BatchSource, epoch: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.state.batch >= train.numBatches) return;
    const r = this.state.running;
    let t0 = now();
    const iterator = train.epoch(epoch, { startBatch: this.state.batch })[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await iterator.next();
        if (next.done) break;
        this.model.train();
        const out = await this.trainStep(next.value, epoch);
        const t1 = now();
        r.lossSum += out.loss * out.batchSize;
        r.correct += out.correct;
        r.count += out.batchSize;
        r.seconds += t1 - t0;
        r.lr = out.lr;
        this.state.batch += 1;
        this.state.step += 1;
        if (this.state.step % this.logEvery === 0) this.state.history.steps.push({ step: this.state.step, epoch, loss: out.loss, lr: out.lr });
        const info: StepInfo = {
          epoch,
          batch: this.state.batch - 1,
          numBatches: train.numBatches,
          step: this.state.step,
          loss: out.loss,
          epochLoss: r.lossSum / r.count,
          epochAcc: r.correct / r.count,
          lr: out.lr,
          batchSize: out.batchSize,
          gradNorm: out.gradNorm,
          examples: r.count,
          seconds: r.seconds,
        };
        for (const cb of this.callbacks) await cb.onBatchEnd?.(this, info);
        if (signal?.aborted) this.stoppedBy ??= { status: 'interrupted', message: `interrupted at epoch ${epoch}, batch ${this.state.batch}/${train.numBatches}` };
        if (this.stoppedBy || this.state.batch >= train.numBatches) break;
        t0 = now();
      }
    } finally {
      // Let the source release what it prefetched when we leave early.
      await iterator.return?.();
    }
    if (this.state.batch < train.numBatches && !this.stoppedBy) {
      throw new VitError(`The training source yielded ${this.state.batch} of its ${train.numBatches} batches for epoch ${epoch}`, 'VIT_TRAIN');
    }
  }

  /** Checks that `out` is logits `[batch, classes]` for a batch of `n`. */
  private checkLogits(out: unknown, n: number, numClasses?: number): tf.Tensor2D {
    if (!(out instanceof tf.Tensor) || out.rank !== 2 || out.shape[0] !== n) {
      const got = out instanceof tf.Tensor ? `shape [${out.shape.join(', ')}]` : typeof out;
      throw new ShapeError(`The Trainer needs model.forward(x) to return logits [${n}, classes] for a batch of ${n}; got ${got}`);
    }
    if (numClasses !== undefined && numClasses > 0 && out.shape[1] !== numClasses) {
      throw new ShapeError(`The model outputs ${out.shape[1]} classes but the data has ${numClasses} (resetClassifier(${numClasses}) on a pretrained model?)`);
    }
    return out as tf.Tensor2D;
  }

  private checkBatch(batch: Batch): number {
    const { x, y, labels } = batch;
    if (!(x instanceof tf.Tensor) || x.rank !== 4) throw new ShapeError(`A batch's x must be NHWC [batch, height, width, channels], got ${x instanceof tf.Tensor ? `[${x.shape.join(', ')}]` : typeof x}`);
    const n = x.shape[0];
    if (!(y instanceof tf.Tensor) || y.shape[0] !== n) throw new ShapeError(`A batch's y must have ${n} rows like x, got ${y instanceof tf.Tensor ? `[${y.shape.join(', ')}]` : typeof y}`);
    if (!labels || labels.length !== n) throw new ShapeError(`A batch's labels must hold ${n} class indices, got ${labels?.length}`);
    return n;
  }

  private async trainStep(batch: Batch, epoch: number): Promise<{ loss: number; correct: number; gradNorm: number; lr: number; batchSize: number }> {
    let n = batch.x?.shape?.[0] ?? 0;
    let micro = n;
    let out: StepTensors | undefined;
    // The forward pass updates buffers (BatchNorm running stats) in place; keep the previous values
    // (clones share data, nothing is copied) so a non-finite step can be rolled back entirely.
    const buffers = this.model.buffers().map((b) => [b, b.clone()] as const);
    try {
      n = this.checkBatch(batch);
      const vars = this.optimizer.variables();
      if (vars.length === 0) throw new ConfigError('The optimizer has no trainable parameters');
      const numClasses = (batch.y.rank === 2 ? batch.y.shape[1] : undefined) as number | undefined;
      micro = this.planMicroBatch(batch, n, vars);
      out = micro >= n ? this.batchGradients(batch, n, vars, numClasses) : this.accumulatedGradients(batch, n, micro, vars, numClasses);
    } catch (err) {
      try {
        // A step that failed part-way leaves the model as it was after the previous step, so
        // what is saved after the failure (last/) resumes exactly.
        for (const [b, c] of buffers) b.assign(c);
        tf.dispose(buffers.map(([, c]) => c));
      } catch {
        // An aborted wasm instance cannot free anything any more.
      }
      throw asOutOfMemory(err, { what: 'a training step', batchSize: n, microBatch: micro });
    } finally {
      try {
        tf.dispose([batch.x, batch.y]);
      } catch {
        // (as above)
      }
    }
    const { value, grads, norm, pred } = out;
    try {
      const [lossV, normV, predV] = await Promise.all([value.data(), norm.data(), pred.data()]);
      const loss = lossV[0]!;
      const gradNorm = normV[0]!;
      if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
        for (const [b, c] of buffers) b.assign(c);
        const where = Number.isFinite(loss) ? ` (non-finite in ${this.nonFiniteGradients(grads)})` : '';
        throw new NonFiniteLossError(
          `Training stopped: the ${Number.isFinite(loss) ? `gradient norm is ${gradNorm}${where}` : `loss is ${loss}`} at epoch ${epoch}, batch ${this.state.batch}, ` +
            `step ${this.state.step + 1}. That update was not applied: parameters and buffers are those after step ${this.state.step}. ` +
            'Lower the learning rate, clip gradients (clipGradNorm) or check the data.',
          epoch,
          this.state.step + 1,
          loss,
          gradNorm,
        );
      }
      if (this.schedule) this.optimizer.applySchedule(this.schedule, this.state.step);
      const lr = this.optimizer.lr;
      // An error inside the update may leave some parameters updated and others not: such a state
      // must not be saved as a step boundary.
      this.partialUpdate = true;
      this.optimizer.step(grads);
      this.partialUpdate = false;
      let correct = 0;
      for (let i = 0; i < n; i++) if (predV[i] === batch.labels[i]) correct++;
      return { loss, correct, gradNorm, lr, batchSize: n };
    } catch (err) {
      throw asOutOfMemory(err, { what: 'a training step (the optimizer update)', batchSize: n, microBatch: micro });
    } finally {
      try {
        tf.dispose([value, norm, pred, ...Object.values(grads), ...buffers.map(([, c]) => c)]);
      } catch {
        // An aborted wasm instance cannot free anything any more.
      }
    }
  }

  /** The parameters whose gradients hold NaN or ±Inf, by their dotted names (the first 5), for the error message. */
  private nonFiniteGradients(grads: tf.NamedTensorMap): string {
    const names = new Map(this.model.namedParameters().map(([n, v]) => [v.name, n]));
    const bad = Object.entries(grads)
      .filter(([, g]) => tf.tidy(() => tf.any(tf.logicalNot(tf.isFinite(g))).dataSync()[0] === 1))
      .map(([k]) => names.get(k) ?? k);
    if (bad.length) return `${bad.slice(0, 5).join(', ')}${bad.length > 5 ? ` and ${bad.length - 5} more` : ''}`;
    // Every gradient is finite but their sum of squares overflows: name the largest.
    const largest = Object.entries(grads)
      .map(([k, g]) => [names.get(k) ?? k, tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]!)] as const)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3);
    return `no single gradient, but their sum of squares overflows; largest |gradient|: ${largest.map(([n, v]) => `${n} ${v.toExponential(2)}`).join(', ')}`;
  }

  /** Loss, gradients, their global norm (after clipping when asked) and the predictions of one whole batch. */
  private batchGradients(batch: Batch, n: number, vars: tf.Variable[], numClasses: number | undefined): StepTensors {
    return withSeededRandom(this.rng, () =>
      tf.tidy(() => {
        let pred: tf.Tensor | undefined;
        const { value, grads } = valueAndGrads(() => {
          const logits = this.checkLogits(this.model.forward(batch.x), n, numClasses);
          pred = tf.keep(tf.argMax(logits, -1));
          return this.loss.forward(logits, batch.y);
        }, vars);
        return { value, ...this.normAndClip(grads), pred: pred! };
      }),
    );
  }

  /**
   * The same from micro-batches of at most `micro` examples: each micro-batch's loss is weighted by
   * its share of the batch (the loss is a mean over examples), so the summed gradients are those
   * of the whole batch's mean loss.
   */
  private accumulatedGradients(batch: Batch, n: number, micro: number, vars: tf.Variable[], numClasses: number | undefined): StepTensors {
    let value: tf.Scalar | undefined;
    let acc: tf.NamedTensorMap | undefined;
    const preds: tf.Tensor[] = [];
    try {
      for (let start = 0; start < n; start += micro) {
        const m = Math.min(micro, n - start);
        const r = withSeededRandom(this.rng, () =>
          tf.tidy(() => {
            const x = tf.slice(batch.x, [start, 0, 0, 0], [m, -1, -1, -1]);
            const y = tf.slice(batch.y, [start, ...batch.y.shape.slice(1).map(() => 0)], [m, ...batch.y.shape.slice(1).map(() => -1)]);
            let pred: tf.Tensor | undefined;
            const g = valueAndGrads(() => {
              const logits = this.checkLogits(this.model.forward(x as tf.Tensor4D), m, numClasses);
              pred = tf.keep(tf.argMax(logits, -1));
              return tf.mul(this.loss.forward(logits, y), m / n) as tf.Scalar;
            }, vars);
            return { ...g, pred: pred! };
          }),
        );
        preds.push(r.pred);
        if (!value || !acc) {
          value = r.value;
          acc = r.grads;
          continue;
        }
        const prevValue = value;
        const prevAcc = acc;
        ({ value, acc } = tf.tidy(() => {
          const sum: tf.NamedTensorMap = {};
          for (const k of new Set([...Object.keys(prevAcc), ...Object.keys(r.grads)])) {
            const a = prevAcc[k];
            const b = r.grads[k];
            sum[k] = a && b ? tf.add(a, b) : tf.clone((a ?? b)!);
          }
          return { value: tf.add(prevValue, r.value) as tf.Scalar, acc: sum };
        }));
        tf.dispose([prevValue, r.value, ...Object.values(prevAcc), ...Object.values(r.grads)]);
      }
      const grads = acc!;
      const total = value!;
      return tf.tidy(() => ({ value: tf.clone(total), ...this.normAndClip(grads), pred: tf.concat(preds, 0) }));
    } finally {
      tf.dispose([...preds, ...(value ? [value] : []), ...Object.values(acc ?? {})]);
    }
  }

  private normAndClip(grads: tf.NamedTensorMap): { grads: tf.NamedTensorMap; norm: tf.Scalar } {
    if (this.clipGradNorm !== undefined) {
      const c = clipGradNorm(grads, this.clipGradNorm);
      return { grads: c.grads, norm: c.totalNorm };
    }
    return { grads: Object.fromEntries(Object.entries(grads).map(([k, g]) => [k, tf.clone(g)])), norm: globalNorm(grads) };
  }

  /**
   * The micro-batch size for a batch of `n`: `accumSteps` and a numeric `microBatch` as given; with
   * `'auto'` on a backend with a memory ceiling, what a measured step predicts will fit (planned
   * once per batch shape).
   */
  private planMicroBatch(batch: Batch, n: number, vars: tf.Variable[]): number {
    let m = Math.ceil(n / this.accumSteps);
    if (typeof this.microBatch === 'number') m = Math.min(m, this.microBatch);
    const limit = this.memoryLimit ?? backendMemoryLimit();
    if (this.microBatch !== 'auto' || limit === undefined) return m;
    const key = `${batch.x.shape.slice(1).join('x')}/${n}`;
    let plan = this.microPlans.get(key);
    if (plan === undefined) {
      plan = this.measureMicroBatch(batch, n, vars, limit);
      this.microPlans.set(key, plan);
    }
    return Math.min(m, plan);
  }

  /**
   * Runs a forward and backward pass at 2 and 4 images (buffers restored, the trainer's random
   * stream untouched), fits peak bytes = c + a·images, and returns the largest micro-batch size
   * (in equal parts of the batch) whose predicted step fits in 85% of `limit` besides what is
   * alive now and the optimizer state still to come.
   */
  private measureMicroBatch(batch: Batch, n: number, vars: tf.Variable[], limit: number): number {
    const sizes = [...new Set([Math.min(2, n), Math.min(4, n)])];
    const saved = this.model.buffers().map((b) => b.clone());
    const peaks: number[] = [];
    try {
      for (const s of sizes) {
        const t = trackBuffers();
        const start = t.current;
        try {
          withSeededRandom(0x5eed, () => {
            const r = tf.tidy(() => {
              const x = tf.slice(batch.x, [0, 0, 0, 0], [s, -1, -1, -1]);
              const y = tf.slice(batch.y, batch.y.shape.map(() => 0), [s, ...batch.y.shape.slice(1).map(() => -1)]);
              const { value, grads } = valueAndGrads(() => this.loss.forward(this.model.forward(x as tf.Tensor4D) as tf.Tensor2D, y), vars);
              return [value, ...Object.values(grads)];
            });
            tf.dispose(r);
          });
          peaks.push(t.peak - start);
        } finally {
          t.stop();
        }
      }
    } catch (err) {
      if (isOutOfMemory(err)) throw outOfMemoryError(err, { what: `a training step of ${sizes[sizes.length - 1]} images (measuring memory before the first step)`, batchSize: n });
      this.onNotice(`[vit] could not measure a training step's memory (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); batches are not split`);
      return n;
    } finally {
      this.model.buffers().forEach((b, i) => b.assign(saved[i]!));
      tf.dispose(saved);
    }
    const [s1, s2] = [sizes[0]!, sizes[sizes.length - 1]!];
    const [p1, p2] = [peaks[0]!, peaks[peaks.length - 1]!];
    const a = s2 > s1 ? Math.max((p2 - p1) / (s2 - s1), 1) : Math.max(p1 / s1, 1);
    const c = Math.max(p1 - a * s1, 0);
    const paramBytes = vars.reduce((sum, v) => sum + v.size * 4, 0);
    // Optimizer moments not created yet (before the first step) and the accumulated gradients.
    const reserve = (this.state.step === 0 ? 2 * paramBytes : 0) + paramBytes;
    const budget = limit * 0.85 - tf.memory().numBytes - reserve;
    const need = c + a * n;
    if (need <= budget) return n;
    const fit = Math.floor((budget - c) / a);
    const gb = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
    if (fit < 1) {
      throw outOfMemoryError(new Error(`predicted ${gb(c + a)} for one image, ${gb(Math.max(budget, 0))} available`), {
        what: 'a training step of even one image',
        batchSize: n,
      });
    }
    const parts = Math.ceil(n / fit);
    const micro = Math.ceil(n / parts);
    // Only a model with BatchNorm trains differently in micro-batches (statistics per micro-batch).
    const bn = this.model.namedModules().some(([, m]) => m instanceof BatchNorm2d) ? `BatchNorm sees ${micro} images at a time; ` : '';
    this.onNotice(
      `[vit] a training step of ${n} images needs about ${gb(need)}, more than the ${gb(budget)} left on ${tf.getBackend()} (${gb(limit)} in all): ` +
        `each batch runs as ${parts} micro-batches of up to ${micro} with one optimizer step (${bn}--accum-steps/--micro-batch choose, --grad-checkpointing needs less)`,
    );
    return micro;
  }

  // ---------------------------------------------------------------------------------------------
  // Evaluation and prediction

  /**
   * Loss (the training loss, mean over examples), top-1 and top-5 accuracy and throughput over
   * one pass of `data`, in eval mode (the previous mode is restored).
   */
  async evaluate(data: BatchSource, options: EvaluateOptions = {}): Promise<EvalResult> {
    const wasTraining = this.model.training;
    this.model.eval();
    const t0 = now();
    let lossSum = 0;
    let top1 = 0;
    let top5 = 0;
    let count = 0;
    const preds: number[] = [];
    const labels: number[] = [];
    let numClasses = data.numClasses;
    try {
      for await (const batch of data.epoch(options.epoch ?? 0)) {
        let n: number;
        let res: { loss: tf.Tensor; top: tf.Tensor; k: number };
        try {
          n = this.checkBatch(batch);
          res = tf.tidy(() => {
            const logits = this.checkLogits(this.model.forward(batch.x), n, batch.y.rank === 2 ? batch.y.shape[1] : undefined);
            const k = Math.min(5, logits.shape[1]);
            return { loss: this.loss.forward(logits, batch.y), top: tf.topk(logits, k).indices, k };
          });
        } finally {
          tf.dispose([batch.x, batch.y]);
        }
        try {
          const [lv, iv] = await Promise.all([res.loss.data(), res.top.data()]);
          const [c1, c5] = topKCorrect(iv, batch.labels, res.k, [1, res.k]);
          lossSum += lv[0]! * n;
          top1 += c1!;
          top5 += c5!;
          count += n;
          if (options.returnPredictions) {
            for (let i = 0; i < n; i++) {
              preds.push(iv[i * res.k]!);
              labels.push(batch.labels[i]!);
            }
          }
        } finally {
          tf.dispose([res.loss, res.top]);
        }
      }
    } finally {
      this.model.train(wasTraining);
    }
    if (count === 0) throw new VitError('evaluate: the source yielded no examples', 'VIT_TRAIN');
    const seconds = now() - t0;
    const result: EvalResult = {
      loss: lossSum / count,
      top1: top1 / count,
      top5: top5 / count,
      numExamples: count,
      seconds,
      imagesPerSecond: seconds > 0 ? count / seconds : 0,
    };
    if (options.returnPredictions) {
      result.predictions = Int32Array.from(preds);
      result.labels = Int32Array.from(labels);
      numClasses = Math.max(numClasses || 0, ...preds.map((p) => p + 1), ...labels.map((l) => l + 1));
      result.confusion = confusionMatrix(labels, preds, numClasses);
    }
    return result;
  }

  /** Top-k classes and probabilities for images `[B, H, W, C]` or every example of a source, in eval mode. */
  async predict(input: tf.Tensor4D | BatchSource, options: PredictOptions = {}): Promise<PredictResult> {
    const batchSize = options.batchSize ?? 64;
    if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new ConfigError(`predict batchSize must be a positive integer, got ${batchSize}`);
    const wanted = options.topK ?? 5;
    if (!(Number.isInteger(wanted) && wanted >= 1)) throw new ConfigError(`predict topK must be a positive integer, got ${wanted}`);
    const wasTraining = this.model.training;
    this.model.eval();
    const classes: number[][] = [];
    const probabilities: number[][] = [];
    const labels: number[] = [];
    let k = wanted;
    const run = async (x: tf.Tensor4D) => {
      const n = x.shape[0];
      const res = tf.tidy(() => {
        const logits = this.checkLogits(this.model.forward(x), n);
        k = Math.min(wanted, logits.shape[1]);
        const { values, indices } = tf.topk(tf.softmax(logits, -1), k);
        return { values, indices };
      });
      try {
        const [v, i] = await Promise.all([res.values.data(), res.indices.data()]);
        for (let r = 0; r < n; r++) {
          classes.push(Array.from(i.subarray(r * k, (r + 1) * k)));
          probabilities.push(Array.from(v.subarray(r * k, (r + 1) * k)));
        }
      } finally {
        tf.dispose([res.values, res.indices]);
      }
    };
    try {
      if (input instanceof tf.Tensor) {
        if (input.rank !== 4) throw new ShapeError(`predict expects NHWC images [batch, height, width, channels], got [${input.shape.join(', ')}]`);
        for (let s = 0; s < input.shape[0]; s += batchSize) {
          const x = tf.slice(input, [s, 0, 0, 0], [Math.min(batchSize, input.shape[0] - s), -1, -1, -1]);
          try {
            await run(x);
          } finally {
            x.dispose();
          }
        }
        return { k, classes, probabilities, ...(options.classNames ? { classNames: options.classNames } : {}) };
      }
      for await (const batch of input.epoch(0)) {
        try {
          this.checkBatch(batch);
          await run(batch.x);
          labels.push(...batch.labels);
        } finally {
          tf.dispose([batch.x, batch.y]);
        }
      }
      return { k, classes, probabilities, labels, classNames: options.classNames ?? input.classNames };
    } finally {
      this.model.train(wasTraining);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Checkpoints

  /** What config.json records for this trainer. */
  checkpointConfig(): CheckpointConfigInput {
    return {
      modelName: this.modelName,
      modelOptions: this.modelOptions,
      classNames: this.classNames ? [...this.classNames] : undefined,
      optimizer: this.optimizer.toConfig(),
      loss: this.loss.toConfig(),
      schedule: this.schedule ? this.schedule.toConfig() : null,
      clipGradNorm: this.clipGradNorm ?? null,
      seed: this.seed,
      epoch: this.state.epoch,
      step: this.state.step,
      meta: this.meta,
    };
  }

  /** Writes a checkpoint directory (weights, optimizer, trainer state, config) atomically. */
  async saveCheckpoint(dir: string, options: SaveCheckpointOptions = {}): Promise<void> {
    await saveCheckpoint(
      dir,
      {
        model: this.model,
        optimizer: this.optimizer,
        trainer: { loss: this.loss.toConfig(), schedule: this.schedule?.toConfig() ?? null, state: this.getState() },
        config: this.checkpointConfig(),
      },
      options,
    );
  }

  /**
   * Restores weights, optimizer state and trainer state from a checkpoint into this trainer (built
   * the same way as the one that wrote it). Checked first: a mismatch changes nothing.
   */
  async loadCheckpoint(dir: string): Promise<void> {
    const ck = await loadCheckpoint(dir);
    try {
      const saved = parseTrainerJson(ck.trainer, ck.dir);
      if (!ck.optimizer) throw new VitError(`Checkpoint '${ck.dir}' has no optimizer state`, 'VIT_TRAIN');
      // Optimizer first (it validates everything before changing anything), then the weights; if
      // the weights do not fit, the optimizer goes back to its previous state.
      const snapshot = snapshotCopy(this.optimizer.stateDict());
      try {
        this.optimizer.loadStateDict(ck.optimizer);
        try {
          this.model.loadStateDict(Object.fromEntries(ck.weights));
        } catch (e) {
          this.optimizer.loadStateDict(snapshot);
          throw e;
        }
      } finally {
        tf.dispose(Object.values(snapshot.tensors));
      }
      if (!this.schedule && saved.schedule) this.schedule = createSchedule(saved.schedule);
      this.setState(saved.state);
    } finally {
      ck.dispose();
    }
  }

  /**
   * Rebuilds a trainer from a checkpoint: the model (`options.model`, or `createModel` of the
   * recorded name and options — its package must be imported), its weights, the optimizer (same
   * type, groups and state), loss, schedule and trainer state. `fit` then continues where the run
   * stopped. Options override what the checkpoint recorded (callbacks are not saved: pass them).
   */
  static async fromCheckpoint(dir: string, options: Partial<TrainerOptions> = {}): Promise<Trainer> {
    const ck = await loadCheckpoint(dir);
    let model: Module | undefined;
    let ownModel = false;
    try {
      const saved = parseTrainerJson(ck.trainer, ck.dir);
      const cfg = ck.config;
      model = options.model;
      if (!model) {
        if (!cfg.modelName) throw new ConfigError(`Checkpoint '${ck.dir}' records no model name; pass options.model`);
        // The weights file says how big the model is; a config asking for far more (a crafted
        // `depth: 100000`) is refused while it is being built, not after minutes and gigabytes.
        let held = 0;
        for (const t of ck.weights.values()) held += t.size;
        const name = cfg.modelName;
        model = buildWithinBudget(
          Math.max(2 * held, held + 2 ** 20),
          `The config.json of checkpoint '${ck.dir}' (${name}, options ${JSON.stringify(cfg.modelOptions ?? {}).slice(0, 200)}) — its weights hold ${held.toLocaleString('en-US')} elements —`,
          () => createModel(name, cfg.modelOptions ?? {}),
        );
        ownModel = true;
      }
      model.loadStateDict(Object.fromEntries(ck.weights));
      let optimizer = options.optimizer;
      if (optimizer) {
        if (ck.optimizer) optimizer.loadStateDict(ck.optimizer);
      } else {
        if (!ck.optimizer) throw new VitError(`Checkpoint '${ck.dir}' has no optimizer state; pass options.optimizer`, 'VIT_TRAIN');
        optimizer = restoreOptimizer(model, ck.optimizer);
      }
      const trainer = new Trainer({
        modelName: cfg.modelName,
        modelOptions: cfg.modelOptions,
        meta: cfg.meta,
        clipGradNorm: cfg.clipGradNorm ?? undefined,
        seed: cfg.seed,
        loss: createLoss(saved.loss),
        schedule: saved.schedule ? createSchedule(saved.schedule) : undefined,
        ...options,
        model,
        optimizer,
      });
      trainer.setState(saved.state);
      if (cfg.classNames) trainer.classNames = cfg.classNames;
      return trainer;
    } catch (e) {
      if (ownModel) model?.dispose();
      throw e;
    } finally {
      ck.dispose();
    }
  }
}

function parseTrainerJson(json: unknown, dir: string): { loss: LossConfig; schedule: ScheduleConfig | null; state: TrainerState } {
  const t = json as { loss?: LossConfig; schedule?: ScheduleConfig | null; state?: TrainerState } | null;
  if (!t || typeof t !== 'object' || !t.state || !t.loss) throw new VitError(`Checkpoint '${dir}' has no usable trainer.json (a weights-only checkpoint cannot resume training)`, 'VIT_TRAIN');
  return { loss: t.loss, schedule: t.schedule ?? null, state: t.state };
}

function snapshotCopy(sd: ReturnType<Optimizer['stateDict']>): ReturnType<Optimizer['stateDict']> {
  return { ...sd, tensors: Object.fromEntries(Object.entries(sd.tensors).map(([k, t]) => [k, t.clone()])) };
}
