/**
 * Attention rollout (Abnar & Zuidema, ACL 2020): the attention of each layer, heads fused, plus the
 * identity for the residual connection, rows renormalised, multiplied through the layers, says how
 * much each input token flows into each output token.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { withForwardHooks } from '../nn/hooks.js';
import type { Module } from '../nn/module.js';
import { findExplainer } from '../registry/registry.js';
import { checkBatch, inEvalMode, resolveClasses, toUnitMaps, type Explanation } from './common.js';
import type { AttentionMaps, AttentionSpec } from './types.js';

export type HeadFusion = 'mean' | 'max' | 'min';

export interface RolloutOptions {
  /** Fraction of each image's weakest fused attention weights set to 0 in every layer (jacobgil's vit-explain). Default 0. */
  discardRatio?: number;
  /** How the heads of a layer become one map. Default 'mean' (the paper). */
  headFusion?: HeadFusion;
}

export interface AttentionRolloutOptions extends RolloutOptions {
  /** Where the attention is, for a model no registered architecture describes. */
  spec?: AttentionSpec;
}

function checkOptions(o: RolloutOptions): { discardRatio: number; headFusion: HeadFusion } {
  const discardRatio = o.discardRatio ?? 0;
  const headFusion = o.headFusion ?? 'mean';
  if (!(discardRatio >= 0 && discardRatio < 1)) throw new ConfigError(`attentionRollout: discardRatio must be in [0, 1), got ${discardRatio}`);
  if (!['mean', 'max', 'min'].includes(headFusion)) throw new ConfigError(`attentionRollout: headFusion must be 'mean', 'max' or 'min', got '${String(headFusion)}'`);
  return { discardRatio, headFusion };
}

/**
 * One layer's `[B, heads, Nq, Nk]` as `[B, Nq, Nk]`: heads fused, negative weights (talking-heads
 * mixing after the softmax can make some) clipped to 0, the weakest `discardRatio` of each image's
 * weights set to 0.
 */
function fuse(a: tf.Tensor4D, headFusion: HeadFusion, discardRatio: number): tf.Tensor3D {
  return tf.tidy(() => {
    const f = tf.relu(headFusion === 'mean' ? tf.mean(a, 1) : headFusion === 'max' ? tf.max(a, 1) : tf.min(a, 1)) as tf.Tensor3D;
    const [b, nq, nk] = f.shape;
    const k = Math.floor(discardRatio * nq * nk);
    if (k === 0) return f;
    const flat = tf.reshape(f, [b, nq * nk]);
    // The k-th smallest weight of each image; everything at or below it goes.
    const kth = tf.neg(tf.slice(tf.topk(tf.neg(flat), k).values, [0, k - 1], [b, 1]));
    return tf.reshape(tf.where(tf.greater(flat, kth), flat, tf.zerosLike(flat)), [b, nq, nk]) as tf.Tensor3D;
  });
}

/** Adds the identity (the residual path) and renormalises every row to sum 1. */
function withResidual(f: tf.Tensor3D): tf.Tensor3D {
  return tf.tidy(() => {
    const [, n] = f.shape;
    const a = tf.add(f, tf.eye(n));
    return tf.div(a, tf.sum(a, 2, true)) as tf.Tensor3D;
  });
}

/**
 * The rollout of `maps` as one non-negative score per patch, `[B, gh, gw]` (not yet upsampled or
 * scaled). How the prediction's row is read:
 * - class-attention layers (CaiT): the class token's row through them (a class-attention layer is
 *   the identity for the patch tokens and `attention + identity` for the class token), then
 *   through the self-attention rollout;
 * - else a class token in the sequence (`prefixTokens > 0`): the first token's row;
 * - else (a model that pools its tokens): the mean of all rows.
 * The prefix tokens' own columns are left out.
 */
