import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ShapeError } from '../errors.js';
import { noLeak, seq } from '../nn/__fixtures__/helpers.js';
import { windowPartition, windowReverse } from './window.js';
import { setTestBackend } from '../testing/backend.js';

beforeAll(async () => {
  await setTestBackend();
});

describe('window partition', () => {
  it("matches Swin's window_partition order and round-trips", () => {
    noLeak(() => {
      const [b, h, w, c, ws] = [2, 4, 6, 3, 2];
      const x = tf.range(0, b * h * w * c).reshape([b, h, w, c]);
      const win = windowPartition(x, ws);
      const nh = h / ws;
      const nw = w / ws;
      expect(win.shape).toEqual([b * nh * nw, ws, ws, c]);
      const v = win.arraySync() as number[][][][];
      // Window index = (b·nH + i)·nW + j; inside it, row-major tokens.
      for (let bi = 0; bi < b; bi++)
        for (let i = 0; i < nh; i++)
          for (let j = 0; j < nw; j++)
            for (let r = 0; r < ws; r++)
              for (let s = 0; s < ws; s++)
                for (let ch = 0; ch < c; ch++) {
                  const flat = ((bi * h + i * ws + r) * w + j * ws + s) * c + ch;
                  expect(v[(bi * nh + i) * nw + j]![r]![s]![ch]).toBe(flat);
                }
      expect(Array.from(windowReverse(win, ws, h, w).dataSync())).toEqual(Array.from(x.dataSync()));
    });
  });

  it('handles rectangular windows and is differentiable', () => {
    noLeak(() => {
      const x = seq([1, 4, 6, 2]);
      const win = windowPartition(x, [2, 3]);
      expect(win.shape).toEqual([4, 2, 3, 2]);
      expect(Array.from(windowReverse(win, [2, 3], 4, 6).dataSync())).toEqual(Array.from(x.dataSync()));
      const g = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(windowPartition(a, 2), seq([6, 2, 2, 2], 0.83))))(x);
      expect(g.shape).toEqual([1, 4, 6, 2]);
      expect(tf.min(tf.abs(g)).dataSync()[0]).toBeGreaterThan(0);
    });
  });

  it('names the sizes when they do not divide', () => {
    expect(() => windowPartition(tf.zeros([1, 5, 6, 2]), 2)).toThrow(ShapeError);
    expect(() => windowPartition(tf.zeros([1, 5, 6, 2]), 2)).toThrow('height 5 and width 6 must be divisible by the window 2x2');
    expect(() => windowReverse(tf.zeros([3, 2, 2, 2]), 2, 4, 4)).toThrow(ShapeError);
  });
});
