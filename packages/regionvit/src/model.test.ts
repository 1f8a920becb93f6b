import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  ShapeError,
  createModel,
  getModelCard,
  loadPytorchStateDict,
  loadSafetensorsFile,
  saveSafetensorsFile,
  toPytorchStateDict,
  WeightLoadError,
  type LoadedSafetensors,
} from '@vit/core';
import { compareTensors, nchwToNhwc, setTestBackend } from '@vit/core/testing';
import {
  REGIONVIT_VARIANTS,
  RegionViT,
  loadOfficialRegionViTWeights,
  regionvitFromOfficialConfig,
  regionvitOptionsFromOfficial,
  regionvitParamCount,
  type RegionViTOptions,
} from './index.js';

const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));
const FIXTURES = ['ws4_3conv', 'ws2_1conv_4st', 'x_linear_ws3_peg_pad', 'x_det_3conv_ws2_pad', 'x_1conv_ws7_rightpad', 'x_mixed_ws_3conv', 'x_det_linear_p8_depth0'];

const files = new Map<string, LoadedSafetensors>();
const file = async (name: string) => {
  if (!files.has(name)) files.set(name, await loadSafetensorsFile(fixture(name)));
  return files.get(name)!;
};
const stateOf = (f: LoadedSafetensors) => new Map([...f.tensors].filter(([k]) => !k.startsWith('golden.')));
const maxAbs = (a: tf.Tensor, b: tf.Tensor) => compareTensors(a, b).maxAbs;

const TINY = { embedDim: [8, 8, 16, 32, 64], numHeads: [1, 2, 2, 4], depth: [1, 1, 1, 1], mlpRatio: 2, numClasses: 5 } satisfies RegionViTOptions;

beforeAll(async () => {
  await setTestBackend();
});
afterAll(() => {
  for (const f of files.values()) for (const t of f.tensors.values()) t.dispose();
});

describe('parameter counts', () => {
  it('equal the official counts from the issue: regionvit_tiny_224 13,842,676 and regionvit_small_w14_peg_224 31,367,674 (built models)', () => {
    for (const [name, want] of [
      ['regionvit_tiny_224', 13_842_676],
      ['regionvit_small_w14_peg_224', 31_367_674],
    ] as const) {
      const m = createModel<RegionViT>(name);
      expect(m.numParams(), name).toBe(want);
      expect(getModelCard(name).paramCount).toBe(want);
      m.dispose();
    }
  });

  it('every variant: the structural count equals the official PyTorch count (1000 classes, and 10 classes as in the seed)', () => {
    // sum(p.numel()) of the official RegionViT(**_model_cfg[k], num_classes=n), torch 2.13.
    const official10: Record<string, number> = {
      regionvit_tiny_224: 13_334_806,
      regionvit_small_224: 29_825_308,
      regionvit_medium_224: 40_454_596,
      regionvit_base_224: 71_732_482,
      regionvit_small_w14_224: 30_593_404,
      regionvit_small_w14_peg_224: 30_606_364,
      regionvit_base_w14_224: 72_810_370,
      regionvit_base_w14_peg_224: 72_827_650,
    };
    for (const [name, v] of Object.entries(REGIONVIT_VARIANTS)) {
      expect(regionvitParamCount(v.options), name).toBe(v.paramCount);
      // regionvit_nano is @vit's own (no official count; its card count is for 10 classes already).
      if (v.official === false) continue;
      expect(regionvitParamCount({ ...v.options, numClasses: 10 }), `${name} (10 classes)`).toBe(official10[name]);
    }
    expect(Object.keys(official10)).toEqual(Object.keys(REGIONVIT_VARIANTS).filter((n) => REGIONVIT_VARIANTS[n]!.official !== false));
  });

  it('the structural count matches built models for every option (det_norm, PEG, stems, mlp lists, no qkv bias, widening c, s)', async () => {
    // The official counts of the extra golden configs (sum(p.numel()) in PyTorch).
    const official: Record<string, number> = { x_det_3conv_ws2_pad: 108_650, x_linear_ws3_peg_pad: 54_896, x_1conv_ws7_rightpad: 29_607 };
    for (const name of FIXTURES) {
      const f = await file(name);
      const opts = regionvitOptionsFromOfficial(JSON.parse(f.metadata.config!));
      const m = new RegionViT(opts);
      expect(m.numParams(), name).toBe(regionvitParamCount(opts));
      if (official[name] !== undefined) expect(m.numParams(), name).toBe(official[name]);
      m.dispose();
    }
  });
});

