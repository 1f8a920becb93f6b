/**
 * How blocks take their parts as arguments (timm's `norm_layer`/`act_layer`/`mlp_layer`): small
 * factories every architecture package shares, so a block of one package composes with the parts
 * of another.
 */
import { GELU } from './activation.js';
import { Mlp } from './mlp.js';
import type { Module } from './module.js';
import { LayerNorm } from './norm.js';

/** Builds a norm for `dim` features (channels or the token width). */
export type NormFactory = (dim: number) => Module;

/**
 * The options of DeiT's `VisionTransformer` signature that the transformer models share (CaiT,
 * RegionViT, LITv2). Each model's options extend these; where a model applies one differently
 * (which dropouts `dropRate` covers, the drop-path schedule) its own docs say so.
 */
export interface VisionTransformerOptions {
  inChans?: number;
  /** 0 → no classifier (`head` is an Identity and the model returns its pre-logits). */
  numClasses?: number;
  qkvBias?: boolean;
  /** Overrides the `head_dim ** -0.5` logit scale (null/0: the default, Python's `qk_scale or …`). */
  qkScale?: number | null;
  dropRate?: number;
  /** Attention-weight dropout. */
  attnDropRate?: number;
  dropPathRate?: number;
  /** The token norm. */
  normLayer?: NormFactory;
}

/** Builds an activation module. */
export type ActFactory = () => Module;

/**
 * The keyword arguments of DeiT's `Block(dim, num_heads, mlp_ratio, qkv_bias, qk_scale, drop,
 * attn_drop, drop_path, act_layer, norm_layer)` that the transformer blocks share (CaiT's
 * LayerScale blocks, RegionViT's R2L block, a LITv2 stage). Each block's options extend these; where
 * a block applies one differently (LITv2's HiLo applies no attention dropout) its own docs say so.
 */
export interface TransformerBlockOptions {
  numHeads?: number;
  mlpRatio?: number;
  qkvBias?: boolean;
  /** Overrides the `head_dim ** -0.5` logit scale (null/0: the default, Python's `qk_scale or …`). */
  qkScale?: number | null;
  /** Dropout after the attention projection and inside the MLP (official `drop`). */
  drop?: number;
  /** Attention-weight dropout (official `attn_drop`). */
  attnDrop?: number;
  actLayer?: ActFactory;
  /** The token norm. */
  normLayer?: NormFactory;
}

export interface MlpFactoryOptions {
  hiddenFeatures: number;
  /** Default: `inFeatures`. */
  outFeatures?: number;
  actLayer: ActFactory;
  drop: number;
}

/** Builds a block's channel MLP: `(inFeatures, options) → Module` on `[B, N, C]`. */
export type MlpFactory = (inFeatures: number, options: MlpFactoryOptions) => Module;

/**
 * `partial(nn.LayerNorm, eps=eps)` over the last axis. The eps is always stated: torch's default
 * is 1e-5, most ViT-family code (CaiT, RegionViT) passes 1e-6, and a wrong one moves outputs ~4e-5.
 */
export function layerNorm(eps: number, options: { elementwiseAffine?: boolean } = {}): NormFactory {
  return (dim) => new LayerNorm(dim, { eps, elementwiseAffine: options.elementwiseAffine ?? true });
}

/** Exact (erf) GELU, `nn.GELU()`: the default activation of every architecture here. */
export const geluLayer: ActFactory = () => new GELU();

/** timm's `Mlp` (fc1 → act → drop → fc2 → drop). */
export const timmMlp: MlpFactory = (inFeatures, o) =>
  new Mlp(inFeatures, { hiddenFeatures: o.hiddenFeatures, outFeatures: o.outFeatures, actLayer: o.actLayer, drop: o.drop });
