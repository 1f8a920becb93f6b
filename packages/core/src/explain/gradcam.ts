/**
 * Grad-CAM (Selvaraju et al., ICCV 2017): the gradient of a class score with respect to a feature
 * map A, averaged over space, weighs A's channels; the ReLU of the weighted sum, upsampled to the
 * input, is where the evidence for the class lies.
 */
import * as tf from '@tensorflow/tfjs-core';
import { valueAndGradsOf } from '../autodiff/grad.js';
import { ConfigError, ShapeError } from '../errors.js';
import { withForwardHooks } from '../nn/hooks.js';
import type { Module } from '../nn/module.js';
import { isVisionModel, type FeatureInfo } from '../registry/contract.js';
import { findExplainer } from '../registry/registry.js';
import { checkBatch, inEvalMode, resolveClasses, tokenGrid, tokensToMap, toUnitMaps, type Explanation } from './common.js';
import type { CamTarget } from './types.js';

export interface GradCamOptions {
  /** The class to explain: one for every image or one per image. Default: each image's top class. */
  classIndex?: number | readonly number[];
  /**
   * The layer whose output is weighed: a dotted module path (its output an NHWC map, or tokens
   * `[B, N, C]` ending in the patch grid) or a `CamTarget`. Default: the architecture's choice
   * (see `minMapSize`), else the `forwardFeatures` map.
   */
  layer?: string | CamTarget;
  /** With a `layer` path whose module returns an array: which element. */
  output?: number;
  /** The default layer is the deepest whose map is at least this many cells on both sides. Default 4. */
  minMapSize?: number;
}

/** The default `minMapSize`: a 2×2 map only says which quadrant; 4×4 is the coarsest that outlines an object. */
export const DEFAULT_MIN_CAM_SIZE = 4;

/**
 * The deepest of `targets` (shallowest first) whose map at this input size is at least `min`
 * cells on both sides; the shallowest when none is.
 */
export function pickCamTarget(targets: readonly CamTarget[], height: number, width: number, min = DEFAULT_MIN_CAM_SIZE): CamTarget {
  if (targets.length === 0) throw new ConfigError('pickCamTarget: no candidate layers');
  const size = (t: CamTarget) => {
    const r = t.reduction ?? 1;
    const [rh, rw] = typeof r === 'number' ? [r, r] : r;
    return Math.min(Math.floor(height / rh), Math.floor(width / rw));
  };
  for (let i = targets.length - 1; i >= 0; i--) if (size(targets[i]!) >= min) return targets[i]!;
  return targets[0]!;
}

/** Grad-CAM candidates from `featureInfo` whose modules output the stage maps (shallowest first). */
export function featureInfoCamTargets(featureInfo: readonly FeatureInfo[]): CamTarget[] {
  return featureInfo.map((f) => ({ layer: f.module, reduction: f.reduction }));
}

/** The map and a way to re-run the rest of the network from a stand-in for it. */
interface Split {
  name: string;
  /** The target's value for `x` (kept) and the logits. */
  a: tf.Tensor;
  logits: tf.Tensor2D;
  /** The logits with `a` replaced by `stand` (runs under the gradient tape). */
  rest(stand: tf.Tensor): tf.Tensor2D;
  reduction?: number | [number, number];
}

function selectOutput(target: CamTarget, out: unknown): tf.Tensor {
  if (Array.isArray(out)) {
    if (target.output === undefined || !(out[target.output] instanceof tf.Tensor)) {
      throw new ConfigError(`gradCam: module '${target.layer}' returns ${out.length} outputs; choose one with output: 0..${out.length - 1}${target.output === undefined ? '' : ` (got ${target.output})`}`);
    }
    return out[target.output] as tf.Tensor;
  }
  if (!(out instanceof tf.Tensor)) throw new ConfigError(`gradCam: module '${target.layer}' returns no tensor`);
  return out;
}

function replaceOutput(target: CamTarget, out: unknown, stand: tf.Tensor): unknown {
  if (!Array.isArray(out)) return stand;
  const copy = [...out];
  copy[target.output!] = stand;
  return copy;
}

