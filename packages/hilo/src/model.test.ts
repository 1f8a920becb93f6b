import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, DropPath, ShapeError, createModel, getArchitecture, getModelCard, listModels } from '@vit/core';
import { setTestBackend } from '@vit/core/testing';
import {
  Block,
  ConvFFNBlock,
  DTM,
  HiLo,
  LITV2_VARIANTS,
  LITv2,
  litv2OfficialFeatures,
  litv2OptionsFromOfficial,
  parseNormLayer,
  resolveLITv2Options,
  type LITv2Options,
} from './index.js';

/**
 * Parameter count of a LITv2 built from `o`, from the layer shapes (the official module tree).
 * Used for the variants too large to build in a unit test; checked against real models below.
 */
function countParams(o: LITv2Options): number {
  const E = o.embedDim ?? 96;
  const depths = o.depths ?? [2, 2, 6, 2];
  const heads = o.numHeads ?? [3, 6, 12, 24];
  const hasMsa = (o.hasMsa ?? [0, 0, 1, 1]).map((v) => v === 1 || v === true);
  const ws = o.localWs ?? [0, 0, 2, 1];
  const alpha = o.alpha ?? 0.5;
  const bias = o.qkvBias ?? true;
  const p = o.patchSize ?? 4;
  const cin = o.inChans ?? 3;
  const nc = o.numClasses ?? 1000;
  const n = depths.length;
  let total = cin * E * p * p + E + ((o.patchNorm ?? true) ? 2 * E : 0);
  for (let i = 0; i < n; i++) {
    const d = E * 2 ** i;
    const hid = Math.trunc(d * (o.mlpRatio ?? 4));
    let block = 2 * d + (d * hid + hid) + (9 * hid + hid) + (hid * d + d);
    if (hasMsa[i]) {
      const hd = d / heads[i]!;
      const a = Array.isArray(alpha) ? alpha[i]! : alpha;
      let l = Math.trunc(heads[i]! * a);
      let h = heads[i]! - l;
      if (ws[i] === 1) [l, h] = [heads[i]!, 0];
      const [ld, hdim] = [l * hd, h * hd];
      block += 2 * d;
      if (l > 0) block += d * ld + d * 2 * ld + (bias ? 3 * ld : 0) + ld * ld + ld;
      if (h > 0) block += d * 3 * hdim + (bias ? 3 * hdim : 0) + hdim * hdim + hdim;
    }
    total += depths[i]! * block;
    if (i < n - 1) {
      const merge = d * 2 * d * 4 + 2 * d + 2 * 2 * d;
      total += merge + ((o.dtm ?? 'dcnv1') === 'dcnv1' ? d * 8 * 4 + 8 : d * 8 * 4 + 8 + d * 4 * 4 + 4);
    }
  }
  const last = E * 2 ** (n - 1);
  return total + 2 * last + (nc > 0 ? last * nc + nc : 0);
}

const zeros4 = (shape: number[]): tf.Tensor4D => tf.zeros<tf.Rank>(shape) as tf.Tensor4D;
const randn4 = (shape: number[], seed?: number): tf.Tensor4D => tf.randomNormal<tf.Rank>(shape, 0, 1, 'float32', seed) as tf.Tensor4D;

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

const tiny: LITv2Options = { embedDim: 8, depths: [1, 1, 1, 1], numHeads: [1, 2, 2, 4], numClasses: 3, alpha: 0.5, dropPathRate: 0 };

