import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { findExplainer } from '../registry/registry.js';
import type { Explanation } from './common.js';
import { gradCam, type GradCamOptions } from './gradcam.js';
import { attentionRollout, type RolloutOptions } from './rollout.js';

export type ExplainMethod = 'auto' | 'gradcam' | 'rollout';

export interface ExplainOptions extends RolloutOptions, Pick<GradCamOptions, 'layer' | 'output' | 'minMapSize'> {
  /**
   * 'auto' (default): the architecture's choice — attention rollout for models with global
   * attention maps (CaiT), Grad-CAM for the others — but Grad-CAM whenever `classIndex` is given
   * (rollout cannot target a class).
   */
  method?: ExplainMethod;
  /** The class to explain (Grad-CAM): one for every image or one per image. Default: the top class. */
  classIndex?: number | readonly number[];
}

/** The method `explain` would use for `model` with these options. */
export function explainMethod(model: Module, options: Pick<ExplainOptions, 'method' | 'classIndex' | 'layer'> = {}): 'gradcam' | 'rollout' {
  const method = options.method ?? 'auto';
  if (method !== 'auto' && method !== 'gradcam' && method !== 'rollout') {
    throw new ConfigError(`explain: method must be 'auto', 'gradcam' or 'rollout', got '${String(method)}'`);
  }
  if (method === 'rollout' && options.classIndex !== undefined) {
    throw new ConfigError("explain: attention rollout is class-agnostic and takes no classIndex; use method 'gradcam' to explain a chosen class");
  }
  if (method !== 'auto') return method;
  if (options.classIndex !== undefined || options.layer !== undefined) return 'gradcam';
  return findExplainer(model)?.method === 'rollout' ? 'rollout' : 'gradcam';
}

/**
 * An explanation map for every image of `x` (NHWC, normalised as the model expects): where in the
 * image the prediction comes from, `[B, H, W]` in [0, 1]. Pure TF.js: every backend, Node and
 * browsers. Dispose the result's `map` and `logits`.
 */
export function explain(model: Module, x: tf.Tensor4D, options: ExplainOptions = {}): Explanation {
  const { discardRatio, headFusion, classIndex, layer, output, minMapSize } = options;
  return explainMethod(model, options) === 'rollout'
    ? attentionRollout(model, x, { discardRatio, headFusion })
    : gradCam(model, x, { classIndex, layer, output, minMapSize });
}
