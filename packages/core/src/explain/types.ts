import type * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';

/**
 * A layer Grad-CAM can weigh: the output of the module at dotted path `layer` (an NHWC map
 * `[B, h, w, C]`, or tokens `[B, N, C]` whose last h·w tokens are the patch grid row-major).
 */
export interface CamTarget {
  layer: string;
  /** Which output, when the module's forward returns an array (RegionViT's stages: `[regional, local]`). */
  output?: number;
  /**
   * Total stride relative to the input (`[rows, columns]` when they differ): sizes the map before
   * it is run (an `Explainer`'s targets need it) and gives tokens their grid (else inferred).
   */
  reduction?: number | [number, number];
}

/** The attention of a model's global self-attention layers over one input, for attention rollout. */
export interface AttentionMaps {
  /** Every self-attention layer in forward order, `[B, heads, N, N]` over the same N tokens (rows: queries). */
  layers: tf.Tensor4D[];
  /** Leading tokens of the N that are not image patches (a class token: 1). */
  prefixTokens: number;
  /** The patch grid the remaining `N - prefixTokens` tokens form, row-major. */
  grid: [number, number];
  /**
   * Class-attention layers after `layers` (CaiT): `[B, heads, 1, 1 + N]`, the class token's
   * attention over itself (key 0) and the N tokens of the last self-attention layer. Only the
   * class token changes in them; the prediction is read from it.
   */
  classLayers?: tf.Tensor4D[];
}

/** Where a model's attention probabilities are, declared by its architecture (see `Explainer`). */
export interface AttentionSpec {
  /** Dotted paths of the self-attention modules, in forward order; each must run once per forward. */
  layers: string[];
  /** Dotted paths of class-attention modules run after them (CaiT's `blocks_token_only.*.attn`). */
  classLayers?: string[];
  /** Leading non-patch tokens in the self-attention layers' sequences. */
  prefixTokens: number;
  /** The patch grid for an input of `height`×`width`. */
  grid(height: number, width: number): [number, number];
  /**
   * The attention probabilities `[B, heads, Nq, Nk]` (what multiplies the values, before
   * dropout) of `module` for the arguments its forward was called with in the pass.
   */
  weights(module: Module, args: unknown[]): tf.Tensor4D;
}

/**
 * How `explain()` treats one architecture's models (`ArchitectureAdapter.explainer`): the method
 * `'auto'` picks, the Grad-CAM layers, and the attention maps where the model has global ones.
 */
export interface Explainer {
  /** What `method: 'auto'` uses: 'rollout' only with `attention`. */
  method: 'gradcam' | 'rollout';
  /**
   * Layers Grad-CAM may weigh, shallowest first: the default is the deepest whose map is at least
   * `minMapSize` on both sides (a 32×32 nano model's last map is 1×1: one number, no localisation).
   * Absent: the `forwardFeatures` → `forwardHead` split.
   */
  camTargets?: CamTarget[];
  /** The model's global self-attention, for `attentionRollout`. */
  attention?: AttentionSpec;
  /** Why a model without `attention` has none to roll out (for the error message). */
  noRollout?: string;
}
