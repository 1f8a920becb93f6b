import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError } from '../errors.js';
import { conv2dNHWC } from '../nn/conv.js';
import { setTestBackend } from '../testing/backend.js';
import { deformConv2d, deformIm2col } from './deform.js';

beforeAll(async () => {
  await setTestBackend();
});

/** Deterministic pseudo-random numbers (LCG → roughly N(0, 1) by summing uniforms). */
function rand(n: number, seed: number, scale = 1): Float64Array {
  let s = seed >>> 0 || 1;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * (u() + u() + u() + u() - 2) * Math.sqrt(3);
  return out;
}

interface Case {
  name: string;
  b: number;
  h: number;
  w: number;
  c: number;
  co: number;
  k: [number, number];
  s: [number, number];
  p: [number, number];
  d: [number, number];
  groups: number;
  dg: number;
  mask: boolean;
  /** Offset scale in pixels (large values push samples outside the map). */
  spread: number;
}

const outSize = (n: number, k: number, s: number, p: number, d: number) => Math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1;

/**
 * The reference: mmcv/torchvision deform_conv2d written as plain loops in float64, straight from
 * the CUDA kernel's description (per-sample validity test, per-corner bounds checks).
 */
function reference(cs: Case, x: Float64Array, off: Float64Array, wt: Float64Array, bias: Float64Array, mask: Float64Array | null): Float64Array {
  const { b, h, w, c, co, groups, dg } = cs;
  const [kh, kw] = cs.k;
  const ho = outSize(h, kh, cs.s[0], cs.p[0], cs.d[0]);
  const wo = outSize(w, kw, cs.s[1], cs.p[1], cs.d[1]);
  const kk = kh * kw;
  const cg = c / groups;
  const og = co / groups;
  const cd = c / dg;
  const at = (bi: number, y: number, xx: number, ch: number) => x[((bi * h + y) * w + xx) * c + ch]!;
  const sample = (bi: number, y: number, xx: number, ch: number) => {
    if (!(y > -1 && y < h && xx > -1 && xx < w)) return 0;
    const y0 = Math.floor(y);
    const x0 = Math.floor(xx);
    const ly = y - y0;
    const lx = xx - x0;
    let v = 0;
    if (y0 >= 0 && x0 >= 0) v += (1 - ly) * (1 - lx) * at(bi, y0, x0, ch);
    if (y0 >= 0 && x0 + 1 <= w - 1) v += (1 - ly) * lx * at(bi, y0, x0 + 1, ch);
    if (y0 + 1 <= h - 1 && x0 >= 0) v += ly * (1 - lx) * at(bi, y0 + 1, x0, ch);
    if (y0 + 1 <= h - 1 && x0 + 1 <= w - 1) v += ly * lx * at(bi, y0 + 1, x0 + 1, ch);
    return v;
  };
  const out = new Float64Array(b * ho * wo * co);
  for (let bi = 0; bi < b; bi++)
    for (let oh = 0; oh < ho; oh++)
      for (let ow = 0; ow < wo; ow++) {
        const pix = (bi * ho + oh) * wo + ow;
        for (let o = 0; o < co; o++) {
          const grp = Math.floor(o / og);
          let acc = bias[o]!;
          for (let i = 0; i < kh; i++)
            for (let j = 0; j < kw; j++) {
              const tap = i * kw + j;
              for (let ci = 0; ci < cg; ci++) {
                const ch = grp * cg + ci;
                const og2 = Math.floor(ch / cd);
                const dy = off[pix * 2 * dg * kk + 2 * (og2 * kk + tap)]!;
                const dx = off[pix * 2 * dg * kk + 2 * (og2 * kk + tap) + 1]!;
                const m = mask ? mask[pix * dg * kk + og2 * kk + tap]! : 1;
                const y = oh * cs.s[0] - cs.p[0] + i * cs.d[0] + dy;
                const xx = ow * cs.s[1] - cs.p[1] + j * cs.d[1] + dx;
                acc += wt[((i * kw + j) * cg + ci) * co + o]! * m * sample(bi, y, xx, ch);
              }
            }
          out[pix * co + o] = acc;
        }
      }
  return out;
}

