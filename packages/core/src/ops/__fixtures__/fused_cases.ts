import * as tf from '@tensorflow/tfjs-core';
import { valueAndGradsOf } from '../../autodiff/grad.js';
import { geluErf } from '../../nn/activation.js';
import { FLOAT32_MIN, scaledDotProductAttention } from '../attention.js';
import { batchNormTrain, layerNormLastAxis, type BatchNormTrainResult } from '../norm.js';

/**
 * Each fused op of @vit/core beside the composition of tfjs ops it replaces (the code the layers
 * ran before, kept here as the reference), on odd shapes. `checkFusedCase` compares values and
 * every input's gradient, through tfjs's engine and through `valueAndGradsOf`, on the current
 * backend. Used by the unit suite (cpu, wasm, tensorflow) and the GPU suite (webgpu).
 */
export interface FusedCase {
  name: string;
  inputs: () => tf.Tensor[];
  fused: (...xs: tf.Tensor[]) => tf.Tensor;
  reference: (...xs: tf.Tensor[]) => tf.Tensor;
  /**
   * Backends where the fused op runs a different library kernel than the composition, so its
   * value agrees to float rounding instead of bit for bit (the largest absolute difference allowed;
   * the cases' outputs are of order 1).
   */
  roundingOn?: Record<string, number>;
}

/** Deterministic values in about [-2, 2] (no RNG differences between backends). */
function values(shape: number[], seed: number, scale = 2): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * Math.sin(seed * 12.9898 + i * 78.233 + (i % 7) * 0.37);
  return tf.tensor(out, shape);
}

const composedBatchNorm = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, eps: number) => {
  const { mean, variance } = tf.moments(x, [0, 1, 2]);
  const scale = tf.mul(tf.rsqrt(tf.add(variance, eps)), g);
  return tf.add(tf.mul(tf.sub(x, mean), scale), b);
};

const composedLayerNorm = (x: tf.Tensor, g: tf.Tensor | null, b: tf.Tensor | null, eps: number) => {
  const { mean, variance } = tf.moments(x, -1, true);
  let y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
  if (g) y = tf.mul(y, g);
  if (b) y = tf.add(y, b);
  return y;
};

const composedAttention = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, scale: number, bias?: tf.Tensor, keep?: tf.Tensor) => {
  let logits = tf.matMul(tf.mul(q, scale), k, false, true);
  if (bias) logits = tf.add(logits, bias);
  if (keep) logits = tf.where(tf.broadcastTo(keep, logits.shape), logits, tf.broadcastTo(tf.scalar(FLOAT32_MIN), logits.shape));
  return tf.matMul(tf.softmax(logits), v);
};

/** The normalised map; the batch statistics (the caller's to free) are not needed here. */
const bnY = (r: BatchNormTrainResult) => {
  tf.dispose([r.mean, r.variance]);
  return r.y;
};

