import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModel, explainMethod, gradCam } from '@vit/core';
import { describeExplanationFocus, maxAbsDifference, referenceGradCam, setTestBackend } from '@vit/core/testing';
import { litv2CamTargets, type LITv2 } from './index.js';

describe('LITv2 explanations', () => {
  let model: LITv2;
  let x: tf.Tensor4D;
  beforeAll(async () => {
    await setTestBackend();
    model = createModel<LITv2>('litv2_nano');
    model.eval();
    x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
  });
  afterAll(() => {
    model.dispose();
    x.dispose();
  });

  it("Grad-CAM (the method 'auto' picks) weighs each stage's last block output; at 32 px the 4×4 map of stage 2", () => {
    expect(explainMethod(model)).toBe('gradcam');
    expect(litv2CamTargets(model).map((t) => [t.layer, t.reduction])).toEqual([
      ['layers.0.blocks.0', 2],
      ['layers.1.blocks.0', 4],
      ['layers.2.blocks.1', 8],
      ['layers.3.blocks.0', 16],
    ]);
  });

  it('equals tf.grad through the DTM, the last stage and the head, split by hand', () => {
    const before = tf.memory().numTensors;
    const r = gradCam(model, x, { classIndex: [3, 8] });
    expect(r.layer).toBe('layers.2.blocks.1');
    const stage2 = model.layers.at(2);
    const a = tf.tidy(() => {
      let y = model.patch_embed.forward(x) as tf.Tensor;
      for (let i = 0; i < 2; i++) y = model.layers.at(i).forward(y) as tf.Tensor;
      for (const blk of stage2.blocks) y = blk.forward(y) as tf.Tensor;
      return y as tf.Tensor4D;
    });
    expect(a.shape).toEqual([2, 4, 4, 128]);
    const rest = (m: tf.Tensor4D) => model.forwardHead(model.layers.at(3).forward(stage2.downsample!.forward(m)) as tf.Tensor);
    const ref = referenceGradCam(a, rest, [3, 8], 32, 32);
    expect(maxAbsDifference(r.map.dataSync(), ref)).toBeLessThan(1e-5);
    tf.dispose([r.map, r.logits, a]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describeExplanationFocus({
  name: 'litv2_nano',
  dataDir: fileURLToPath(new URL('../../cli/data/fashion-mnist-subset/', import.meta.url)),
  methods: ['gradcam'],
  minRatio: 1.15,
});
