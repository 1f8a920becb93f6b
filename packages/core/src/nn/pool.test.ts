import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError } from '../errors.js';
import { REF } from './__fixtures__/reference.js';
import { expectClose, noLeak, seq } from './__fixtures__/helpers.js';
import { AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, adaptiveAvgPool2d, avgPool2d, maxPool2d } from './pool.js';
import { setTestBackend } from '../testing/backend.js';

beforeAll(async () => {
  await setTestBackend();
});

type Ref = { shape: readonly number[]; y: readonly number[] };
/** The pooled input of gen_reference.py: seq·2 − 0.5. */
const input = (shape: number[]) => tf.sub(tf.mul(seq(shape), 2), 0.5);

describe('pools', () => {
  const cases: Array<[keyof typeof REF, number[], (x: tf.Tensor) => tf.Tensor]> = [
    ['avg_k3s2p1', [1, 5, 5, 2], (x) => new AvgPool2d(3, { stride: 2, padding: 1 }).forward(x)],
    ['avg_k3s2p1_nopad', [1, 5, 5, 2], (x) => new AvgPool2d(3, { stride: 2, padding: 1, countIncludePad: false }).forward(x)],
    ['avg_k3s2_ceil', [1, 6, 6, 1], (x) => avgPool2d(x, 3, { stride: 2, ceilMode: true })],
    ['avg_k3s2p1_ceil', [1, 6, 6, 1], (x) => avgPool2d(x, 3, { stride: 2, padding: 1, ceilMode: true })],
    ['avg_k3s2p1_ceil_nopad', [1, 6, 6, 1], (x) => avgPool2d(x, 3, { stride: 2, padding: 1, ceilMode: true, countIncludePad: false })],
    ['avg_k2', [1, 4, 4, 2], (x) => new AvgPool2d(2).forward(x)],
    ['max_k3s2p1_ceil', [1, 6, 6, 1], (x) => maxPool2d(x, 3, { stride: 2, padding: 1, ceilMode: true })],
    ['max_k2', [1, 4, 5, 2], (x) => new MaxPool2d(2).forward(x)],
    ['adapt_5x7_to_3x2', [1, 5, 7, 2], (x) => new AdaptiveAvgPool2d([3, 2]).forward(x)],
    ['adapt_7_to_3', [2, 7, 7, 1], (x) => adaptiveAvgPool2d(x, 3)],
    ['adapt_6_to_4', [1, 6, 6, 1], (x) => adaptiveAvgPool2d(x, 4)],
    ['adapt_1', [2, 3, 4, 2], (x) => new AdaptiveAvgPool2d(1).forward(x)],
  ];
  for (const [name, shape, run] of cases) {
    it(`matches PyTorch: ${name}`, () => {
      const ref = REF[name] as Ref;
      noLeak(() => {
        const y = run(input(shape));
        expect(y.shape).toEqual(ref.shape);
        expectClose(y, ref.y);
      });
    });
  }

  it('MaxPool2d pads with −inf: an all-negative map never pools a padded 0', () => {
    const ref = REF.max_neg_k3s2p1;
    noLeak(() => {
      const x = tf.neg(tf.add(tf.abs(seq([1, 5, 5, 2])), 0.1));
      const y = new MaxPool2d(3, { stride: 2, padding: 1 }).forward(x);
      expect(y.shape).toEqual(ref.shape);
      expectClose(y, ref.y);
      expect(tf.max(y).dataSync()[0]).toBeLessThan(0);
    });
  });

  it('keeps None sizes and validates', () => {
    noLeak(() => {
      expect(adaptiveAvgPool2d(tf.zeros([1, 5, 6, 2]), [null, 3]).shape).toEqual([1, 5, 3, 2]);
    });
    expect(() => maxPool2d(tf.zeros([1, 5, 5, 1]), 3, { padding: 2 })).toThrow(ConfigError);
    expect(() => avgPool2d(tf.zeros([5, 5, 1]), 3)).toThrow(ShapeError);
    expect(() => avgPool2d(tf.zeros([1, 2, 2, 1]), 3)).toThrow(ShapeError);
    expect(() => adaptiveAvgPool2d(tf.zeros([1, 5, 5, 1]), 0)).toThrow(ConfigError);
  });
});
