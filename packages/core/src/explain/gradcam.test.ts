import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError } from '../errors.js';
import { Conv2d } from '../nn/conv.js';
import { Module } from '../nn/module.js';
import { registerArchitecture } from '../registry/registry.js';
import { setTestBackend } from '../testing/backend.js';
import { maxAbsDifference, referenceGradCam } from '../testing/explain.js';
import { ToyConvNet } from './__fixtures__/toy.js';
import { explain, explainMethod } from './explain.js';
import { featureInfoCamTargets, gradCam, pickCamTarget } from './gradcam.js';

describe('gradCam', () => {
  let model: ToyConvNet;
  let x: tf.Tensor4D;
  let before = 0;
  beforeAll(async () => {
    await setTestBackend();
    model = new ToyConvNet();
    x = tf.randomNormal([3, 12, 10, 3], 0, 1, 'float32', 7) as tf.Tensor4D;
  });
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors).toBe(before);
  });

  it('on the forwardFeatures map equals tf.grad over forwardHead and the CAM written out by hand (top class of each image)', () => {
    const r = gradCam(model, x);
    try {
      expect(r.method).toBe('gradcam');
      expect(r.layer).toBe('forwardFeatures');
      expect(r.map.shape).toEqual([3, 12, 10]);
      const topT = tf.tidy(() => tf.argMax(model.forward(x), 1));
      const top = Array.from(topT.dataSync());
      topT.dispose();
      expect(r.classIndex).toEqual(top);
      const a = model.forwardFeatures(x);
      const ref = referenceGradCam(a, (t) => model.forwardHead(t), top, 12, 10);
      a.dispose();
      expect(maxAbsDifference(r.map.dataSync(), ref)).toBeLessThan(1e-5);
      // Not a trivial map: it spans [0, 1] and varies.
      const m = r.map.dataSync();
      expect(Math.max(...m)).toBeCloseTo(1, 6);
      expect(Math.min(...m)).toBe(0);
    } finally {
      tf.dispose([r.map, r.logits]);
    }
  });

  it('on a named layer (stem, before its ReLU) equals tf.grad over the rest of the network; a class per image', () => {
    const classes = [0, 4, 2];
    const r = gradCam(model, x, { layer: 'stem', classIndex: classes });
    try {
      expect(r.layer).toBe('stem');
      expect(r.classIndex).toEqual(classes);
      const a = model.stem.forward(x) as tf.Tensor4D;
      const ref = referenceGradCam(a, (t) => model.forwardHead(model.stage.forward(tf.relu(t)) as tf.Tensor4D), classes, 12, 10);
      a.dispose();
      expect(maxAbsDifference(r.map.dataSync(), ref)).toBeLessThan(1e-5);
    } finally {
      tf.dispose([r.map, r.logits]);
    }
  });

  it('the layer that outputs the features map gives the same map as the features split; another class gives another map', () => {
    const viaLayer = gradCam(model, x, { layer: 'stage', classIndex: 1 });
    const viaFeatures = gradCam(model, x, { classIndex: 1 });
    const other = gradCam(model, x, { classIndex: 3 });
    try {
      expect(maxAbsDifference(viaLayer.map.dataSync(), viaFeatures.map.dataSync())).toBeLessThan(1e-6);
      expect(maxAbsDifference(viaLayer.logits.dataSync(), viaFeatures.logits.dataSync())).toBe(0);
      expect(maxAbsDifference(other.map.dataSync(), viaFeatures.map.dataSync())).toBeGreaterThan(0.05);
    } finally {
      tf.dispose([viaLayer, viaFeatures, other].flatMap((r) => [r.map, r.logits]));
    }
  });

  it('runs in eval mode and puts the mode back', () => {
    model.train();
    const r = gradCam(model, x);
    tf.dispose([r.map, r.logits]);
    expect(model.training).toBe(true);
    model.eval();
    expect(model.stem.forward === Object.getPrototypeOf(model.stem).forward).toBe(true);
  });

  it('refuses bad input with errors that say what was expected', () => {
    const rank3 = tf.zeros([12, 10, 3]);
    expect(() => gradCam(model, rank3 as unknown as tf.Tensor4D)).toThrow(/NHWC image batch \[B, H, W, C\], got rank 3.*expandDims/);
    rank3.dispose();
    expect(() => gradCam(model, x, { classIndex: 5 })).toThrow(ConfigError);
    expect(() => gradCam(model, x, { classIndex: 5 })).toThrow(/integer in \[0, 4\].*got 5/);
    expect(() => gradCam(model, x, { classIndex: [1, 2] })).toThrow(/2 classes for a batch of 3/);
    expect(() => gradCam(model, x, { layer: 'stagee' })).toThrow(/no module 'stagee'.*Did you mean: stage/);
    expect(() => gradCam(model, x, { layer: 'head' })).toThrow(ShapeError);
    expect(() => gradCam(model, x, { layer: 'head' })).toThrow(/layer 'head' gives shape \[3, 5\]; expected an NHWC map/);
    expect(() => gradCam(model, x, { minMapSize: 0 })).toThrow(/minMapSize must be a positive integer/);
    // Hooks are gone after a failure.
    expect(Object.prototype.hasOwnProperty.call(model.head, 'forward')).toBe(false);
  });

  it('a module that runs twice per forward pass, or an array output without `output`, is refused; a chosen output works', () => {
    class Twice extends Module {
      readonly conv = this.register('conv', new Conv2d(3, 3, 1, { seed: 5 }));
      readonly pair = this.register('pair', new Pair());
      forward(x: tf.Tensor4D): tf.Tensor2D {
        return tf.tidy(() => {
          const [p, q] = this.pair.forward(x);
          return tf.mean(tf.relu(tf.add(this.conv.forward(this.conv.forward(p)), q)), [1, 2]) as tf.Tensor2D;
        });
      }
    }
    class Pair extends Module {
      forward(x: tf.Tensor): [tf.Tensor, tf.Tensor] {
        return [tf.mul(x, 2), tf.neg(x)];
      }
    }
    const m = new Twice();
    try {
      expect(() => gradCam(m, x, { layer: 'conv' })).toThrow(/module 'conv' ran 2 times in one forward pass/);
      expect(() => gradCam(m, x, { layer: 'pair' })).toThrow(/module 'pair' returns 2 outputs; choose one with output: 0\.\.1/);
      expect(() => gradCam(m, x)).toThrow(/not a VisionModel.*pass layer/);
      const r = gradCam(m, x, { layer: 'pair', output: 1 });
      expect(r.map.shape).toEqual([3, 12, 10]);
      tf.dispose([r.map, r.logits]);
    } finally {
      m.dispose();
    }
  });
});

