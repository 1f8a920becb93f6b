/**
 * The official checkpoint mapping. Parameter names already equal the official state_dict keys
 * (`blocks.3.attn.proj_l.weight`, `blocks_token_only.0.attn.q.weight`, `head.weight`…) and core's
 * loader converts layouts by declared kind, so this file maps the official constructor's keyword
 * arguments (`cait_models(img_size=224, patch_size=16, in_chans=3, num_classes=1000,
 * embed_dim=768, depth=12, num_heads=12, mlp_ratio=4., qkv_bias=False, qk_scale=None,
 * drop_rate=0., attn_drop_rate=0., drop_path_rate=0., norm_layer=nn.LayerNorm, global_pool=None,
 * block_layers=LayerScale_Block, block_layers_token=LayerScale_Block_CA, Patch_layer=PatchEmbed,
 * act_layer=nn.GELU, Attention_block=Attention_talking_head, Mlp_block=Mlp, init_scale=1e-4,
 * Attention_block_token_only=Class_Attention, Mlp_block_token_only=Mlp, depth_token_only=2,
 * mlp_ratio_clstk=4.0)`), exposes the official per-block features, and adapts official
 * checkpoints (prefix, other resolutions, other class counts).
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  checkKnownKwargs,
  VIT_COMMON_KWARGS,
  ConfigError,
  defaultCheckpointFilter,
  GELU,
  kwargReader,
  layerNormFromTorch,
  loadAdaptedCheckpoint,
  registerArchitecture,
  ReLU,
  Sigmoid,
  SiLU,
  Tanh,
  type ActFactory,
  type AdaptedCheckpoint,
  type ArchitectureAdapter,
  type AttentionSpec,
  type Explainer,
  type Module,
  type OfficialKwargs,
  type PytorchLoadResult,
  type TorchLayerNorm,
  expectModel,
  goldenFeatures,
} from '@vit/core';
import { CaiT, resamplePosEmbed, type CaiTOptions } from './model.js';

const KNOWN_KWARGS = new Set([
  ...VIT_COMMON_KWARGS,
  'global_pool',
  'block_layers',
  'block_layers_token',
  'Patch_layer',
  'act_layer',
  'Attention_block',
  'Mlp_block',
  'init_scale',
  'Attention_block_token_only',
  'Mlp_block_token_only',
  'depth_token_only',
  'mlp_ratio_clstk',
]);

/** Class-valued kwargs: only the official defaults can be reproduced (matched by class name). */
const DEFAULT_CLASSES: Record<string, RegExp> = {
  block_layers: /LayerScale_Block(?!_CA)\b/,
  block_layers_token: /LayerScale_Block_CA\b/,
  Patch_layer: /PatchEmbed\b/,
  Attention_block: /Attention_talking_head\b/,
  Mlp_block: /\bMlp\b/,
  Attention_block_token_only: /Class_Attention\b/,
  Mlp_block_token_only: /\bMlp\b/,
};

/**
 * Reads a norm_layer as the golden metadata spells it: `"functools.partial(torch.nn.LayerNorm,
 * eps=1e-06)"`, `"<class 'torch.nn.modules.normalization.LayerNorm'>"`, null (the constructor
 * default `nn.LayerNorm`, eps 1e-5).
 */
export function parseNormLayer(v: unknown): TorchLayerNorm {
  return layerNormFromTorch(v, 'cait_models');
}

