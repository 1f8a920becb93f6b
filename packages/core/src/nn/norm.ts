import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { isRecomputing } from '../autodiff/checkpoint.js';
import { batchNormTrain, layerNormLastAxis } from '../ops/norm.js';
import { positiveInt } from './input.js';
import { Module } from './module.js';


/**
 * What the norms share: `eps` and the elementwise affine pair, `weight` (ones) then `bias` (zeros)
 * of `shape`, each present or `null` (PyTorch's `elementwise_affine`/`affine`, `bias`). Subclasses
 * register their buffers after it, so the parameter order is PyTorch's.
 */
export abstract class AffineNorm extends Module {
  readonly weight: tf.Variable | null;
  readonly bias: tf.Variable | null;

  constructor(
    readonly eps: number,
    shape: number[],
    affine: { weight: boolean; bias: boolean },
  ) {
    super();
    this.weight = affine.weight ? this.addParameter('weight', tf.ones(shape)) : null;
    this.bias = affine.bias ? this.addParameter('bias', tf.zeros(shape)) : null;
  }
}

export interface LayerNormOptions {
  eps?: number;
  elementwiseAffine?: boolean;
  bias?: boolean;
}

/** `nn.LayerNorm(normalizedShape)` over the last axis (weight 1, bias 0). */
export class LayerNorm extends AffineNorm {
  constructor(
    readonly normalizedShape: number,
    options: LayerNormOptions = {},
  ) {
    positiveInt('LayerNorm normalizedShape', normalizedShape);
    const { eps = 1e-5, elementwiseAffine = true, bias = true } = options;
    super(eps, [normalizedShape], { weight: elementwiseAffine, bias: elementwiseAffine && bias });
  }

  override forward(x: tf.Tensor): tf.Tensor {
    if (x.rank < 1 || x.shape[x.rank - 1] !== this.normalizedShape) {
      throw new ShapeError(`${this.typeName} expected input [..., ${this.normalizedShape}], got shape [${x.shape.join(',')}]`);
    }
    return layerNormLastAxis(x, this.weight, this.bias, this.eps);
  }
}

export interface LayerNorm2dOptions {
  eps?: number;
  /**
   * Stored shape of weight and bias (product must be C). Default `[C]` (ConvNeXt/Conv2Former);
   * RegionViT's files hold `[1, C, 1, 1]`.
   */
  paramShape?: number[];
}

/**
 * The channels-first LayerNorm of ConvNeXt/Conv2Former/RegionViT, applied to NHWC maps: per pixel,
 * mean and biased variance over C. Default eps 1e-6 (ConvNeXt's; RegionViT uses 1e-5).
 */
export class LayerNorm2d extends AffineNorm {
  declare readonly weight: tf.Variable;
  declare readonly bias: tf.Variable;
  readonly paramShape: number[];

  constructor(
    readonly numChannels: number,
    options: LayerNorm2dOptions = {},
  ) {
    positiveInt('LayerNorm2d numChannels', numChannels);
    const paramShape = options.paramShape ? [...options.paramShape] : [numChannels];
    const nonUnit = paramShape.filter((d) => d !== 1);
    if (!(nonUnit.length === 1 && nonUnit[0] === numChannels) && !(numChannels === 1 && nonUnit.length === 0)) {
      throw new ConfigError(
        `LayerNorm2d paramShape must hold ${numChannels} values along one axis (e.g. [${numChannels}] or [1, ${numChannels}, 1, 1]), got [${paramShape.join(', ')}]`,
      );
    }
    super(options.eps ?? 1e-6, paramShape, { weight: true, bias: true });
    this.paramShape = paramShape;
  }

  override forward(x: tf.Tensor): tf.Tensor {
    if (x.rank !== 4 || x.shape[3] !== this.numChannels) {
      throw new ShapeError(`${this.typeName} expected NHWC input with ${this.numChannels} channels, got shape [${x.shape.join(',')}]`);
    }
    return tf.tidy(() => {
      const w = this.paramShape.length === 1 ? this.weight : tf.reshape(this.weight, [this.numChannels]);
      const b = this.paramShape.length === 1 ? this.bias : tf.reshape(this.bias, [this.numChannels]);
      return layerNormLastAxis(x, w, b, this.eps);
    });
  }
}

export interface BatchNorm2dOptions {
  eps?: number;
  momentum?: number;
  affine?: boolean;
  trackRunningStats?: boolean;
}

/**
 * `nn.BatchNorm2d` on NHWC. Training: batch mean and BIASED variance over N,H,W normalise; the
 * running stats move by `running = (1 − m)·running + m·stat` with the UNBIASED variance (PyTorch's
 * rule). Eval: running stats. No `num_batches_tracked` (the loader ignores that key; momentum is
 * never None here).
 */
