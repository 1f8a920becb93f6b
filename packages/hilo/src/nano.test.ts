import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { ShapeError, createModel, type Module, type VisionModel } from '@vit/core';
import { describeNanoVariant } from '@vit/core/testing';
import {
  LITV2_VARIANTS,
} from './index.js';

type Net = VisionModel & Module;
const NAME = 'litv2_nano';

describeNanoVariant({
  name: NAME,
  paramCount: 1_420_002,
  tableParamCount: LITV2_VARIANTS.litv2_nano.paramCount,
  // Patch 2 keeps ≥ 4 keys in every attention at 32×32, so every parameter trains.
  zeroGrad: [],
  extraTests: () => {
    it('28×28 inputs (Fashion-MNIST before resizing) give a ShapeError; with padInputs: true they run', () => {
      const m = createModel<Net>(NAME);
      const p = createModel<Net>(NAME, { padInputs: true });
      const x = tf.zeros([1, 28, 28, 3]) as tf.Tensor4D;
      try {
        expect(() => m.forward(x)).toThrow(ShapeError);
        expect(() => m.forward(x)).toThrow(/28x28.*7x7 tokens.*not even/);
        p.eval();
        const y = p.forward(x);
        expect(y.shape).toEqual([1, 10]);
        y.dispose();
      } finally {
        x.dispose();
        p.dispose();
        m.dispose();
      }
    });
  },
});