/** Reads an act_layer (`"<class 'torch.nn.modules.activation.GELU'>"`, `"torch.nn.GELU"`…). */
export function parseActLayer(v: unknown): ActFactory {
  if (v === undefined || v === null) return () => new GELU();
  if (typeof v !== 'string') throw new ConfigError(`cait_models act_layer must be a class name string, got ${JSON.stringify(v)}`);
  if (/GELU/.test(v)) {
    const tanh = /approximate\s*=\s*['"]tanh['"]/.test(v);
    return () => new GELU({ approximate: tanh ? 'tanh' : 'none' });
  }
  if (/\bReLU\b|\.ReLU'?>?$/.test(v)) return () => new ReLU();
  if (/SiLU/.test(v)) return () => new SiLU();
  if (/Sigmoid/.test(v)) return () => new Sigmoid();
  if (/Tanh/.test(v)) return () => new Tanh();
  throw new ConfigError(`cait_models act_layer ${JSON.stringify(v)} is not supported (GELU, ReLU, SiLU, Sigmoid, Tanh)`);
}

/**
 * Maps the official `cait_models` kwargs to {@link CaiTOptions}: the exact model the official code
 * builds, for any kwargs it accepts. Refuses (ConfigError) kwargs the official constructor does
 * not take and class-valued kwargs other than the official defaults.
 */
export function caitOptionsFromOfficial(kwargs: OfficialKwargs): CaiTOptions {
  const kw = kwargReader(kwargs, 'cait_models');
  checkKnownKwargs(kwargs, KNOWN_KWARGS, 'cait_models()');
  for (const [key, re] of Object.entries(DEFAULT_CLASSES)) {
    const v = kwargs[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string' || !re.test(v)) {
      throw new ConfigError(`cait_models ${key}=${JSON.stringify(v)} is not supported: only the official default class; compose the blocks directly instead`);
    }
  }
  const qkvBias = kwargs.qkv_bias ?? false;
  if (typeof qkvBias !== 'boolean') throw new ConfigError(`cait_models qkv_bias must be a boolean, got ${JSON.stringify(qkvBias)}`);
  const norm = parseNormLayer(kwargs.norm_layer);
  return {
    imgSize: kw.size('img_size', 224),
    patchSize: kw.size('patch_size', 16),
    // Porting note: the official file uses DropPath without importing it, so drop_path_rate > 0 is a
    // NameError there; we implement what it means (one constant rate for every self-attention block).
    ...kw.vitCommon(),
    embedDim: kw.int('embed_dim', 768),
    depth: kw.int('depth', 12),
    numHeads: kw.int('num_heads', 12),
    mlpRatio: kw.num('mlp_ratio', 4),
    qkvBias,
    normLayer: norm.factory,
    normEps: norm.eps,
    actLayer: parseActLayer(kwargs.act_layer),
    initScale: kw.num('init_scale', 1e-4),
    depthTokenOnly: kw.int('depth_token_only', 2),
    mlpRatioClstk: kw.num('mlp_ratio_clstk', 4),
    // Porting note: the official constructor accepts global_pool and ignores it (always the class token).
    globalPool: 'token',
  };
}

/** Builds exactly the model the official `cait_models(**kwargs)` builds. */
export function caitFromOfficialConfig(kwargs: OfficialKwargs): CaiT {
  return new CaiT(caitOptionsFromOfficial(kwargs));
}

/**
 * The goldens' per-block features: `golden.features.i` (i < depth) = output of `blocks[i]`,
 * `[B, N, C]`; `golden.features.(depth + j)` = the class token after `blocks_token_only[j]`, `[B, 1, C]`.
 */
export function caitOfficialFeatures(model: Module, x: tf.Tensor4D): Record<string, tf.Tensor> {
  const cait = expectModel(model, CaiT, 'cait officialFeatures');
  return tf.tidy(() => {
    const { blocks, classTokens } = cait.trace(x);
    return goldenFeatures([...blocks, ...classTokens]);
  });
}

export const caitArchitecture: ArchitectureAdapter = {
  name: 'cait',
  description: 'CaiT (facebookresearch/deit:cait_models.py, class cait_models)',
  fromOfficialConfig: (kwargs) => caitFromOfficialConfig(kwargs),
  officialFeatures: caitOfficialFeatures,
  filterCheckpoint: (model, tensors) => adaptCaiTCheckpoint(expectModel(model, CaiT, 'cait filterCheckpoint'), tensors),
  explainer: (model) => (model instanceof CaiT ? caitExplainer(model) : undefined),
};

type WithAttentionMap = Module & { attentionMap(x: tf.Tensor): tf.Tensor4D };

/**
 * CaiT's attention is global: attention rollout through the self-attention blocks (each
 * `blocks.i.attn`, talking-heads maps after `proj_w`), read along the class token's row through
 * the class-attention blocks (with `globalPool: 'avg'` the mean of the patch rows). Grad-CAM weighs
 * the patch tokens of a self-attention block (the last by default). Attention modules without an
 * `attentionMap` (a custom `attnBlock`) leave Grad-CAM only.
 */
export function caitExplainer(model: CaiT): Explainer {
  const camTargets = model.blocks.length ? [...model.blocks].map((_, i) => ({ layer: `blocks.${i}`, reduction: model.patchSize })) : undefined;
  const layers = [...model.blocks].map((_, i) => `blocks.${i}.attn`);
  const classLayers = model.globalPool === 'token' ? [...model.blocks_token_only].map((_, i) => `blocks_token_only.${i}.attn`) : [];
  const exposes = (b: Module) => typeof (b as { attn?: { attentionMap?: unknown } }).attn?.attentionMap === 'function';
  if (![...model.blocks, ...model.blocks_token_only].every(exposes) || layers.length + classLayers.length === 0) {
    return { method: 'gradcam', camTargets, noRollout: 'its attention modules do not expose attentionMap(x)' };
  }
  const [ph, pw] = model.patchSize;
  const attention: AttentionSpec = {
    layers,
    classLayers,
    prefixTokens: 0,
    grid: (h, w) => [Math.floor(h / ph), Math.floor(w / pw)],
    weights: (m, args) => (m as WithAttentionMap).attentionMap(args[0] as tf.Tensor),
  };
  return { method: 'rollout', camTargets, attention };
}

/** Registers the `cait` architecture adapter (idempotent). */
export function registerCaiTArchitecture(): void {
  registerArchitecture(caitArchitecture);
}

type Tensors = Map<string, tf.Tensor> | Record<string, tf.Tensor>;

export type { AdaptedCheckpoint };

/**
 * timm's `checkpoint_filter_fn` for CaiT, plus resolution and classifier adaptation: unwraps
 * `module.` (DataParallel) prefixes, resamples `pos_embed` (bilinear) when the checkpoint was trained
 * at another resolution than the model's `imgSize`, and drops `head.*` when the class count differs.
 * Tensors stay in the official (PyTorch) layout.
 */
export function adaptCaiTCheckpoint(model: CaiT, tensors: Tensors): AdaptedCheckpoint {
  const out = defaultCheckpointFilter(model, tensors, 'head');
  const pos = out.tensors.get('pos_embed');
  const want = model.gridSize[0] * model.gridSize[1];
  if (pos && pos.rank === 3 && pos.shape[1] !== want) {
    const resampled = resamplePosEmbed(pos, model.gridSize);
    out.created.push(resampled);
    out.tensors.set('pos_embed', resampled);
    const side = Math.round(Math.sqrt(pos.shape[1]!));
    out.notes.unshift(`pos_embed resampled (bilinear) from a ${side}x${side} grid to ${model.gridSize[0]}x${model.gridSize[1]}`);
  }
  return out;
}

/**
 * Loads an official CaiT checkpoint (official keys and layouts, e.g. from `loadSafetensorsFile`)
 * into `model` through core's `loadPytorchStateDict`, after {@link adaptCaiTCheckpoint}. All or
 * nothing: on any problem one error lists them all and no parameter changes.
 */
export function loadOfficialCaiTWeights(model: CaiT, tensors: Tensors, options: { strict?: boolean } = {}): PytorchLoadResult & { notes: string[] } {
  return loadAdaptedCheckpoint(model, adaptCaiTCheckpoint(model, tensors), options);
}
