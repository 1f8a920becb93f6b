import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { REF } from './__fixtures__/reference.js';
import { expectClose, noLeak, seq } from './__fixtures__/helpers.js';
import { Sequential } from './containers.js';
import { Conv1d, Conv2d } from './conv.js';
import { Linear } from './linear.js';
import { Mlp } from './mlp.js';
import type { Module } from './module.js';
import { BatchNorm2d, GroupNorm, LayerNorm, LayerNorm2d } from './norm.js';
import { PatchEmbed } from './patch_embed.js';
import { GELU } from './activation.js';
import { setTestBackend } from '../testing/backend.js';

beforeAll(async () => {
  await setTestBackend();
});

/** A loss that weights every output element differently, so no gradient cancels by symmetry. */
function loss(y: tf.Tensor): tf.Scalar {
  return tf.sum(tf.mul(y, seq(y.shape, 0.83, 0.3))) as tf.Scalar;
}

// Tiny shapes: the cpu backend's Conv2DBackpropFilter is very slow.
const cases: Array<[string, () => Module, number[]]> = [
  ['Conv2d stride 2 pad 1', () => new Conv2d(2, 3, 3, { stride: 2, padding: 1 }), [1, 4, 4, 2]],
  ['Conv2d dilation 2 + stride 2', () => new Conv2d(2, 2, 3, { stride: 2, padding: 2, dilation: 2 }), [1, 5, 5, 2]],
  ['Conv2d groups 2', () => new Conv2d(4, 4, 3, { padding: 1, groups: 2 }), [1, 3, 3, 4]],
  ['Conv2d depthwise ×2', () => new Conv2d(2, 4, 3, { padding: 1, groups: 2 }), [1, 3, 3, 2]],
  ['Conv2d depthwise strides [1, 2]', () => new Conv2d(2, 2, 3, { padding: 1, groups: 2, stride: [1, 2] }), [1, 3, 4, 2]],
  ['Conv1d', () => new Conv1d(2, 3, 3, { padding: 1 }), [2, 5, 2]],
  ['Conv1d depthwise', () => new Conv1d(2, 2, 3, { padding: 1, groups: 2 }), [1, 5, 2]],
  ['Linear', () => new Linear(4, 3), [2, 3, 4]],
  ['LayerNorm', () => new LayerNorm(4), [2, 3, 4]],
  ['LayerNorm2d [1,C,1,1]', () => new LayerNorm2d(3, { paramShape: [1, 3, 1, 1] }), [1, 2, 2, 3]],
  ['BatchNorm2d (train)', () => new BatchNorm2d(3), [2, 2, 2, 3]],
  ['GroupNorm', () => new GroupNorm(2, 4), [2, 2, 2, 4]],
  ['Mlp', () => new Mlp(4, { hiddenFeatures: 6 }), [1, 3, 4]],
  ['PatchEmbed + LayerNorm', () => new PatchEmbed({ patchSize: 2, inChans: 2, embedDim: 3, norm: (d) => new LayerNorm(d) }), [1, 4, 4, 2]],
  ['Sequential conv-bn-gelu', () => new Sequential(new Conv2d(2, 3, 3, { padding: 1, bias: false }), new BatchNorm2d(3), new GELU()), [2, 3, 3, 2]],
];

describe('gradient flow', () => {
  for (const [name, make, inShape] of cases) {
    it(`${name}: every parameter gets a finite, non-zero gradient`, () => {
      const m = make();
      // Norm layers start at weight 1 / bias 0; move them so no gradient is trivially structured.
      tf.tidy(() => m.parameters().forEach((p, i) => p.assign(tf.add(p, seq(p.shape, 0.5 + 0.1 * i, 0.2, 0.1)))));
      const params = m.parameters();
      expect(params.length).toBeGreaterThan(0);
      noLeak(() => {
        const x = seq(inShape, 0.61, 0.4);
        const { value, grads } = tf.variableGrads(() => loss(m.forward(x)), params);
        expect(Number.isFinite(value.dataSync()[0]!)).toBe(true);
        for (const [pname, p] of m.namedParameters()) {
          const g = grads[p.name];
          expect(g, pname).toBeDefined();
          expect(g!.shape, pname).toEqual(p.shape);
          const v = g!.dataSync();
          expect(v.every(Number.isFinite), `${pname} finite`).toBe(true);
          expect(tf.max(tf.abs(g!)).dataSync()[0], `${pname} non-zero`).toBeGreaterThan(1e-6);
        }
      });
      m.dispose();
    });
  }

  it('conv(s2, p1) → BatchNorm2d(train) → GELU gradients match PyTorch', () => {
    const conv = new Conv2d(2, 3, 3, { stride: 2, padding: 1, bias: false });
    const bn = new BatchNorm2d(3);
    const chain = new Sequential(conv, bn, new GELU());
    noLeak(() => {
      chain.loadStateDict({
        '0.weight': seq([3, 3, 2, 3], 0.29, 0.5, 0.5),
        '1.weight': seq([3], 0.43, 0.7),
        '1.bias': seq([3], 0.61, 0.2),
        '1.running_mean': tf.zeros([3]),
        '1.running_var': tf.ones([3]),
      });
      const x = seq([2, 4, 4, 2], 0.61, 0.4);
      const gx = tf.grad((xi: tf.Tensor) => loss(chain.forward(xi)))(x);
      expectClose(gx, REF.grad_chain.x, 1e-5, 1e-4);
      const { grads } = tf.variableGrads(() => loss(chain.forward(x)), chain.parameters());
      expectClose(grads[conv.weight.name]!, REF.grad_chain.conv_w, 1e-5, 1e-4);
      expectClose(grads[bn.weight!.name]!, REF.grad_chain.bn_w, 1e-5, 1e-4);
      expectClose(grads[bn.bias!.name]!, REF.grad_chain.bn_b, 1e-5, 1e-4);
    });
    chain.dispose();
  });

  it('dilated-conv weight gradient matches finite differences', () => {
    const conv = new Conv2d(1, 1, 3, { stride: 2, padding: 1, dilation: 2, seed: 4 });
    noLeak(() => {
      const x = seq([1, 5, 5, 1], 0.61, 0.4);
      const f = () => loss(conv.forward(x));
      const { grads } = tf.variableGrads(f, [conv.weight]);
      const g = grads[conv.weight.name]!.dataSync();
      const w0 = conv.weight.dataSync().slice();
      const eps = 1e-2;
      for (const i of [0, 4, 7]) {
        const at = (d: number) => {
          const w = w0.slice();
          w[i] = w[i]! + d;
          conv.weight.assign(tf.tensor(w, conv.weight.shape));
          return f().dataSync()[0]!;
        };
        // Loss is linear in the weight: central differences are exact up to float error.
        expect(Math.abs((at(eps) - at(-eps)) / (2 * eps) - g[i]!)).toBeLessThan(1e-3);
      }
      conv.weight.assign(tf.tensor(w0, conv.weight.shape));
    });
    conv.dispose();
  });
});
