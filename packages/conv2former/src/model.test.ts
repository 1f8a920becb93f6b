import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError, createModel, getArchitecture, getModelCard, parseSafetensors } from '@vit/core';
import {
  CONV2FORMER_VARIANTS,
  Conv2Former,
  Conv2FormerBlock,
  ConvMlp,
  SpatialAttention,
  conv2formerFromOfficialConfig,
  conv2formerOptionsFromOfficial,
  type Conv2FormerOptions,
} from './index.js';
import { setTestBackend } from '@vit/core/testing';

/**
 * Parameter count of a Conv2Former built from `o`, computed from the layer shapes. Used for the
 * variants too large to build in a unit test (s, b, b_22k, l); checked against real models below.
 */
function countParams(o: Required<Pick<Conv2FormerOptions, 'kernelSize' | 'dims' | 'depths' | 'mlpRatios'>> & Conv2FormerOptions): number {
  const { kernelSize: k, dims, depths, mlpRatios } = o;
  const inChans = o.inChans ?? 3;
  const numClasses = o.numClasses ?? 1000;
  const ls = o.layerScaleInitValue === null ? 0 : 2;
  let n = 0;
  if ((o.stem ?? 'conv3') === 'conv3') {
    const m = Math.floor(dims[0]! / 2);
    n += inChans * m * 9 + 2 * m + m * m * 9 + 2 * m + m * dims[0]! * 4;
  } else {
    n += inChans * dims[0]! + dims[0]!;
  }
  for (let i = 1; i < dims.length; i++) {
    n += 2 * dims[i - 1]! + dims[i - 1]! * dims[i]! * 4 + ((o.downsample ?? 'layernorm') === 'layernorm' ? dims[i]! : 0);
  }
  dims.forEach((d, i) => {
    const h = d * mlpRatios[i]!;
    const attn = 2 * d + (d * d + d) + (k * k * d + d) + 2 * (d * d + d);
    const mlp = 2 * d + (d * h + h) + (9 * h + h) + (h * d + d);
    n += depths[i]! * (attn + mlp + ls * d);
  });
  const last = dims[dims.length - 1]!;
  const hd = o.headDim ?? 1280;
  const feat = (o.head ?? 'conv') === 'conv' ? hd : last;
  n += (o.head ?? 'conv') === 'conv' ? last * hd + hd + 2 * hd : 2 * last;
  n += numClasses > 0 ? feat * numClasses + numClasses : 0;
  return n;
}

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

const tiny: Conv2FormerOptions = { kernelSize: 5, dims: [8, 16, 16, 24], depths: [1, 1, 1, 1], numClasses: 3, headDim: 16 };

describe('parameter counts', () => {
  it('the counting formula matches real models for every code path', () => {
    for (const o of [
      tiny,
      { ...tiny, stem: 'pointwise', downsample: 'groupnorm', layerScaleInitValue: null, head: 'norm', mlpRatios: [2, 3, 1, 2] },
      { ...tiny, headDim: 1280, inChans: 1, numClasses: 0 },
    ] as Conv2FormerOptions[]) {
      const m = new Conv2Former(o);
      expect(m.numParams()).toBe(countParams({ ...o, mlpRatios: o.mlpRatios ?? [4, 4, 4, 4] } as Parameters<typeof countParams>[0]));
      m.dispose();
    }
  });

  it('conv2former_n has exactly the official 14,992,840 parameters (1000 classes)', () => {
    const m = createModel('conv2former_n');
    expect(m.numParams()).toBe(14_992_840);
    expect(getModelCard('conv2former_n').paramCount).toBe(14_992_840);
    m.dispose();
  });

  it('conv2former_t has exactly the official 26,697,204 parameters (1000 classes)', () => {
    const m = createModel('conv2former_t');
    expect(m.numParams()).toBe(26_697_204);
    m.dispose();
  });

  it("conv2former_n_cifar has the seed's printed model's 8,847,498 parameters (10 classes)", () => {
    // The seed's table says 8,847,978; its printed Paddle code has 8,847,498 (a PyTorch
    // transcription of it was counted too). This is that code's model.
    const m = createModel('conv2former_n_cifar');
    expect(m.numParams()).toBe(8_847_498);
    expect(m.summary([1, 32, 32, 3]).totalParams).toBe(8_847_498);
    m.dispose();
  });

  it('the large variants match the official counts (measured on the official PyTorch code)', () => {
    for (const [name, v] of Object.entries(CONV2FORMER_VARIANTS)) {
      expect(countParams(v.options as Parameters<typeof countParams>[0]), name).toBe(v.paramCount);
      expect(getModelCard(name).paramCount).toBe(v.paramCount);
    }
  });
});

