import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '../errors.js';
import { isRecording } from '../autodiff/checkpoint.js';
import { kaimingUniform, uniform } from './init.js';
import { positiveInt } from './input.js';
import { Module } from './module.js';

export interface LinearOptions {
  bias?: boolean;
  /** Seeds the default initialisation (weight with `seed`, bias with `seed + 1`). */
  seed?: number;
}

/**
 * y = x·W + b over the last axis of `[..., in]`. The weight is stored `[in, out]` (kind 'linear');
 * the weight loader transposes PyTorch's `[out, in]`. Default init is PyTorch's: U(±1/√in) for
 * weight and bias (kaiming-uniform with a = √5).
 */
export class Linear extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: LinearOptions = {},
  ) {
    super();
    positiveInt('Linear inFeatures', inFeatures);
    positiveInt('Linear outFeatures', outFeatures);
    const { bias = true, seed } = options;
    this.weight = this.addParameter('weight', kaimingUniform([inFeatures, outFeatures], inFeatures, { a: Math.sqrt(5), seed }), {
      kind: 'linear',
    });
    const bound = 1 / Math.sqrt(inFeatures);
    this.bias = bias
      ? this.addParameter('bias', uniform([outFeatures], { low: -bound, high: bound, seed: seed === undefined ? undefined : seed + 1 }))
      : null;
  }

  override forward(x: tf.Tensor): tf.Tensor {
    const shape = x.shape;
    if (shape.length < 2 || shape[shape.length - 1] !== this.inFeatures) {
      throw new ShapeError(`Linear expected input [..., ${this.inFeatures}] of rank >= 2, got shape [${shape.join(',')}]`);
    }
    return tf.tidy(() => {
      const lead = shape.slice(0, -1);
      const x2 = shape.length === 2 ? (x as tf.Tensor2D) : tf.reshape(x, [-1, this.inFeatures]) as tf.Tensor2D;
      // Fused matmul+bias: one kernel. Under a gradient tape, plain matMul + add: tfjs's fused op
      // (a customGrad) would also keep its output for a backward pass that never reads it.
      const y = isRecording()
        ? this.bias
          ? tf.add(tf.matMul(x2, this.weight), this.bias)
          : tf.matMul(x2, this.weight)
        : tf.fused.matMul({ a: x2, b: this.weight as tf.Tensor2D, bias: this.bias ?? undefined });
      return shape.length === 2 ? y : tf.reshape(y, [...lead, this.outFeatures]);
    });
  }
}
