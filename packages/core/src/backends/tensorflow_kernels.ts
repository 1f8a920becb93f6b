import * as tf from '@tensorflow/tfjs-core';
import { rememberStock, runStock } from './kernel_util.js';
import { BATCH_NORM, BATCH_NORM_GRAD } from './wasm_norm.js';

/**
 * Kernels we register over @tensorflow/tfjs-node's for the `tensorflow` backend. TensorFlow's own
 * CPU kernels for the gradients of a stride-1 convolution are 1.2–4.6× slower than the same work
 * written as one forward convolution (measured on [32,h,h,c] 3×3 layers of ResNet18 at 32 px: dX of
 * a 4×4×512 layer 112 → 24 ms, 16×16×128 36 → 20 ms; dW 24–35 → 22–31 ms). A 1×1 stride-1 conv is
 * a matrix product, and its gradients are two more: TF's dX kernel for it was 1.3–11× slower than
 * the product (batch 32: 4×4, 512 → 2048 channels 126 → 11 ms; 8×8, 256 → 1024 37 → 8 ms), its dW
 * up to 1.5×. For stride > 1 TF's are as fast or faster, and they are kept; with TensorFlow's
 * oneDNN kernels on (`TF_ENABLE_ONEDNN_OPTS=1`) its 3×3 gradients are as fast as the forward
 * convolution, and only the 1×1 ones are replaced. Same compositions as
 * the wasm kernels (conv_grads.ts), run on tfjs-node's kernels; equal to TF's results to 1e-6
 * relative. Only the geometry tfjs-node's convs support reaches here ('valid', 'same'; dilation 1).
 */

/**
 * Whether TensorFlow's oneDNN kernels were asked for (`TF_ENABLE_ONEDNN_OPTS=1`, read when
 * libtensorflow starts). Not our default: libtensorflow then logs a line to stderr at start-up
 * that `TF_CPP_MIN_LOG_LEVEL` does not silence (docs/backends.md).
 */
export function oneDnnRequested(): boolean {
  const v = typeof process !== 'undefined' ? process.env?.TF_ENABLE_ONEDNN_OPTS : undefined;
  return v !== undefined && /^(1|true|yes|on)$/i.test(v.trim());
}

function strideOne(attrs: { strides: number | [number, number] }): boolean {
  const s = typeof attrs.strides === 'number' ? [attrs.strides, attrs.strides] : attrs.strides;
  return s[0] === 1 && s[1] === 1;
}

type Geometry = { top: number; left: number; oh: number; ow: number };

function geometry(xShape: [number, number, number, number], filterShape: [number, number, number, number], pad: tf.Conv2DBackpropInputAttrs['pad'], rounding: tf.Conv2DBackpropInputAttrs['dimRoundingMode']): Geometry {
  const info = tf.backend_util.computeConv2DInfo(xShape, filterShape, 1, 1, pad, rounding, false, 'channelsLast');
  return { top: info.padInfo.top, left: info.padInfo.left, oh: info.outHeight, ow: info.outWidth };
}

// tfjs-node's kernels return engine tensors, so these are written with tf ops in a tidy (as
// tfjs-node's own kernels are), not with conv_grads.ts's Scope (which frees through the backend).

/** dX of a stride-1 conv: dy padded by k−1−pad, convolved with the flipped filter (in/out swapped). */
function inputGradStride1(dy: tf.Tensor4D, filter: tf.Tensor4D, xShape: [number, number, number, number], g: Geometry): tf.Tensor4D {
  const [, h, w] = xShape;
  const [kh, kw] = filter.shape;
  return tf.tidy(() => {
    const before = [kh - 1 - g.top, kw - 1 - g.left];
    const after = [h + kh - 1 - g.oh - before[0]!, w + kw - 1 - g.ow - before[1]!];
    const flipped = tf.transpose(tf.reverse(filter, [0, 1]), [0, 1, 3, 2]);
    return tf.conv2d(padOrCrop(dy, before, after), flipped as tf.Tensor4D, 1, 'valid');
  });
}

/** dW of a stride-1 conv: a conv over the batch axis (channels ↔ batch) with dy as the filter. */
function filterGradStride1(x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: [number, number, number, number], g: Geometry): tf.Tensor4D {
  const [, h, w] = x.shape;
  const [kh, kw] = filterShape;
  return tf.tidy(() => {
    // The padded input rows/cols the conv reads: (o − 1) + k.
    const xp = padOrCrop(x, [g.top, g.left], [g.oh - 1 + kh - g.top - h, g.ow - 1 + kw - g.left - w]);
    const out = tf.conv2d(tf.transpose(xp, [3, 1, 2, 0]) as tf.Tensor4D, tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D, 1, 'valid');
    return tf.transpose(out, [1, 2, 0, 3]) as tf.Tensor4D;
  });
}