/** Offsets whose fractional parts stay ≥ 0.02 from integers, so central differences never cross a kink. */
function smoothOffsets(n: number, seed: number, spread: number): Float64Array {
  const o = rand(n, seed, spread);
  for (let i = 0; i < n; i++) {
    const f = o[i]! - Math.floor(o[i]!);
    if (f < 0.02 || f > 0.98) o[i] = o[i]! + 0.05;
  }
  return o;
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Central-difference gradient of `loss` with respect to every element of `v` (mutated and restored). */
function numericGrad(v: Float64Array, loss: () => number, eps = 1e-4): Float64Array {
  const g = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const keep = v[i]!;
    v[i] = keep + eps;
    const up = loss();
    v[i] = keep - eps;
    const down = loss();
    v[i] = keep;
    g[i] = (up - down) / (2 * eps);
  }
  return g;
}

function relErr(got: Float32Array | Float64Array | Int32Array | Uint8Array, want: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num = Math.max(num, Math.abs(got[i]! - want[i]!));
    den = Math.max(den, Math.abs(want[i]!));
  }
  return num / Math.max(den, 1e-12);
}

const cases: Case[] = [
  { name: 'k3 s1 p1, DCNv1', b: 2, h: 5, w: 6, c: 4, co: 6, k: [3, 3], s: [1, 1], p: [1, 1], d: [1, 1], groups: 1, dg: 1, mask: false, spread: 1.5 },
  { name: 'k3 s2 p1, groups 2, 2 offset groups, mask', b: 1, h: 6, w: 5, c: 4, co: 4, k: [3, 3], s: [2, 2], p: [1, 1], d: [1, 1], groups: 2, dg: 2, mask: true, spread: 1 },
  { name: 'k2 s2 p0 (LITv2 DTM), far offsets', b: 2, h: 4, w: 4, c: 3, co: 5, k: [2, 2], s: [2, 2], p: [0, 0], d: [1, 1], groups: 1, dg: 1, mask: false, spread: 2.5 },
  { name: 'k3x2 s(1,2) p(2,1) d(2,1), 3 offset groups, mask', b: 1, h: 7, w: 6, c: 6, co: 4, k: [3, 2], s: [1, 2], p: [2, 1], d: [2, 1], groups: 1, dg: 3, mask: true, spread: 1 },
  { name: 'k1, groups 3, mask', b: 2, h: 3, w: 4, c: 6, co: 3, k: [1, 1], s: [1, 1], p: [0, 0], d: [1, 1], groups: 3, dg: 1, mask: true, spread: 1.2 },
];