export function fusedCases(): FusedCase[] {
  // A mask keeping a varying number of keys per query (at least one), broadcast over batch and heads.
  const mask = () => tf.tensor2d(Array.from({ length: 5 * 7 }, (_, i) => (i % 7 <= (i / 7 + 1) % 7 ? 1 : 0)), [5, 7], 'bool');
  return [
    {
      name: 'batchNormTrain [3,5,7,6]',
      inputs: () => [values([3, 5, 7, 6], 1), tf.add(values([6], 2, 0.5), 1), values([6], 3, 0.5)],
      fused: (x, g, b) => bnY(batchNormTrain(x as tf.Tensor4D, g!, b!, 1e-5)),
      reference: (x, g, b) => composedBatchNorm(x!, g!, b!, 1e-5),
      // TensorFlow's FusedBatchNormV3 sums the statistics in its own order.
      roundingOn: { tensorflow: 2e-6 },
    },
    {
      name: 'batchNormTrain, no affine, one pixel per sample [9,1,1,4]',
      inputs: () => [values([9, 1, 1, 4], 4)],
      fused: (x) => bnY(batchNormTrain(x as tf.Tensor4D, null, null, 1e-3)),
      reference: (x) => composedBatchNorm(x!, tf.ones([4]), tf.zeros([4]), 1e-3),
      roundingOn: { tensorflow: 2e-6 },
    },
    {
      name: 'layerNormLastAxis [2,7,10]',
      inputs: () => [values([2, 7, 10], 5), tf.add(values([10], 6, 0.5), 1), values([10], 7, 0.5)],
      fused: (x, g, b) => layerNormLastAxis(x!, g!, b!, 1e-6),
      reference: (x, g, b) => composedLayerNorm(x!, g!, b!, 1e-6),
    },
    {
      name: 'layerNormLastAxis, NHWC map (LayerNorm2d) [2,3,5,9]',
      inputs: () => [values([2, 3, 5, 9], 8, 3), tf.add(values([9], 9, 0.5), 1), values([9], 10, 0.5)],
      fused: (x, g, b) => layerNormLastAxis(x!, g!, b!, 1e-5),
      reference: (x, g, b) => composedLayerNorm(x!, g!, b!, 1e-5),
    },
    {
      name: 'layerNormLastAxis, weight only [11,3]',
      inputs: () => [values([11, 3], 11), tf.add(values([3], 12, 0.5), 1)],
      fused: (x, g) => layerNormLastAxis(x!, g!, null, 1e-5),
      reference: (x, g) => composedLayerNorm(x!, g!, null, 1e-5),
    },
    {
      name: 'geluErf [4,33]',
      inputs: () => [values([4, 33], 13, 4)],
      fused: (x) => geluErf(x!),
      reference: (x) => tf.mul(tf.mul(0.5, x!), tf.add(1, tf.erf(tf.mul(x!, Math.SQRT1_2)))),
    },
    {
      // 105 elements: on wasm the fused kernel's SIMD loop and its scalar tail (105 % 4 = 1) both run.
      name: 'geluErf, odd size [3,5,7]',
      inputs: () => [values([3, 5, 7], 17, 5)],
      fused: (x) => geluErf(x!),
      reference: (x) => tf.mul(tf.mul(0.5, x!), tf.add(1, tf.erf(tf.mul(x!, Math.SQRT1_2)))),
    },
    {
      name: 'scaledDotProductAttention [2,3,5,4]×[2,3,7,4]×[2,3,7,6]',
      inputs: () => [values([2, 3, 5, 4], 14), values([2, 3, 7, 4], 15), values([2, 3, 7, 6], 16)],
      fused: (q, k, v) => scaledDotProductAttention(q!, k!, v!),
      reference: (q, k, v) => composedAttention(q!, k!, v!, 1 / 2),
    },
    {
      name: 'scaledDotProductAttention with a bias [3,5,7] and a mask [5,7]',
      inputs: () => [values([2, 3, 5, 4], 17), values([2, 3, 7, 4], 18), values([2, 3, 7, 6], 19), values([3, 5, 7], 20, 0.7)],
      fused: (q, k, v, b) => {
        const m = mask();
        try {
          return scaledDotProductAttention(q!, k!, v!, { scale: 0.3, bias: b, mask: m });
        } finally {
          m.dispose();
        }
      },
      reference: (q, k, v, b) => composedAttention(q!, k!, v!, 0.3, b, mask()),
    },
  ];
}

export interface FusedCheck {
  /** max |fused − reference| of the value. */
  valueErr: number;
  /** max over inputs of max |∂fused − ∂reference| / max(1, max |∂reference|), through tfjs's engine and ours. */
  gradErr: number;
  /** Gradients of `valueAndGradsOf` against tfjs's engine on the fused op (same kernels: 0 expected). */
  engineErr: number;
  /** Tensors left behind by the check (0 expected). */
  leaked: number;
}

async function maxAbs(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const v = (await d.data())[0]!;
  d.dispose();
  return v;
}

export async function checkFusedCase(c: FusedCase): Promise<FusedCheck> {
  const xs = c.inputs();
  const before = tf.memory().numTensors;
  // A fixed, uneven upstream gradient so every output element matters differently.
  const probe = tf.tidy(() => values(c.reference(...xs).shape, 99, 1));
  const loss = (f: (...t: tf.Tensor[]) => tf.Tensor) => (...t: tf.Tensor[]) => tf.sum(tf.mul(f(...t), probe));
  const refG = tf.grads(loss(c.reference))(xs);
  const fusedG = tf.grads(loss(c.fused))(xs);
  const ours = valueAndGradsOf(() => loss(c.fused)(...xs), xs);
  const refV = tf.tidy(() => c.reference(...xs));
  const fusedV = tf.tidy(() => c.fused(...xs));
  const valueErr = await maxAbs(fusedV, refV);
  let gradErr = 0;
  let engineErr = 0;
  for (let i = 0; i < xs.length; i++) {
    const r = refG[i]!;
    const z = tf.zerosLike(r);
    const scale = Math.max(1, await maxAbs(r, z));
    z.dispose();
    gradErr = Math.max(gradErr, (await maxAbs(fusedG[i]!, r)) / scale, (await maxAbs(ours.grads[i]!, r)) / scale);
    engineErr = Math.max(engineErr, await maxAbs(ours.grads[i]!, fusedG[i]!));
  }
  tf.dispose([...refG, ...fusedG, ours.value, ...ours.grads.filter((g): g is tf.Tensor => g !== null), refV, fusedV, probe]);
  const leaked = tf.memory().numTensors - before;
  tf.dispose(xs);
  return { valueErr, gradErr, engineErr, leaked };
}
