import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError } from '../errors.js';
import { REF } from './__fixtures__/reference.js';
import { expectClose, noLeak, seq } from './__fixtures__/helpers.js';
import { Conv1d, Conv2d, conv2dNHWC } from './conv.js';
import { setTestBackend } from '../testing/backend.js';

beforeAll(async () => {
  await setTestBackend();
});

/** Loads seq weights (as gen_reference.py) into a conv and runs it on seq input. */
function runConv(conv: Conv2d | Conv1d, inShape: number[], withBias: boolean): tf.Tensor {
  const sd: Record<string, tf.Tensor> = { weight: seq(conv.weight.shape, 0.29, 0.5, 0.5) };
  if (withBias) sd.bias = seq([conv.outChannels], 0.71, 0.4);
  conv.loadStateDict(sd);
  return conv.forward(seq(inShape));
}

describe('Conv2d', () => {
  const cases: Array<[keyof typeof REF, () => Conv2d, number[], boolean]> = [
    ['conv_s2p1', () => new Conv2d(2, 3, 3, { stride: 2, padding: 1 }), [1, 4, 4, 2], true],
    ['conv_dil2', () => new Conv2d(2, 2, 3, { padding: 2, dilation: 2 }), [1, 5, 5, 2], true],
    ['conv_dil2_s2', () => new Conv2d(2, 2, 3, { stride: 2, padding: 1, dilation: 2, bias: false }), [1, 6, 6, 2], false],
    ['conv_rect', () => new Conv2d(2, 2, [2, 3], { stride: [2, 1], padding: [1, 0] }), [1, 5, 6, 2], true],
    ['conv_g2', () => new Conv2d(4, 6, 3, { padding: 1, groups: 2 }), [1, 3, 3, 4], true],
    ['conv_dw_m2', () => new Conv2d(3, 6, 3, { padding: 1, groups: 3 }), [1, 4, 4, 3], true],
    ['conv_dw_m2_s2', () => new Conv2d(3, 6, 3, { stride: 2, padding: 1, groups: 3, bias: false }), [1, 5, 5, 3], false],
    ['conv_dw_rect_stride', () => new Conv2d(2, 2, 3, { stride: [1, 2], padding: 1, groups: 2 }), [1, 5, 5, 2], true],
  ];
  for (const [name, make, inShape, withBias] of cases) {
    it(`matches PyTorch: ${name}`, () => {
      const conv = make();
      const ref = REF[name] as { shape: readonly number[]; y: readonly number[] };
      noLeak(() => {
        const y = runConv(conv, inShape, withBias);
        expect(y.shape).toEqual(ref.shape);
        expectClose(y, ref.y);
        expect(conv.outputSize(inShape[1]!, inShape[2]!)).toEqual([ref.shape[1], ref.shape[2]]);
      });
      conv.dispose();
    });
  }

  it('pads symmetrically for stride 2 on even sizes (TF "same" would not)', () => {
    const conv = new Conv2d(2, 3, 3, { stride: 2, padding: 1 });
    noLeak(() => {
      const y = runConv(conv, [1, 4, 4, 2], true);
      const x = seq([1, 4, 4, 2]);
      const same = tf.add(tf.conv2d(x as tf.Tensor4D, conv.weight as tf.Tensor4D, 2, 'same'), conv.bias!);
      expect(tf.max(tf.abs(tf.sub(y, same))).dataSync()[0]).toBeGreaterThan(1e-2);
    });
    conv.dispose();
  });

  describe('kernel taps that only read padding', () => {
    // [input shape, weight shape, stride, padding, dilation, groups]
    const cases: Array<[string, number[], number[], number, number, number, number]> = [
      ['depthwise 7×7 on 2×2', [2, 2, 2, 4], [7, 7, 4, 1], 1, 3, 1, 4],
      ['depthwise 7×7 on 1×1', [2, 1, 1, 4], [7, 7, 4, 1], 1, 3, 1, 4],
      ['depthwise 7×7 stride 2 on 2×2', [2, 2, 2, 4], [7, 7, 4, 1], 2, 3, 1, 4],
      ['conv 3×3 on 1×1', [2, 1, 1, 3], [3, 3, 3, 5], 1, 1, 1, 1],
      ['conv 5×1 on a 1×6 strip', [2, 1, 6, 3], [5, 1, 3, 2], 1, 2, 1, 1],
      ['dilated 3×3 (5×5) on 1×1', [2, 1, 1, 3], [3, 3, 3, 2], 1, 2, 2, 1],
      ['stride 5 past the last read row', [2, 5, 5, 2], [3, 3, 2, 3], 5, 1, 1, 1],
    ];
    for (const [name, xs, ws, stride, padding, dilation, groups] of cases) {
      it(`are cut with the same output and gradients: ${name}`, () => {
        const x = seq(xs) as tf.Tensor4D;
        const w = seq(ws, 0.29, 0.5, 0.5) as tf.Tensor4D;
        const spec = { stride, padding, dilation, groups };
        // Reference: tfjs's own conv over the explicitly padded input, nothing cut; a dilated
        // kernel is spread with zeros by a gather (tfjs has no gradient for dilated convs).
        const spread = (ww: tf.Tensor4D): tf.Tensor4D => {
          if (dilation === 1) return ww;
          const [kh, kw, i, o] = ww.shape;
          const e = (kh - 1) * dilation + 1;
          const idx: number[] = [];
          for (let a = 0; a < e; a++) for (let b = 0; b < e; b++) idx.push(a % dilation || b % dilation ? kh * kw : (a / dilation) * kw + b / dilation);
          const flat = tf.concat([tf.reshape(ww, [kh * kw, i * o]), tf.zeros([1, i * o])]);
          return tf.reshape(tf.gather(flat, tf.tensor1d(idx, 'int32')), [e, e, i, o]);
        };
        const ref = (xx: tf.Tensor4D, ww: tf.Tensor4D) => {
          const xp = tf.pad(xx, [[0, 0], [padding, padding], [padding, padding], [0, 0]]);
          return groups > 1 ? tf.depthwiseConv2d(xp, spread(ww), stride, 'valid') : tf.conv2d(xp, spread(ww), stride, 'valid');
        };
        const before = tf.memory().numTensors;
        tf.tidy(() => {
          const want = ref(x, w);
          const got = conv2dNHWC(x, w, null, spec);
          expect(got.shape).toEqual(want.shape);
          expectClose(got, Array.from(want.dataSync()));
          const dy = seq(want.shape, 0.53, 0.2);
          const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(conv2dNHWC(a, b, null, spec), dy)))([x, w]);
          const [rx, rw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(ref(a as tf.Tensor4D, b as tf.Tensor4D), dy)))([x, w]);
          expectClose(gx!, Array.from(rx!.dataSync()));
          expectClose(gw!, Array.from(rw!.dataSync()));
        });
        expect(tf.memory().numTensors).toBe(before);
        tf.dispose([x, w]);
      });
    }

    it('are not convolved: a 7×7 depthwise kernel on a 2×2 map runs as 3×3', async () => {
      const x = seq([1, 2, 2, 4]) as tf.Tensor4D;
      const w = seq([7, 7, 4, 1]) as tf.Tensor4D;
      const info = await tf.profile(() => tf.tidy(() => conv2dNHWC(x, w, null, { padding: 3, groups: 4 })).dispose());
      const conv = info.kernels.filter((k) => /DepthwiseConv2d/.test(k.name));
      expect(conv.length).toBeGreaterThan(0);
      for (const k of conv) expect(k.inputShapes[1]!.slice(0, 2)).toEqual([3, 3]);
      tf.dispose([x, w]);
    });
  });

  it('declares layouts and kinds', () => {
    const normal = new Conv2d(4, 8, 3);
    const grouped = new Conv2d(4, 8, [3, 5], { groups: 2 });
    const dw = new Conv2d(4, 8, 3, { groups: 4 });
    expect(normal.weight.shape).toEqual([3, 3, 4, 8]);
    expect(normal.stateEntries().get('weight')!.kind).toBe('conv2d');
    expect(grouped.weight.shape).toEqual([3, 5, 2, 8]);
    expect(dw.weight.shape).toEqual([3, 3, 4, 2]);
    expect(dw.stateEntries().get('weight')!.kind).toBe('depthwise');
    expect(Object.keys(dw.stateDict())).toEqual(['weight', 'bias']);
    // PyTorch default init: U(±1/√fan_in), fan_in = in/groups·kh·kw.
    const bound = 1 / Math.sqrt(2 * 3 * 5);
    expect(tf.max(tf.abs(grouped.weight)).dataSync()[0]).toBeLessThanOrEqual(bound);
    for (const m of [normal, grouped, dw]) m.dispose();
  });

  it('rejects bad configs and inputs with named expectations', () => {
    expect(() => new Conv2d(3, 4, 3, { groups: 2 })).toThrow(ConfigError);
    expect(() => new Conv2d(4, 6, 3, { groups: 4 })).toThrow(/outChannels \(6\) must be divisible by groups \(4\)/);
    const conv = new Conv2d(3, 4, 3);
    noLeak(() => {
      expect(() => conv.forward(tf.zeros([2, 32, 32, 4]))).toThrow(ShapeError);
      expect(() => conv.forward(tf.zeros([2, 32, 32, 4]))).toThrow('expected NHWC input with 3 channels, got shape [2,32,32,4]');
      expect(() => conv.forward(tf.zeros([32, 32, 3]))).toThrow(ShapeError);
      expect(() => conv.forward(tf.zeros([1, 2, 2, 3]))).toThrow(/smaller than the \(dilated\) kernel/);
    });
    conv.dispose();
  });
});

