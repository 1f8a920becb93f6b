import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, registerArchitecture, type ArchitectureAdapter, type Module, type OfficialKwargs } from '@vit/core';
import { layerNorm, type NormFactory } from './blocks.js';
import { LITv2, type LITv2Options } from './model.js';

/**
 * The official checkpoint mapping. Parameter names already equal the official state_dict keys
 * (`layers.2.blocks.0.attn.h_qkv.weight`, `layers.0.downsample.dconv.conv_offset.weight`,
 * `layers.0.downsample.norm_layer.running_var`…) and core's loader converts layouts by declared
 * kind (`num_batches_tracked` is skipped), so this file maps the official constructor's keyword
 * arguments: `LITv2(img_size=224, patch_size=4, in_chans=3, num_classes=1000, embed_dim=96,
 * depths=[2,2,6,2], num_heads=[3,6,12,24], mlp_ratio=4., qkv_bias=True, qk_scale=None,
 * drop_rate=0., attn_drop_rate=0., drop_path_rate=0.1, norm_layer=nn.LayerNorm, ape=False,
 * patch_norm=True, use_checkpoint=False, has_msa=[0,0,1,1], alpha=0.5, local_ws=None, **kwargs)`.
 */

/** Accepted by the official constructor and without effect on what it computes. */
export const IGNORED_OFFICIAL_KWARGS = ['ape', 'use_checkpoint', 'attn_drop_rate'] as const;