describe('parameter counts', () => {
  it('the counting formula matches real models on every code path', () => {
    for (const o of [
      tiny,
      { ...tiny, dtm: 'dcnv2', qkvBias: false, patchNorm: false, mlpRatio: 2.6, numClasses: 0 },
      { ...tiny, hasMsa: [1, 1, 1, 1], localWs: [4, 2, 1, 2], alpha: 0.2, numHeads: [2, 2, 4, 8], patchSize: 2, inChans: 1 },
      { ...tiny, depths: [2, 0, 1], numHeads: [1, 1, 2], hasMsa: [0, 1, 1], localWs: [0, 0, 1], alpha: [0, 1, 0.9] },
    ] as LITv2Options[]) {
      const m = new LITv2(o);
      expect(m.numParams(), JSON.stringify(o)).toBe(countParams(o));
      m.dispose();
    }
  });

  it('litv2_small has exactly the official 27,844,000 parameters (1000 classes), built for real', () => {
    const m = createModel('litv2_small');
    expect(m.numParams()).toBe(27_844_000);
    // BatchNorm running statistics of the three DTMs are buffers, not parameters.
    expect(m.namedBuffers().reduce((a, [, v]) => a + v.size, 0)).toBe(2 * (192 + 384 + 768));
    m.dispose();
  });

  it('every variant matches its card: litv2_medium 48,830,368, litv2_base(_384) 86,520,704, litv2_cifar 12,127,214', () => {
    expect(countParams(LITV2_VARIANTS.litv2_small.options)).toBe(27_844_000);
    expect(countParams(LITV2_VARIANTS.litv2_medium.options)).toBe(48_830_368);
    for (const [name, v] of Object.entries(LITV2_VARIANTS)) {
      expect(countParams(v.options as LITv2Options), name).toBe(v.paramCount);
      expect(getModelCard(name).paramCount).toBe(v.paramCount);
    }
    // The seed's LIT-ours with paddle.summary's convention (BatchNorm statistics counted): + 2·(128 + 256 + 512).
    expect(LITV2_VARIANTS.litv2_cifar.paramCount + 2 * (128 + 256 + 512)).toBe(12_129_006);
  });

  it('fromOfficialConfig with the official litv2-small.yaml kwargs gives the same model tree', () => {
    const o = litv2OptionsFromOfficial({ embed_dim: 96, depths: [2, 2, 6, 2], num_heads: [3, 6, 12, 24], alpha: 0.9, local_ws: [0, 0, 2, 1] });
    expect(countParams(o)).toBe(27_844_000);
  });
});

describe('options and official kwargs', () => {
  it('defaults are the official constructor’s', () => {
    const o = resolveLITv2Options({});
    expect([o.imgSize, o.patchSize, o.embedDim, o.depths, o.numHeads, o.mlpRatio, o.qkvBias, o.qkScale, o.dropPathRate, o.patchNorm]).toEqual([
      [224, 224],
      4,
      96,
      [2, 2, 6, 2],
      [3, 6, 12, 24],
      4,
      true,
      null,
      0.1,
      true,
    ]);
    expect([o.hasMsa, o.alpha, o.localWs, o.dtm, o.padInputs]).toEqual([[false, false, true, true], [0.5, 0.5, 0.5, 0.5], [0, 0, 2, 1], 'dcnv1', false]);
  });

  it('drop-path rates follow torch.linspace(0, rate, sum(depths)) over the blocks', () => {
    const m = new LITv2({ ...tiny, depths: [1, 2, 1, 1], dropPathRate: 0.4 });
    const rates = m.layers.toArray().flatMap((l) => l.blocks.toArray().map((b) => ((b as Block | ConvFFNBlock).dropPath instanceof DropPath ? ((b as Block).dropPath as DropPath).p : 0)));
    expect(rates.map((r) => Number(r.toFixed(6)))).toEqual([0, 0.1, 0.2, 0.3, 0.4]);
    m.dispose();
  });

  it('refuses bad options with a ConfigError naming the option', () => {
    expect(() => new LITv2({ ...tiny, localWs: [0, 0, 2] })).toThrow(/localWs needs one entry per stage/);
    expect(() => new LITv2({ ...tiny, hasMsa: ['yes' as unknown as number, 0, 1, 1] })).toThrow(/hasMsa\[0\]/);
    expect(() => new LITv2({ ...tiny, alpha: -1 })).toThrow(/alpha\[0\]/);
    expect(() => new LITv2({ ...tiny, dtm: 'dcnv3' as 'dcnv1' })).toThrow(/dtm/);
    expect(() => new LITv2({ ...tiny, depths: [] })).toThrow(ConfigError);
    expect(() => new LITv2({ ...tiny, numHeads: [1, 2, 3, 4] })).toThrow(/stage 2 \(dim 32\): HiLo: dim 32 should be divided by num_heads 3/);
    expect(() => new LITv2({ ...tiny, hasMsa: [1, 0, 1, 1] })).toThrow(/stage 0 .*window size 0/);
    expect(() => createModel('litv2_small', { nope: 1 })).toThrow(/Unknown LITv2 option/);
  });

  it('maps official kwargs: norm_layer strings, ignored kwargs, has_msa booleans; refuses what the official constructor cannot build', () => {
    expect(parseNormLayer("functools.partial(<class 'torch.nn.modules.normalization.LayerNorm'>, eps=1e-06)").eps).toBe(1e-6);
    expect(parseNormLayer("<class 'torch.nn.modules.normalization.LayerNorm'>").eps).toBe(1e-5);
    expect(parseNormLayer(null).eps).toBe(1e-5);
    expect(() => parseNormLayer('torch.nn.BatchNorm2d')).toThrow(ConfigError);
    const o = litv2OptionsFromOfficial({ local_ws: [0, 0, 2, 1], has_msa: [false, 0, true, 1], ape: true, use_checkpoint: true, window_size: 7 });
    expect(o.hasMsa).toEqual([false, 0, true, 1]);
    const m = new LITv2({ ...o, embedDim: 8, numHeads: [1, 2, 2, 4] });
    expect(m.layers.toArray().map((l) => l.hasMsa)).toEqual([false, false, true, true]);
    m.dispose();
    expect(() => litv2OptionsFromOfficial({})).toThrow(/local_ws is None/);
    expect(() => litv2OptionsFromOfficial({ local_ws: [0, 0, 2] })).toThrow(/IndexError/);
    expect(() => litv2OptionsFromOfficial({ local_ws: [0, 0, 2, 1], alpha: [0.5] })).toThrow(/alpha/);
    expect(getArchitecture('litv2').fromOfficialConfig).toBeTypeOf('function');
  });
});

