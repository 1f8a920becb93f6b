import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  attentionScale,
  ConfigError,
  createModel,
  getModelCard,
  loadSafetensorsFile,
  mergeHeads,
  PatchEmbed,
  scaledDotProductAttention,
  ShapeError,
  splitHeads,
} from '@vit/core';
import { compareTensors, setTestBackend } from '@vit/core/testing';
import {
  CAIT_VARIANTS,
  CaiT,
  ClassAttention,
  LayerScaleBlockClassAttention,
  TalkingHeadAttention,
  adaptCaiTCheckpoint,
  caitFromOfficialConfig,
  caitOptionsFromOfficial,
  caitParamCount,
  convStemLayer,
  loadOfficialCaiTWeights,
  parseNormLayer,
  resamplePosEmbed,
} from './index.js';

const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));

beforeAll(async () => {
  await setTestBackend();
  await tf.ready();
});

let startTensors = 0;
afterEach(() => {
  // Every test disposes what it creates.
  expect(tf.memory().numTensors).toBe(startTensors);
});
beforeAll(() => {
  startTensors = tf.memory().numTensors;
});

describe('parameter counts', () => {
  it('cait_xxs24_224 and cait_s24_224 built with 1000 classes have the official counts', () => {
    for (const [name, want] of [
      ['cait_xxs24_224', 11_956_264],
      ['cait_s24_224', 46_916_200],
    ] as const) {
      const m = createModel<CaiT>(name);
      try {
        expect(m.numParams(), name).toBe(want);
        expect(getModelCard(name).paramCount).toBe(want);
      } finally {
        m.dispose();
      }
    }
  });

  it('the structural count equals every card and the built model for odd configurations', () => {
    for (const [name, v] of Object.entries(CAIT_VARIANTS)) expect(caitParamCount(v.options), name).toBe(v.paramCount);
    for (const o of [
      { embedDim: 24, numHeads: 2, depth: 2, depthTokenOnly: 3, qkvBias: false, mlpRatio: 2.5, mlpRatioClstk: 3, imgSize: [24, 40], patchSize: [8, 4], inChans: 2, numClasses: 5 },
      { embedDim: 32, numHeads: 4, depth: 1, depthTokenOnly: 0, qkvBias: true, imgSize: 40, patchSize: 16, numClasses: 0 },
      { embedDim: 48, numHeads: 2, depth: 1, depthTokenOnly: 1, qkvBias: true, imgSize: 32, patchSize: 8, numClasses: 3, patchLayer: convStemLayer },
    ] as const) {
      const m = new CaiT({ ...o, imgSize: o.imgSize as number | [number, number], patchSize: o.patchSize as number | [number, number] });
      try {
        expect(m.numParams()).toBe(caitParamCount({ ...o, imgSize: o.imgSize as number | [number, number], patchSize: o.patchSize as number | [number, number] }));
      } finally {
        m.dispose();
      }
    }
  });
});

describe('model cards', () => {
  it('state the official input size, crop 1.0, bicubic, first conv and classifier', () => {
    expect(getModelCard('cait_m48_448')).toMatchObject({
      arch: 'cait',
      inputSize: [448, 448, 3],
      cropPct: 1.0,
      interpolation: 'bicubic',
      firstConv: 'patch_embed.proj',
      classifier: 'head',
      numClasses: 1000,
      official: true,
      top1: 86.5,
      paramCount: 356_460_520,
      reference: 'facebookresearch/deit:cait_models.py',
    });
    expect(getModelCard('cait_xxs24_224').inputSize).toEqual([224, 224, 3]);
    expect(getModelCard('cait_s36_384').inputSize).toEqual([384, 384, 3]);
    expect(CAIT_VARIANTS.cait_s36_384!.options.initScale).toBe(1e-6);
    expect(CAIT_VARIANTS.cait_s24_384!.options.initScale).toBe(1e-5);
  });
});