function num(kwargs: OfficialKwargs, key: string, fallback: number): number {
  const v = kwargs[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`LITv2 official kwarg ${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function int(kwargs: OfficialKwargs, key: string, fallback: number): number {
  const v = num(kwargs, key, fallback);
  if (!Number.isInteger(v)) throw new ConfigError(`LITv2 official kwarg ${key} must be an integer, got ${v}`);
  return v;
}

function list(kwargs: OfficialKwargs, key: string, fallback: unknown[] | null): unknown[] {
  const v = kwargs[key] === undefined ? fallback : kwargs[key];
  if (v === null) throw new ConfigError(`LITv2 official kwarg ${key} is None: the official constructor indexes ${key}[i] per stage (TypeError)`);
  if (!Array.isArray(v)) throw new ConfigError(`LITv2 official kwarg ${key} must be a list, got ${JSON.stringify(v)}`);
  return v;
}

/** timm's to_2tuple: an int or a 2-sequence. */
function pair(kwargs: OfficialKwargs, key: string, fallback: number): [number, number] {
  const v = kwargs[key] ?? fallback;
  if (typeof v === 'number' && Number.isInteger(v)) return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((d) => typeof d === 'number' && Number.isInteger(d))) return [v[0], v[1]];
  throw new ConfigError(`LITv2 official kwarg ${key} must be an int or a pair of ints, got ${JSON.stringify(v)}`);
}

function bool(kwargs: OfficialKwargs, key: string, fallback: boolean): boolean {
  const v = kwargs[key] ?? fallback;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  throw new ConfigError(`LITv2 official kwarg ${key} must be a boolean, got ${JSON.stringify(v)}`);
}

/**
 * Reads a norm_layer as golden metadata spells it: `"<class 'torch.nn.modules.normalization.LayerNorm'>"`,
 * `"functools.partial(<class '…LayerNorm'>, eps=1e-06)"`, `"torch.nn.LayerNorm"`, or null/absent
 * (the default `nn.LayerNorm`, eps 1e-5). Only (partials of) LayerNorm make sense on tokens.
 */
export function parseNormLayer(v: unknown): { eps: number; elementwiseAffine: boolean; factory: NormFactory } {
  let eps = 1e-5;
  let elementwiseAffine = true;
  if (v !== undefined && v !== null) {
    if (typeof v !== 'string' || !/LayerNorm/.test(v) || /LayerNorm2d|GroupNorm|BatchNorm/.test(v)) {
      throw new ConfigError(`LITv2 norm_layer ${JSON.stringify(v)} is not supported: only (partials of) torch.nn.LayerNorm`);
    }
    const m = /eps\s*=\s*([-+0-9.eE]+)/.exec(v);
    if (m) {
      eps = Number(m[1]);
      if (!(eps > 0) || !Number.isFinite(eps)) throw new ConfigError(`LITv2 norm_layer has an invalid eps in ${JSON.stringify(v)}`);
    }
    if (/elementwise_affine\s*=\s*False/.test(v)) elementwiseAffine = false;
  }
  return { eps, elementwiseAffine, factory: layerNorm(eps, { elementwiseAffine }) };
}

/**
 * Maps the official `LITv2(**kwargs)` to {@link LITv2Options}: the exact model the official code
 * builds and the classifier forward it runs. Unknown kwargs are ignored, as the official
 * `**kwargs` does; kwargs on which the official constructor fails raise a ConfigError.
 */
export function litv2OptionsFromOfficial(kwargs: OfficialKwargs): LITv2Options {
  const depths = list(kwargs, 'depths', [2, 2, 6, 2]);
  const n = depths.length;
  const numHeads = list(kwargs, 'num_heads', [3, 6, 12, 24]);
  const hasMsa = list(kwargs, 'has_msa', [0, 0, 1, 1]);
  const localWs = list(kwargs, 'local_ws', null);
  for (const [key, v] of [
    ['num_heads', numHeads],
    ['has_msa', hasMsa],
    ['local_ws', localWs],
  ] as const) {
    if (v.length < n) throw new ConfigError(`LITv2 ${key} has ${v.length} entries but depths has ${n} stages (the official constructor indexes ${key}[i], IndexError)`);
  }
  const alpha = kwargs.alpha ?? 0.5;
  if (typeof alpha !== 'number') throw new ConfigError(`LITv2 official kwarg alpha must be a number (int(num_heads * alpha)), got ${JSON.stringify(alpha)}`);
  const patch = pair(kwargs, 'patch_size', 4);
  if (patch[0] !== patch[1]) throw new ConfigError(`LITv2 non-square patch_size ${JSON.stringify(patch)} is not supported`);
  const qkScale = kwargs.qk_scale;
  if (qkScale !== undefined && qkScale !== null && typeof qkScale !== 'number') {
    throw new ConfigError(`LITv2 official kwarg qk_scale must be a number or None, got ${JSON.stringify(qkScale)}`);
  }
  return {
    imgSize: pair(kwargs, 'img_size', 224),
    patchSize: patch[0],
    inChans: int(kwargs, 'in_chans', 3),
    numClasses: int(kwargs, 'num_classes', 1000),
    embedDim: int(kwargs, 'embed_dim', 96),
    depths: depths as number[],
    numHeads: numHeads.slice(0, n) as number[],
    mlpRatio: num(kwargs, 'mlp_ratio', 4),
    qkvBias: bool(kwargs, 'qkv_bias', true),
    qkScale: (qkScale as number | null | undefined) ?? null,
    dropRate: num(kwargs, 'drop_rate', 0),
    attnDropRate: num(kwargs, 'attn_drop_rate', 0),
    dropPathRate: num(kwargs, 'drop_path_rate', 0.1),
    normLayer: parseNormLayer(kwargs.norm_layer).factory,
    patchNorm: bool(kwargs, 'patch_norm', true),
    hasMsa: hasMsa.slice(0, n) as Array<number | boolean>,
    alpha,
    localWs: localWs.slice(0, n) as number[],
    dtm: 'dcnv1',
    padInputs: false,
  };
}

/** Builds exactly the model the official `LITv2(**kwargs)` builds. */
export function litv2FromOfficialConfig(kwargs: OfficialKwargs): LITv2 {
  return new LITv2(litv2OptionsFromOfficial(kwargs));
}

/** Each `layers[i]` output (after its DTM) as the goldens store it: tokens `[B, H·W, C]`, row-major. */
export function litv2OfficialFeatures(model: Module, x: tf.Tensor4D): Record<string, tf.Tensor> {
  if (!(model instanceof LITv2)) throw new ConfigError(`litv2 officialFeatures needs a LITv2, got ${model.typeName}`);
  return tf.tidy(() => {
    const outs = model.forwardStages(x);
    return Object.fromEntries(outs.map((t, i) => [`golden.features.${i}`, tf.reshape(t, [t.shape[0], t.shape[1] * t.shape[2], t.shape[3]])]));
  });
}

export const litv2Architecture: ArchitectureAdapter = {
  name: 'litv2',
  description: 'LITv2 (ziplab/LITv2:classification/models/litv2.py, class LITv2)',
  fromOfficialConfig: (kwargs) => litv2FromOfficialConfig(kwargs),
  officialFeatures: litv2OfficialFeatures,
};

let registered = false;
/** Registers the `litv2` architecture adapter (idempotent). */
export function registerLITv2Architecture(): void {
  if (registered) return;
  registerArchitecture(litv2Architecture);
  registered = true;
}