describe('official tree', () => {
  it('state-dict keys equal the official ones, in the official order', () => {
    for (const name of ['k7_d16', 'k11_d16']) {
      const bytes = readFileSync(fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url)));
      const meta = parseSafetensors(new Uint8Array(bytes)).metadata;
      const order = (JSON.parse(meta.state_dict_order!) as string[]).filter((k) => !k.endsWith('num_batches_tracked'));
      const m = conv2formerFromOfficialConfig(JSON.parse(meta.config!));
      expect(Object.keys(m.stateDict())).toEqual(order);
      m.dispose();
    }
  });

  it('declares depthwise and conv kinds so the loader converts layouts', () => {
    const m = new Conv2Former(tiny);
    const kinds = m.stateEntries();
    expect(kinds.get('stages.0.0.attn.att.2.weight')!.kind).toBe('depthwise');
    expect(kinds.get('stages.0.0.mlp.pos.weight')!.kind).toBe('depthwise');
    expect(kinds.get('stages.0.0.attn.att.0.weight')!.kind).toBe('conv2d');
    expect(kinds.get('downsample_layers.0.6.weight')!.kind).toBe('conv2d');
    expect(kinds.get('pred.weight')!.kind).toBe('linear');
    expect(kinds.get('stages.0.0.layer_scale_1')!.kind).toBe('plain');
    expect(m.noWeightDecayNames()).toContain('stages.0.0.layer_scale_1');
    m.dispose();
  });
});

