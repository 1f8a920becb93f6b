import * as tf from '@tensorflow/tfjs-core';
import { rememberStock, stockKernel } from './kernel_util.js';

/**
 * Kernels we register over @tensorflow/tfjs-node's for the `tensorflow` backend. TensorFlow's own
 * CPU kernels for the gradients of a stride-1 convolution are 1.2–4.6× slower than the same work
 * written as one forward convolution (measured on [32,h,h,c] 3×3 layers of ResNet18 at 32 px: dX of
 * a 4×4×512 layer 112 → 24 ms, 16×16×128 36 → 20 ms; dW 24–35 → 22–31 ms); for stride > 1 and
 * 1×1 kernels TF's are as fast or faster, and they are kept. Same compositions as the wasm kernels
 * (conv_grads.ts), run on tfjs-node's kernels; equal to TF's results to 1e-6 relative.
 * Only the geometry tfjs-node's convs support reaches here ('valid', 'same'; dilation 1).
 */

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
  const oneByOne = filter.shape[0] === 1 && filter.shape[1] === 1;
  if (!strideOne(attrs) || oneByOne || attrs.dataFormat === 'NCHW') return stockKernel(tf.Conv2DBackpropInput, 'tensorflow')!.kernelFunc(args) as tf.TensorInfo;
  const xShape = attrs.inputShape as [number, number, number, number];
  return inputGradStride1(dy, filter, xShape, geometry(xShape, filter.shape, attrs.pad, attrs.dimRoundingMode));
}

function filterGrad(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const attrs = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  const { x, dy } = args.inputs as { x: tf.Tensor4D; dy: tf.Tensor4D };
  const fs = attrs.filterShape as [number, number, number, number];
  const oneByOne = fs[0] === 1 && fs[1] === 1;
  if (!strideOne(attrs) || oneByOne || attrs.dataFormat === 'NCHW') return stockKernel(tf.Conv2DBackpropFilter, 'tensorflow')!.kernelFunc(args) as tf.TensorInfo;
  return filterGradStride1(x, dy, fs, geometry(x.shape, fs, attrs.pad, attrs.dimRoundingMode));
}

const KERNELS: Array<[string, tf.KernelFunc]> = [
  [tf.Conv2DBackpropInput, inputGrad as tf.KernelFunc],
  [tf.Conv2DBackpropFilter, filterGrad as tf.KernelFunc],
];
const OURS = new Set(KERNELS.map(([, f]) => f));

/**
 * Registers our stride-1 convolution gradients on the `tensorflow` backend (tfjs-node must be
 * loaded). Idempotent; returns the kernel names now ours, or [] when tfjs-node is not registered.
 */
export function installTensorflowKernels(): string[] {
  const done: string[] = [];
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
  return done;
}
