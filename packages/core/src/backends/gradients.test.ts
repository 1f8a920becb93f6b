import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { setTestBackend } from '../testing/backend.js';
import { values } from './__fixtures__/kernel_harness.js';
import { GRADIENT_FIXES, installGradientFixes, requireTfjsGradients } from './gradients.js';

beforeAll(async () => {
  await setTestBackend();
  installGradientFixes();
});

const iota = (shape: number[]) =>
  tf.reshape(
    tf.range(
      0,
      shape.reduce((a, b) => a * b, 1),
      1,
      'float32',
    ),
    shape,
  );

/**
 * For y = f(x) that only moves elements of x, d sum(w ⊙ f(x)) / dx at position p is the sum of w
 * where f put x[p]. f applied to an iota of x's shape says where each element came from.
 */
function expectedScatterGrad(f: (x: tf.Tensor) => tf.Tensor, xShape: number[]): Float32Array {
  const positions = tf.tidy(() => f(iota(xShape)).dataSync());
  const w = values([positions.length], 9);
  const out = new Float32Array(xShape.reduce((a, b) => a * b, 1));
  positions.forEach((p, j) => (out[p]! += w[j]!));
  return out;
}

function actualGrad(f: (x: tf.Tensor) => tf.Tensor, xShape: number[]): Float32Array {
  return tf.tidy(() => {
    const x = tf.tensor(values(xShape, 3), xShape);
    const g = tf.grad((t: tf.Tensor) => {
      const y = f(t);
      return tf.sum(tf.mul(y, tf.tensor(values([y.size], 9), y.shape)));
    })(x);
    return Float32Array.from(g.dataSync());
  });
}

function expectClose(a: Float32Array, b: Float32Array, tol = 1e-6): void {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  expect(m).toBeLessThanOrEqual(tol);
}

function checkMoves(name: string, f: (x: tf.Tensor) => tf.Tensor, xShape: number[]): void {
  it(name, () => {
    const before = tf.memory().numTensors;
    const expected = expectedScatterGrad(f, xShape);
    expect(expected.some((v) => v !== 0)).toBe(true);
    expectClose(actualGrad(f, xShape), expected);
    expect(tf.memory().numTensors).toBe(before);
  });
}

describe('installGradientFixes', () => {
  it('registers every listed gradient and is idempotent', () => {
    expect(installGradientFixes().sort()).toEqual([...GRADIENT_FIXES].sort());
    const again = installGradientFixes();
    expect(again.sort()).toEqual([...GRADIENT_FIXES].sort());
    for (const k of GRADIENT_FIXES) expect(tf.getGradient(k), k).toBeDefined();
  });
});

describe('requireTfjsGradients', () => {
  it("passes with @tensorflow/tfjs imported and names the missing gradients and the import otherwise", () => {
    expect(() => requireTfjsGradients()).not.toThrow();
    const without = new Set([tf.Mean, tf.Conv2D]);
    expect(() => requireTfjsGradients((k) => (without.has(k) ? undefined : tf.getGradient(k)))).toThrow(
      /none for Mean, Conv2D\).*import '@tensorflow\/tfjs'.*tfjs-core alone registers no gradients/,
    );
  });
});

describe('StridedSlice gradient', () => {
  checkMoves('positive strides', (x) => tf.stridedSlice(x, [1, 0, 2], [6, 5, 7], [2, 3, 2]), [7, 5, 8]);
  checkMoves('negative strides', (x) => tf.stridedSlice(x, [6, 4], [0, 0], [-2, -1]), [7, 5]);
  checkMoves('stride −3 to the start (end mask)', (x) => tf.stridedSlice(x, [9], [0], [-3], 0, 1), [10]);
  checkMoves('begin/end masks', (x) => tf.stridedSlice(x, [2, 1], [0, 4], [1, 2], 2, 1), [5, 6]);
  // (Shrink with a stride > 1 elsewhere is not tested: tfjs 4.22's cpu forward returns the wrong
  // elements for it, e.g. x[:, 3, 1:5:2].)
  checkMoves('shrink axis', (x) => tf.stridedSlice(x, [0, 3, 1], [2, 4, 5], [1, 1, 1], 0, 0, 0, 0, 2), [2, 5, 6]);
  checkMoves('new axis and ellipsis', (x) => tf.stridedSlice(x, [0, 1], [0, 4], [1, 2], 0, 0, 1, 0, 0), [3, 2, 6]);
  checkMoves('empty selection', (x) => tf.concat([tf.stridedSlice(x, [3], [3], [1]), tf.slice(x, [0], [1])]), [5]);
});

describe('GatherNd and ScatterNd gradients', () => {
  checkMoves(
    'gatherND with repeated indices',
    (x) =>
      tf.gatherND(
        x,
        tf.tensor2d(
          [
            [0, 1],
            [2, 0],
            [0, 1],
            [1, 2],
          ],
          [4, 2],
          'int32',
        ),
      ),
    [3, 3, 2],
  );
  it('scatterND: d updates = gatherND(dy, indices)', () => {
    const indices = tf.tensor2d([[1], [3], [0]], [3, 1], 'int32');
    const updates = tf.tensor2d(values([6], 4), [3, 2]);
    const w = tf.tensor2d(values([10], 5), [5, 2]);
    const g = tf.grad((u: tf.Tensor) => tf.sum(tf.mul(tf.scatterND(indices, u, [5, 2]), w)))(updates);
    expectClose(Float32Array.from(g.dataSync()), Float32Array.from(tf.gatherND(w, indices).dataSync()));
    tf.dispose([indices, updates, w, g]);
  });
});