describe('inputs and the model contract', () => {
  it('checks rank, channels and every size rule with a ShapeError saying what is needed', () => {
    const m = new LITv2({ ...tiny, localWs: [0, 0, 2, 1] });
    tf.tidy(() => {
      expect(() => m.forward(zeros4([32, 32, 3]) as unknown as tf.Tensor4D)).toThrow(/rank 4/);
      expect(() => m.forward(zeros4([1, 32, 32, 4]))).toThrow(/3 input channels/);
      expect(() => m.forward(zeros4([1, 32, 48, 3]))).toThrow(/square token grid/);
      expect(() => m.forward(zeros4([1, 24, 24, 3]))).toThrow(/stage 1 .*not even/);
      expect(() => m.forward(zeros4([1, 3, 3, 3]))).toThrow(/smaller than one 4x4 patch/);
      // 48 → 12 → 6 → 3 tokens: stage 2's Hi-Fi head needs divisibility by ws 2.
      const hilo = new LITv2({ ...tiny, depths: [1, 1, 1], numHeads: [1, 2, 2], hasMsa: [0, 1, 1], localWs: [0, 1, 2] });
      expect(() => hilo.forward(zeros4([1, 48, 48, 3]))).toThrow(ShapeError);
      expect(() => hilo.forward(zeros4([1, 48, 48, 3]))).toThrow(/stage 2 .*HiLo Hi-Fi needs the 3x3 map divisible by the window size 2/);
      hilo.dispose();
      // The stride-p patch conv floors, as the official one (66 → 16 tokens).
      expect(m.forward(zeros4([1, 66, 66, 3])).shape).toEqual([1, 3]);
    });
    m.dispose();
  });

  it('padInputs takes any size (non-square, odd, not divisible) and equals the default where both run', () => {
    const a = new LITv2({ ...tiny, hasMsa: [1, 0, 1, 1], localWs: [2, 0, 2, 1] });
    const b = new LITv2({ ...tiny, hasMsa: [1, 0, 1, 1], localWs: [2, 0, 2, 1], padInputs: true });
    b.loadStateDict(a.stateDict());
    a.eval();
    b.eval();
    tf.tidy(() => {
      const x = randn4([1, 64, 64, 3], 1);
      expect(tf.max(tf.abs(tf.sub(a.forward(x), b.forward(x)))).dataSync()[0]).toBe(0);
      expect(() => a.forward(zeros4([1, 37, 50, 3]))).toThrow(ShapeError);
      expect(b.forward(randn4([2, 37, 50, 3])).shape).toEqual([2, 3]);
      expect(b.forwardIntermediates(zeros4([1, 37, 50, 3])).map((t) => t.shape.slice(1))).toEqual([
        [10, 13, 8],
        [5, 6, 16],
        [2, 3, 32],
        [1, 1, 64],
      ]);
    });
    a.dispose();
    b.dispose();
  });

  it('forwardIntermediates gives the pre-merge stage maps; officialFeatures the stage outputs as tokens', () => {
    const m = new LITv2(tiny);
    m.eval();
    tf.tidy(() => {
      const x = randn4([2, 32, 32, 3], 2);
      const maps = m.forwardIntermediates(x);
      expect(maps.map((t) => t.shape)).toEqual([
        [2, 8, 8, 8],
        [2, 4, 4, 16],
        [2, 2, 2, 32],
        [2, 1, 1, 64],
      ]);
      expect(m.featureInfo.map((f) => [f.numChs, f.reduction])).toEqual([
        [8, 4],
        [16, 8],
        [32, 16],
        [64, 32],
      ]);
      const feats = litv2OfficialFeatures(m, x);
      expect(Object.fromEntries(Object.entries(feats).map(([k, v]) => [k, v.shape]))).toEqual({
        'golden.features.0': [2, 16, 16],
        'golden.features.1': [2, 4, 32],
        'golden.features.2': [2, 1, 64],
        'golden.features.3': [2, 1, 64],
      });
      // Stage i's output is stage i+1's input: DTM(pre-merge map i) feeds the blocks.
      const dtm = m.layers.at(0).downsample as DTM;
      const merged = tf.reshape(dtm.forward(maps[0]!), [2, 16, 16]);
      expect(tf.max(tf.abs(tf.sub(merged, feats['golden.features.0']!))).dataSync()[0]).toBe(0);
      expect(m.forwardIntermediates(x, { indices: [1, -1] }).map((t) => t.shape[3])).toEqual([16, 64]);
    });
    m.dispose();
  });

  it('forwardHead({ preLogits }) and resetClassifier', () => {
    const m = new LITv2(tiny);
    m.eval();
    tf.tidy(() => {
      const x = randn4([2, 32, 32, 3], 3);
      const f = m.forwardFeatures(x);
      expect(f.shape).toEqual([2, 1, 1, 64]);
      expect(m.forwardHead(f, { preLogits: true }).shape).toEqual([2, 64]);
      m.resetClassifier(5);
      expect(m.forward(x).shape).toEqual([2, 5]);
      m.resetClassifier(0);
      expect(m.forward(x).shape).toEqual([2, 64]);
      expect(() => m.forwardHead(zeros4([2, 1, 1, 8]))).toThrow(ShapeError);
    });
    m.dispose();
  });

  it('uses HiLo where hasMsa is set, with the stage window and alpha', () => {
    const m = new LITv2({ ...tiny, hasMsa: [0, 1, 1, 1], localWs: [0, 2, 2, 1], alpha: [0, 0.5, 1, 0.5] });
    const kinds = m.layers.toArray().map((l) => {
      const b = l.blocks.at(0);
      return b instanceof Block && b.attn instanceof HiLo ? `hilo l${b.attn.lHeads}/h${b.attn.hHeads}` : 'ffn';
    });
    expect(kinds).toEqual(['ffn', 'hilo l1/h1', 'hilo l2/h0', 'hilo l4/h0']);
    m.dispose();
  });

  it('registers every variant with a model card', () => {
    expect(listModels('litv2_*')).toEqual(['litv2_base', 'litv2_base_384', 'litv2_cifar', 'litv2_medium', 'litv2_nano', 'litv2_small']);
    const c = getModelCard('litv2_base_384');
    expect([c.inputSize, c.top1, c.cropPct, c.firstConv, c.classifier]).toEqual([[384, 384, 3], 84.7, 1, 'patch_embed.proj', 'head']);
    expect(getModelCard('litv2_cifar')).toMatchObject({ numClasses: 10, official: false });
  });
});
