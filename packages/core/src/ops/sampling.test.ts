import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ShapeError } from '../errors.js';
import { setTestBackend } from '../testing/backend.js';
import { bilinearSample, gridSample } from './sampling.js';

beforeAll(async () => {
  await setTestBackend();
});

/** Plain-loop reference of the DCN rule on one NHWC map (float64). */
function refSample(data: ArrayLike<number>, h: number, w: number, c: number, y: number, x: number): number[] {
  const out = new Array<number>(c).fill(0);
  if (!(y > -1 && y < h && x > -1 && x < w)) return out;
  const y0 = Math.floor(y);
  const x0 = Math.floor(x);
  for (const [yy, xx, wt] of [
    [y0, x0, (y0 + 1 - y) * (x0 + 1 - x)],
    [y0, x0 + 1, (y0 + 1 - y) * (x - x0)],
    [y0 + 1, x0, (y - y0) * (x0 + 1 - x)],
    [y0 + 1, x0 + 1, (y - y0) * (x - x0)],
  ] as const) {
    if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
    for (let ch = 0; ch < c; ch++) out[ch]! += wt * data[(yy * w + xx) * c + ch]!;
  }
  return out;
}

describe('bilinearSample', () => {
  it('matches the loop reference inside, on the border band and outside the map', () => {
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const [b, h, w, c] = [2, 4, 5, 3];
      const x = tf.randomNormal([b, h, w, c], 0, 1, 'float32', 1);
      const pts = [
        [0, 0],
        [1.25, 2.5],
        [3, 4],
        [-0.5, 2.2],
        [2.3, -0.7],
        [3.6, 4.4],
        [-1, 1],
        [1, 5],
        [-3.2, 7],
        [0.999, 3.001],
      ];
      const coords = tf.tensor3d([pts, pts.map(([y, xx]) => [y! * 0.7, xx! * 0.9])]);
      const got = bilinearSample(x, coords).arraySync() as number[][][];
      const xs = x.arraySync() as number[][][][];
      for (let bi = 0; bi < b; bi++) {
        const flat = xs[bi]!.flat(2);
        const cs = coords.arraySync()[bi]!;
        cs.forEach(([y, xx], i) => {
          const want = refSample(flat, h, w, c, y!, xx!);
          want.forEach((v, ch) => expect(got[bi]![i]![ch]).toBeCloseTo(v, 5));
        });
      }
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keeps any leading sample shape: coords [B, ...S, 2] → [B, ...S, C]', () => {
    tf.tidy(() => {
      const x = tf.randomNormal([2, 3, 3, 4]);
      expect(bilinearSample(x, tf.zeros([2, 5, 6, 7, 2])).shape).toEqual([2, 5, 6, 7, 4]);
      expect(bilinearSample(x, tf.zeros([2, 2])).shape).toEqual([2, 4]);
    });
  });

  it('accumulates the map gradient of samples that share pixels (duplicates sum)', () => {
    tf.tidy(() => {
      const x = tf.randomNormal([1, 3, 3, 2], 0, 1, 'float32', 2);
      // Five samples all on pixel (1, 1), two halfway between (1, 1) and (1, 2).
      const coords = tf.tensor3d([
        [
          [1, 1],
          [1, 1],
          [1, 1],
          [1, 1],
          [1, 1],
          [1, 1.5],
          [1, 1.5],
        ],
      ]);
      const g = tf.grad((inp: tf.Tensor) => tf.sum(bilinearSample(inp, coords)))(x);
      const v = g.arraySync() as number[][][][];
      expect(v[0]![1]![1]).toEqual([6, 6]);
      expect(v[0]![1]![2]).toEqual([1, 1]);
      expect(tf.sum(g).dataSync()[0]).toBeCloseTo(14, 5);
    });
  });

  it('gradients match central differences for the map and the coordinates', () => {
    const [h, w, c] = [4, 5, 2];
    const data = Float64Array.from({ length: h * w * c }, (_, i) => Math.sin(0.7 * i + 0.3));
    const pts = [
      [0.3, 0.4],
      [2.6, 3.3],
      [-0.4, 1.7],
      [3.45, 4.2],
      [1.8, -0.6],
      [3.3, 4.7],
    ];
    const probe = pts.map((_, i) => [Math.cos(i), Math.sin(i + 1)]);
    const loss = (d: ArrayLike<number>, p: number[][]) =>
      p.reduce((s, [y, xx], i) => s + refSample(d, h, w, c, y!, xx!).reduce((a, v, ch) => a + v * probe[i]![ch]!, 0), 0);
    tf.tidy(() => {
      const x = tf.tensor4d(Float32Array.from(data), [1, h, w, c]);
      const coords = tf.tensor3d([pts]);
      const tp = tf.tensor3d([probe]);
      const [gx, gc] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(bilinearSample(a, b), tp)))([x, coords]);
      const eps = 1e-4;
      const gxs = gx!.dataSync();
      for (let i = 0; i < data.length; i++) {
        const up = Float64Array.from(data);
        const dn = Float64Array.from(data);
        up[i]! += eps;
        dn[i]! -= eps;
        expect(gxs[i]).toBeCloseTo((loss(up, pts) - loss(dn, pts)) / (2 * eps), 4);
      }
      const gcs = gc!.dataSync();
      for (let i = 0; i < pts.length; i++)
        for (let k = 0; k < 2; k++) {
          const up = pts.map((q) => [...q]);
          const dn = pts.map((q) => [...q]);
          up[i]![k]! += eps;
          dn[i]![k]! -= eps;
          expect(gcs[i * 2 + k]).toBeCloseTo((loss(data, up) - loss(data, dn)) / (2 * eps), 4);
        }
    });
  });

  it('gives the whole sample, and its coordinate gradient, zero outside (−1, H)×(−1, W)', () => {
    tf.tidy(() => {
      const x = tf.ones([1, 3, 3, 1]);
      const coords = tf.tensor3d([
        [
          [-1, 1],
          [1, 3],
          [-0.5, 1],
        ],
      ]);
      const [v, g] = [bilinearSample(x, coords), tf.grad((c: tf.Tensor) => tf.sum(bilinearSample(x, c)))(coords)];
      expect(Array.from(v.dataSync())).toEqual([0, 0, 0.5]);
      expect(Array.from(g.dataSync())).toEqual([0, 0, 0, 0, 1, 0]);
    });
  });

  it('trains coordinates that come from a variable (no GatherV2/UnsortedSegmentSum gradient involved)', () => {
    const before = tf.memory().numTensors;
    const init = tf.tensor2d([[0.3, 0.2]]);
    const shift = tf.variable(init);
    init.dispose();
    const x = tf.tidy(() => tf.reshape(tf.range(0, 16, 1, 'float32'), [1, 4, 4, 1]));
    const target = tf.scalar(1 * 4 + 2); // the value at pixel (1, 2)
    const opt = tf.train.sgd(0.002);
    for (let i = 0; i < 200; i++) {
      opt.minimize(() => tf.square(tf.sub(tf.sum(bilinearSample(x, tf.reshape(tf.add(shift, tf.tensor2d([[1, 1]])), [1, 1, 2]))), target)) as tf.Scalar);
    }
    // y·4 + x = 6 along the line through the start: the loss reaches ~0.
    const [sy, sx] = Array.from(shift.dataSync());
    expect(Math.abs((1 + sy!) * 4 + (1 + sx!) - 6)).toBeLessThan(1e-2);
    opt.dispose();
    tf.dispose([shift, x, target]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects bad shapes with a ShapeError', () => {
    tf.tidy(() => {
      expect(() => bilinearSample(tf.zeros([3, 3, 1]), tf.zeros([1, 2]))).toThrow(ShapeError);
      expect(() => bilinearSample(tf.zeros([1, 3, 3, 1]), tf.zeros([1, 4, 3]))).toThrow(/\(y, x\)/);
      expect(() => bilinearSample(tf.zeros([2, 3, 3, 1]), tf.zeros([1, 4, 2]))).toThrow(ShapeError);
      expect(() => gridSample(tf.zeros([1, 3, 3, 1]), tf.zeros([1, 4, 1]))).toThrow(ShapeError);
    });
  });
});

