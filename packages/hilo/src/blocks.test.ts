import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, Conv2d, conv2dNHWC, DeformConv2d, DeformConv2dPack, layerNorm, ShapeError } from '@vit/core';
import { setTestBackend } from '@vit/core/testing';
import {
  Block,
  ConvFFNBlock,
  DTM,
  DWMlp,
  HiLo,
  LITLayer,
  LITv2PatchEmbed,
} from './index.js';

let before = 0;
beforeAll(async () => {
  await setTestBackend();
  await tf.ready();
});
beforeEach(() => {
  before = tf.memory().numTensors;
});
afterEach(() => {
  expect(tf.memory().numTensors).toBe(before);
});

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);

/**
 * The seed's paddle.summary tables (000_17bc400c614c2df9.txt), reproduced with core's
 * `Module.summary` on the same configurations (NHWC input [1, 16, 16, 96] for the 16×16 token map).
 */
describe("the seed's paddle.summary tables", () => {
  const rowParams = (m: { summary: (s: number[]) => { rows: Array<{ name: string; params: number }> } }, shape: number[]) =>
    Object.fromEntries(m.summary(shape).rows.filter((r) => r.params > 0).map((r) => [r.name, r.params]));

  it('HiLo(96, num_heads=16) on 16×16 tokens: 32,352 (8 Hi-Fi + 8 Lo-Fi heads of 6, ws 2, no qkv bias)', () => {
    const m = new HiLo(96, { numHeads: 16 });
    const s = m.summary([1, 16, 16, 96]);
    expect(s.totalParams).toBe(32_352);
    expect(s.outputShape).toEqual([[1, 16, 16, 96]]);
    // Linear-4 (h_qkv) 13,824, Linear-5 (h_proj) 2,352, Linear-1 (l_q) 4,608, Linear-2 (l_kv) 9,216, Linear-3 (l_proj) 2,352.
    expect(rowParams(m, [1, 16, 16, 96])).toEqual({ h_qkv: 13_824, h_proj: 2_352, l_q: 4_608, l_kv: 9_216, l_proj: 2_352 });
    m.dispose();
  });

  it('ConvFFNBlock(96, num_heads=64): 78,240 (LayerNorm 192, fc1 37,248, depthwise 3,840, fc2 36,960)', () => {
    const m = new ConvFFNBlock(96);
    expect(m.summary([1, 16, 16, 96]).totalParams).toBe(78_240);
    expect(rowParams(m, [1, 16, 16, 96])).toEqual({ norm2: 192, 'mlp.fc1': 37_248, 'mlp.dwconv.dwconv': 3_840, 'mlp.fc2': 36_960 });
    m.dispose();
  });

  it('TransformerBlock(96, num_heads=16) = Block: 115,392 (local_ws 1: plain MSA, no qkv bias)', () => {
    const m = new Block(96, { numHeads: 16 });
    // Parameter counts do not depend on the map size: a 4×4 map keeps the full MSA cheap.
    expect(m.summary([1, 4, 4, 96]).totalParams).toBe(115_392);
    expect(rowParams(m, [1, 4, 4, 96])).toMatchObject({ 'attn.l_q': 9_216, 'attn.l_kv': 18_432, 'attn.l_proj': 9_312 });
    m.dispose();
  });

  it('LITv2Layer(96, (16, 16), 1, num_heads=16) = LITLayer: 115,680 (the layer passes qkv_bias=True)', () => {
    const m = new LITLayer(96, { depth: 1, numHeads: 16 });
    expect(m.summary([1, 4, 4, 96]).totalParams).toBe(115_680);
    expect(rowParams(m, [1, 4, 4, 96])).toMatchObject({ 'blocks.0.attn.l_q': 9_312, 'blocks.0.attn.l_kv': 18_624 });
    m.dispose();
  });

  it('DeformablePatchMerging((16, 16), 96) = DTM dcnv2: 79,308 with the BatchNorm statistics', () => {
    const m = new DTM(96, { kind: 'dcnv2' });
    const s = m.summary([1, 16, 16, 96]);
    expect(s.outputShape).toEqual([[1, 8, 8, 192]]);
    expect(rowParams(m, [1, 16, 16, 96])).toEqual({ offset: 3_080, mask: 1_540, dconv: 73_920, norm_layer: 384 });
    const stats = m.namedBuffers().reduce((a, [, v]) => a + v.size, 0);
    expect(stats).toBe(384);
    // paddle.summary counts every BatchNorm2D vector (weight, bias, mean, variance: 4 × 192 = 768)
    // and calls all 768 non-trainable: total 79,308, "trainable" 78,540. Here weight and bias are
    // trainable parameters and the statistics buffers: 78,924 + 384 = 79,308.
    expect(s.totalParams).toBe(78_924);
    expect(s.totalParams + stats).toBe(79_308);
    expect(s.totalParams - 384).toBe(78_540);
    m.dispose();
  });

  it('LITv2PatchEmbed(norm_layer=LayerNorm) on 224×224: 4,896 (conv 4,704 + LayerNorm 192)', () => {
    const m = new LITv2PatchEmbed({ patchSize: 4, embedDim: 96, norm: layerNorm(1e-5) });
    const s = m.summary([1, 224, 224, 3]);
    expect(s.totalParams).toBe(4_896);
    expect(s.outputShape).toEqual([[1, 56, 56, 96]]);
    m.dispose();
  });
});