describe('blocks', () => {
  it('talking heads with identity head mixing is plain multi-head attention', () => {
    const attn = new TalkingHeadAttention(12, { numHeads: 3, qkvBias: true });
    try {
      tf.tidy(() => {
        for (const l of [attn.proj_l, attn.proj_w]) {
          l.weight.assign(tf.eye(3));
          l.bias!.assign(tf.zeros([3]));
        }
      });
      tf.tidy(() => {
        const x = tf.randomNormal([2, 5, 12], 0, 1, 'float32', 1);
        const [q, k, v] = tf.split(attn.qkv.forward(x), 3, 2);
        const ref = attn.proj.forward(mergeHeads(scaledDotProductAttention(splitHeads(q!, 3), splitHeads(k!, 3), splitHeads(v!, 3))));
        expect(compareTensors(attn.forward(x), ref).maxAbs).toBeLessThan(1e-5);
      });
    } finally {
      attn.dispose();
    }
  });

  it('proj_l mixes the head axis: a head permutation before the softmax permutes the heads of the weights', () => {
    const attn = new TalkingHeadAttention(8, { numHeads: 2 });
    try {
      tf.tidy(() => {
        attn.proj_l.weight.assign(tf.tensor2d([[0, 1], [1, 0]])); // [in, out]: out0 = in1, out1 = in0
        attn.proj_l.bias!.assign(tf.zeros([2]));
        attn.proj_w.weight.assign(tf.eye(2));
        attn.proj_w.bias!.assign(tf.zeros([2]));
      });
      tf.tidy(() => {
        const x = tf.randomNormal([1, 4, 8], 0, 1, 'float32', 2);
        const w = attn.attentionMap(x);
        const [q, k] = tf.split(attn.qkv.forward(x), 3, 2);
        const plain = tf.softmax(tf.matMul(tf.mul(splitHeads(q!, 2), attn.scale), splitHeads(k!, 2), false, true));
        expect(compareTensors(w, tf.reverse(plain, 1)).maxAbs).toBeLessThan(1e-6);
      });
    } finally {
      attn.dispose();
    }
  });

  it('class attention queries with the first token only and returns [B, 1, C]', () => {
    const ca = new ClassAttention(8, { numHeads: 2, qkvBias: true });
    try {
      tf.tidy(() => {
        const x = tf.randomNormal([2, 6, 8], 0, 1, 'float32', 3);
        const y = ca.forward(x);
        expect(y.shape).toEqual([2, 1, 8]);
        // Changing a non-first token changes the keys/values; changing nothing keeps y.
        const ref = ca.proj.forward(
          mergeHeads(
            scaledDotProductAttention(
              splitHeads(ca.q.forward(tf.slice(x, [0, 0, 0], [2, 1, 8])), 2),
              splitHeads(ca.k.forward(x), 2),
              splitHeads(ca.v.forward(x), 2),
            ),
          ),
        );
        expect(compareTensors(y, ref).maxAbs).toBeLessThan(1e-5);
      });
    } finally {
      ca.dispose();
    }
  });

  it('qk_scale follows Python `qk_scale or head_dim ** -0.5`', () => {
    expect(attentionScale(16, null)).toBe(0.25);
    expect(attentionScale(16, 0)).toBe(0.25);
    expect(attentionScale(16, 0.5)).toBe(0.5);
    const a = new TalkingHeadAttention(16, { numHeads: 4, qkScale: 0.1 });
    expect(a.scale).toBe(0.1);
    a.dispose();
  });

  it('the class-attention block refuses a malformed class token', () => {
    const blk = new LayerScaleBlockClassAttention(8, { numHeads: 2 });
    try {
      tf.tidy(() => {
        expect(() => blk.forward(tf.zeros([2, 4, 8]), tf.zeros([2, 2, 8]))).toThrow(ShapeError);
        expect(blk.forward(tf.zeros([2, 4, 8]), tf.zeros([2, 1, 8])).shape).toEqual([2, 1, 8]);
      });
    } finally {
      blk.dispose();
    }
  });

  it('heads must divide the dimension', () => {
    expect(() => new TalkingHeadAttention(10, { numHeads: 3 })).toThrow(/divisible/);
    expect(() => new CaiT({ embedDim: 10, numHeads: 3, depth: 1 })).toThrow(ConfigError);
  });
});

