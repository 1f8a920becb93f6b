import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { attentionRollout, createModel, explain, explainMethod, gradCam, Module, rollout, toUnitMaps } from '@vit/core';
import { describeExplanationFocus, maxAbsDifference, referenceGradCam, setTestBackend } from '@vit/core/testing';
import { CaiT, caitExplainer } from './index.js';

describe('CaiT explanations', () => {
  let model: CaiT;
  let x: tf.Tensor4D;
  let before = 0;
  beforeAll(async () => {
    await setTestBackend();
    model = createModel<CaiT>('cait_nano');
    model.eval();
    x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
  });
  afterAll(() => {
    model.dispose();
    x.dispose();
  });
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors).toBe(before);
  });

  /** The patch tokens entering the first block (pos_drop is the identity in eval mode). */
  const tokens = (input: tf.Tensor4D) => tf.add(model.patch_embed.forward(input) as tf.Tensor, model.pos_embed) as tf.Tensor3D;

  it("'auto' is attention rollout; with a class it is Grad-CAM", () => {
    expect(explainMethod(model)).toBe('rollout');
    expect(explainMethod(model, { classIndex: 2 })).toBe('gradcam');
  });

  it('rollout reads the talking-heads maps of every block and the class-attention maps, computed here block by block', () => {
    const r = attentionRollout(model, x);
    const want = tf.tidy(() => {
      let t = tokens(x);
      const layers: tf.Tensor4D[] = [];
      for (const blk of model.blocks) {
        const b = blk as unknown as { norm1: Module; attn: { attentionMap(t: tf.Tensor): tf.Tensor4D } };
        layers.push(b.attn.attentionMap(b.norm1.forward(t) as tf.Tensor));
        t = blk.forward(t) as tf.Tensor3D;
      }
      const classLayers: tf.Tensor4D[] = [];
      let cls = tf.tile(model.cls_token, [2, 1, 1]) as tf.Tensor3D;
      for (const blk of model.blocks_token_only) {
        const b = blk as unknown as { norm1: Module; attn: { attentionMap(t: tf.Tensor): tf.Tensor4D } };
        classLayers.push(b.attn.attentionMap(b.norm1.forward(tf.concat([cls, t], 1)) as tf.Tensor));
        cls = blk.forward(t, cls) as tf.Tensor3D;
      }
      expect(classLayers[0]!.shape).toEqual([2, (model.blocks_token_only.at(0) as unknown as { attn: { numHeads: number } }).attn.numHeads, 1, 65]);
      return toUnitMaps(rollout({ layers, classLayers, prefixTokens: 0, grid: [8, 8] }), 32, 32);
    });
    const d = tf.tidy(() => tf.max(tf.abs(tf.sub(r.map, want))));
    expect(d.dataSync()[0]).toBeLessThan(1e-6);
    tf.dispose([r.map, r.logits, want, d]);
  });

  it("Grad-CAM weighs the last self-attention block's patch tokens: equal to tf.grad through the class-attention blocks, norm and head", () => {
    const classes = [1, 7];
    const r = gradCam(model, x, { classIndex: classes });
    expect(r.layer).toBe(`blocks.${model.blocks.length - 1}`);
    const a = tf.tidy(() => {
      let t = tokens(x);
      for (const blk of model.blocks) t = blk.forward(t) as tf.Tensor3D;
      return tf.reshape(t, [2, 8, 8, t.shape[2]]) as tf.Tensor4D;
    });
    const rest = (map: tf.Tensor4D) => {
      const t = tf.reshape(map, [2, 64, map.shape[3]]);
      let cls: tf.Tensor = tf.tile(model.cls_token, [2, 1, 1]);
      for (const blk of model.blocks_token_only) cls = blk.forward(t, cls) as tf.Tensor3D;
      return model.forwardHead(model.norm.forward(tf.concat([cls, t], 1)) as tf.Tensor);
    };
    const ref = referenceGradCam(a, rest, classes, 32, 32);
    expect(maxAbsDifference(r.map.dataSync(), ref)).toBeLessThan(1e-5);
    tf.dispose([r.map, r.logits, a]);
  });

  it("globalPool 'avg' rolls out without the class-attention layers (the mean of the patch rows); a custom attention block leaves Grad-CAM", () => {
    const avg = createModel<CaiT>('cait_nano', { globalPool: 'avg' });
    expect(caitExplainer(avg).attention!.classLayers).toEqual([]);
    expect(model.blocks_token_only.length).toBeGreaterThan(0);
    expect(caitExplainer(model).attention!.classLayers).toEqual([...model.blocks_token_only].map((_, i) => `blocks_token_only.${i}.attn`));
    avg.dispose();
    class PlainAttention extends Module {
      forward(t: tf.Tensor): tf.Tensor {
        return tf.mul(t, 0.5);
      }
    }
    const custom = new CaiT({ imgSize: 32, patchSize: 4, embedDim: 16, depth: 1, numHeads: 2, depthTokenOnly: 1, numClasses: 3, attnBlock: () => new PlainAttention() });
    try {
      expect(explainMethod(custom)).toBe('gradcam');
      expect(() => attentionRollout(custom, x)).toThrow(/no global attention maps to roll out: its attention modules do not expose attentionMap/);
      const r = explain(custom, x);
      expect(r.method).toBe('gradcam');
      tf.dispose([r.map, r.logits]);
    } finally {
      custom.dispose();
    }
  });
});

describeExplanationFocus({
  name: 'cait_nano',
  dataDir: fileURLToPath(new URL('../../cli/data/fashion-mnist-subset/', import.meta.url)),
  methods: ['rollout', 'gradcam'],
  minRatio: 1.15,
});