describe('HiLo', () => {
  it('splits heads as int(heads·alpha) Lo-Fi / the rest Hi-Fi, ws 1 = all Lo-Fi, and creates only the used projections', () => {
    const cases: Array<[number, number, number, number, number, number, string[]]> = [
      // dim, heads, alpha, ws → lHeads, hHeads, parameter prefixes
      [96, 3, 0.9, 2, 2, 1, ['l_q', 'l_kv', 'l_proj', 'h_qkv', 'h_proj']],
      [96, 12, 0.9, 2, 10, 2, ['l_q', 'l_kv', 'l_proj', 'h_qkv', 'h_proj']],
      [64, 4, 0.5, 1, 4, 0, ['l_q', 'l_kv', 'l_proj']],
      [64, 2, 0.2, 4, 0, 2, ['h_qkv', 'h_proj']],
      [64, 4, 1.0, 2, 4, 0, ['l_q', 'l_kv', 'l_proj']],
      [48, 3, 1.0, 0, 3, 0, ['l_q', 'l_kv', 'l_proj']],
    ];
    for (const [dim, heads, alpha, ws, l, h, keys] of cases) {
      const m = new HiLo(dim, { numHeads: heads, alpha, windowSize: ws, qkvBias: true });
      expect([m.lHeads, m.hHeads, m.lDim + m.hDim], `${dim}/${heads}/${alpha}/${ws}`).toEqual([l, h, dim]);
      expect([...new Set(Object.keys(m.stateDict()).map((k) => k.split('.')[0]))].sort()).toEqual([...keys].sort());
      m.dispose();
    }
  });

  it('refuses configurations the official code cannot run', () => {
    expect(() => new HiLo(96, { numHeads: 5 })).toThrow(/divided by num_heads/);
    expect(() => new HiLo(64, { numHeads: 4, alpha: 1.3 })).toThrow(ConfigError);
    expect(() => new HiLo(64, { numHeads: 4, alpha: 0.5, windowSize: 0 })).toThrow(/window size 0/);
    expect(() => new HiLo(64, { numHeads: 4, alpha: -0.5 })).toThrow(ConfigError);
  });

  it('takes NHWC maps or tokens (square by default, or with an explicit grid) with the same result', () => {
    const m = new HiLo(16, { numHeads: 4, windowSize: 2, qkvBias: true });
    tf.tidy(() => {
      const x = tf.randomNormal([2, 4, 6, 16], 0, 1, 'float32', 1);
      const map = m.forward(x);
      const tokens = m.forward(tf.reshape(x, [2, 24, 16]), [4, 6]);
      expect(tokens.shape).toEqual([2, 24, 16]);
      expect(maxDiff(tf.reshape(map, [2, 24, 16]), tokens)).toBe(0);
      expect(m.forward(tf.randomNormal([1, 16, 16])).shape).toEqual([1, 16, 16]);
      expect(() => m.forward(tf.zeros([1, 24, 16]))).toThrow(/not a square grid/);
    });
    m.dispose();
  });

  it('Hi-Fi needs maps divisible by the window unless padToWindow; padding = pad, attend, crop (official detection)', () => {
    const strict = new HiLo(16, { numHeads: 2, windowSize: 3 });
    const padded = new HiLo(16, { numHeads: 2, windowSize: 3, padToWindow: true });
    padded.loadStateDict(strict.stateDict());
    tf.tidy(() => {
      const x = tf.randomNormal([1, 5, 7, 16], 0, 1, 'float32', 2);
      expect(() => strict.forward(x)).toThrow(ShapeError);
      expect(() => strict.forward(x)).toThrow(/divisible by the window size 3/);
      const y = padded.forward(x);
      expect(y.shape).toEqual([1, 5, 7, 16]);
      const manual = tf.slice(strict.forward(tf.pad(x, [[0, 0], [0, 1], [0, 2], [0, 0]])), [0, 0, 0, 0], [1, 5, 7, 16]);
      expect(maxDiff(y, manual)).toBe(0);
      // On divisible maps both agree.
      const z = tf.randomNormal([1, 6, 3, 16], 0, 1, 'float32', 3);
      expect(maxDiff(strict.forward(z), padded.forward(z))).toBe(0);
    });
    strict.dispose();
    padded.dispose();
  });

  it('Lo-Fi-only HiLo pools with floor on maps not divisible by the window (as AvgPool2d)', () => {
    const m = new HiLo(8, { numHeads: 2, windowSize: 2, alpha: 1 });
    tf.tidy(() => {
      const x = tf.randomNormal([1, 5, 5, 8], 0, 1, 'float32', 4);
      expect(m.forward(x).shape).toEqual([1, 5, 5, 8]);
      // The last row and column never reach the keys: changing them moves only their own queries.
      const x2 = tf.concat([tf.slice(x, [0, 0, 0, 0], [1, 4, 5, 8]), tf.mul(tf.slice(x, [0, 4, 0, 0], [1, 1, 5, 8]), 3)], 1);
      const d = tf.sub(m.forward(x), m.forward(x2));
      expect(tf.max(tf.abs(tf.slice(d, [0, 0, 0, 0], [1, 4, 5, 8]))).dataSync()[0]).toBeLessThan(1e-6);
      expect(() => m.forward(tf.zeros([1, 1, 3, 8]))).toThrow(/has none/);
    });
    m.dispose();
  });
});