describe('CaiT', () => {
  const small = { embedDim: 16, numHeads: 2, depth: 2, depthTokenOnly: 2, imgSize: 32, patchSize: 8, numClasses: 4, qkvBias: true } as const;

  it('checks inputs, naming what it expected', () => {
    const m = new CaiT(small);
    try {
      tf.tidy(() => {
        expect(() => m.forward(tf.zeros([1, 48, 48, 3]) as tf.Tensor4D)).toThrow(/expected a 32x32 input.*got 48x48/);
        expect(() => m.forward(tf.zeros([1, 32, 32, 1]) as tf.Tensor4D)).toThrow(/expected 3 input channels, got 1/);
        expect(() => m.forward(tf.zeros([32, 32, 3]) as unknown as tf.Tensor4D)).toThrow(ShapeError);
      });
    } finally {
      m.dispose();
    }
  });

  it("talkingHeadsInit 'identity' sets every proj_l/proj_w to I with zero bias; the default keeps the official trunc_normal; a bad value is refused before allocating", async () => {
    const before = tf.memory().numTensors;
    const id = new CaiT({ ...small, talkingHeadsInit: 'identity' });
    const official = new CaiT(small);
    try {
      for (let i = 0; i < small.depth; i++) {
        for (const name of ['proj_l', 'proj_w']) {
          const w = id.stateDict()[`blocks.${i}.attn.${name}.weight`]!;
          expect(Array.from(await w.data())).toEqual([1, 0, 0, 1]);
          expect(Array.from(await id.stateDict()[`blocks.${i}.attn.${name}.bias`]!.data())).toEqual([0, 0]);
          const o = Array.from(await official.stateDict()[`blocks.${i}.attn.${name}.weight`]!.data());
          expect(o.every((v) => Math.abs(v) < 0.2)).toBe(true);
          expect(o).not.toEqual([1, 0, 0, 1]);
        }
      }
      // Identity mixing leaves softmax rows summing to 1 (plain multi-head attention).
      tf.tidy(() => {
        const x = tf.randomNormal([1, 5, small.embedDim], 0, 1, 'float32', 2);
        const map = ((id.blocks.at(0) as unknown as { attn: TalkingHeadAttention }).attn).attentionMap(x);
        expect(compareTensors(tf.sum(map, -1), tf.ones([1, 2, 5])).maxAbs).toBeLessThan(1e-5);
      });
    } finally {
      id.dispose();
      official.dispose();
    }
    expect(() => new CaiT({ ...small, talkingHeadsInit: 'zeros' as never })).toThrow(/talkingHeadsInit must be 'normal' or 'identity', got 'zeros'/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("patchLayer swaps the patch embedding (convStemLayer: patch_embed.stem.*); linearInit 'pytorch' keeps PyTorch's U(±1/√in); bad values are refused", () => {
    const before = tf.memory().numTensors;
    const m = new CaiT({ ...small, patchLayer: convStemLayer, linearInit: 'pytorch' });
    const official = new CaiT(small);
    try {
      const keys = Object.keys(m.stateDict());
      expect(keys.filter((k) => k.startsWith('patch_embed.'))).toEqual([
        'patch_embed.stem.0.weight',
        'patch_embed.stem.1.weight',
        'patch_embed.stem.1.bias',
        'patch_embed.stem.1.running_mean',
        'patch_embed.stem.1.running_var',
        'patch_embed.stem.3.weight',
        'patch_embed.stem.4.weight',
        'patch_embed.stem.4.bias',
        'patch_embed.stem.4.running_mean',
        'patch_embed.stem.4.running_var',
        'patch_embed.proj.weight',
        'patch_embed.proj.bias',
      ]);
      tf.tidy(() => {
        expect(m.forward(tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 3) as tf.Tensor4D).shape).toEqual([2, 4]);
        // PyTorch's default bound 1/√in = 1/4 for the 16-wide qkv; trunc_normal(.02) stays far inside it.
        const w = m.stateDict()['blocks.0.attn.qkv.weight']!;
        const std = (t: tf.Tensor) => Math.sqrt(tf.moments(t).variance.dataSync()[0]!);
        expect(tf.max(tf.abs(w)).dataSync()[0]).toBeLessThanOrEqual(0.25);
        expect(std(w)).toBeGreaterThan(0.1);
        expect(std(official.stateDict()['blocks.0.attn.qkv.weight']!)).toBeLessThan(0.03);
      });
      expect(m.numParams()).toBe(caitParamCount({ ...small, patchLayer: convStemLayer }));
    } finally {
      m.dispose();
      official.dispose();
    }
    expect(() => new CaiT({ ...small, linearInit: 'xavier' as never })).toThrow(/linearInit must be 'trunc_normal' or 'pytorch', got 'xavier'/);
    expect(() => new CaiT({ ...small, patchLayer: convStemLayer, patchSize: 6, imgSize: 36 })).toThrow(/power-of-two patch size/);
    expect(() => caitParamCount({ ...small, patchLayer: (o) => new PatchEmbed({ ...o, flatten: true }) })).toThrow(/patchEmbedLayer and convStemLayer only/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('forward = head(norm(cat(cls, x))[:, 0]); avg pooling and pre-logits', () => {
    const m = new CaiT(small);
    const avg = new CaiT({ ...small, globalPool: 'avg' });
    try {
      avg.loadStateDict(m.stateDict());
      m.eval();
      avg.eval();
      tf.tidy(() => {
        const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 4) as tf.Tensor4D;
        const f = m.forwardFeatures(x);
        expect(f.shape).toEqual([2, 17, 16]);
        const pre = m.forwardHead(f, { preLogits: true });
        expect(compareTensors(pre, tf.reshape(tf.slice(f, [0, 0, 0], [2, 1, 16]), [2, 16])).maxAbs).toBe(0);
        const pooled = avg.forwardHead(f, { preLogits: true });
        expect(compareTensors(pooled, tf.mean(tf.slice(f, [0, 1, 0], [2, 16, 16]), 1)).maxAbs).toBeLessThan(1e-6);
      });
    } finally {
      m.dispose();
      avg.dispose();
    }
  });

  it('forwardIntermediates gives the self-attention block outputs as NHWC maps', () => {
    const m = new CaiT(small);
    try {
      m.eval();
      tf.tidy(() => {
        const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
        const maps = m.forwardIntermediates(x);
        expect(maps.map((t) => t.shape)).toEqual([
          [2, 4, 4, 16],
          [2, 4, 4, 16],
        ]);
        expect(m.featureInfo).toEqual([
          { numChs: 16, reduction: 8, module: 'blocks.0' },
          { numChs: 16, reduction: 8, module: 'blocks.1' },
        ]);
        const { blocks } = m.trace(x);
        expect(compareTensors(maps[0]!, tf.reshape(blocks[0]!, [2, 4, 4, 16])).maxAbs).toBe(0);
        expect(m.forwardIntermediates(x, { indices: [0] })).toHaveLength(1);
      });
    } finally {
      m.dispose();
    }
  });

  it('resetClassifier replaces the head and 0 gives pre-logits', () => {
    const m = new CaiT(small);
    try {
      m.resetClassifier(7);
      expect(m.stateDict()['head.weight']!.shape).toEqual([16, 7]);
      m.resetClassifier(0);
      expect(Object.keys(m.stateDict()).some((k) => k.startsWith('head.'))).toBe(false);
      tf.tidy(() => {
        expect(m.forward(tf.zeros([1, 32, 32, 3]) as tf.Tensor4D).shape).toEqual([1, 16]);
      });
    } finally {
      m.dispose();
    }
  });

  it('attn_drop and drop_rate act in training only; the class-attention blocks never drop', () => {
    const m = new CaiT({ ...small, attnDropRate: 0.5, dropRate: 0.3, dropPathRate: 0.2 });
    try {
      const ca = m.blocks_token_only.at(0) as LayerScaleBlockClassAttention;
      expect((ca.attn as ClassAttention).attn_drop.p).toBe(0);
      expect(ca.drop_path.p).toBe(0);
      const sa = m.blocks.at(1) as unknown as { attn: TalkingHeadAttention; drop_path: { p: number } };
      expect(sa.attn.attn_drop.p).toBe(0.5);
      // Official dpr = [drop_path_rate] * depth: the same rate in every block.
      expect(sa.drop_path.p).toBe(0.2);
      tf.tidy(() => {
        const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 6) as tf.Tensor4D;
        m.eval();
        expect(compareTensors(m.forward(x), m.forward(x)).maxAbs).toBe(0);
        m.train();
        expect(compareTensors(m.forward(x), m.forward(x)).maxAbs).toBeGreaterThan(0);
        m.eval();
      });
    } finally {
      m.dispose();
    }
  });
});

/** PyTorch's F.interpolate(mode='bilinear', align_corners=False) on one [H, W] plane, in plain JS. */
function torchBilinear(src: number[][], oh: number, ow: number): number[][] {
  const ih = src.length;
  const iw = src[0]!.length;
  const coord = (o: number, inSize: number, outSize: number) => {
    const s = Math.max((inSize / outSize) * (o + 0.5) - 0.5, 0);
    const i0 = Math.min(Math.floor(s), inSize - 1);
    const i1 = Math.min(i0 + 1, inSize - 1);
    return [i0, i1, s - i0] as const;
  };
  return Array.from({ length: oh }, (_, y) => {
    const [y0, y1, ly] = coord(y, ih, oh);
    return Array.from({ length: ow }, (_, x) => {
      const [x0, x1, lx] = coord(x, iw, ow);
      const top = src[y0]![x0]! * (1 - lx) + src[y0]![x1]! * lx;
      const bot = src[y1]![x0]! * (1 - lx) + src[y1]![x1]! * lx;
      return top * (1 - ly) + bot * ly;
    });
  });
}

describe('position-embedding resampling', () => {
  it('matches PyTorch bilinear (align_corners=False) when up- and down-sampling, per channel', () => {
    for (const [[oh, ow], [nh, nw]] of [
      [
        [4, 4],
        [6, 6],
      ],
      [
        [5, 3],
        [2, 7],
      ],
      [
        [6, 6],
        [3, 3],
      ],
    ] as Array<[[number, number], [number, number]]>) {
      const c = 3;
      const data = Array.from({ length: oh * ow * c }, (_, i) => Math.sin(i * 1.7) + i / 10);
      const pos = tf.tensor3d(data, [1, oh * ow, c]);
      const out = resamplePosEmbed(pos, [nh, nw], [oh, ow]);
      const got = out.arraySync()[0]!;
      for (let ch = 0; ch < c; ch++) {
        const plane = Array.from({ length: oh }, (_, y) => Array.from({ length: ow }, (_, x) => data[(y * ow + x) * c + ch]!));
        const ref = torchBilinear(plane, nh, nw);
        for (let y = 0; y < nh; y++) for (let x = 0; x < nw; x++) expect(got[y * nw + x]![ch]!).toBeCloseTo(ref[y]![x]!, 5);
      }
      pos.dispose();
      out.dispose();
    }
  });

  it('keeps prefix tokens and is the identity at the same size', () => {
    tf.tidy(() => {
      const pos = tf.randomNormal([1, 1 + 9, 4], 0, 1, 'float32', 7);
      const same = resamplePosEmbed(pos, [3, 3], undefined, 1);
      expect(compareTensors(same, pos).maxAbs).toBe(0);
      const up = resamplePosEmbed(pos, [5, 5], undefined, 1);
      expect(up.shape).toEqual([1, 26, 4]);
      expect(compareTensors(tf.slice(up, [0, 0, 0], [1, 1, 4]), tf.slice(pos, [0, 0, 0], [1, 1, 4])).maxAbs).toBe(0);
      expect(() => resamplePosEmbed(tf.zeros([1, 10, 4]), [3, 3])).toThrow(/not a square grid/);
    });
  });

  it('dynamicImgSize runs other resolutions with a resampled table, and is exact at the native one', () => {
    const fixed = new CaiT({ embedDim: 16, numHeads: 2, depth: 1, depthTokenOnly: 1, imgSize: 32, patchSize: 8, numClasses: 3 });
    const dyn = new CaiT({ embedDim: 16, numHeads: 2, depth: 1, depthTokenOnly: 1, imgSize: 32, patchSize: 8, numClasses: 3, dynamicImgSize: true });
    try {
      dyn.loadStateDict(fixed.stateDict());
      fixed.eval();
      dyn.eval();
      tf.tidy(() => {
        const x = tf.randomNormal([1, 32, 32, 3], 0, 1, 'float32', 8) as tf.Tensor4D;
        expect(compareTensors(dyn.forward(x), fixed.forward(x)).maxAbs).toBe(0);
        const big = tf.randomNormal([1, 48, 40, 3], 0, 1, 'float32', 9) as tf.Tensor4D;
        expect(dyn.forward(big).shape).toEqual([1, 3]);
        expect(dyn.forwardIntermediates(big)[0]!.shape).toEqual([1, 6, 5, 16]);
        // The same as a 48x40 model whose table was resampled once.
        const g = tf.grad((inp: tf.Tensor) => tf.sum(dyn.forward(inp as tf.Tensor4D)))(big);
        expect(g.shape).toEqual(big.shape);
      });
    } finally {
      fixed.dispose();
      dyn.dispose();
    }
  });
});

describe('official checkpoints', () => {
  it('fromOfficialConfig maps kwargs and refuses what the official constructor would not build', () => {
    const o = caitOptionsFromOfficial({ img_size: [24, 40], patch_size: 8, qk_scale: 0.3, norm_layer: 'functools.partial(torch.nn.LayerNorm, eps=1e-06)' });
    expect(o).toMatchObject({ imgSize: [24, 40], patchSize: 8, qkScale: 0.3, normEps: 1e-6, qkvBias: false, initScale: 1e-4, depthTokenOnly: 2 });
    expect(parseNormLayer(undefined).eps).toBe(1e-5);
    expect(parseNormLayer("<class 'torch.nn.modules.normalization.LayerNorm'>").eps).toBe(1e-5);
    expect(parseNormLayer("functools.partial(<class 'torch.nn.modules.normalization.LayerNorm'>, eps=1e-06)").eps).toBe(1e-6);
    expect(() => caitOptionsFromOfficial({ init_values: 1e-5 })).toThrow(/unexpected keyword argument.*init_values/);
    expect(() => caitOptionsFromOfficial({ Attention_block: "<class 'timm.models.vision_transformer.Attention'>" })).toThrow(ConfigError);
    expect(() => caitOptionsFromOfficial({ norm_layer: "<class 'torch.nn.modules.batchnorm.BatchNorm1d'>" })).toThrow(ConfigError);
    expect(() => caitOptionsFromOfficial({ act_layer: "<class 'torch.nn.modules.activation.Mish'>" })).toThrow(ConfigError);
    // The class-valued defaults are accepted by name.
    expect(() => caitOptionsFromOfficial({ block_layers: "<class 'cait_models.LayerScale_Block'>", block_layers_token: "<class 'cait_models.LayerScale_Block_CA'>" })).not.toThrow();
  });

  it('loads a checkpoint trained at another resolution and class count (module. prefix, resampled pos_embed, dropped head)', async () => {
    const file = await loadSafetensorsFile(fixture('p8_d2'));
    const cfg = JSON.parse(file.metadata.config!) as Record<string, unknown>;
    const ref = caitFromOfficialConfig(cfg);
    const model = caitFromOfficialConfig({ ...cfg, img_size: 48, num_classes: 3 });
    const state = new Map([...file.tensors].filter(([k]) => !k.startsWith('golden.')).map(([k, t]) => [`module.${k}`, t]));
    try {
      const headBefore = tf.tidy(() => model.stateDict()['head.weight']!.clone());
      const res = loadOfficialCaiTWeights(model, state);
      expect(res.notes.join('\n')).toMatch(/pos_embed resampled \(bilinear\) from a 4x4 grid to 6x6/);
      expect(res.notes.join('\n')).toMatch(/classifier dropped/);
      expect(res.ignoredKeys).toEqual(expect.arrayContaining(['head.weight', 'head.bias']));
      expect(compareTensors(model.stateDict()['head.weight']!, headBefore).maxAbs).toBe(0);
      headBefore.dispose();
      loadOfficialCaiTWeights(ref, state);
      tf.tidy(() => {
        const want = resamplePosEmbed(ref.pos_embed, [6, 6]);
        expect(compareTensors(model.pos_embed, want).maxAbs).toBe(0);
        expect(compareTensors(model.stateDict()['blocks.1.attn.qkv.weight']!, ref.stateDict()['blocks.1.attn.qkv.weight']!).maxAbs).toBe(0);
      });
      const adapted = adaptCaiTCheckpoint(ref, state);
      expect(adapted.created).toHaveLength(0);
      expect(adapted.notes).toEqual([]);
    } finally {
      ref.dispose();
      model.dispose();
      for (const t of file.tensors.values()) t.dispose();
    }
  });
});