export function rollout(maps: AttentionMaps, options: RolloutOptions = {}): tf.Tensor3D {
  const { discardRatio, headFusion } = checkOptions(options);
  const { layers, prefixTokens, grid, classLayers = [] } = maps;
  if (layers.length === 0 && classLayers.length === 0) throw new ConfigError('rollout: no attention layers');
  const first = layers[0] ?? classLayers[0]!;
  const b = first.shape[0];
  const n = layers.length ? layers[0]!.shape[2] : classLayers[0]!.shape[3] - 1;
  for (const [i, l] of layers.entries()) {
    if (l.rank !== 4 || l.shape[0] !== b || l.shape[2] !== n || l.shape[3] !== n) {
      throw new ShapeError(`rollout: self-attention layer ${i} should be [${b}, heads, ${n}, ${n}], got [${l.shape.join(', ')}]`);
    }
  }
  for (const [i, l] of classLayers.entries()) {
    if (l.rank !== 4 || l.shape[0] !== b || l.shape[2] !== 1 || l.shape[3] !== n + 1) {
      throw new ShapeError(`rollout: class-attention layer ${i} should be [${b}, heads, 1, ${n + 1}], got [${l.shape.join(', ')}]`);
    }
  }
  if (!(Number.isInteger(prefixTokens) && prefixTokens >= 0) || grid[0] * grid[1] !== n - prefixTokens) {
    throw new ShapeError(`rollout: ${prefixTokens} prefix tokens and a ${grid[0]}x${grid[1]} grid do not make the ${n} tokens of the attention maps`);
  }
  return tf.tidy(() => {
    // R: how every token after the last self-attention layer draws on the tokens entering the first.
    let r: tf.Tensor3D = tf.tile(tf.expandDims(tf.eye(n), 0), [b, 1, 1]) as tf.Tensor3D;
    for (const l of layers) r = tf.matMul(withResidual(fuse(l, headFusion, discardRatio)), r);
    let row: tf.Tensor2D;
    if (classLayers.length) {
      // v over [class token as it entered, the N tokens]: starts as the class token itself.
      const self0 = tf.concat([tf.ones([b, 1]), tf.zeros([b, n])], 1) as tf.Tensor2D;
      let v = self0;
      for (const l of classLayers) {
        const a = tf.reshape(fuse(l, headFusion, discardRatio), [b, n + 1]);
        const withSelf = tf.add(a, self0);
        const w = tf.div(withSelf, tf.sum(withSelf, 1, true));
        // The class token now draws w[0] on its previous self (v) and w[j] on token j directly.
        const self = tf.slice(w, [0, 0], [b, 1]);
        v = tf.add(tf.mul(self, v), tf.concat([tf.zeros([b, 1]), tf.slice(w, [0, 1], [b, n])], 1)) as tf.Tensor2D;
      }
      // The class token's draw on the tokens leaving the self-attention layers, traced back through them.
      row = tf.reshape(tf.matMul(tf.expandDims(tf.slice(v, [0, 1], [b, n]), 1), r), [b, n]) as tf.Tensor2D;
    } else {
      row = (prefixTokens > 0 ? tf.reshape(tf.slice(r, [0, 0, 0], [b, 1, n]), [b, n]) : tf.mean(r, 1)) as tf.Tensor2D;
    }
    return tf.reshape(tf.slice(row, [0, prefixTokens], [b, n - prefixTokens]), [b, grid[0], grid[1]]) as tf.Tensor3D;
  });
}

/**
 * Runs the model once over `x` (eval mode) recording the inputs of the spec's attention modules,
 * and asks the spec for their attention probabilities. Caller disposes the maps and the logits.
 */
export function captureAttention(model: Module, x: tf.Tensor4D, spec: AttentionSpec): { maps: AttentionMaps; logits: tf.Tensor2D } {
  const paths = [...spec.layers, ...(spec.classLayers ?? [])];
  const calls = new Map<string, Array<{ module: Module; args: unknown[] }>>(paths.map((p) => [p, []]));
  const kept: tf.Tensor[] = [];
  // Tensors among the arguments are cloned and kept: the model's scopes free the originals.
  const keepArgs = (args: unknown[]) =>
    args.map((a) => {
      if (!(a instanceof tf.Tensor)) return a;
      const c = tf.keep(a.clone());
      kept.push(c);
      return c;
    });
  const hooks = Object.fromEntries(paths.map((p) => [p, (module: Module, args: unknown[]) => void calls.get(p)!.push({ module, args: keepArgs(args) })]));
  let logits: tf.Tensor2D | undefined;
  const out: tf.Tensor4D[] = [];
  try {
    logits = withForwardHooks(model, hooks, () => tf.tidy(() => model.forward(x) as tf.Tensor2D));
    const weights = (p: string) => {
      const c = calls.get(p)!;
      if (c.length !== 1) throw new ConfigError(`attentionRollout: attention module '${p}' ran ${c.length} times in one forward pass; expected once`);
      const w = spec.weights(c[0]!.module, c[0]!.args);
      out.push(w);
      return w;
    };
    const layers = spec.layers.map(weights);
    const classLayers = spec.classLayers?.map(weights);
    const maps: AttentionMaps = { layers, prefixTokens: spec.prefixTokens, grid: spec.grid(x.shape[1], x.shape[2]), ...(classLayers ? { classLayers } : {}) };
    return { maps, logits };
  } catch (e) {
    tf.dispose([...out, ...(logits ? [logits] : [])]);
    throw e;
  } finally {
    tf.dispose(kept);
  }
}

/**
 * Attention-rollout maps `[B, H, W]` in [0, 1] for `x`, from the attention the model's
 * architecture exposes (or `options.spec`). Class-agnostic: `classIndex` reports the top class.
 */
export function attentionRollout(model: Module, x: tf.Tensor4D, options: AttentionRolloutOptions = {}): Explanation {
  checkBatch('attentionRollout', x);
  checkOptions(options);
  const explainer = findExplainer(model);
  const spec = options.spec ?? explainer?.attention;
  if (!spec) {
    const why = explainer?.noRollout ?? 'no registered architecture describes its attention (pass options.spec)';
    throw new ConfigError(`attentionRollout: ${model.typeName} has no global attention maps to roll out: ${why}. Use gradCam (or explain with method 'auto')`);
  }
  return inEvalMode(model, () => {
    const { maps, logits } = captureAttention(model, x, spec);
    try {
      const classIndex = resolveClasses('attentionRollout', undefined, logits);
      const map = tf.tidy(() => toUnitMaps(rollout(maps, options), x.shape[1], x.shape[2]));
      return { map, logits, classIndex, method: 'rollout' as const };
    } catch (e) {
      logits.dispose();
      throw e;
    } finally {
      tf.dispose([...maps.layers, ...(maps.classLayers ?? [])]);
    }
  });
}
