import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';

/**
 * Classification losses on logits `[B, C]`. Targets are either int32 class labels `[B]` or float32
 * soft targets `[B, C]` (rows summing to 1, as MixUp/CutMix make them); every loss takes both, so a
 * training loss can also score a validation set with hard labels. All work on `tf.logSoftmax`
 * (max-subtracted), so large logits neither overflow nor lose the loss.
 */

export type Reduction = 'mean' | 'sum' | 'none';
export type Target = tf.Tensor1D | tf.Tensor2D;

export interface CrossEntropyOptions {
  /** Label smoothing ε: (1−ε)·nll + ε·mean over classes of −log p (PyTorch's `label_smoothing`). Default 0. */
  labelSmoothing?: number;
  /** 'mean' (default) over the batch, 'sum', or 'none' for the per-example `[B]` losses. */
  reduction?: Reduction;
}

function checkInputs(what: string, logits: tf.Tensor, target: tf.Tensor): void {
  if (logits.rank !== 2) throw new ShapeError(`${what} expected logits [batch, classes], got shape [${logits.shape.join(', ')}]`);
  const [b, c] = logits.shape as [number, number];
  if (target.rank === 1) {
    if (target.shape[0] !== b) throw new ShapeError(`${what}: ${b} logits rows but ${target.shape[0]} labels`);
    if (target.dtype !== 'int32') throw new ShapeError(`${what} expected int32 class labels [${b}] or float32 soft targets [${b}, ${c}], got ${target.dtype} [${target.shape.join(', ')}]`);
  } else if (target.rank === 2) {
    if (target.shape[0] !== b || target.shape[1] !== c) {
      throw new ShapeError(`${what} expected soft targets [${b}, ${c}] matching the logits, got [${target.shape.join(', ')}]`);
    }
  } else {
    throw new ShapeError(`${what} expected int32 labels [${b}] or soft targets [${b}, ${c}], got shape [${target.shape.join(', ')}]`);
  }
}

function checkSmoothing(what: string, s: number): void {
  if (!(s >= 0 && s < 1)) throw new ConfigError(`${what} smoothing must be in [0, 1), got ${s}`);
}

function reduce(perExample: tf.Tensor1D, reduction: Reduction): tf.Tensor {
  switch (reduction) {
    case 'mean':
      return tf.mean(perExample);
    case 'sum':
      return tf.sum(perExample);
    case 'none':
      return perExample;
    default:
      throw new ConfigError(`Unknown reduction '${String(reduction)}'; use 'mean', 'sum' or 'none'`);
  }
}

/** −Σ t·log p per example: the target's cross entropy (hard labels become one-hot). */
function targetNll(logProbs: tf.Tensor2D, target: Target): tf.Tensor1D {
  // int32 one-hot then cast: tfjs-backend-wasm 4.22's OneHot writes int bits into
  // float32 outputs (1 reads as 1.4e-45), which silently zeroed the loss on wasm.
  const t = target.rank === 1 ? tf.cast(tf.oneHot(target as tf.Tensor1D, logProbs.shape[1]), 'float32') : target;
  return tf.neg(tf.sum(tf.mul(t, logProbs), -1)) as tf.Tensor1D;
}

/**
 * Cross entropy of logits against labels or soft targets, with optional label smoothing: exactly
 * `F.cross_entropy(logits, target, label_smoothing=ε, reduction=…)`, which for hard labels is also
 * the seeds' `LabelSmoothingCrossEntropy` formula.
 */
export function crossEntropy(logits: tf.Tensor, target: tf.Tensor, options: CrossEntropyOptions = {}): tf.Tensor {
  const { labelSmoothing = 0, reduction = 'mean' } = options;
  checkSmoothing('crossEntropy label', labelSmoothing);
  checkInputs('crossEntropy', logits, target);
  return tf.tidy(() => {
    const logProbs = tf.logSoftmax(logits as tf.Tensor2D, -1) as tf.Tensor2D;
    let loss = targetNll(logProbs, target as Target);
    if (labelSmoothing > 0) {
      const smooth = tf.neg(tf.mean(logProbs, -1));
      loss = tf.add(tf.mul(loss, 1 - labelSmoothing), tf.mul(smooth, labelSmoothing)) as tf.Tensor1D;
    }
    return reduce(loss, reduction);
  });
}

/** Serialisable description of a loss, for checkpoints (`createLoss` rebuilds it). */
export type LossConfig =
  | { type: 'cross_entropy'; labelSmoothing?: number }
  | { type: 'label_smoothing_cross_entropy'; smoothing: number }
  | { type: 'soft_target_cross_entropy' };

/** What the Trainer needs of a loss: a mean-over-batch scalar from logits and targets. */
export interface Loss {
  forward(logits: tf.Tensor, target: tf.Tensor): tf.Scalar;
  toConfig(): LossConfig;
}

/** `nn.CrossEntropyLoss(label_smoothing=ε)`: mean cross entropy. */
export class CrossEntropyLoss implements Loss {
  constructor(
    readonly labelSmoothing = 0,
    what = 'CrossEntropyLoss label',
  ) {
    checkSmoothing(what, labelSmoothing);
  }
  forward(logits: tf.Tensor, target: tf.Tensor): tf.Scalar {
    return crossEntropy(logits, target, { labelSmoothing: this.labelSmoothing }) as tf.Scalar;
  }
  toConfig(): LossConfig {
    return { type: 'cross_entropy', labelSmoothing: this.labelSmoothing };
  }
}

/**
 * The seeds' (and timm's) `LabelSmoothingCrossEntropy(smoothing=0.1)`:
 * `mean((1−ε)·(−log p[target]) + ε·mean_c(−log p_c))` — `F.cross_entropy` with that smoothing.
 * For soft targets the nll term becomes `−Σ t·log p`, which is the same formula when t is one-hot.
 */
export class LabelSmoothingCrossEntropy extends CrossEntropyLoss {
  constructor(readonly smoothing = 0.1) {
    super(smoothing, 'LabelSmoothingCrossEntropy');
  }
  override toConfig(): LossConfig {
    return { type: 'label_smoothing_cross_entropy', smoothing: this.smoothing };
  }
}

/**
 * timm's `SoftTargetCrossEntropy`: `mean(Σ −t·log_softmax(x))` for MixUp/CutMix targets (which
 * already carry any label smoothing). Hard labels are taken as one-hot targets.
 */
export class SoftTargetCrossEntropy implements Loss {
  forward(logits: tf.Tensor, target: tf.Tensor): tf.Scalar {
    return crossEntropy(logits, target) as tf.Scalar;
  }
  toConfig(): LossConfig {
    return { type: 'soft_target_cross_entropy' };
  }
}

/** Rebuilds a loss from its `toConfig()`. */
export function createLoss(config: LossConfig): Loss {
  switch (config?.type) {
    case 'cross_entropy':
      return new CrossEntropyLoss(config.labelSmoothing ?? 0);
    case 'label_smoothing_cross_entropy':
      return new LabelSmoothingCrossEntropy(config.smoothing);
    case 'soft_target_cross_entropy':
      return new SoftTargetCrossEntropy();
    default:
      throw new ConfigError(
        `Unknown loss '${String((config as { type?: unknown })?.type)}'; expected cross_entropy, label_smoothing_cross_entropy or soft_target_cross_entropy`,
      );
  }
}