describe('GatherV2 with indices computed from trainable values', () => {
  it('gets a gradient for the table and a zero one for the coordinates instead of throwing', () => {
    const table = tf.variable(tf.tensor2d(values([12], 6), [6, 2]));
    const coord = tf.variable(tf.tensor1d([0.2, 1.7, 3.1, 4.9]));
    const { grads } = tf.variableGrads(() => {
      const idx = tf.cast(tf.floor(tf.mul(coord, 1)), 'int32');
      // Bilinear-style weight keeps coord on the path through a differentiable branch too.
      const frac = tf.sub(coord, tf.floor(coord));
      return tf.sum(tf.mul(tf.gather(table, idx), tf.reshape(frac, [4, 1])));
    });
    const frac = [0.2, 0.7, 0.1, 0.9];
    const expectedTable = new Float32Array(12);
    [0, 1, 3, 4].forEach((row, i) => {
      expectedTable[row * 2]! += frac[i]!;
      expectedTable[row * 2 + 1]! += frac[i]!;
    });
    expectClose(Float32Array.from(grads[table.name]!.dataSync()), expectedTable, 1e-6);
    // d/dcoord of frac·row is the row sum (the floor contributes nothing).
    const t = values([12], 6);
    const expectedCoord = Float32Array.from([0, 1, 3, 4].map((r) => t[r * 2]! + t[r * 2 + 1]!));
    expectClose(Float32Array.from(grads[coord.name]!.dataSync()), expectedCoord, 1e-6);
    tf.dispose([table, coord, ...Object.values(grads)]);
  });
});

describe('DepthToSpace and TopK gradients', () => {
  checkMoves('depthToSpace NHWC', (x) => tf.depthToSpace(x as tf.Tensor4D, 2), [2, 3, 2, 8]);
  it('topk: dy lands on the selected elements', () => {
    const x = tf.tensor2d(values([28], 3), [4, 7]);
    const w = tf.tensor2d(values([12], 9), [4, 3]);
    const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.topk(t, 3).values, w)))(x);
    const idx = tf.topk(x, 3).indices.arraySync() as number[][];
    const wv = w.arraySync() as number[][];
    const expected = new Float32Array(28);
    idx.forEach((row, r) => row.forEach((c, j) => (expected[r * 7 + c] = wv[r]![j]!)));
    expectClose(Float32Array.from(g.dataSync()), expected);
    tf.dispose([x, w, g]);
  });
});

describe('Einsum gradient', () => {
  const cases: Array<[string, number[][], (ts: tf.Tensor[]) => tf.Tensor]> = [
    [
      'ij,jk->ik',
      [
        [3, 4],
        [4, 5],
      ],
      ([a, b]) => tf.matMul(a!, b!),
    ],
    [
      'bij,bkj->bik',
      [
        [2, 3, 4],
        [2, 5, 4],
      ],
      ([a, b]) => tf.matMul(a!, b!, false, true),
    ],
    ['ij,j->i', [[3, 4], [4]], ([a, b]) => tf.sum(tf.mul(a!, b!), 1)],
    // (A letter only one operand has, e.g. 'ij,j->j', is not tested: tfjs 4.22's einsum forward
    // drops the other operand there.)
    ['ij->j (summed-out letter: broadcast gradient)', [[3, 4]], ([a]) => tf.sum(a!, 0)],
    [
      'ij,ik->jk',
      [
        [3, 4],
        [3, 2],
      ],
      ([a, b]) => tf.matMul(a!, b!, true, false),
    ],
    ['ij->ji', [[3, 4]], ([a]) => tf.transpose(a!)],
    ['ijk->ki', [[2, 3, 4]], ([a]) => tf.transpose(tf.sum(a!, 1))],
  ];
  for (const [eq, shapes, reference] of cases) {
    it(eq, () => {
      const equation = eq.split(' ')[0]!;
      const xs = shapes.map((s, i) => tf.tensor(values(s, 20 + i), s));
      const w = (y: tf.Tensor) => tf.tensor(values([y.size], 30), y.shape);
      const loss =
        (f: (ts: tf.Tensor[]) => tf.Tensor) =>
        (...ts: tf.Tensor[]) => {
          const y = f(ts);
          return tf.sum(tf.mul(y, w(y)));
        };
      const got = tf.grads(loss((ts) => tf.einsum(equation, ...ts)))(xs);
      const ref = tf.grads(loss(reference))(xs);
      got.forEach((g, i) => expectClose(Float32Array.from(g.dataSync()), Float32Array.from(ref[i]!.dataSync()), 1e-5));
      tf.dispose([...xs, ...got, ...ref]);
    });
  }
});
