import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { ConfigError, ShapeError } from '../errors.js';
import { checkTensorLeaks } from '../testing/leaks.js';
import { ToyAttention, ToyAttentionNet, ToyConvNet } from './__fixtures__/toy.js';
import { toUnitMaps } from './common.js';
import { explain, explainMethod } from './explain.js';
import { attentionRollout, rollout } from './rollout.js';
import type { AttentionMaps, AttentionSpec } from './types.js';

const t4 = (v: number[][][][]) => tf.tensor4d(v);

function values(t: tf.Tensor): number[] {
  const v = Array.from(t.dataSync());
  t.dispose();
  return v;
}

/** Rollout as Abnar & Zuidema describe it, in plain JavaScript (one image, mean/max/min heads, discard, class layers). */
function referenceRollout(
  layers: number[][][][],
  o: { prefix: number; discard?: number; fusion?: 'mean' | 'max' | 'min'; classLayers?: number[][][][] },
): number[] {
  const fuse = (heads: number[][][]) => {
    const f = heads[0]!.map((row, i) =>
      row.map((_, j) => {
        const hs = heads.map((h) => h[i]![j]!);
        const v = o.fusion === 'max' ? Math.max(...hs) : o.fusion === 'min' ? Math.min(...hs) : hs.reduce((s, x) => s + x, 0) / hs.length;
        return Math.max(0, v);
      }),
    );
    const flat = f.flat().sort((a, b) => a - b);
    const k = Math.floor((o.discard ?? 0) * flat.length);
    const kth = k > 0 ? flat[k - 1]! : -Infinity;
    return f.map((row) => row.map((v) => (v > kth ? v : 0)));
  };
  const n = layers.length ? layers[0]![0]!.length : o.classLayers![0]![0]![0]!.length - 1;
  let r: number[][] = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
  for (const heads of layers) {
    const a = fuse(heads).map((row, i) => row.map((v, j) => v + (i === j ? 1 : 0)));
    const norm = a.map((row) => row.map((v) => v / row.reduce((s, x) => s + x, 0)));
    r = norm.map((row) => r[0]!.map((_, j) => row.reduce((s, v, k) => s + v * r[k]![j]!, 0)));
  }
  let row: number[];
  if (o.classLayers?.length) {
    let v = [1, ...Array<number>(n).fill(0)];
    for (const heads of o.classLayers) {
      const a = fuse(heads)[0]!.map((x, j) => x + (j === 0 ? 1 : 0));
      const s = a.reduce((p, x) => p + x, 0);
      const w = a.map((x) => x / s);
      v = v.map((x, j) => w[0]! * x + (j > 0 ? w[j]! : 0));
    }
    const tok = v.slice(1);
    row = r[0]!.map((_, j) => tok.reduce((s, x, k) => s + x * r[k]![j]!, 0));
  } else {
    row = o.prefix > 0 ? r[0]! : r[0]!.map((_, j) => r.reduce((s, rr) => s + rr[j]!, 0) / n);
  }
  return row.slice(o.prefix);
}


