import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';

/** The global L2 norm of a set of gradients: ‖(‖g₁‖, ‖g₂‖, …)‖, as `clip_grad_norm_` computes it. */
export function globalNorm(grads: tf.NamedTensorMap | tf.Tensor[]): tf.Scalar {
  const list = Array.isArray(grads) ? grads : Object.values(grads);
  return tf.tidy(() => {
    if (list.length === 0) return tf.scalar(0);
    // √(Σ‖g‖²) summed once: ten times faster on wasm than a tf.norm per tensor (abs, pow, sqrt each).
    return tf.sqrt(tf.addN(list.map((g) => tf.sum(tf.square(g))))) as tf.Scalar;
  });
}

/**
 * `torch.nn.utils.clip_grad_norm_(params, maxNorm)`: scales every gradient by
 * `min(1, maxNorm / (totalNorm + 1e-6))`. Returns new gradient tensors (the caller disposes them and
 * the inputs) and the total norm before clipping. Runs without reading values back from the device.
 */
export function clipGradNorm(grads: tf.NamedTensorMap, maxNorm: number): { grads: tf.NamedTensorMap; totalNorm: tf.Scalar } {
  if (!(maxNorm > 0 && Number.isFinite(maxNorm))) throw new ConfigError(`clipGradNorm maxNorm must be a finite number > 0, got ${maxNorm}`);
  return tf.tidy(() => {
    const totalNorm = globalNorm(grads);
    const coef = tf.minimum(tf.div(tf.scalar(maxNorm), tf.add(totalNorm, 1e-6)), 1);
    const out: tf.NamedTensorMap = {};
    for (const [k, g] of Object.entries(grads)) out[k] = tf.mul(g, coef);
    return { grads: out, totalNorm };
  });
}
