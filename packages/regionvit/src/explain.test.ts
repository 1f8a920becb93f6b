import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModel, explainMethod, gradCam } from '@vit/core';
import { maxAbsDifference, referenceGradCam, setTestBackend } from '@vit/core/testing';
import { regionvitCamTargets, type RegionViT } from './index.js';

describe('RegionViT explanations', () => {
  let model: RegionViT;
  let x: tf.Tensor4D;
  beforeAll(async () => {
    await setTestBackend();
    model = createModel<RegionViT>('regionvit_nano');
    model.eval();
    x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 7) as tf.Tensor4D;
  });
  afterAll(() => {
    model.dispose();
    x.dispose();
  });

  it("Grad-CAM (the method 'auto' picks) weighs the local-token maps: each stage's output but the last's, and the last stage's projected input", () => {
    expect(explainMethod(model)).toBe('gradcam');
    expect(regionvitCamTargets(model).map((t) => [t.layer, t.output, t.reduction])).toEqual([
      ['layers.0', 1, 4],
      ['layers.1', 1, 8],
      ['layers.2.block.0', 1, 16],
    ]);
  });

  it("on stage 1's local map (element 1 of the stage's output) equals tf.grad through the last stage with its regional tokens held", () => {
    const before = tf.memory().numTensors;
    const r = gradCam(model, x, { classIndex: 4 });
    expect(r.layer).toBe('layers.1');
    const t = model.trace(x, 1);
    const [regional, local] = [t.regional[1]!, t.local[1]!];
    expect(local.shape).toEqual([2, 4, 4, 64]);
    const rest = (l: tf.Tensor4D) => model.forwardHead(model.norm.forward(model.layers.at(2).forward(regional, l)[0]) as tf.Tensor);
    const ref = referenceGradCam(local, rest, [4, 4], 32, 32);
    expect(maxAbsDifference(r.map.dataSync(), ref)).toBeLessThan(1e-5);
    tf.dispose([r.map, r.logits, t.local, t.regional, t.detection, t.last]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