describe('Conv1d', () => {
  const cases: Array<[keyof typeof REF, () => Conv1d, number[], boolean]> = [
    ['conv1d', () => new Conv1d(2, 3, 3, { stride: 2, padding: 1 }), [2, 5, 2], true],
    ['conv1d_dw', () => new Conv1d(2, 4, 3, { padding: 1, groups: 2 }), [1, 6, 2], true],
    ['conv1d_dil', () => new Conv1d(1, 1, 3, { padding: 2, dilation: 2, bias: false }), [1, 7, 1], false],
  ];
  for (const [name, make, inShape, withBias] of cases) {
    it(`matches PyTorch: ${name}`, () => {
      const conv = make();
      const ref = REF[name] as { shape: readonly number[]; y: readonly number[] };
      noLeak(() => {
        const y = runConv(conv, inShape, withBias);
        expect(y.shape).toEqual(ref.shape);
        expectClose(y, ref.y);
      });
      expect(conv.outputLength(inShape[1]!)).toBe(ref.shape[1]);
      expect(conv.stateEntries().get('weight')!.kind).toBe('conv1d');
      conv.dispose();
    });
  }

  it('checks [B, L, C] input', () => {
    const conv = new Conv1d(2, 3, 3);
    expect(() => conv.forward(tf.zeros([1, 5, 3]))).toThrow(/expected \[B, L, C\] input with 2 channels, got shape \[1,5,3\]/);
    conv.dispose();
  });
});
