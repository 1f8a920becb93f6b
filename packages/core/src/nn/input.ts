import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '../errors.js';

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
