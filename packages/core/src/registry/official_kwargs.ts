/**
 * Reading an official constructor's keyword arguments (as golden metadata and `vit convert
 * --config` give them: JSON, with Python defaults where a key is absent). Every architecture's
 * `official.ts` maps kwargs to its options through these, so a wrong type reads the same
 * everywhere: `<label> kwarg <key> must be …, got …`.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { layerNorm, type NormFactory, type VisionTransformerOptions } from '../nn/factories.js';
import type { Module } from '../nn/module.js';
import type { OfficialKwargs } from './registry.js';

const show = (v: unknown) => JSON.stringify(v) ?? String(v);

/** Typed readers over one kwargs object; `label` starts every message (`'LITv2 official'`). */
export interface KwargReader {
  /** A finite number (the fallback when absent). */
  num(key: string, fallback?: number): number;
  int(key: string, fallback?: number): number;
  /** Python truthiness of a bool or a number. */
  bool(key: string, fallback: boolean): boolean;
  /** timm's to_2tuple: an int or a 2-sequence of ints. */
  pair(key: string, fallback: number): [number, number];
  /** An int or a pair of ints, kept as given. */
  size(key: string, fallback: number): number | [number, number];
  /** A list; None (null, given or as the default) is refused, saying why (`noneReason`). */
  list(key: string, fallback: unknown[] | null, noneReason?: string): unknown[];
  /** A list of integers (a single int is not a list). */
  intList(key: string, fallback: number[] | null, noneReason?: string): number[];
  /**
   * The DeiT-signature kwargs a ViT-family constructor reads the same way (`in_chans`,
   * `num_classes`, `qk_scale`, the three dropout rates), as {@link VisionTransformerOptions} fields.
   * `qk_scale` None or absent is null: Python's `qk_scale or head_dim ** -0.5` happens in the blocks.
   */
  vitCommon(): Pick<VisionTransformerOptions, 'inChans' | 'numClasses' | 'qkScale' | 'dropRate' | 'attnDropRate' | 'dropPathRate'>;
}

export function kwargReader(kwargs: OfficialKwargs, label: string): KwargReader {
  const fail = (key: string, what: string, v: unknown): never => {
    throw new ConfigError(`${label} kwarg ${key} must be ${what}, got ${show(v)}`);
  };
  // Scalars: None (null) means the default, as the official constructors treat it.
  const get = (key: string, fallback: unknown) => kwargs[key] ?? fallback;
  const r: KwargReader = {
    num(key, fallback) {
      const v = get(key, fallback);
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(key, 'a number', v);
      return v as number;
    },
    int(key, fallback) {
      const v = get(key, fallback);
      if (typeof v !== 'number' || !Number.isInteger(v)) fail(key, 'an integer', v);
      return v as number;
    },
    bool(key, fallback) {
      const v = get(key, fallback);
      if (typeof v === 'boolean') return v;
      if (typeof v === 'number') return v !== 0;
      return fail(key, 'a boolean', v);
    },
    pair(key, fallback) {
      const v = r.size(key, fallback);
      return typeof v === 'number' ? [v, v] : v;
    },
    size(key, fallback) {
      const v = get(key, fallback);
      if (typeof v === 'number' && Number.isInteger(v)) return v;
      if (Array.isArray(v) && v.length === 2 && v.every((d) => typeof d === 'number' && Number.isInteger(d))) return [v[0] as number, v[1] as number];
      return fail(key, 'an int or a pair of ints', v);
    },
    list(key, fallback, noneReason) {
      // Lists: an explicit None reaches the official code, which indexes it per stage.
      const v = kwargs[key] === undefined ? fallback : kwargs[key];
      if (v === null) throw new ConfigError(`${label} kwarg ${key} is None: ${noneReason ?? `required (the official code indexes ${key}[i]: TypeError)`}`);
      if (!Array.isArray(v)) fail(key, 'a list', v);
      return v as unknown[];
    },
    intList(key, fallback, noneReason) {
      const v = r.list(key, fallback, noneReason);
      if (!v.every((d) => typeof d === 'number' && Number.isInteger(d))) fail(key, 'a list of integers', v);
      return v as number[];
    },
    vitCommon() {
      const qk = kwargs.qk_scale;
      return {
        inChans: r.int('in_chans', 3),
        numClasses: r.int('num_classes', 1000),
        qkScale: qk === undefined || qk === null ? null : r.num('qk_scale'),
        dropRate: r.num('drop_rate', 0),
        attnDropRate: r.num('attn_drop_rate', 0),
        dropPathRate: r.num('drop_path_rate', 0),
      };
    },
  };
  return r;
}