/** A 1×1 stride-1 conv that pads nothing ('same' and 'valid' both), so dy has x's rows and columns. */
function pointwise(filterShape: number[], dyShape: number[], xShape: number[]): boolean {
  return filterShape[0] === 1 && filterShape[1] === 1 && dyShape[1] === xShape[1] && dyShape[2] === xShape[2];
}

/** dX of a 1×1 stride-1 conv: dy [n·h·w, co] × filterᵀ [co, ci]. */
function inputGradPointwise(dy: tf.Tensor4D, filter: tf.Tensor4D, xShape: [number, number, number, number]): tf.Tensor4D {
  return tf.tidy(() => tf.reshape(tf.matMul(tf.reshape(dy, [-1, dy.shape[3]]), tf.reshape(filter, [filter.shape[2], filter.shape[3]]), false, true), xShape));
}

/** dW of a 1×1 stride-1 conv: xᵀ [ci, n·h·w] × dy [n·h·w, co]. */
function filterGradPointwise(x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: [number, number, number, number]): tf.Tensor4D {
  return tf.tidy(() => tf.reshape(tf.matMul(tf.reshape(x, [-1, x.shape[3]]), tf.reshape(dy, [-1, dy.shape[3]]), true, false), filterShape));
}

/** Pads (positive) or crops (negative) rows and columns of an NHWC map. */
function padOrCrop(x: tf.Tensor4D, before: number[], after: number[]): tf.Tensor4D {
  const crop = [0, 1].map((i) => [Math.max(0, -before[i]!), Math.max(0, -after[i]!)]);
  let y = x;
  if (crop.some(([a, b]) => a! > 0 || b! > 0)) {
    y = tf.slice(y, [0, crop[0]![0]!, crop[1]![0]!, 0], [-1, y.shape[1] - crop[0]![0]! - crop[0]![1]!, y.shape[2] - crop[1]![0]! - crop[1]![1]!, -1]);
  }
  const pads: Array<[number, number]> = [[0, 0], [Math.max(0, before[0]!), Math.max(0, after[0]!)], [Math.max(0, before[1]!), Math.max(0, after[1]!)], [0, 0]];
  return pads.some(([a, b]) => a > 0 || b > 0) ? tf.pad(y, pads) : y;
}

function inputGrad(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const attrs = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const { dy, filter } = args.inputs as { dy: tf.Tensor4D; filter: tf.Tensor4D };
  const xShape = attrs.inputShape as [number, number, number, number];
  if (strideOne(attrs) && attrs.dataFormat !== 'NCHW') {
    if (pointwise(filter.shape, dy.shape, xShape)) return inputGradPointwise(dy, filter, xShape);
    if (!oneDnnRequested()) return inputGradStride1(dy, filter, xShape, geometry(xShape, filter.shape, attrs.pad, attrs.dimRoundingMode));
  }
  return runStock(tf.Conv2DBackpropInput, 'tensorflow', args) as tf.TensorInfo;
}

function filterGrad(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const attrs = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  const { x, dy } = args.inputs as { x: tf.Tensor4D; dy: tf.Tensor4D };
  const fs = attrs.filterShape as [number, number, number, number];
  if (strideOne(attrs) && attrs.dataFormat !== 'NCHW') {
    if (pointwise(fs, dy.shape, x.shape)) return filterGradPointwise(x, dy, fs);
    if (!oneDnnRequested()) return filterGradStride1(x, dy, fs, geometry(x.shape, fs, attrs.pad, attrs.dimRoundingMode));
  }
  return runStock(tf.Conv2DBackpropFilter, 'tensorflow', args) as tf.TensorInfo;
}

/**
 * The part of tfjs-node's `NodeJSKernelBackend` that runs any TensorFlow op by name (its own
 * kernels are written with it). Typed here: tfjs-node is an optional peer.
 */
interface TfNodeBackend {
  binding: { TF_ATTR_TYPE: number; TF_ATTR_FLOAT: number; TF_ATTR_STRING: number; TF_ATTR_BOOL: number; TF_FLOAT: number };
  executeMultipleOutputs(name: string, attrs: Array<{ name: string; type: number; value: unknown }>, inputs: tf.TensorInfo[], numOutputs: number): tf.Tensor[];
}

function typeAttr(backend: TfNodeBackend, name = 'T') {
  return { name, type: backend.binding.TF_ATTR_TYPE, value: backend.binding.TF_FLOAT };
}

/** Attributes of TensorFlow's FusedBatchNormV3 / FusedBatchNormGradV3 on float32 NHWC maps in training mode. */
function fusedBatchNormAttrs(backend: TfNodeBackend, epsilon: number, grad: boolean) {
  const b = backend.binding;
  return [
    typeAttr(backend),
    typeAttr(backend, 'U'),
    { name: 'epsilon', type: b.TF_ATTR_FLOAT, value: epsilon },
    ...(grad ? [] : [{ name: 'exponential_avg_factor', type: b.TF_ATTR_FLOAT, value: 1 }]),
    { name: 'data_format', type: b.TF_ATTR_STRING, value: 'NHWC' },
    { name: 'is_training', type: b.TF_ATTR_BOOL, value: true },
  ];
}

