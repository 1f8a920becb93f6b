import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import '@vit/cait';
import '@vit/conv2former';
import '@vit/hilo';
import '@vit/mrla';
import '@vit/regionvit';
import { createModel, getModelCard, ShapeError, type Module } from '@vit/core';
import { setTestBackend } from '@vit/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';

/** One variant per architecture: every model refuses the same bad inputs with the same kind of message. */
const MODELS = { cait_nano: 'CaiT', conv2former_nano: 'Conv2Former', litv2_nano: 'LITv2', regionvit_nano: 'RegionViT', resnet10_mrlal_nano: 'ResNetMRLA' } as const;

describe('every architecture refuses bad inputs the same way, naming itself', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it.each(Object.entries(MODELS))('%s', (name, arch) => {
    const model = createModel(name) as Module;
    model.eval();
    const [h, w, c] = getModelCard(name).inputSize;
    const before = tf.memory().numTensors;
    const cases: Array<[tf.Tensor, RegExp]> = [
      [tf.zeros([2, h, w, c], 'int32'), new RegExp(`^${arch} expects float32 images \\(NHWC, normalised\\), got a int32 tensor of shape \\[2, ${h}, ${w}, ${c}\\]: convert with tf.cast`)],
      [tf.zeros([1, h, w, c], 'bool'), new RegExp(`^${arch} expects float32 images .*got a bool tensor`)],
      [tf.zeros([0, h, w, c]), new RegExp(`^${arch} expects a non-empty batch of at least 1x1 images, got shape \\[0, ${h}, ${w}, ${c}\\]`)],
    ];
    for (const [x, message] of cases) {
      let err: unknown;
      try {
        tf.dispose(model.forward(x));
      } catch (e) {
        err = e;
      }
      expect(err, String(message)).toBeInstanceOf(ShapeError);
      expect((err as Error).message).toMatch(message);
      x.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });
});