describe('rollout (hand-computed cases)', () => {
  checkTensorLeaks();

  it('one layer, two heads, no class token: heads averaged, + I, rows renormalised, mean of the rows', () => {
    // mean of heads [[.8, .2], [.5, .5]]; + I → [[1.8, .2], [.5, 1.5]] / 2 → [[.9, .1], [.25, .75]]; column means [.575, .425].
    const a = t4([[[[1, 0], [0.5, 0.5]], [[0.6, 0.4], [0.5, 0.5]]]]);
    expect(values(rollout({ layers: [a], prefixTokens: 0, grid: [1, 2] }))).toEqual([expect.closeTo(0.575, 6), expect.closeTo(0.425, 6)]);
    a.dispose();
  });

  it('two layers multiply later-on-the-left', () => {
    // Â1 = [[.75, .25], [0, 1]], Â2 = [[.5, .5], [.5, .5]]; Â2·Â1 = [[.375, .625], [.375, .625]].
    const a1 = t4([[[[0.5, 0.5], [0, 1]]]]);
    const a2 = t4([[[[0, 1], [1, 0]]]]);
    expect(values(rollout({ layers: [a1, a2], prefixTokens: 0, grid: [2, 1] }))).toEqual([expect.closeTo(0.375, 6), expect.closeTo(0.625, 6)]);
    // The other order is another answer: Â1·Â2 = [[.5, .5], [.5, .5]].
    expect(values(rollout({ layers: [a2, a1], prefixTokens: 0, grid: [2, 1] }))).toEqual([expect.closeTo(0.5, 6), expect.closeTo(0.5, 6)]);
    tf.dispose([a1, a2]);
  });

  it("a class token in the sequence: its row, without its own column", () => {
    // Row 0: ([.2, .5, .3] + [1, 0, 0]) / 2 = [.6, .25, .15] → patches [.25, .15].
    const a = t4([[[[0.2, 0.5, 0.3], [1, 0, 0], [0, 0, 1]]]]);
    expect(values(rollout({ layers: [a], prefixTokens: 1, grid: [1, 2] }))).toEqual([expect.closeTo(0.25, 6), expect.closeTo(0.15, 6)]);
    a.dispose();
  });

  it('class-attention layers (CaiT): the class token draws on itself and the tokens, traced back through the self-attention', () => {
    // R = ([[.5, .5], [.5, .5]] + I) / 2 = [[.75, .25], [.25, .75]].
    // CA 1: ([.5, .25, .25] + e0) / 2 = [.75, .125, .125] → v = [.75, .125, .125].
    // CA 2: ([0, 1, 0] + e0) / 2 = [.5, .5, 0] → v = .5·v + [0, .5, 0] = [.375, .5625, .0625].
    // tokens [.5625, .0625] · R = [.4375, .1875].
    const sa = t4([[[[0.5, 0.5], [0.5, 0.5]]]]);
    const c1 = t4([[[[0.5, 0.25, 0.25]]]]);
    const c2 = t4([[[[0, 1, 0]]]]);
    expect(values(rollout({ layers: [sa], classLayers: [c1, c2], prefixTokens: 0, grid: [1, 2] }))).toEqual([expect.closeTo(0.4375, 6), expect.closeTo(0.1875, 6)]);
    tf.dispose([sa, c1, c2]);
  });

  it('max/min head fusion, discarded weights, negative weights clipped and a batch agree with the written-out algorithm', () => {
    const b = 2;
    const heads = 3;
    const n = 5;
    const draw = (rows: number, seed: number) => tf.tidy(() => tf.sub(tf.softmax(tf.randomNormal([b, heads, rows, n + (rows === 1 ? 1 : 0)], 0, 2, 'float32', seed)), 0.05));
    const layers = [draw(n, 1), draw(n, 2), draw(n, 3)] as tf.Tensor4D[];
    const classLayers = [draw(1, 4), draw(1, 5)] as tf.Tensor4D[];
    const L = layers.map((l) => l.arraySync());
    const C = classLayers.map((l) => l.arraySync());
    for (const [fusion, discard, prefix, withClass] of [
      ['mean', 0, 1, false],
      ['max', 0.3, 1, false],
      ['min', 0.5, 0, false],
      ['mean', 0.2, 1, true],
      ['max', 0, 0, true],
    ] as const) {
      const grid: [number, number] = prefix ? [2, 2] : [1, 5];
      const maps: AttentionMaps = { layers, prefixTokens: prefix, grid, ...(withClass ? { classLayers } : {}) };
      const got = values(rollout(maps, { headFusion: fusion, discardRatio: discard }));
      const want = [0, 1].flatMap((i) =>
        referenceRollout(
          L.map((l) => l[i]!),
          { prefix, discard, fusion, classLayers: withClass ? C.map((c) => c[i]!) : undefined },
        ),
      );
      expect(got.length).toBe(want.length);
      got.forEach((g, i) => expect(g, `${fusion} ${discard} ${prefix} ${withClass} [${i}]`).toBeCloseTo(want[i]!, 5));
    }
    tf.dispose([...layers, ...classLayers]);
  });

  it('refuses inconsistent maps and options', () => {
    const a = t4([[[[1, 0], [0, 1]]]]);
    const c = t4([[[[1, 0]]]]);
    expect(() => rollout({ layers: [a], prefixTokens: 0, grid: [2, 2] })).toThrow(/0 prefix tokens and a 2x2 grid do not make the 2 tokens/);
    expect(() => rollout({ layers: [a], classLayers: [c], prefixTokens: 0, grid: [1, 2] })).toThrow(/class-attention layer 0 should be \[1, heads, 1, 3\]/);
    expect(() => rollout({ layers: [], prefixTokens: 0, grid: [1, 2] })).toThrow(ConfigError);
    expect(() => rollout({ layers: [a], prefixTokens: 0, grid: [1, 2] }, { discardRatio: 1 })).toThrow(/discardRatio must be in \[0, 1\)/);
    expect(() => rollout({ layers: [a], prefixTokens: 0, grid: [1, 2] }, { headFusion: 'median' as 'mean' })).toThrow(/headFusion must be/);
    expect(() => rollout({ layers: [a, c], prefixTokens: 0, grid: [1, 2] })).toThrow(ShapeError);
    tf.dispose([a, c]);
  });
});

