import * as tf from '@tensorflow/tfjs-core';
import { fusedKernelsReady } from '../backends/kernel_util.js';
import { BATCH_NORM, BATCH_NORM_GRAD, LAYER_NORM, LAYER_NORM_GRAD, batchNormWasmAvailable, layerNormWasmAvailable } from '../backends/wasm_norm.js';

/**
 * Normalisation layers as single differentiable ops with hand-written gradients (`tf.customGrad`).
 * Composed from tfjs kernels, a LayerNorm or a training BatchNorm keeps 3–5 activation-sized
 * tensors for its backward pass (x − μ, its square, x̂, x̂·γ…); these keep only their input x
 * (usually kept anyway: it is the previous layer's output) and the per-row or per-channel
 * statistics, as PyTorch's native kernels do, and recompute x̂ in the backward pass. The forward
 * runs the same kernels in the same order as the composed form, so values are bit-identical to it;
 * gradients agree to float rounding (tests compare both on every backend).
 */

type CustomGradFn = Parameters<typeof tf.customGrad>[0];

/** μ and 1/√(σ² + eps) over `axes` (kept dims), biased variance: the kernels of `tf.moments`. */
function statistics(x: tf.Tensor, axes: number[], eps: number): { mean: tf.Tensor; variance: tf.Tensor; rstd: tf.Tensor } {
  const mean = tf.mean(x, axes, true);
  const variance = tf.mean(tf.square(tf.sub(x, mean)), axes, true);
  return { mean, variance, rstd: tf.rsqrt(tf.add(variance, eps)) };
}

export interface BatchNormTrainResult {
  /** (x − μ)/√(σ² + eps)·γ + β. */
  y: tf.Tensor4D;
  /** Batch mean `[C]` (not differentiable; for the running statistics). The caller disposes it. */
  mean: tf.Tensor1D;
  /** Biased batch variance `[C]` (not differentiable). The caller disposes it. */
  variance: tf.Tensor1D;
}

/** Training BatchNorm's forward: y, the batch statistics `[C]`, and what its backward reads (μ, 1/σ). */
interface BatchNormForward {
  y: tf.Tensor;
  mean: tf.Tensor;
  variance: tf.Tensor;
  rstd: tf.Tensor;
}

/** The forward as composed tfjs kernels: (x − μ)·(rstd·γ) + β, as the composed layer (statistics kept `[1, 1, 1, C]`). */
export function batchNormForwardComposed(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): BatchNormForward {
  const { mean, variance, rstd } = statistics(x, [0, 1, 2], eps);
  return { y: tf.add(tf.mul(tf.sub(x, mean), tf.mul(rstd, gamma)), beta), mean, variance, rstd };
}

/**
 * The forward as our fused kernel: one SIMD kernel on wasm (backends/wasm_norm.ts), bit-identical
 * to the composed one; TensorFlow's FusedBatchNormV3 on tensorflow (backends/tensorflow_kernels.ts),
 * equal to it to float rounding; statistics `[C]`.
 */
