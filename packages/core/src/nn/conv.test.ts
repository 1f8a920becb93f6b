import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError } from '../errors.js';
import { REF } from './__fixtures__/reference.js';
import { expectClose, noLeak, seq } from './__fixtures__/helpers.js';
import { Conv1d, Conv2d } from './conv.js';
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