describe('deformConv2d against a float64 loop reference', () => {
  for (const cs of cases) {
    it(`${cs.name}: forward and the gradients for input, weight, bias, offsets and mask`, () => {
      const [kh, kw] = cs.k;
      const ho = outSize(cs.h, kh, cs.s[0], cs.p[0], cs.d[0]);
      const wo = outSize(cs.w, kw, cs.s[1], cs.p[1], cs.d[1]);
      const kk = kh * kw;
      const x = rand(cs.b * cs.h * cs.w * cs.c, 11);
      const off = smoothOffsets(cs.b * ho * wo * 2 * cs.dg * kk, 12, cs.spread);
      const wt = rand(kk * (cs.c / cs.groups) * cs.co, 13, 0.5);
      const bias = rand(cs.co, 14, 0.2);
      const mask = cs.mask ? rand(cs.b * ho * wo * cs.dg * kk, 15) : null;
      const probe = rand(cs.b * ho * wo * cs.co, 16);

      // Some samples really fall outside the map (whole-sample zero rule exercised).
      let outside = 0;
      for (let i = 0; i < off.length; i++) if (Math.abs(off[i]!) > 1.5) outside++;
      expect(outside).toBeGreaterThan(0);

      const ref = reference(cs, x, off, wt, bias, mask);
      const before = tf.memory().numTensors;
      const f32 = (a: Float64Array, shape: number[]) => tf.tensor(Float32Array.from(a), shape);
      const tx = f32(x, [cs.b, cs.h, cs.w, cs.c]);
      const toff = f32(off, [cs.b, ho, wo, 2 * cs.dg * kk]);
      const tw = f32(wt, [kh, kw, cs.c / cs.groups, cs.co]);
      const tb = f32(bias, [cs.co]);
      const tm = mask ? f32(mask, [cs.b, ho, wo, cs.dg * kk]) : null;
      const tp = f32(probe, [cs.b, ho, wo, cs.co]);
      const spec = { stride: cs.s, padding: cs.p, dilation: cs.d, groups: cs.groups, deformableGroups: cs.dg };
      const run = (a: tf.Tensor, o: tf.Tensor, wv: tf.Tensor, bv: tf.Tensor, m: tf.Tensor | null) => deformConv2d(a, o, wv, bv, { ...spec, mask: m });

      const y = run(tx, toff, tw, tb, tm);
      expect(y.shape).toEqual([cs.b, ho, wo, cs.co]);
      expect(relErr(y.dataSync() as Float32Array, ref)).toBeLessThan(1e-5);

      const inputs = tm ? [tx, toff, tw, tb, tm] : [tx, toff, tw, tb];
      const grads = tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(run(a[0]!, a[1]!, a[2]!, a[3]!, a[4] ?? null), tp)))(inputs);
      const loss = () => dot(reference(cs, x, off, wt, bias, mask), probe);
      const named: Array<[string, Float64Array]> = [
        ['input', x],
        ['offset', off],
        ['weight', wt],
        ['bias', bias],
      ];
      if (mask) named.push(['mask', mask]);
      named.forEach(([what, arr], i) => {
        const want = numericGrad(arr, loss);
        // Max error over the max reference magnitude; float32 against float64 lands near 1e-7.
        const err = relErr(grads[i]!.dataSync() as Float32Array, want);
        expect(err, `${cs.name}: d/d${what}`).toBeLessThan(2e-5);
        // Not vacuous: every gradient has some signal.
        expect(Math.max(...Array.from(want, Math.abs)), what).toBeGreaterThan(1e-3);
      });
      tf.dispose([y, tx, toff, tw, tb, tp, ...grads]);
      if (tm) tm.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

describe('deformConv2d special cases', () => {
  it('with zero offsets (and mask 1) equals a plain Conv2d, for stride, padding, dilation and groups', () => {
    const before = tf.memory().numTensors;
    for (const spec of [
      { k: [3, 3], stride: 1, padding: 1, dilation: 1, groups: 1, dg: 1 },
      { k: [3, 3], stride: 2, padding: 1, dilation: 2, groups: 2, dg: 2 },
      { k: [2, 2], stride: 2, padding: 0, dilation: 1, groups: 1, dg: 1 },
      { k: [1, 3], stride: [1, 2], padding: [0, 1], dilation: 1, groups: 4, dg: 4 },
    ] as const) {
      tf.tidy(() => {
        const x = tf.randomNormal([2, 7, 8, 4], 0, 1, 'float32', 1);
        const w = tf.randomNormal([spec.k[0], spec.k[1], 4 / spec.groups, 8], 0, 0.5, 'float32', 2);
        const b = tf.randomNormal([8], 0, 0.2, 'float32', 3);
        const conv = conv2dNHWC(x, w, b, { stride: spec.stride, padding: spec.padding, dilation: spec.dilation, groups: spec.groups });
        const [, ho, wo] = conv.shape;
        const kk = spec.k[0] * spec.k[1];
        const zeros = tf.zeros([2, ho, wo, 2 * spec.dg * kk]);
        const common = { stride: spec.stride, padding: spec.padding, dilation: spec.dilation, groups: spec.groups, deformableGroups: spec.dg };
        const v1 = deformConv2d(x, zeros, w, b, common);
        const v2 = deformConv2d(x, zeros, w, b, { ...common, mask: tf.ones([2, ho, wo, spec.dg * kk]) });
        expect(v1.shape).toEqual(conv.shape);
        expect(tf.max(tf.abs(tf.sub(v1, conv))).dataSync()[0]).toBeLessThan(1e-5);
        expect(tf.max(tf.abs(tf.sub(v2, conv))).dataSync()[0]).toBeLessThan(1e-5);
      });
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('integer offsets shift taps exactly; offsets far outside give just the bias', () => {
    tf.tidy(() => {
      const x = tf.randomNormal([1, 5, 5, 2], 0, 1, 'float32', 4);
      const w = tf.randomNormal([1, 1, 2, 3], 0, 1, 'float32', 5);
      // Every output pixel reads the pixel one row down and two columns left.
      const off = tf.tile(tf.tensor4d([1, -2], [1, 1, 1, 2]), [1, 5, 5, 1]);
      const y = deformConv2d(x, off, w, null);
      const shifted = tf.pad(tf.slice(x, [0, 1, 0, 0], [1, 4, 3, 2]), [
        [0, 0],
        [0, 1],
        [2, 0],
        [0, 0],
      ]);
      const want = conv2dNHWC(shifted, w, null);
      expect(tf.max(tf.abs(tf.sub(y, want))).dataSync()[0]).toBeLessThan(1e-6);
      const b = tf.tensor1d([0.5, -1, 2]);
      const far = deformConv2d(x, tf.fill([1, 5, 5, 2], 7), w, b);
      expect(Array.from(far.dataSync().slice(0, 3))).toEqual([0.5, -1, 2]);
    });
  });

  it('deformIm2col returns the sampled columns in [kh, kw, C] order', () => {
    tf.tidy(() => {
      const x = tf.reshape(tf.range(0, 2 * 3 * 4 * 2, 1, 'float32'), [2, 3, 4, 2]);
      const cols = deformIm2col(x, tf.zeros([2, 2, 3, 8]), { kernelSize: 2 });
      expect(cols.shape).toEqual([2, 2, 3, 8]);
      // Output (b=1, oh=1, ow=2): taps (1,2), (1,3), (2,2), (2,3), channels innermost.
      const v = Array.from(cols.slice([1, 1, 2, 0], [1, 1, 1, 8]).dataSync());
      const px = (r: number, c: number) => [((1 * 3 + r) * 4 + c) * 2, ((1 * 3 + r) * 4 + c) * 2 + 1];
      expect(v).toEqual([...px(1, 2), ...px(1, 3), ...px(2, 2), ...px(2, 3)]);
    });
  });

  it('rejects mis-shaped offsets, masks, weights and groups with errors naming the expected shape', () => {
    tf.tidy(() => {
      const x = tf.zeros([1, 4, 4, 4]);
      const w = tf.zeros([2, 2, 4, 8]);
      expect(() => deformConv2d(x, tf.zeros([1, 2, 2, 4]), w, null, { stride: 2 })).toThrow(ShapeError);
      expect(() => deformConv2d(x, tf.zeros([1, 2, 2, 4]), w, null, { stride: 2 })).toThrow(/\[1, 2, 2, 8\]/);
      expect(() => deformConv2d(x, tf.zeros([1, 2, 2, 8]), w, null, { stride: 2, mask: tf.zeros([1, 2, 2, 8]) })).toThrow(/mask \[1, 2, 2, 4\]/);
      expect(() => deformConv2d(x, tf.zeros([1, 2, 2, 8]), tf.zeros([2, 2, 3, 8]), null, { stride: 2 })).toThrow(ShapeError);
      expect(() => deformConv2d(x, tf.zeros([1, 2, 2, 8]), w, null, { stride: 2, groups: 3 })).toThrow(ConfigError);
      expect(() => deformConv2d(x, tf.zeros([1, 2, 2, 8]), w, null, { stride: 2, deformableGroups: 3 })).toThrow(ConfigError);
      expect(() => deformConv2d(tf.zeros([1, 1, 1, 4]), tf.zeros([1, 1, 1, 8]), w, null)).toThrow(/too small/);
      expect(() => deformConv2d(tf.zeros([4, 4, 4]), tf.zeros([1, 2, 2, 8]), w, null)).toThrow(ShapeError);
    });
  });
});