export function batchNormForwardFused(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): BatchNormForward {
  const [y, mean, variance, rstd] = tf.engine().runKernel(BATCH_NORM, { x, gamma, beta }, { eps } as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return { y: y!, mean: mean!, variance: variance!, rstd: rstd! };
}

/** The backward as composed tfjs kernels: [dx, dγ, dβ] (μ and 1/σ `[C]` or `[1, 1, 1, C]`). */
export function batchNormBackwardComposed(dy: tf.Tensor, x: tf.Tensor, mean: tf.Tensor, rstd: tf.Tensor, gamma: tf.Tensor): tf.Tensor[] {
  const c = x.shape[3]!;
  const n = x.shape[0]! * x.shape[1]! * x.shape[2]!;
  return tf.tidy(() => {
    // Nested scopes free each full-size temporary as soon as it is used (2–3 alive at a time).
    const xhat = tf.tidy(() => tf.mul(tf.sub(x, mean), rstd));
    const dbeta = tf.sum(dy, [0, 1, 2]);
    const dgamma = tf.tidy(() => tf.sum(tf.mul(dy, xhat), [0, 1, 2]));
    const k = tf.mul(tf.reshape(rstd, [c]), gamma);
    const centred = tf.tidy(() => tf.sub(dy, tf.div(dbeta, n)));
    const proj = tf.tidy(() => tf.mul(xhat, tf.div(dgamma, n)));
    xhat.dispose();
    const diff = tf.sub(centred, proj);
    tf.dispose([centred, proj]);
    return [tf.mul(diff, k), dgamma, dbeta];
  });
}

/** The backward as our fused kernel: bit-identical to the composed one on wasm, equal to rounding on tensorflow. */
export function batchNormBackwardFused(dy: tf.Tensor, x: tf.Tensor, mean: tf.Tensor, rstd: tf.Tensor, gamma: tf.Tensor): tf.Tensor[] {
  const c = x.shape[3]!;
  return tf.tidy(() => {
    const [m, r] = [tf.reshape(mean, [c]), tf.reshape(rstd, [c])];
    return tf.engine().runKernel(BATCH_NORM_GRAD, { x, mean: m, rstd: r, gamma, dy }) as tf.Tensor[];
  });
}

/**
 * BatchNorm of an NHWC map with batch statistics over N, H, W (training mode), `gamma`/`beta`
 * `[C]` or null. Backward (PyTorch's): with x̂ recomputed from the saved x, μ, 1/σ,
 * dβ = Σdy, dγ = Σdy·x̂, dx = γ/σ·(dy − dβ/N − x̂·dγ/N). On wasm each direction is one SIMD kernel,
 * on tensorflow one TensorFlow op (FusedBatchNormV3 and its gradient).
 */
export function batchNormTrain(x: tf.Tensor4D, gamma: tf.Tensor | null, beta: tf.Tensor | null, eps: number): BatchNormTrainResult {
  const c = x.shape[3];
  let stats: [tf.Tensor1D, tf.Tensor1D] | undefined;
  const g = gamma ?? tf.ones([c]);
  const b = beta ?? tf.zeros([c]);
  const fused = x.size > 0 && [x, g, b].every((t) => t.dtype === 'float32') && fusedKernelsReady([BATCH_NORM, BATCH_NORM_GRAD], batchNormWasmAvailable);
  const [forward, backward] = fused ? [batchNormForwardFused, batchNormBackwardFused] : [batchNormForwardComposed, batchNormBackwardComposed];
  const op = tf.customGrad(((xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor, save: tf.GradSaveFunc) => {
    const { y, mean, variance, rstd } = forward(xi, gi, bi, eps);
    stats = [tf.keep(tf.reshape(mean, [c])), tf.keep(tf.reshape(variance, [c]))];
    save([xi, mean, rstd, gi]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sm, sr, sg] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
        return backward(dy, sx, sm, sr, sg);
      },
    };
  }) as unknown as CustomGradFn);
  try {
    const y = op(x, g, b) as tf.Tensor4D;
    return { y, mean: stats![0], variance: stats![1] };
  } finally {
    if (!gamma) g.dispose();
    if (!beta) b.dispose();
  }
}

/** The entries of `m` that are set (a kernel's optional inputs). */
function present(m: Record<string, tf.Tensor | null | undefined>): tf.NamedTensorMap {
  return Object.fromEntries(Object.entries(m).filter(([, t]) => t)) as tf.NamedTensorMap;
}

/** LayerNorm's forward: y and the per-row statistics its backward reads (μ, 1/σ, shaped [..., 1]). */
export interface LayerNormForward {
  y: tf.Tensor;
  mean: tf.Tensor;
  rstd: tf.Tensor;
}

/**
 * The forward as composed tfjs kernels: (x − μ)·rstd, then ·γ, then +β, as the composed layer.
 * Exported for the tests that hold the fused wasm kernels to it.
 */
export function layerNormForwardComposed(x: tf.Tensor, gamma: tf.Tensor | null, beta: tf.Tensor | null, eps: number): LayerNormForward {
  const { mean, rstd } = statistics(x, [x.rank - 1], eps);
  let y = tf.mul(tf.sub(x, mean), rstd);
  if (gamma) y = tf.mul(y, gamma);
  if (beta) y = tf.add(y, beta);
  return { y, mean, rstd };
}

