import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { ShapeError, createModel, type Module, type VisionModel } from '@vit/core';
import { describeNanoVariant } from '@vit/core/testing';
import {
  CAIT_VARIANTS,
} from './index.js';

type Net = VisionModel & Module;
const NAME = 'cait_nano';

describeNanoVariant({
  name: NAME,
  paramCount: 224_846,
  tableParamCount: CAIT_VARIANTS.cait_nano.paramCount,
  extraTests: () => {
    it('28×28 inputs (Fashion-MNIST before resizing) give a ShapeError naming the fixed 32×32 size; dynamicImgSize: true runs them', () => {
      const m = createModel<Net>(NAME);
      try {
        m.eval();
        const x = tf.zeros([1, 28, 28, 3]) as tf.Tensor4D;
        expect(() => m.forward(x)).toThrow(ShapeError);
        expect(() => m.forward(x)).toThrow(/expected a 32x32 input.*dynamicImgSize/);
        const d = createModel<Net>(NAME, { dynamicImgSize: true });
        d.eval();
        tf.tidy(() => {
          expect(d.forward(x).shape).toEqual([1, 10]);
        });
        d.dispose();
        x.dispose();
      } finally {
        m.dispose();
      }
    });
  },
});