/**
 * The constructor arguments every timm-style vision transformer takes (DeiT's `VisionTransformer`
 * signature, which CaiT, RegionViT and their relatives extend): an architecture's known kwargs are
 * these plus its own.
 */
export const VIT_COMMON_KWARGS: readonly string[] = [
  'img_size',
  'patch_size',
  'in_chans',
  'num_classes',
  'embed_dim',
  'depth',
  'num_heads',
  'mlp_ratio',
  'qkv_bias',
  'qk_scale',
  'drop_rate',
  'attn_drop_rate',
  'drop_path_rate',
  'norm_layer',
];

/**
 * Refuses keyword arguments the official constructor does not take, as Python would
 * (`<call> got unexpected keyword argument(s) …`), listing the ones it does.
 */
export function checkKnownKwargs(kwargs: OfficialKwargs, known: Iterable<string>, call: string): void {
  const set = new Set(known);
  const unknown = Object.keys(kwargs).filter((k) => !set.has(k));
  if (unknown.length) throw new ConfigError(`${call} got unexpected keyword argument(s) ${unknown.join(', ')}; it takes ${[...set].join(', ')}`);
}

/**
 * A `torch.nn.LayerNorm` norm_layer as golden metadata spells it: `"<class
 * 'torch.nn.modules.normalization.LayerNorm'>"`, `"functools.partial(<class '…LayerNorm'>,
 * eps=1e-06)"`, `"torch.nn.LayerNorm"` (torch's eps 1e-5 unless the partial sets one), or
 * null/absent: the constructor's own default, eps `defaultEps`. Other norms are refused (`label`
 * names the architecture).
 */
export function parseTorchLayerNorm(v: unknown, label: string, defaultEps = 1e-5): { eps: number; elementwiseAffine: boolean } {
  if (v === undefined || v === null) return { eps: defaultEps, elementwiseAffine: true };
  let eps = 1e-5;
  let elementwiseAffine = true;
  if (typeof v !== 'string' || !/LayerNorm/.test(v) || /LayerNorm2d|GroupNorm|BatchNorm/.test(v)) {
    throw new ConfigError(`${label} norm_layer ${show(v)} is not supported: only (partials of) torch.nn.LayerNorm`);
  }
  const m = /eps\s*=\s*([-+0-9.eE]+)/.exec(v);
  if (m) {
    eps = Number(m[1]);
    if (!(eps > 0) || !Number.isFinite(eps)) throw new ConfigError(`${label} norm_layer has an invalid eps in ${show(v)}`);
  }
  if (/elementwise_affine\s*=\s*False/.test(v)) elementwiseAffine = false;
  return { eps, elementwiseAffine };
}

/** A norm_layer read by {@link layerNormFromTorch}: its eps and affinity, and the factory that builds it. */
export interface TorchLayerNorm {
  eps: number;
  elementwiseAffine: boolean;
  factory: NormFactory;
}

/** {@link parseTorchLayerNorm}, with the factory that builds that norm (`layerNorm(eps, { elementwiseAffine })`). */
export function layerNormFromTorch(v: unknown, label: string, defaultEps = 1e-5): TorchLayerNorm {
  const { eps, elementwiseAffine } = parseTorchLayerNorm(v, label, defaultEps);
  return { eps, elementwiseAffine, factory: layerNorm(eps, { elementwiseAffine }) };
}

/** `model` as a `type`, or a ConfigError naming the caller and what came (adapters take any Module). */
export function expectModel<T extends Module>(model: Module, type: abstract new (...args: never[]) => T, what: string): T {
  if (!(model instanceof type)) throw new ConfigError(`${what} needs a ${type.name} model, got ${model.typeName}`);
  return model;
}

/** What `officialFeatures` returns: `golden.<group>.<start + i>` for each map, as the goldens key them. */
export function goldenFeatures(maps: readonly tf.Tensor[], group = 'features', start = 0): Record<string, tf.Tensor> {
  return Object.fromEntries(maps.map((m, i) => [`golden.${group}.${start + i}`, m]));
}
