import type * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';

/** One feature map a backbone exposes for dense prediction (timm's feature_info). */
export interface FeatureInfo {
  /** Channels of the map. */
  numChs: number;
  /** Total stride relative to the input. */
  reduction: number;
  /** Dotted name of the module producing it. */
  module: string;
}

/**
 * The model contract every architecture implements (DESIGN.md): NHWC in, logits out, plus the
 * pieces timm users rely on for fine-tuning and dense prediction.
 */
export interface VisionModel extends Module {
  readonly numClasses: number;
  /** Width of the pooled features entering the classifier. */
  readonly numFeatures: number;
  readonly featureInfo: FeatureInfo[];
  forward(x: tf.Tensor4D): tf.Tensor2D;
  /** Everything before the head (unpooled: tokens or a map). */
  forwardFeatures(x: tf.Tensor4D): tf.Tensor;
  /** Pooling, norm and classifier; `preLogits` stops before the classifier. */
  forwardHead(features: tf.Tensor, options?: { preLogits?: boolean }): tf.Tensor2D;
  /** Replaces the classifier (0 → identity, pre-logits out). */
  resetClassifier(numClasses: number): void;
  /** Per-stage NHWC maps, in `featureInfo` order; `indices` picks stages (negative from the end). */
  forwardIntermediates(x: tf.Tensor4D, options?: { indices?: number[] }): tf.Tensor4D[];
}

export function isVisionModel(m: unknown): m is VisionModel {
  const v = m as Partial<VisionModel>;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.forward === 'function' &&
    typeof v.forwardFeatures === 'function' &&
    typeof v.forwardHead === 'function' &&
    typeof v.forwardIntermediates === 'function' &&
    Array.isArray(v.featureInfo)
  );
}

/** Resolves timm-style stage indices (negatives count from the end) and checks the range. */
export function resolveIndices(indices: number[] | undefined, count: number): number[] {
  if (!indices) return Array.from({ length: count }, (_, i) => i);
  return indices.map((i) => {
    const j = i < 0 ? count + i : i;
    if (!Number.isInteger(j) || j < 0 || j >= count) {
      throw new RangeError(`Feature index ${i} is out of range for ${count} stages`);
    }
    return j;
  });
}