describe('DTM and deformable convolution modules', () => {
  it('official DCNv1 keys and shapes; zero-initialised offsets make it a plain 2×2 stride-2 conv', () => {
    const m = new DTM(8);
    expect(Object.fromEntries(Object.entries(m.stateDict()).map(([k, v]) => [k, v.shape]))).toEqual({
      'dconv.weight': [2, 2, 8, 16],
      'dconv.bias': [16],
      'dconv.conv_offset.weight': [2, 2, 8, 8],
      'dconv.conv_offset.bias': [8],
      'norm_layer.weight': [16],
      'norm_layer.bias': [16],
      'norm_layer.running_mean': [16],
      'norm_layer.running_var': [16],
    });
    m.eval();
    tf.tidy(() => {
      const x = tf.randomNormal([2, 6, 4, 8], 0, 1, 'float32', 5);
      const conv = conv2dNHWC(x, m.dconv.weight, m.dconv.bias, { stride: 2 });
      expect(maxDiff(m.dconv.forward(x), conv)).toBeLessThan(1e-5);
      expect(m.forward(x).shape).toEqual([2, 3, 2, 16]);
      expect(m.offsets(x).shape).toEqual([2, 3, 2, 8]);
      expect(() => m.forward(tf.zeros([1, 5, 4, 8]))).toThrow(/not even/);
    });
    m.dispose();
  });

  it("the seed's DCNv2 variant: offset/mask convs, mask used raw; allowOdd floors odd maps", () => {
    const m = new DTM(4, { kind: 'dcnv2', allowOdd: true, outDim: 6 });
    expect(Object.keys(m.stateDict()).filter((k) => !k.startsWith('norm_layer'))).toEqual([
      'offset.weight',
      'offset.bias',
      'mask.weight',
      'mask.bias',
      'dconv.weight',
      'dconv.bias',
    ]);
    m.eval();
    tf.tidy(() => {
      const x = tf.randomNormal([1, 5, 7, 4], 0, 1, 'float32', 6);
      expect(m.forward(x).shape).toEqual([1, 2, 3, 6]);
      // A zero mask zeroes every sample: the conv output is the bias.
      m.mask!.weight.assign(tf.zeros(m.mask!.weight.shape));
      m.mask!.bias!.assign(tf.zeros([4]));
      const y = m.dconv.forward(x, m.offset!.forward(x), m.mask!.forward(x));
      expect(maxDiff(y, tf.broadcastTo(m.dconv.bias, [1, 2, 3, 6]))).toBe(0);
    });
    m.dispose();
  });

  it('DeformConv2dPack is general (kernel 3, padding 1, groups, offset groups) and keeps the official bias key when bias=false', () => {
    const m = new DeformConv2dPack(4, 6, 3, { padding: 1, groups: 2, deformableGroups: 2, bias: false });
    expect(m.conv_offset.outChannels).toBe(36);
    expect(m.bias.trainable).toBe(false);
    expect(m.numParams({ trainableOnly: true })).toBe(3 * 3 * 2 * 6 + 4 * 36 * 9 + 36);
    tf.tidy(() => {
      const x = tf.randomNormal([1, 5, 5, 4], 0, 1, 'float32', 7);
      expect(maxDiff(m.forward(x), conv2dNHWC(x, m.weight, null, { padding: 1, groups: 2 }))).toBeLessThan(1e-5);
    });
    const d = new DeformConv2d(4, 4, 2);
    expect(() => tf.tidy(() => d.forward(tf.zeros([1, 3, 3, 4])))).toThrow(/needs offsets/);
    m.dispose();
    d.dispose();
  });
});