describe('the default layer', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it('pickCamTarget takes the deepest map at least minMapSize on both sides, else the shallowest', () => {
    const targets = [
      { layer: 'a', reduction: 4 },
      { layer: 'b', reduction: 8 },
      { layer: 'c', reduction: [16, 32] as [number, number] },
    ];
    expect(pickCamTarget(targets, 64, 64, 4).layer).toBe('b');
    expect(pickCamTarget(targets, 64, 128, 4).layer).toBe('c');
    expect(pickCamTarget(targets, 32, 32, 4).layer).toBe('b');
    expect(pickCamTarget(targets, 32, 32, 8).layer).toBe('a');
    expect(pickCamTarget(targets, 8, 8, 4).layer).toBe('a');
    expect(() => pickCamTarget([], 8, 8)).toThrow(ConfigError);
  });

  it("comes from the architecture's explainer: minMapSize picks among its layers", () => {
    class Registered extends ToyConvNet {}
    registerArchitecture({
      name: 'explain-test-toy',
      fromOfficialConfig: () => new Registered(),
      explainer: (m) => (m instanceof Registered ? { method: 'gradcam', camTargets: featureInfoCamTargets(m.featureInfo) } : undefined),
    });
    const m = new Registered();
    const x = tf.randomNormal([1, 8, 8, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
    try {
      const deep = explain(m, x);
      expect(deep.layer).toBe('stage');
      tf.dispose([deep.map, deep.logits]);
      // No stage reaches 5×5 at 8 px (stride 2): the shallowest, `stem`.
      const shallow = explain(m, x, { minMapSize: 5 });
      expect(shallow.layer).toBe('stem');
      tf.dispose([shallow.map, shallow.logits]);
      // A model of no registered architecture: the features split.
      const plain = new ToyConvNet();
      expect(explainMethod(plain)).toBe('gradcam');
      const r = explain(plain, x);
      expect(r.layer).toBe('forwardFeatures');
      tf.dispose([r.map, r.logits]);
      plain.dispose();
    } finally {
      x.dispose();
      m.dispose();
    }
  });
});
