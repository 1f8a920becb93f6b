import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { Module } from './module.js';

/** Inverted dropout: zeroes each element with probability p and scales the rest by 1/(1−p). */
export function dropout(x: tf.Tensor, p: number, training = true): tf.Tensor {
  if (!training || p === 0) return x;
  return tf.tidy(() => {
    if (p === 1) return tf.mul(x, 0);
    const keep = tf.cast(tf.less(tf.randomUniform(x.shape), 1 - p), x.dtype);
    return tf.mul(x, tf.div(keep, 1 - p));
  });
}

export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p <= 1)) throw new ConfigError(`Dropout probability must be in [0, 1], got ${p}`);
  }
  override forward(x: tf.Tensor): tf.Tensor {
    return dropout(x, this.p, this.training);
  }
}

/**
 * Stochastic depth (timm's `drop_path`): drops a whole sample's residual branch with probability
 * p and scales kept samples by 1/(1−p). Identity in eval or when p = 0.
 */
export function dropPath(x: tf.Tensor, p: number, training = true): tf.Tensor {
  if (!training || p === 0) return x;
  return tf.tidy(() => {
    const keepProb = 1 - p;
    const maskShape = [x.shape[0], ...Array<number>(x.rank - 1).fill(1)];
    const mask = tf.floor(tf.add(tf.randomUniform(maskShape), keepProb));
    return tf.mul(x, tf.div(mask, keepProb));
  });
}

export class DropPath extends Module {
  constructor(readonly p = 0) {
    super();
    if (!(p >= 0 && p < 1)) throw new ConfigError(`DropPath probability must be in [0, 1), got ${p}`);
  }
  override forward(x: tf.Tensor): tf.Tensor {
    return dropPath(x, this.p, this.training);
  }
}

/**
 * Per-block drop-path rates, timm's `[x.item() for x in torch.linspace(0, rate, depth)]`: torch's
 * float32 linspace rule (first half counts up from 0, second half down from rate). torch's CPU
 * kernel can differ in the last bit (SIMD lanes add i·step to a base), which training ignores.
 */
export function dropPathRates(rate: number, depth: number): number[] {
  if (!Number.isInteger(depth) || depth < 0) throw new ConfigError(`dropPathRates depth must be a non-negative integer, got ${depth}`);
  if (depth === 0) return [];
  if (depth === 1) return [0];
  const f = Math.fround;
  const end = f(rate);
  const step = f(end / (depth - 1));
  const half = Math.floor(depth / 2);
  const out: number[] = [];
  for (let i = 0; i < depth; i++) out.push(i < half ? f(step * i) : f(end - f(step * (depth - i - 1))));
  return out;
}
