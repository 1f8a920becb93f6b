import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { ShapeError, createModel, type Module, type VisionModel } from '@vit/core';
import { describeNanoVariant } from '@vit/core/testing';
import {
  CONV2FORMER_VARIANTS,
} from './index.js';

type Net = VisionModel & Module;
const NAME = 'conv2former_nano';

describeNanoVariant({
  name: NAME,
  paramCount: 1_145_658,
  tableParamCount: CONV2FORMER_VARIANTS.conv2former_nano.paramCount,
  extraTests: () => {
    it('28×28 inputs (Fashion-MNIST before resizing) give a ShapeError (the stride-32 network needs at least 31×31)', () => {
      const m = createModel<Net>(NAME);
      try {
        m.eval();
        const x = tf.zeros([1, 28, 28, 3]) as tf.Tensor4D;
        expect(() => m.forward(x)).toThrow(ShapeError);
        expect(() => m.forward(x)).toThrow(/28x28 is too small/);
        x.dispose();
      } finally {
        m.dispose();
      }
    });
  },
});