describe('attentionRollout on a model', () => {
  const spec: AttentionSpec = {
    layers: ['attn0', 'attn1'],
    prefixTokens: 0,
    grid: (h, w) => [h / 4, w / 4],
    weights: (m, args) => (m as ToyAttention).weights(args[0] as tf.Tensor),
  };
  checkTensorLeaks();

  it("records each attention module's input in one forward pass and rolls out the weights computed from it", () => {
    const model = new ToyAttentionNet();
    const x = tf.randomNormal([2, 16, 12, 3], 0, 1, 'float32', 9) as tf.Tensor4D;
    try {
      const r = attentionRollout(model, x, { spec });
      expect(r.method).toBe('rollout');
      expect(r.map.shape).toEqual([2, 16, 12]);
      // By hand: the tokens, then each layer's weights on its own input.
      const want = tf.tidy(() => {
        const t0 = model.tokens(x);
        const w0 = model.blocks[0]!.weights(t0);
        const w1 = model.blocks[1]!.weights(model.blocks[0]!.forward(t0));
        return toUnitMaps(rollout({ layers: [w0, w1], prefixTokens: 0, grid: [4, 3] }), 16, 12);
      });
      const top = tf.tidy(() => tf.argMax(model.forward(x), 1));
      expect(r.classIndex).toEqual(Array.from(top.dataSync()));
      expect(Math.max(...values(tf.tidy(() => tf.abs(tf.sub(r.map, want)))))).toBeLessThan(1e-6);
      tf.dispose([r.map, r.logits, want, top]);
    } finally {
      x.dispose();
      model.dispose();
    }
  });

  it('refuses a model without attention maps, a module that runs twice, and a class for rollout', () => {
    const conv = new ToyConvNet();
    const twice = new ToyAttentionNet(2, true);
    const x = tf.randomNormal([1, 8, 8, 3], 0, 1, 'float32', 9) as tf.Tensor4D;
    try {
      expect(() => attentionRollout(conv, x)).toThrow(/ToyConvNet has no global attention maps to roll out.*Use gradCam/);
      expect(() => attentionRollout(twice, x, { spec })).toThrow(/attention module 'attn0' ran 2 times in one forward pass/);
      expect(() => explain(conv, x, { method: 'rollout', classIndex: 1 })).toThrow(/rollout is class-agnostic/);
      expect(() => explain(conv, x, { method: 'lime' as 'auto' })).toThrow(/method must be 'auto', 'gradcam' or 'rollout', got 'lime'/);
      expect(explainMethod(conv, { method: 'auto' })).toBe('gradcam');
      // Hooks are gone after the failure.
      expect(Object.prototype.hasOwnProperty.call(twice.blocks[0]!, 'forward')).toBe(false);
    } finally {
      x.dispose();
      conv.dispose();
      twice.dispose();
    }
  });
});
