import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { positiveInt } from '../nn/input.js';

/** float32's lowest value: what PyTorch code fills masked logits with (`torch.finfo(float32).min`). */
export const FLOAT32_MIN = -3.4028234663852886e38;

/** `[B, N, H·d]` → `[B, H, N, d]` (head h owns channels h·d … h·d + d − 1, as the official reshapes). */
export function splitHeads(x: tf.Tensor, heads: number): tf.Tensor4D {
  if (x.rank !== 3) throw new ShapeError(`splitHeads expected [B, N, heads·d], got shape [${x.shape.join(',')}]`);
  const [b, n, c] = x.shape as [number, number, number];
  if (!Number.isInteger(heads) || heads <= 0 || c % heads !== 0) {
    throw new ShapeError(`splitHeads: channels (${c}) must be divisible by heads (${heads})`);
  }
  return tf.tidy(() => tf.transpose(tf.reshape(x, [b, n, heads, c / heads]), [0, 2, 1, 3]));
}

/** `[B, H, N, d]` → `[B, N, H·d]`, the inverse of `splitHeads`. */
export function mergeHeads(x: tf.Tensor): tf.Tensor3D {
  if (x.rank !== 4) throw new ShapeError(`mergeHeads expected [B, heads, N, d], got shape [${x.shape.join(',')}]`);
  const [b, h, n, d] = x.shape as [number, number, number, number];
  return tf.tidy(() => tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [b, n, h * d]));
}

export interface AttentionOptions {
  /** Multiplies q·kᵀ; default 1/√d. */
  scale?: number;
  /** Added to the logits (relative-position tables…); broadcast against `[…, Nq, Nk]`. */
  bias?: tf.Tensor;
  /**
   * Boolean (or 0/1) tensor broadcast against the logits: true/1 = attend. Masked logits are
   * REPLACED (after `bias`) by `maskValue`, so a fully masked row becomes uniform, never NaN.
   */
  mask?: tf.Tensor;
  /** Default float32's lowest value, as RegionViT's official code. */
  maskValue?: number;
}

/** softmax(scale·q·kᵀ + bias, masked) over the last axis: `[…, Nq, d]`, `[…, Nk, d]` → `[…, Nq, Nk]`. */
export function attentionWeights(q: tf.Tensor, k: tf.Tensor, options: AttentionOptions = {}): tf.Tensor {
  const d = q.shape[q.rank - 1]!;
  if (q.rank < 2 || k.rank !== q.rank || k.shape[k.rank - 1] !== d) {
    throw new ShapeError(`attention expected q [..., Nq, d] and k [..., Nk, d] of equal rank and d, got q [${q.shape.join(',')}], k [${k.shape.join(',')}]`);
  }
  const scale = options.scale ?? 1 / Math.sqrt(d);
  return tf.tidy(() => {
    let logits = tf.matMul(tf.mul(q, scale), k, false, true);
    if (options.bias) logits = tf.add(logits, options.bias);
    if (options.mask) {
      const keep = options.mask.dtype === 'bool' ? options.mask : tf.notEqual(options.mask, 0);
      const fill = tf.scalar(options.maskValue ?? FLOAT32_MIN);
      logits = tf.where(tf.broadcastTo(keep, logits.shape), logits, tf.broadcastTo(fill, logits.shape));
    }
    return tf.softmax(logits);
  });
}

/**
 * softmax(scale·q·kᵀ + bias, masked)·v. q `[…, Nq, d]`, k `[…, Nk, d]`, v `[…, Nk, dv]` → `[…, Nq, dv]`.
 *
 * One differentiable op when q, k and v share their leading dims: it keeps q, k, v and the
 * probabilities P for the backward pass (the composed form also keeps scale·q), and computes
 * dV = Pᵀ·dO, dS = P ⊙ (dO·Vᵀ − rowsum(dO·Vᵀ ⊙ P)) (zero where masked), dQ = scale·dS·K,
 * dK = dSᵀ·(scale·Q), dbias = dS summed to the bias's shape. The forward runs the composed form's
 * kernels, so values are identical to it.
 */