describe('gridSample', () => {
  it("follows F.grid_sample's bilinear/zeros rule for alignCorners true and false", () => {
    tf.tidy(() => {
      const [h, w, c] = [3, 4, 2];
      const x = tf.randomNormal([1, h, w, c], 0, 1, 'float32', 3);
      const flat = Array.from(x.dataSync());
      const grid = [
        [-1, -1],
        [1, 1],
        [0, 0],
        [0.37, -0.81],
        [1.2, 0.1],
        [-1.3, -1.1],
      ];
      for (const align of [true, false]) {
        const got = gridSample(x, tf.tensor4d([[grid]]), { alignCorners: align }).arraySync() as number[][][][];
        grid.forEach(([gx, gy], i) => {
          const px = align ? ((gx! + 1) / 2) * (w - 1) : ((gx! + 1) * w - 1) / 2;
          const py = align ? ((gy! + 1) / 2) * (h - 1) : ((gy! + 1) * h - 1) / 2;
          refSample(flat, h, w, c, py, px).forEach((v, ch) => expect(got[0]![0]![i]![ch]).toBeCloseTo(v, 5));
        });
      }
      // align_corners: the grid corners are the corner pixels exactly.
      const corner = gridSample(x, tf.tensor4d([[[[1, -1]]]]), { alignCorners: true });
      expect(Array.from(corner.dataSync())).toEqual(flat.slice((w - 1) * c, w * c));
    });
  });
});
