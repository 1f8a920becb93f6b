import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ShapeError } from '../errors.js';
import { REF } from '../nn/__fixtures__/reference.js';
import { expectClose, noLeak, seq } from '../nn/__fixtures__/helpers.js';
import { attentionWeights, mergeHeads, scaledDotProductAttention, splitHeads } from './attention.js';
import { setTestBackend } from '../testing/backend.js';

beforeAll(async () => {
  await setTestBackend();
});

describe('attention helpers', () => {
  it('splitHeads gives head h the channels h·d … h·d + d − 1; mergeHeads inverts it', () => {
    noLeak(() => {
      const [b, n, heads, d] = [2, 3, 4, 5];
      const x = tf.range(0, b * n * heads * d).reshape([b, n, heads * d]);
      const s = splitHeads(x, heads);
      expect(s.shape).toEqual([b, heads, n, d]);
      const v = s.arraySync() as number[][][][];
      for (let bi = 0; bi < b; bi++)
        for (let h = 0; h < heads; h++)
          for (let t = 0; t < n; t++)
            for (let j = 0; j < d; j++) expect(v[bi]![h]![t]![j]).toBe((bi * n + t) * heads * d + h * d + j);
      expect(Array.from(mergeHeads(s).dataSync())).toEqual(Array.from(x.dataSync()));
    });
    expect(() => splitHeads(tf.zeros([1, 2, 6]), 4)).toThrow('channels (6) must be divisible by heads (4)');
    expect(() => mergeHeads(tf.zeros([1, 2, 6]))).toThrow(ShapeError);
  });

  it('scaledDotProductAttention matches torch SDPA (additive bias, default and explicit scale)', () => {
    noLeak(() => {
      const q = seq([2, 2, 3, 4]);
      const k = seq([2, 2, 5, 4], 0.41, 0.3);
      const v = seq([2, 2, 5, 3], 0.19, 0.8);
      const bias = seq([1, 2, 3, 5], 0.77, 0.1);
      const y = scaledDotProductAttention(q, k, v, { bias });
      expect(y.shape).toEqual([2, 2, 3, 3]);
      expectClose(y, REF.sdpa);
      expectClose(scaledDotProductAttention(q, k, v, { scale: 0.3 }), REF.sdpa_scale);
    });
  });

  it('masks by replacement: masked keys get 0 weight, a fully masked row is uniform (not NaN)', () => {
    noLeak(() => {
      const q = seq([1, 2, 4]);
      const k = seq([1, 3, 4], 0.41, 0.3);
      const mask = tf.tensor([[1, 0, 1], [0, 0, 0]], [2, 3], 'bool');
      const w = attentionWeights(q, k, { mask, bias: tf.fill([2, 3], 100) });
      const a = w.arraySync() as number[][][];
      expect(a[0]![0]![1]).toBe(0);
      expect(a[0]![0]![0]! + a[0]![0]![2]!).toBeCloseTo(1, 6);
      expectClose(tf.slice(w, [0, 1, 0], [1, 1, 3]), [1 / 3, 1 / 3, 1 / 3], 1e-7);
      // A 0/1 float mask behaves the same.
      expectClose(attentionWeights(q, k, { mask: tf.cast(mask, 'float32'), bias: tf.fill([2, 3], 100) }), Array.from(w.dataSync()), 0);
    });
  });

  it('is differentiable in q, k, v and the bias table', () => {
    noLeak(() => {
      const q = seq([1, 2, 3, 4]);
      const k = seq([1, 2, 3, 4], 0.41, 0.3);
      const v = seq([1, 2, 3, 4], 0.19, 0.8);
      const bias = seq([2, 3, 3], 0.77, 0.1);
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, d: tf.Tensor) =>
        tf.sum(tf.mul(scaledDotProductAttention(a, b, c, { bias: d }), seq([1, 2, 3, 4], 0.83))),
      )([q, k, v, bias]);
      for (const g of grads) {
        expect(g.dataSync().every(Number.isFinite)).toBe(true);
        expect(tf.max(tf.abs(g)).dataSync()[0]).toBeGreaterThan(1e-6);
      }
    });
  });
});