describe('fromOfficialConfig', () => {
  const base = { kernel_size: 7, dims: [8, 16, 16, 24], depths: [1, 1, 1, 1], num_classes: 4 };

  it('is registered as the conv2former architecture', () => {
    const m = getArchitecture('conv2former').fromOfficialConfig(base) as Conv2Former;
    expect(m).toBeInstanceOf(Conv2Former);
    expect(m.numClasses).toBe(4);
    m.dispose();
  });

  it('uses the official defaults and ignores the arguments the official code ignores', () => {
    const o = conv2formerOptionsFromOfficial({
      kernel_size: 11,
      img_size: 384,
      window_sizes: [1, 2, 3, 4],
      num_heads: [1, 1, 1, 1],
      layer_scale_init_value: 0,
      head_init_scale: 0.3,
      drop_rate: 0.5,
    });
    expect(o).toMatchObject({
      kernelSize: 11,
      inChans: 3,
      numClasses: 1000,
      depths: [3, 3, 9, 3],
      dims: [96, 192, 384, 768],
      mlpRatios: [4, 4, 4, 4],
      dropRate: 0,
      layerScaleInitValue: 1e-6,
      stem: 'conv3',
      downsample: 'layernorm',
      head: 'conv',
      headDim: 1280,
      forwardStages: 4,
    });
  });

  it('refuses what the official constructor or forward would fail on', () => {
    expect(() => conv2formerOptionsFromOfficial({ ...base, kernel_size: undefined })).toThrow(/kernel_size/);
    expect(() => conv2formerOptionsFromOfficial({ ...base, kernel_size: 6 })).toThrow(/odd/);
    expect(() => conv2formerOptionsFromOfficial({ ...base, bogus: 1 })).toThrow(/unexpected keyword argument\(s\) bogus/);
    expect(() => conv2formerOptionsFromOfficial({ ...base, dims: [8, 16, 24], depths: [1, 1, 1] })).toThrow(ConfigError);
    expect(() => conv2formerOptionsFromOfficial({ ...base, mlp_ratios: [4, 2.5, 4, 4] })).toThrow(/mlp_ratios\[1\]/);
    expect(() => conv2formerOptionsFromOfficial({ ...base, depths: [1, 1, 1] })).toThrow(/depths has 3 entries/);
    // Five stages built, four run: the head is sized for dims[-1], so dims[3] must equal it.
    const five = { mlp_ratios: [4, 4, 4, 4, 4], window_sizes: [7, 7, 7, 7, 7], num_heads: [1, 1, 1, 1, 1] };
    expect(() => conv2formerOptionsFromOfficial({ ...base, ...five, dims: [8, 16, 16, 24, 32], depths: [1, 1, 1, 1, 1] })).toThrow(/head expects/);
    // ...and window_sizes / num_heads are indexed per stage too.
    expect(() => conv2formerOptionsFromOfficial({ ...base, dims: [8, 16, 16, 24, 24], depths: [1, 1, 1, 1, 1], mlp_ratios: [4, 4, 4, 4, 4] })).toThrow(
      /window_sizes has 4 entries/,
    );
  });

  it('builds every extra stage of a longer dims list but runs four, as the official forward', () => {
    const m = conv2formerFromOfficialConfig({
      ...base,
      dims: [8, 16, 16, 24, 24],
      depths: [1, 1, 1, 1, 2, 7],
      mlp_ratios: [4, 4, 4, 4, 4],
      window_sizes: [7, 7, 7, 7, 7],
      num_heads: [1, 1, 1, 1, 1],
    });
    expect(m.stages.length).toBe(5);
    expect(m.stages.at(4).length).toBe(2);
    expect(m.featureInfo.length).toBe(4);
    const y = tf.tidy(() => m.forward(tf.zeros([1, 32, 32, 3])));
    expect(y.shape).toEqual([1, 4]);
    y.dispose();
    m.dispose();
  });
});

describe('inputs', () => {
  let m: Conv2Former;
  beforeEach(() => {
    m = new Conv2Former(tiny);
    m.eval();
  });
  afterEach(() => m.dispose());

  it('takes odd and rectangular inputs, flooring in the stride-2 convs as the official code', () => {
    expect(m.stageSizes(45, 71)).toEqual([
      [11, 18],
      [5, 9],
      [2, 4],
      [1, 2],
    ]);
    const maps = tf.tidy(() => m.forwardIntermediates(tf.randomNormal([1, 45, 71, 3])));
    expect(maps.map((t) => t.shape)).toEqual([
      [1, 11, 18, 8],
      [1, 5, 9, 16],
      [1, 2, 4, 16],
      [1, 1, 2, 24],
    ]);
    tf.dispose(maps);
    const y = tf.tidy(() => m.forward(tf.randomNormal([2, 31, 33, 3])));
    expect(y.shape).toEqual([2, 3]);
    y.dispose();
  });

  it('names the expectation when the input is wrong', () => {
    expect(() => tf.tidy(() => m.forward(tf.zeros([32, 32, 3]) as unknown as tf.Tensor4D))).toThrow(ShapeError);
    expect(() => tf.tidy(() => m.forward(tf.zeros([1, 32, 32, 1])))).toThrow(/expects 3 input channels.*got 1/);
    expect(() => tf.tidy(() => m.forward(tf.zeros([1, 30, 64, 3])))).toThrow(/30x64 is too small.*at least 31x31/);
    expect(() => tf.tidy(() => m.forwardHead(tf.zeros([1, 2, 2, 16])))).toThrow(/\[B, H, W, 24\]/);
    expect(m.minInputSize()).toBe(31);
  });

  it('forwardIntermediates picks stages by index (negative from the end)', () => {
    const x = tf.randomNormal([1, 32, 32, 3]) as tf.Tensor4D;
    const all = m.forwardIntermediates(x);
    const sel = m.forwardIntermediates(x, { indices: [1, -1] });
    expect(sel.map((t) => t.shape)).toEqual([all[1]!.shape, all[3]!.shape]);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(sel[1]!, all[3]!))).dataSync()[0])).toBe(0);
    expect(() => m.forwardIntermediates(x, { indices: [4] })).toThrow(RangeError);
    tf.dispose([x, ...all, ...sel]);
  });

  it('resetClassifier swaps pred; 0 gives pooled pre-logits', () => {
    m.resetClassifier(7);
    expect(m.numClasses).toBe(7);
    expect(m.stateDict()['pred.weight']!.shape).toEqual([16, 7]);
    m.resetClassifier(0);
    expect(m.stateDict()['pred.weight']).toBeUndefined();
    const x = tf.randomNormal([2, 32, 32, 3]) as tf.Tensor4D;
    const [y, pre] = tf.tidy(() => [m.forward(x), m.forwardHead(m.forwardFeatures(x), { preLogits: true })]);
    expect(y!.shape).toEqual([2, 16]);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(y!, pre!))).dataSync()[0])).toBe(0);
    tf.dispose([x, y!, pre!]);
  });
});