describe('composable parts', () => {
  it('Block and ConvFFNBlock take attention, MLP, norm and activation factories', () => {
    const b = new Block(8, {
      attnLayer: (d) => new Conv2d(d, d, 3, { padding: 1 }),
      mlpLayer: (d) => new DWMlp(d, { hiddenFeatures: 4 }),
      normLayer: layerNorm(1e-6),
    });
    expect(Object.keys(b.stateDict())).toEqual(expect.arrayContaining(['attn.weight', 'mlp.fc1.weight', 'mlp.dwconv.dwconv.weight']));
    tf.tidy(() => {
      expect(b.forward(tf.randomNormal([1, 3, 5, 8])).shape).toEqual([1, 3, 5, 8]);
    });
    const c = new ConvFFNBlock(8, { mlpRatio: 2.6 });
    expect((c.mlp as DWMlp).hiddenFeatures).toBe(20); // int(8 · 2.6)
    expect(() => tf.tidy(() => c.forward(tf.zeros([1, 4, 4, 7])))).toThrow(ShapeError);
    b.dispose();
    c.dispose();
  });

  it('DWMlp uses the official init: trunc-normal(0.02) Linears, N(0, 2/9) depthwise, zero biases', () => {
    const m = new DWMlp(64, { hiddenFeatures: 256 });
    tf.tidy(() => {
      const { variance } = tf.moments(m.fc1.weight);
      expect(Math.sqrt(variance.dataSync()[0]!)).toBeCloseTo(0.02, 2);
      const dw = tf.moments(m.dwconv.dwconv.weight);
      expect(Math.sqrt(dw.variance.dataSync()[0]!)).toBeCloseTo(Math.sqrt(2 / 9), 1);
      expect(tf.max(tf.abs(m.fc2.bias!)).dataSync()[0]).toBe(0);
    });
    m.dispose();
  });
});
