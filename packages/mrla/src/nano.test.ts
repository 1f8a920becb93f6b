import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { createModel, type Module, type VisionModel } from '@vit/core';
import { describeNanoVariant } from '@vit/core/testing';
import './index.js';

type Net = VisionModel & Module;
const NAME = 'resnet10_mrlal_nano';

describeNanoVariant({
  name: NAME,
  paramCount: 311_734,
  extraTests: () => {
    it('28×28 inputs (Fashion-MNIST before resizing) run (the stride-1 CIFAR stem and global pooling take any size)', () => {
      const m = createModel<Net>(NAME);
      try {
        m.eval();
        tf.tidy(() => {
          expect(m.forward(tf.zeros([1, 28, 28, 3]) as tf.Tensor4D).shape).toEqual([1, 10]);
        });
      } finally {
        m.dispose();
      }
    });
  },
});