/** A module's output as the split point: one forward records it, later forwards substitute for it. */
function layerSplit(model: Module, x: tf.Tensor4D, target: CamTarget): Split {
  let calls = 0;
  let a: tf.Tensor | undefined;
  const run = (hook: (out: unknown) => unknown) => {
    calls = 0;
    return withForwardHooks(model, { [target.layer]: (_m, _args, out) => (calls++, hook(out)) }, () => tf.tidy(() => model.forward(x) as tf.Tensor2D));
  };
  const once = () => {
    if (calls !== 1) throw new ConfigError(`gradCam: module '${target.layer}' ran ${calls} times in one forward pass; Grad-CAM needs a layer that runs once`);
  };
  let logits: tf.Tensor2D | undefined;
  try {
    logits = run((out) => {
      a?.dispose();
      // A clone: the model may dispose its own intermediates; this copy is ours until the end.
      a = tf.keep(selectOutput(target, out).clone());
      return undefined;
    });
    once();
  } catch (e) {
    tf.dispose([a, logits].filter((t): t is tf.Tensor => t !== undefined));
    throw e;
  }
  return {
    name: target.layer,
    a: a!,
    logits: logits!,
    reduction: target.reduction,
    rest: (stand) => {
      const y = run((out) => replaceOutput(target, out, stand.clone()));
      once();
      return y;
    },
  };
}

/** `forwardHead(forwardFeatures(x))`: every VisionModel's forward, split where the contract splits it. */
function featureSplit(model: Module, x: tf.Tensor4D): Split {
  if (!isVisionModel(model)) {
    throw new ConfigError(`gradCam: ${model.typeName} is not a VisionModel (forwardFeatures/forwardHead) and no architecture names its layers; pass layer: '<dotted module path>'`);
  }
  const a = tf.tidy(() => model.forwardFeatures(x));
  try {
    const logits = tf.tidy(() => model.forwardHead(a));
    return { name: 'forwardFeatures', a, logits, rest: (stand) => model.forwardHead(stand) };
  } catch (e) {
    a.dispose();
    throw e;
  }
}

/** The split `options` ask for: a layer given, the architecture's choice, or forwardFeatures. */
function split(model: Module, x: tf.Tensor4D, options: GradCamOptions): Split {
  const { layer, output } = options;
  if (typeof layer === 'string') return layerSplit(model, x, { layer, output });
  if (layer) return layerSplit(model, x, layer);
  const min = options.minMapSize ?? DEFAULT_MIN_CAM_SIZE;
  if (!(Number.isInteger(min) && min >= 1)) throw new ConfigError(`gradCam: minMapSize must be a positive integer, got ${min}`);
  const targets = findExplainer(model)?.camTargets;
  if (!targets?.length) return featureSplit(model, x);
  return layerSplit(model, x, pickCamTarget(targets, x.shape[1], x.shape[2], min));
}

/**
 * Grad-CAM maps `[B, H, W]` in [0, 1] for `x` (NHWC, normalised as the model expects), computed in
 * eval mode. The class score is the logit (before softmax), as in the paper. Every backend.
 */
export function gradCam(model: Module, x: tf.Tensor4D, options: GradCamOptions = {}): Explanation {
  checkBatch('gradCam', x);
  const [, height, width] = x.shape;
  return inEvalMode(model, () => {
    const s = split(model, x, options);
    const { a, logits } = s;
    try {
      if (a.rank !== 4 && a.rank !== 3) {
        throw new ShapeError(`gradCam: layer '${s.name}' gives shape [${a.shape.join(', ')}]; expected an NHWC map [B, h, w, C] or tokens [B, N, C]`);
      }
      const classIndex = resolveClasses('gradCam', options.classIndex, logits);
      const map = tf.tidy(() => {
        const onehot = tf.cast(tf.oneHot(tf.tensor1d(classIndex, 'int32'), logits.shape[1]), 'float32');
        const { value, grads } = valueAndGradsOf(() => tf.sum(tf.mul(s.rest(a), onehot)), [a]);
        value.dispose();
        const g = grads[0] ?? tf.zerosLike(a);
        const grid = a.rank === 3 ? tokenGrid(`gradCam: layer '${s.name}'`, a.shape[1]!, height, width, s.reduction) : undefined;
        const am = grid ? tokensToMap(a, grid) : (a as tf.Tensor4D);
        const gm = grid ? tokensToMap(g, grid) : (g as tf.Tensor4D);
        const [b, , , c] = am.shape;
        const weights = tf.reshape(tf.mean(gm, [1, 2]), [b, 1, 1, c]);
        const cam = tf.relu(tf.sum(tf.mul(am, weights), 3)) as tf.Tensor3D;
        return toUnitMaps(cam, height, width);
      });
      return { map, logits, classIndex, method: 'gradcam' as const, layer: s.name };
    } catch (e) {
      logits.dispose();
      throw e;
    } finally {
      a.dispose();
    }
  });
}
