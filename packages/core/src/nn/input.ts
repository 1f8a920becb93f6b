import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';

/**
 * What every model's `forward` checks before its own shape checks: a float32 tensor (tfjs's own
 * error for an int32 or bool input names a kernel, not the model) and, for an NHWC batch, at least
 * one image of at least 1x1 pixel (an empty batch used to fail differently in each architecture).
 * `model` names the model in the message.
 */
export function checkImageBatch(model: string, x: unknown): void {
  if (!(x instanceof tf.Tensor)) throw new ShapeError(`${model} expects an NHWC image batch (a tf.Tensor4D), got ${x === null ? 'null' : typeof x}`);
  if (x.dtype !== 'float32') {
    throw new ShapeError(`${model} expects float32 images (NHWC, normalised), got a ${x.dtype} tensor of shape [${x.shape.join(', ')}]: convert with tf.cast(x, 'float32') and normalise`);
  }
  if (x.rank === 4 && x.shape.some((d: number) => d < 1)) {
    throw new ShapeError(`${model} expects a non-empty batch of at least 1x1 images, got shape [${x.shape.join(', ')}]`);
  }
}

/** `what` must be a positive integer (a width, a head count, a kernel size). */
export function positiveInt(what: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`${what} must be a positive integer, got ${v}`);
}

/** A block's input check: an NHWC map with `channels` channels. `what` names the block (a string or the module itself). */
export function checkMap(what: string | { typeName: string }, x: tf.Tensor, channels: number): [number, number, number, number] {
  if (x.rank !== 4 || x.shape[3] !== channels) {
    throw new ShapeError(`${typeof what === 'string' ? what : what.typeName} expected an NHWC map [B, H, W, ${channels}], got shape [${x.shape.join(', ')}]`);
  }
  return x.shape as [number, number, number, number];
}

/** A block's input check: tokens `[B, N, dim]`. */
export function checkTokens(what: string | { typeName: string }, x: tf.Tensor, dim: number): [number, number, number] {
  if (x.rank !== 3 || x.shape[2] !== dim) {
    throw new ShapeError(`${typeof what === 'string' ? what : what.typeName} expected tokens [B, N, ${dim}], got shape [${x.shape.join(', ')}]`);
  }
  return x.shape as [number, number, number];
}
