import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { createModel, type Module, type VisionModel } from '@vit/core';
import { describeNanoVariant } from '@vit/core/testing';
import { REGIONVIT_VARIANTS } from './index.js';

type Net = VisionModel & Module;
const NAME = 'regionvit_nano';

describeNanoVariant({
  name: NAME,
  paramCount: 475_949,
  tableParamCount: REGIONVIT_VARIANTS.regionvit_nano.paramCount,
  // The last stage's local tokens never reach the logits (PORTING.md): its last block's relative-
  // position table (added to local-local logits only) gets no gradient.
  zeroGrad: ['layers.2.block.2.attn.rel_pos'],
  extraTests: () => {
    it('28×28 inputs (Fashion-MNIST before resizing) run (padded to whole regions and masked, as the official code does)', () => {
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
