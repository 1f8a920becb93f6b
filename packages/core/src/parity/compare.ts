import * as tf from '@tensorflow/tfjs-core';

/** Differences of `actual` from a reference, the numbers golden parity is judged by. */
export interface Comparison {
  maxAbs: number;
  /** max |ref| (the scale for the tolerance). */
  refMaxAbs: number;
  /** ‖a − r‖ / ‖r‖. */
  normRel: number;
  /** maxAbs / max(1, refMaxAbs). */
  scaledMaxAbs: number;
}

export function compareTensors(actual: tf.Tensor, reference: tf.Tensor): Comparison {
  if (actual.shape.join(',') !== reference.shape.join(',')) {
    throw new Error(`shape mismatch: got [${actual.shape.join(', ')}], reference [${reference.shape.join(', ')}]`);
  }
  return tf.tidy(() => {
    const a = tf.cast(actual, 'float32');
    const r = tf.cast(reference, 'float32');
    const diff = tf.sub(a, r);
    const maxAbs = tf.max(tf.abs(diff)).dataSync()[0]!;
    const refMaxAbs = tf.max(tf.abs(r)).dataSync()[0]!;
    const rn = tf.norm(r).dataSync()[0]!;
    const dn = tf.norm(diff).dataSync()[0]!;
    return { maxAbs, refMaxAbs, normRel: rn === 0 ? dn : dn / rn, scaledMaxAbs: maxAbs / Math.max(1, refMaxAbs) };
  });
}

/** DESIGN.md's tolerance for logits and features on CPU backends. */
export const LOGITS_TOLERANCE = 1e-4;
/** PORTING.md's norm-relative tolerance for input gradients. */
export const GRAD_TOLERANCE = 1e-3;

/** NCHW (PyTorch) → NHWC (ours); other ranks unchanged. */
export function nchwToNhwc<T extends tf.Tensor>(t: T): T {
  return (t.rank === 4 ? tf.transpose(t, [0, 2, 3, 1]) : tf.clone(t)) as T;
}