export function scaledDotProductAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: AttentionOptions = {}): tf.Tensor {
  if (v.rank !== k.rank || v.shape[v.rank - 2] !== k.shape[k.rank - 2]) {
    throw new ShapeError(`attention expected v [..., Nk, dv] matching k [..., Nk, d], got k [${k.shape.join(',')}], v [${v.shape.join(',')}]`);
  }
  if (options.scale !== undefined && !Number.isFinite(options.scale)) throw new ConfigError(`attention scale must be finite, got ${options.scale}`);
  const lead = (t: tf.Tensor) => t.shape.slice(0, -2).join(',');
  const sameLead = lead(q) === lead(k) && lead(k) === lead(v);
  if (!sameLead || q.rank < 2) return tf.tidy(() => tf.matMul(attentionWeights(q, k, options), v));
  const d = q.shape[q.rank - 1]!;
  if (k.shape[k.rank - 1] !== d) {
    throw new ShapeError(`attention expected q [..., Nq, d] and k [..., Nk, d] of equal rank and d, got q [${q.shape.join(',')}], k [${k.shape.join(',')}]`);
  }
  const scale = options.scale ?? 1 / Math.sqrt(d);
  const { bias, mask } = options;
  const keepOf = () => (mask ? (mask.dtype === 'bool' ? mask : tf.notEqual(mask, 0)) : null);
  const inputs = bias ? [q, k, v, bias] : [q, k, v];
  const op = tf.customGrad(((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [qi, ki, vi, bi] = args as tf.Tensor[];
    // The composed form's kernels, in its order.
    let logits = tf.matMul(tf.mul(qi!, scale), ki!, false, true);
    if (bi) logits = tf.add(logits, bi);
    const keep = keepOf();
    if (keep) logits = tf.where(tf.broadcastTo(keep, logits.shape), logits, tf.broadcastTo(tf.scalar(options.maskValue ?? FLOAT32_MIN), logits.shape));
    const p = tf.softmax(logits);
    // The mask is saved too: the caller's copy is usually gone by the backward pass.
    save(keep ? [qi!, ki!, vi!, p, keep] : [qi!, ki!, vi!, p]);
    return {
      value: tf.matMul(p, vi!),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [sq, sk, sv, sp, km] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor | undefined];
          const dv = tf.matMul(sp, dy, true, false);
          const dp = tf.matMul(dy, sv, false, true);
          let ds = tf.mul(sp, tf.sub(dp, tf.sum(tf.mul(dp, sp), -1, true)));
          if (km) ds = tf.where(tf.broadcastTo(km, ds.shape), ds, tf.zerosLike(ds));
          const dq = tf.mul(tf.matMul(ds, sk), scale);
          const dk = tf.matMul(ds, tf.mul(sq, scale), true, false);
          const out = [dq, dk, dv];
          if (bi) {
            const axes = tf.backend_util.getReductionAxes(bi.shape, ds.shape);
            out.push(tf.reshape(axes.length ? tf.sum(ds, axes) : ds, bi.shape));
          }
          return out;
        }),
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(...inputs);
}

/** Python's `qk_scale or head_dim ** -0.5`: a falsy qk_scale (None, 0) falls back to the default. */
export function attentionScale(headDim: number, qkScale: number | null | undefined): number {
  return qkScale ? qkScale : headDim ** -0.5;
}

/**
 * The head split of a multi-head attention as the official constructors make it: `dim` and
 * `numHeads` positive integers, `numHeads` dividing `dim` (their `reshape(B, N, heads, C // heads)`
 * fails otherwise); the head width and the logit scale ({@link attentionScale}). `what` names the
 * module in the errors.
 */
export function attentionHeads(what: string, dim: number, numHeads: number, qkScale?: number | null): { headDim: number; scale: number } {
  positiveInt(`${what} dim`, dim);
  positiveInt(`${what} numHeads`, numHeads);
  if (dim % numHeads !== 0) throw new ConfigError(`${what} dim (${dim}) must be divisible by numHeads (${numHeads})`);
  const headDim = dim / numHeads;
  return { headDim, scale: attentionScale(headDim, qkScale) };
}
