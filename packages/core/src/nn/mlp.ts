import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { GELU } from './activation.js';
import { Dropout } from './dropout.js';
import { Linear } from './linear.js';
import { Module } from './module.js';

export interface MlpOptions {
  /** Default: inFeatures. */
  hiddenFeatures?: number;
  /** Default: inFeatures. */
  outFeatures?: number;
  /** Activation factory; default exact GELU. */
  actLayer?: () => Module;
  drop?: number;
  bias?: boolean;
}

/**
 * timm's `Mlp`: fc1 → act → drop → fc2 → drop on `[..., C]`. Children `fc1`, `act`, `drop`, `fc2`
 * (the dropout has no parameters, so newer timm's `drop1`/`drop2` names give the same keys).
 */
export class Mlp extends Module {
  readonly fc1: Linear;
  readonly act: Module;
  readonly drop: Dropout;
  readonly fc2: Linear;

  constructor(
    readonly inFeatures: number,
    options: MlpOptions = {},
  ) {
    super();
    const hidden = options.hiddenFeatures ?? inFeatures;
    const out = options.outFeatures ?? inFeatures;
    if (!Number.isInteger(hidden) || hidden <= 0) throw new ConfigError(`Mlp hiddenFeatures must be a positive integer, got ${hidden}`);
    const bias = options.bias ?? true;
    this.fc1 = this.register('fc1', new Linear(inFeatures, hidden, { bias }));
    this.act = this.register('act', options.actLayer ? options.actLayer() : new GELU());
    this.drop = this.register('drop', new Dropout(options.drop ?? 0));
    this.fc2 = this.register('fc2', new Linear(hidden, out, { bias }));
  }

  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const h = this.drop.forward(this.act.forward(this.fc1.forward(x)));
      return this.drop.forward(this.fc2.forward(h));
    });
  }
}