/** The backward as composed tfjs kernels: [dx, dγ (with γ), dβ (with `hasBeta`)]. */
export function layerNormBackwardComposed(
  dy: tf.Tensor,
  x: tf.Tensor,
  mean: tf.Tensor,
  rstd: tf.Tensor,
  gamma: tf.Tensor | null,
  hasBeta: boolean,
): tf.Tensor[] {
  const last = x.rank - 1;
  const c = x.shape[last]!;
  const rows = Array.from({ length: last }, (_, i) => i);
  return tf.tidy(() => {
    // Nested scopes free each full-size temporary as soon as it is used (2–3 alive at a time).
    const xhat = tf.tidy(() => tf.mul(tf.sub(x, mean), rstd));
    const out: tf.Tensor[] = [];
    const dgamma = gamma ? tf.tidy(() => tf.reshape(tf.sum(tf.mul(dy, xhat), rows), [c])) : null;
    const gh = gamma ? tf.mul(dy, gamma) : dy;
    const m1 = tf.mean(gh, last, true);
    const m2 = tf.tidy(() => tf.mean(tf.mul(gh, xhat), last, true));
    const centred = tf.sub(gh, m1);
    if (gh !== dy) gh.dispose();
    const proj = tf.mul(xhat, m2);
    xhat.dispose();
    const diff = tf.sub(centred, proj);
    tf.dispose([centred, proj]);
    out.push(tf.mul(diff, rstd));
    diff.dispose();
    if (dgamma) out.push(dgamma);
    if (hasBeta) out.push(tf.reshape(tf.sum(dy, rows), [c]));
    return out;
  });
}

/** The forward in one SIMD kernel on wasm (backends/wasm_norm.ts), bit-identical to the composed one. */
export function layerNormForwardWasm(x: tf.Tensor, gamma: tf.Tensor | null, beta: tf.Tensor | null, eps: number): LayerNormForward {
  const [y, mean, rstd] = tf.engine().runKernel(LAYER_NORM, present({ x, gamma, beta }), {
    eps,
  } as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return { y: y!, mean: mean!, rstd: rstd! };
}

/** The backward in one SIMD kernel on wasm, bit-identical to the composed one. */
export function layerNormBackwardWasm(dy: tf.Tensor, x: tf.Tensor, mean: tf.Tensor, rstd: tf.Tensor, gamma: tf.Tensor | null, hasBeta: boolean): tf.Tensor[] {
  return tf.engine().runKernel(LAYER_NORM_GRAD, present({ x, mean, rstd, gamma, dy }), {
    hasBeta,
  } as unknown as tf.NamedAttrMap) as tf.Tensor[];
}

/**
 * LayerNorm over the last axis, `gamma`/`beta` `[C]` or null. Saves x, μ and 1/σ per row.
 * Backward: x̂ recomputed; with ĝ = dy·γ, dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))/σ, dγ = Σdy·x̂,
 * dβ = Σdy over the rows. On wasm each direction is one SIMD kernel.
 */
export function layerNormLastAxis(x: tf.Tensor, gamma: tf.Tensor | null, beta: tf.Tensor | null, eps: number): tf.Tensor {
  const inputs: tf.Tensor[] = [x];
  if (gamma) inputs.push(gamma);
  if (beta) inputs.push(beta);
  const fused =
    x.rank > 0 &&
    x.shape[x.rank - 1]! > 0 &&
    inputs.every((t) => t.dtype === 'float32') &&
    fusedKernelsReady([LAYER_NORM, LAYER_NORM_GRAD], layerNormWasmAvailable);
  const [forward, backward] = fused ? [layerNormForwardWasm, layerNormBackwardWasm] : [layerNormForwardComposed, layerNormBackwardComposed];
  const op = tf.customGrad(((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [xi, gi, bi] = [args[0] as tf.Tensor, gamma ? (args[1] as tf.Tensor) : null, beta ? (args[gamma ? 2 : 1] as tf.Tensor) : null];
    const { y, mean, rstd } = forward(xi, gi, bi, eps);
    save(gi ? [xi, mean, rstd, gi] : [xi, mean, rstd]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sm, sr, sg] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor | undefined];
        return backward(dy, sx, sm, sr, sg ?? null, !!beta);
      },
    };
  }) as unknown as CustomGradFn);
  return op(...inputs);
}