describe('options', () => {
  it('refuses bad options with the option named', () => {
    expect(() => new Conv2Former({ ...tiny, kernelSize: 4 })).toThrow(/kernelSize must be a positive odd integer/);
    expect(() => new Conv2Former({ ...tiny, depths: [1, 1, 1] })).toThrow(/depths \(3 entries\)/);
    expect(() => new Conv2Former({ ...tiny, mlpRatios: [1.3, 4, 4, 4] })).toThrow(/mlpRatios\[0\]/);
    expect(() => new Conv2Former({ ...tiny, stem: 'patchify' as never })).toThrow(/stem must be/);
    expect(() => new Conv2Former({ ...tiny, dims: [1, 16, 16, 24] })).toThrow(/dims\[0\] must be >= 2/);
    expect(() => createModel('conv2former_n', { numHeads: 3 })).toThrow(/Unknown Conv2Former option\(s\) numHeads/);
    expect(() => new SpatialAttention(8, { kernelSize: 2 })).toThrow(/odd/);
    new ConvMlp(6, { mlpRatio: 0.5 }).dispose();
    expect(() => new ConvMlp(5, { mlpRatio: 0.5 })).toThrow(/must be a positive integer/);
  });

  it('any number of stages works outside the official tree (3 stages, stride 16)', () => {
    const m = new Conv2Former({ kernelSize: 3, dims: [8, 16, 24], depths: [1, 0, 1], numClasses: 2, headDim: 8 });
    expect(m.featureInfo.map((f) => f.reduction)).toEqual([4, 8, 16]);
    const y = tf.tidy(() => m.forward(tf.randomNormal([1, 16, 16, 3])));
    expect(y.shape).toEqual([1, 2]);
    y.dispose();
    m.dispose();
  });

  it('drop path is stochastic in train mode and off in eval', () => {
    const blk = new Conv2FormerBlock(4, { kernelSize: 3, dropPath: 0.5, layerScaleInitValue: 1 });
    const x = tf.randomNormal([16, 4, 4, 4]);
    blk.train();
    const a = blk.forward(x);
    const b = blk.forward(x);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0])).toBeGreaterThan(0);
    blk.eval();
    const c = blk.forward(x);
    const d = blk.forward(x);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(c, d))).dataSync()[0])).toBe(0);
    tf.dispose([x, a, b, c, d]);
    blk.dispose();
  });

  it('model cards carry the official figures', () => {
    const card = getModelCard('conv2former_b_22k');
    expect(card).toMatchObject({ arch: 'conv2former', firstConv: 'downsample_layers.0.0', classifier: 'pred', inputSize: [224, 224, 3], official: true });
    expect(getModelCard('conv2former_n')).toMatchObject({ top1: 81.5, paramCount: 14_992_840 });
    expect(getModelCard('conv2former_n_cifar')).toMatchObject({ inputSize: [32, 32, 3], numClasses: 10, official: false });
  });
});