/**
 * Training BatchNorm (ops/norm.ts `batchNormTrain`, same contract as the wasm kernel): TensorFlow's
 * FusedBatchNormV3, one pass for the statistics and one for y, where the composed form is 9
 * kernels (2.2–4× faster on ResNet18's maps at batch 32). inputs x [N, H, W, C], gamma, beta [C];
 * attrs eps → [y, mean, variance (biased), rstd] ([C]). TensorFlow's CPU kernel gives the biased
 * variance as its second reserve output (the `batch_variance` output is Bessel-corrected). y equals
 * the composed form's on ResNet's maps; on other shapes TensorFlow's summation order moves it by
 * float rounding (≤ 2.4e-7 in fused.test.ts's cases).
 */
function batchNormTensorflow(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const { x, gamma, beta } = args.inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo };
  const { eps } = args.attrs as unknown as { eps: number };
  const backend = args.backend as unknown as TfNodeBackend;
  const empty = tf.tensor1d([], 'float32');
  const [y, batchMean, corrected, mean, variance, reserve] = backend.executeMultipleOutputs('FusedBatchNormV3', fusedBatchNormAttrs(backend, eps, false), [x, gamma, beta, empty, empty], 6);
  tf.dispose([empty, batchMean!, corrected!, reserve!]);
  const rstd = tf.tidy(() => tf.rsqrt(tf.add(variance!, eps)));
  return [y!, mean!, variance!, rstd];
}

/**
 * Its backward: TensorFlow's FusedBatchNormGradV3 (dx, dγ, dβ in two passes; the composed form is
 * ~12 kernels). TensorFlow takes the variance and eps and forms 1/√(σ² + eps) itself; we keep
 * 1/σ, so it gets 1/rstd² with eps 0, which gives back rstd to rounding.
 */
function batchNormGradTensorflow(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const { x, mean, rstd, gamma, dy } = args.inputs as Record<'x' | 'mean' | 'rstd' | 'gamma' | 'dy', tf.TensorInfo>;
  const backend = args.backend as unknown as TfNodeBackend;
  // Run by name on the TensorInfo: a Tensor made over rstd's dataId would free it with itself.
  const [square] = backend.executeMultipleOutputs('Square', [typeAttr(backend)], [rstd], 1);
  const [variance] = backend.executeMultipleOutputs('Reciprocal', [typeAttr(backend)], [square!], 1);
  square!.dispose();
  const empty = tf.tensor1d([], 'float32');
  try {
    const [dx, dgamma, dbeta, ...rest] = backend.executeMultipleOutputs('FusedBatchNormGradV3', fusedBatchNormAttrs(backend, 0, true), [dy, x, gamma, mean, variance, empty], 5);
    tf.dispose(rest);
    return [dx!, dgamma!, dbeta!];
  } finally {
    tf.dispose([variance!, empty]);
  }
}

const KERNELS: Array<[string, tf.KernelFunc]> = [
  [tf.Conv2DBackpropInput, inputGrad as tf.KernelFunc],
  [tf.Conv2DBackpropFilter, filterGrad as tf.KernelFunc],
];

/** Kernels of ours that tfjs-node does not have (registered beside its own). */
const NEW_KERNELS: Array<[string, tf.KernelFunc]> = [
  [BATCH_NORM, batchNormTensorflow as unknown as tf.KernelFunc],
  [BATCH_NORM_GRAD, batchNormGradTensorflow as unknown as tf.KernelFunc],
];
const OURS = new Set(KERNELS.map(([, f]) => f));

/**
 * Registers our convolution gradients and training BatchNorm on the `tensorflow` backend (tfjs-node
 * must be loaded). Idempotent; returns the kernel names now ours, or [] when tfjs-node is not
 * registered.
 */
export function installTensorflowKernels(): string[] {
  const done: string[] = [];
  if (!tf.getKernel(tf.Conv2D, 'tensorflow')) return done;
  for (const [name, kernelFunc] of KERNELS) {
    const current = tf.getKernel(name, 'tensorflow');
    if (!current) continue;
    if (!OURS.has(current.kernelFunc)) {
      rememberStock(current);
      tf.unregisterKernel(name, 'tensorflow');
      tf.registerKernel({ kernelName: name, backendName: 'tensorflow', kernelFunc, setupFunc: current.setupFunc, disposeFunc: current.disposeFunc });
    }
    done.push(name);
  }
  for (const [name, kernelFunc] of NEW_KERNELS) {
    if (!tf.getKernel(name, 'tensorflow')) tf.registerKernel({ kernelName: name, backendName: 'tensorflow', kernelFunc });
    done.push(name);
  }
  return done;
}
