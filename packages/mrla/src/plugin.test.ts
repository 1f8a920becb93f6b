import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Conv2FormerBlock } from '@vit/conv2former';
import { BatchNorm2d, Conv2d, Sequential } from '@vit/core';
import { MRLAModule, WithMRLA } from './index.js';
import { setTestBackend } from '@vit/core/testing';

/**
 * MRLA is a plug-in: the official insertion point `out = y + bn_mrla(mrla(y, identity))` works on
 * any residual block. Here it wraps the official Conv2Former `Block` (@vit/conv2former's
 * `Conv2FormerBlock`), a block of a different architecture with no notion of MRLA.
 */
describe('MRLA as a plug-in for another architecture', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it('wraps a Conv2Former block: formula, keys, gradients', () => {
    const before = tf.memory().numTensors;
    const dim = 32;
    const block = new Conv2FormerBlock(dim, { kernelSize: 5, mlpRatio: 2, layerScaleInitValue: 0.5 });
    const wrapped = new WithMRLA(block, dim);
    const keys = Object.keys(wrapped.stateDict());
    expect(keys).toContain('block.layer_scale_1');
    expect(keys).toContain('block.attn.att.2.weight');
    expect(keys).toEqual(expect.arrayContaining(['mrla.lambda_t', 'mrla.mrla.Wq.weight', 'mrla.mrla.Wk.weight', 'mrla.mrla.Wv.weight', 'bn_mrla.running_var']));

    wrapped.eval();
    tf.tidy(() => {
      const x = tf.randomNormal([2, 6, 5, dim], 0, 1, 'float32', 3) as tf.Tensor4D;
      const y = block.forward(x) as tf.Tensor4D;
      // o_t = mrla_light(y) + lambda ⊙ x; the block's own input is its identity.
      const manual = tf.add(y, (wrapped.bn_mrla as BatchNorm2d).forward(wrapped.mrla.forward(y, x)));
      const got = wrapped.forward(x);
      expect(got.shape).toEqual([2, 6, 5, dim]);
      expect(tf.max(tf.abs(tf.sub(got, manual))).dataSync()[0]).toBe(0);
      // And it really changes the block's output.
      expect(tf.max(tf.abs(tf.sub(got, y))).dataSync()[0]).toBeGreaterThan(1e-3);
    });

    wrapped.train();
    tf.tidy(() => {
      const x = tf.randomNormal([2, 6, 5, dim], 0, 1, 'float32', 4) as tf.Tensor4D;
      const vars = wrapped.namedParameters().filter(([n]) => n.startsWith('mrla.') || n.startsWith('block.layer_scale'));
      const { grads } = tf.variableGrads(() => tf.sum(tf.square(wrapped.forward(x))) as tf.Scalar, vars.map(([, v]) => v));
      for (const [n, v] of vars) expect(tf.max(tf.abs(grads[v.name]!)).dataSync()[0], n).toBeGreaterThan(0);
    });
    wrapped.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('uses a downsampled identity when the wrapped block changes shape', () => {
    const before = tf.memory().numTensors;
    // A strided conv stage from core layers, identity projected like ResNet's downsample.
    const body = new Sequential(new Conv2d(16, 32, 3, { stride: 2, padding: 1, bias: false }), new BatchNorm2d(32));
    const shortcut = new Sequential(new Conv2d(16, 32, 1, { stride: 2, bias: false }), new BatchNorm2d(32));
    const wrapped = new WithMRLA(body, 32, { shortcut, layerAttn: (c) => new MRLAModule(c, { dimPerhead: 16 }) });
    wrapped.eval();
    tf.tidy(() => {
      const x = tf.randomNormal([1, 9, 7, 16]) as tf.Tensor4D;
      const y = body.forward(x) as tf.Tensor4D;
      const manual = tf.add(y, wrapped.bn_mrla.forward(wrapped.mrla.forward(y, shortcut.forward(x))) as tf.Tensor);
      const got = wrapped.forward(x);
      expect(got.shape).toEqual([1, 5, 4, 32]);
      expect(tf.max(tf.abs(tf.sub(got, manual))).dataSync()[0]).toBe(0);
    });
    wrapped.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