export class BatchNorm2d extends AffineNorm {
  readonly momentum: number;
  readonly running_mean: tf.Variable | null;
  readonly running_var: tf.Variable | null;

  constructor(
    readonly numFeatures: number,
    options: BatchNorm2dOptions = {},
  ) {
    positiveInt('BatchNorm2d numFeatures', numFeatures);
    const { eps = 1e-5, momentum = 0.1, affine = true, trackRunningStats = true } = options;
    if (!(momentum >= 0 && momentum <= 1)) throw new ConfigError(`BatchNorm2d momentum must be in [0, 1], got ${momentum}`);
    super(eps, [numFeatures], { weight: affine, bias: affine });
    this.momentum = momentum;
    this.running_mean = trackRunningStats ? this.addBuffer('running_mean', tf.zeros([numFeatures])) : null;
    this.running_var = trackRunningStats ? this.addBuffer('running_var', tf.ones([numFeatures])) : null;
  }

  override forward(x: tf.Tensor): tf.Tensor {
    if (x.rank !== 4 || x.shape[3] !== this.numFeatures) {
      throw new ShapeError(`${this.typeName} expected NHWC input with ${this.numFeatures} channels, got shape [${x.shape.join(',')}]`);
    }
    const useBatchStats = this.training || !this.running_mean;
    const [nb, h, w] = x.shape as [number, number, number, number];
    const n = nb * h * w;
    if (useBatchStats && n <= 1) {
      throw new ShapeError(`${this.typeName} in training needs more than 1 value per channel, got input shape [${x.shape.join(',')}]`);
    }
    if (useBatchStats) {
      // One op with its own gradient: it keeps x and the statistics for the backward pass, not
      // the 4 activation-sized tensors of the composed form.
      const { y, mean, variance } = batchNormTrain(x as tf.Tensor4D, this.weight, this.bias, this.eps);
      try {
        if (this.training && this.running_mean && this.running_var && !isRecomputing()) {
          const m = this.momentum;
          // `assign` is not taped, so the update adds nothing to any gradient. A checkpointed
          // block's backward pass runs its forward again; that second pass must not count.
          tf.tidy(() => {
            this.running_mean!.assign(tf.add(tf.mul(this.running_mean!, 1 - m), tf.mul(mean, m)));
            this.running_var!.assign(tf.add(tf.mul(this.running_var!, 1 - m), tf.mul(variance, (m * n) / (n - 1))));
          });
        }
      } finally {
        tf.dispose([mean, variance]);
      }
      return y;
    }
    return tf.tidy(() => {
      const mean = this.running_mean!;
      const variance = this.running_var!;
      let scale = tf.rsqrt(tf.add(variance, this.eps));
      if (this.weight) scale = tf.mul(scale, this.weight);
      const y = tf.mul(tf.sub(x, mean), scale);
      return this.bias ? tf.add(y, this.bias) : y;
    });
  }
}

export interface GroupNormOptions {
  eps?: number;
  affine?: boolean;
}

/**
 * `nn.GroupNorm` on NHWC: per sample and group, statistics over H, W and the group's channels
 * (channels c·G/C… are contiguous, as in PyTorch). GroupNorm(1, C) normalises over C,H,W jointly.
 */
export class GroupNorm extends AffineNorm {
  constructor(
    readonly numGroups: number,
    readonly numChannels: number,
    options: GroupNormOptions = {},
  ) {
    positiveInt('GroupNorm numGroups', numGroups);
    positiveInt('GroupNorm numChannels', numChannels);
    if (numChannels % numGroups !== 0) {
      throw new ConfigError(`GroupNorm numChannels (${numChannels}) must be divisible by numGroups (${numGroups})`);
    }
    const { eps = 1e-5, affine = true } = options;
    super(eps, [numChannels], { weight: affine, bias: affine });
  }

  override forward(x: tf.Tensor): tf.Tensor {
    if (x.rank !== 4 || x.shape[3] !== this.numChannels) {
      throw new ShapeError(`${this.typeName} expected NHWC input with ${this.numChannels} channels, got shape [${x.shape.join(',')}]`);
    }
    const [b, h, w, c] = x.shape as [number, number, number, number];
    const g = this.numGroups;
    return tf.tidy(() => {
      const xg = tf.reshape(x, [b, h, w, g, c / g]);
      const { mean, variance } = tf.moments(xg, [1, 2, 4], true);
      let y = tf.reshape(tf.mul(tf.sub(xg, mean), tf.rsqrt(tf.add(variance, this.eps))), [b, h, w, c]);
      if (this.weight) y = tf.mul(y, this.weight);
      if (this.bias) y = tf.add(y, this.bias);
      return y;
    });
  }
}