describe('official state dict', () => {
  it('has exactly the official keys in the official order (proj and proj_cls both listed; no keys for identity projections)', async () => {
    for (const name of FIXTURES) {
      const f = await file(name);
      const m = regionvitFromOfficialConfig(JSON.parse(f.metadata.config!));
      expect(Object.keys(m.stateDict()), name).toEqual(JSON.parse(f.metadata.state_dict_order!));
      m.dispose();
    }
  });

  it('round-trips an official file: every key of the golden is written back (proj and proj_cls), values identical, and reloads to the same logits', async () => {
    const f = await file('ws4_3conv');
    const dir = mkdtempSync(join(tmpdir(), 'regionvit-'));
    const before = tf.memory().numTensors;
    const model = regionvitFromOfficialConfig(JSON.parse(f.metadata.config!));
    const other = regionvitFromOfficialConfig(JSON.parse(f.metadata.config!));
    try {
      const state = stateOf(f);
      loadPytorchStateDict(model, state);
      const out = toPytorchStateDict(model);
      const path = join(dir, 'roundtrip.safetensors');
      await saveSafetensorsFile(path, out);
      for (const t of Object.values(out)) t.dispose();
      const back = await loadSafetensorsFile(path);
      try {
        expect([...back.tensors.keys()].sort()).toEqual([...state.keys()].sort());
        for (const [k, t] of state) expect(maxAbs(back.tensors.get(k)!, t), k).toBe(0);
        expect(back.tensors.has('layers.1.block.0.proj_cls.2.weight')).toBe(true);
        loadPytorchStateDict(other, back.tensors);
      } finally {
        for (const t of back.tensors.values()) t.dispose();
      }
      model.eval();
      other.eval();
      tf.tidy(() => {
        const x = nchwToNhwc(f.tensors.get('golden.input')!) as tf.Tensor4D;
        expect(maxAbs(model.forward(x), other.forward(x))).toBe(0);
        expect(compareTensors(other.forward(x), f.tensors.get('golden.logits')!).scaledMaxAbs).toBeLessThan(1e-5);
      });
    } finally {
      model.dispose();
      other.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('loads from either projection name; all or nothing when a key is missing', async () => {
    const f = await file('ws2_1conv_4st');
    const cfg = JSON.parse(f.metadata.config!);
    const ref = regionvitFromOfficialConfig(cfg);
    loadPytorchStateDict(ref, stateOf(f));
    for (const drop of ['proj.', 'proj_cls.']) {
      const m = regionvitFromOfficialConfig(cfg);
      const state = new Map([...stateOf(f)].filter(([k]) => !k.includes(`.block.0.${drop}`)));
      loadPytorchStateDict(m, state);
      expect(maxAbs(m.stateDict()['layers.2.block.0.proj.2.weight']!, ref.stateDict()['layers.2.block.0.proj.2.weight']!), drop).toBe(0);
      m.dispose();
    }
    const m = regionvitFromOfficialConfig(cfg);
    const state = new Map([...stateOf(f)].filter(([k]) => !k.startsWith('layers.1.block.0.')));
    state.delete('layers.0.block.1.attn.rel_pos');
    const snapshot = tf.clone(m.stateDict()['layers.0.block.1.attn.qkv.weight']!);
    let err: unknown;
    try {
      loadPytorchStateDict(m, state);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WeightLoadError);
    expect(String(err)).toMatch(/layers\.0\.block\.1\.attn\.rel_pos/);
    expect(String(err)).toMatch(/layers\.1\.block\.0\.proj\.0\.weight/);
    expect(maxAbs(m.stateDict()['layers.0.block.1.attn.qkv.weight']!, snapshot)).toBe(0);
    snapshot.dispose();
    m.dispose();
    ref.dispose();
  });

  it('loadOfficialRegionViTWeights strips module. prefixes and drops a classifier of another class count', async () => {
    const f = await file('ws4_3conv');
    const cfg = JSON.parse(f.metadata.config!);
    const m = regionvitFromOfficialConfig({ ...cfg, num_classes: 7 });
    const prefixed = new Map([...stateOf(f)].map(([k, t]) => [`module.${k}`, t]));
    const res = loadOfficialRegionViTWeights(m, prefixed);
    expect(res.ignoredKeys.sort()).toEqual(['head.bias', 'head.weight']);
    expect(res.notes.join(' ')).toMatch(/10 classes, the model 7/);
    expect(maxAbs(m.stateDict()['cls_token.proj.bias']!, f.tensors.get('cls_token.proj.bias')!)).toBe(0);
    m.dispose();
  });
});

describe('official constructor kwargs', () => {
  const base = { embed_dim: [8, 8, 16], depth: [1, 1], num_heads: [1, 2], kernel_sizes: [2, 2], downsampling: ['c', 'sc'], patch_size: 4 };

  it('refuses what the official constructor refuses or fails on, with the reason', () => {
    expect(() => regionvitFromOfficialConfig({ ...base, foo: 1 })).toThrow(/unexpected keyword argument\(s\) foo/);
    expect(() => regionvitFromOfficialConfig({ ...base, computed_cls_token: false })).toThrow(/computed_cls_token=False/);
    expect(() => regionvitFromOfficialConfig({ ...base, det_norm: true })).toThrow(/exactly 4 stages/);
    expect(() => regionvitFromOfficialConfig({ ...base, kernel_sizes: null })).toThrow(/RegionViT kwarg kernel_sizes is None: required/);
    expect(() => regionvitFromOfficialConfig({ ...base, downsampling: null })).toThrow(/downsampling is required/);
    expect(() => regionvitFromOfficialConfig({ ...base, patch_size: 8 })).toThrow(/patch size 4/);
    expect(() => regionvitFromOfficialConfig({ ...base, downsampling: ['c', ''] })).toThrow(ConfigError);
    expect(() => regionvitFromOfficialConfig({ ...base, num_heads: [3, 2] })).toThrow(/divisible/);
  });

  it("maps norm_layer strings, qk_scale, other patch_conv_type strings (the official else-branch: 'linear') and num_classes <= 0", () => {
    const o = regionvitOptionsFromOfficial({ ...base, norm_layer: "<class 'torch.nn.modules.normalization.LayerNorm'>", qk_scale: 0.25, patch_conv_type: 'conv', num_classes: -1 });
    expect(o.normEps).toBe(1e-5);
    expect(o.qkScale).toBe(0.25);
    expect(o.patchConvType).toBe('linear');
    expect(o.numClasses).toBe(0);
    expect(regionvitOptionsFromOfficial({ ...base, norm_layer: 'functools.partial(torch.nn.LayerNorm, eps=1e-06)' }).normEps).toBe(1e-6);
    expect(regionvitOptionsFromOfficial(base).normEps).toBe(1e-6);
    const m = regionvitFromOfficialConfig({ ...base, patch_conv_type: 'conv' });
    expect(m.stateDict()['patch_embed.proj.weight']!.shape).toEqual([4, 4, 3, 8]);
    m.dispose();
  });
});

describe('model contract', () => {
  it('checks inputs: rank and channels (any size is accepted, as the official code does)', () => {
    const m = createModel<RegionViT>('regionvit_tiny_224', TINY);
    tf.tidy(() => {
      expect(() => m.forward(tf.zeros([56, 56, 3]) as unknown as tf.Tensor4D)).toThrow(/NHWC image batch/);
      expect(() => m.forward(tf.zeros([1, 56, 56, 4]) as tf.Tensor4D)).toThrow(/expected 3 input channels, got 4/);
      expect(m.forward(tf.zeros([1, 2, 3, 3]) as tf.Tensor4D).shape).toEqual([1, 5]);
    });
    m.dispose();
  });

  it('runs any input size: not a multiple of the 28-px region (padding + masks), rectangular', () => {
    const m = createModel<RegionViT>('regionvit_tiny_224', TINY).eval();
    tf.tidy(() => {
      for (const [h, w] of [
        [50, 70],
        [33, 29],
        [84, 56],
      ]) {
        const x = tf.randomNormal([1, h!, w!, 3], 0, 1, 'float32', h) as tf.Tensor4D;
        const y = m.forward(x);
        expect(y.shape).toEqual([1, 5]);
        expect(tf.all(tf.isFinite(y)).dataSync()[0]).toBe(1);
        const maps = m.forwardIntermediates(x);
        expect(maps.map((t) => t.shape.slice(1, 3))).toEqual([
          [Math.ceil(h / 4), Math.ceil(w / 4)],
          [Math.ceil(h / 8), Math.ceil(w / 8)],
          [Math.ceil(h / 16), Math.ceil(w / 16)],
          [Math.ceil(h / 32), Math.ceil(w / 32)],
        ]);
      }
    });
    m.dispose();
  });

  it('forwardFeatures is the normalised regional map; forwardHead pools it (map or tokens); resetClassifier', () => {
    const m = createModel<RegionViT>('regionvit_small_224', TINY).eval();
    tf.tidy(() => {
      const x = tf.randomNormal([2, 56, 56, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
      const f = m.forwardFeatures(x);
      expect(f.shape).toEqual([2, 1, 1, 64]);
      const pre = m.forwardHead(f, { preLogits: true });
      expect(pre.shape).toEqual([2, 64]);
      expect(maxAbs(m.forwardHead(tf.reshape(f, [2, 1, 64])), m.forward(x))).toBe(0);
      expect(() => m.forwardHead(tf.zeros([2, 7]))).toThrow(ShapeError);
    });
    m.resetClassifier(0);
    tf.tidy(() => {
      expect(m.forward(tf.zeros([1, 56, 56, 3]) as tf.Tensor4D).shape).toEqual([1, 64]);
    });
    expect(Object.keys(m.stateDict()).some((k) => k.startsWith('head.'))).toBe(false);
    m.resetClassifier(3);
    expect(m.numClasses).toBe(3);
    expect(m.stateDict()['head.weight']!.shape).toEqual([64, 3]);
    m.dispose();
  });

  it('det_norm: norm0..3 normalise the local tokens for detection AND feed the next stage; featureInfo names them', () => {
    const m = createModel<RegionViT>('regionvit_tiny_224', { ...TINY, detNorm: true }).eval();
    expect(m.featureInfo.map((f) => f.module)).toEqual(['norm0', 'norm1', 'norm2', 'norm3']);
    expect(m.featureInfo.map((f) => [f.numChs, f.reduction])).toEqual([
      [8, 4],
      [16, 8],
      [32, 16],
      [64, 32],
    ]);
    expect(m.stateDict()['norm2.weight']!.shape).toEqual([1, 32, 1, 1]);
    const plain = createModel<RegionViT>('regionvit_tiny_224', TINY).eval();
    tf.tidy(() => {
      // (The logits of random weights move by ~1e-3 here; float noise is ~1e-7, so 1e-5 tells them apart without depending on the init.)
      // Same weights; the detection norms get a non-trivial affine (at weight 1 / bias 0 the next
      // stage's own LayerNorm2d would undo them).
      for (const [k, v] of Object.entries(plain.stateDict())) (v as tf.Variable).assign(m.stateDict()[k]!);
      for (const [k, v] of Object.entries(m.stateDict())) if (/^norm\d\./.test(k)) (v as tf.Variable).assign(tf.randomNormal(v.shape, 1, 0.5, 'float32', 7));
      const x = tf.randomNormal([1, 56, 56, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
      const t = m.trace(x);
      const maps = m.forwardIntermediates(x);
      maps.forEach((map, i) => expect(maxAbs(map, m.detNorms[i]!.forward(t.local[i]!))).toBeLessThan(1e-6));
      expect(maxAbs(m.forward(x), plain.forward(x))).toBeGreaterThan(1e-5);
    });
    plain.dispose();
    m.dispose();
  });

  it('train mode: dropout and drop path change the output; eval is deterministic', () => {
    const m = createModel<RegionViT>('regionvit_tiny_224', { ...TINY, dropRate: 0.3, dropPathRate: 0.3, attnDropRate: 0.3 });
    tf.tidy(() => {
      const x = tf.randomNormal([2, 56, 56, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
      m.train();
      expect(maxAbs(m.forward(x), m.forward(x))).toBeGreaterThan(0);
      m.eval();
      expect(maxAbs(m.forward(x), m.forward(x))).toBe(0);
    });
    m.dispose();
  });

  it('model cards: official top-1 where released, 224 input, official reference', () => {
    expect(getModelCard('regionvit_tiny_224').top1).toBe(80.4);
    expect(getModelCard('regionvit_base_224').top1).toBe(83.2);
    expect(getModelCard('regionvit_small_w14_224').top1).toBeUndefined();
    expect(getModelCard('regionvit_medium_224').firstConv).toBe('patch_embed.proj');
    expect(getModelCard('regionvit_tiny_224').firstConv).toBe('patch_embed.proj.0');
    for (const name of Object.keys(REGIONVIT_VARIANTS)) {
      const c = getModelCard(name);
      if (name === 'regionvit_nano') continue; // @vit's own 32×32 variant (nano.test.ts)
      expect(c.inputSize).toEqual([224, 224, 3]);
      expect(c.reference).toBe('IBM/RegionViT:regionvit/regionvit.py');
    }
    expect(() => createModel('regionvit_tiny_224', { windowSize: 3 })).toThrow(/Unknown RegionViT option/);
  });
});
