import * as tf from '@tensorflow/tfjs-core';
import {
  conv2DBackpropFilter,
  conv2DBackpropInput,
  conv2dWasm,
  depthToSpaceKernel,
  depthwiseBackpropFilter,
  depthwiseBackpropInput,
  depthwiseConvWasm,
  fusedDepthwiseConvWasm,
} from './conv_grads.js';
import { BackendError } from './errors.js';
import { forgetStock, rememberStock } from './kernel_util.js';
import { batchMatMulWasm, fusedMatMulWasm } from './matmul_wasm.js';
import { segmentSumCpu, segmentSumWasm } from './segment_sum.js';
import { BATCH_NORM, BATCH_NORM_GRAD, LAYER_NORM, LAYER_NORM_GRAD, batchNormGradWasm, batchNormWasm, layerNormGradWasm, layerNormWasm } from './wasm_norm.js';
import {
  erfWasm,
  signWasm,
  expWasm,
  GELU_ERF,
  GELU_ERF_GRAD,
  geluGradWasm,
  geluWasm,
  gatherWasm,
  identityWasm,
  meanWasm,
  reverseWasm,
  sliceWasm,
  splitVWasm,
  stridedSliceWasm,
  sumWasm,
  tileWasm,
  transposeWasm,
  unpackWasm,
} from './wasm_copy.js';

/** A kernel we register over (or next to) tfjs's own for one backend. */
export interface KernelReplacement {
  kernelName: string;
  backendName: 'wasm' | 'cpu';
  /** What was wrong with the stock kernel: `missing` or `slow`. */
  reason: 'missing' | 'slow';
  /** How ours computes it. */
  method: string;
  kernelFunc: tf.KernelFunc;
}

const wasm = (kernelName: string, reason: 'missing' | 'slow', method: string, kernelFunc: tf.KernelFunc): KernelReplacement => ({
  kernelName,
  backendName: 'wasm',
  reason,
  method,
  kernelFunc,
});
const cpu = (kernelName: string, reason: 'missing' | 'slow', method: string, kernelFunc: tf.KernelFunc): KernelReplacement => ({
  kernelName,
  backendName: 'cpu',
  reason,
  method,
  kernelFunc,
});

const CONV_FILTER = '1×1: one transposed matMul; else a Conv2D over the batch axis (channels ↔ batch) with dy as the filter, dilated by the stride';
const CONV_INPUT =
  '1×1: dy·Wᵀ (zero-dilated for stride > 1); stride s > 1: one Conv2D of dy with the s² stacked sub-filters, then depth-to-space (no zero-dilation); stride 1: padded dy convolved with the flipped, io-swapped filter';
const DW_FILTER =
  'wasm, multiplier 1, channels % 4 = 0: our SIMD kernel (wasm_dwconv.ts); else one depthwise conv over the batch-joined channels with dy as the (stride-dilated) filter, then a sum over the batch';
const DW_INPUT =
  'zero-dilated, padded dy convolved with the flipped filter: our SIMD kernel (wasm, multiplier 1, channels % 4 = 0), else DepthwiseConv2dNative summed over the multiplier';
const DW_FORWARD =
  'stride 1, multiplier 1, channels % 4 = 0: our SIMD kernel on the padded input (+ bias and activation kernels); else the stock XNNPACK kernel';

const WASM_KERNELS: KernelReplacement[] = [
  wasm(tf.Conv2DBackpropFilter, 'missing', CONV_FILTER, (a) => conv2DBackpropFilter(a, 'wasm')),
  wasm(tf.Conv2DBackpropInput, 'slow', CONV_INPUT, (a) => conv2DBackpropInput(a, 'wasm')),
  wasm(tf.DepthwiseConv2dNativeBackpropFilter, 'missing', DW_FILTER, (a) => depthwiseBackpropFilter(a, 'wasm')),
  wasm(tf.DepthwiseConv2dNativeBackpropInput, 'missing', DW_INPUT, (a) => depthwiseBackpropInput(a, 'wasm')),
  wasm(tf.DepthwiseConv2dNative, 'slow', DW_FORWARD, depthwiseConvWasm),
  wasm(tf.FusedDepthwiseConv2D, 'slow', DW_FORWARD, fusedDepthwiseConvWasm),
  wasm(tf.UnsortedSegmentSum, 'missing', 'ScatterNd (sums duplicates) when every id is in range, else one JS pass', segmentSumWasm),
  wasm(
    tf.BatchMatMul,
    'slow',
    'batched, transposed and broadcast products through our SIMD GEMM (wasm_gemm.ts), operands read in place through strides; batch-1 untransposed products stay on XNNPACK',
    batchMatMulWasm,
  ),
  wasm(tf.DepthToSpace, 'slow', 'reshape → transpose → reshape (the stock kernel is a scalar loop, ~100× slower)', (a) => depthToSpaceKernel(a, 'wasm')),
  wasm(tf.Exp, 'slow', 'our SIMD expf (Cephes polynomial, ~1 ulp; stock: scalar libm, ~9 ns per element)', expWasm),
  wasm(tf.Erf, 'slow', 'our SIMD erf (Abramowitz–Stegun 7.1.26, |error| ≤ 1.5e-7, as tfjs cpu; stock: scalar libm, ~21 ns per element)', erfWasm),
  wasm(
    tf.Identity,
    'slow',
    'shares the buffer (one more reference) instead of copying it; the engine clones every tensor it saves for backward through Identity',
    identityWasm,
  ),
  wasm(tf.Sign, 'slow', 'one SIMD pass, exact (stock: a scalar loop, ~9 ns per element; the ReLU backward runs it)', signWasm),
  wasm(tf.Reverse, 'slow', 'contiguous runs copied on views of the heap (stock: ~80 ns per element)', reverseWasm),
  wasm(tf.GatherV2, 'slow', 'one slice copy per index on views of the heap (stock: ~90 ns per element)', gatherWasm),
  wasm(tf.Tile, 'slow', 'row copies on views of the heap (stock: ~140 ns per element)', tileWasm),
  wasm(tf.StridedSlice, 'slow', 'strided copy on views of the heap when some stride is not 1 (stock: ~65 ns per element)', stridedSliceWasm),
  wasm(tf.Transpose, 'slow', 'where the last axis stays last: runs copied by our SIMD kernel (stock: 0.8 ns per element on 4-D, ~90 on 5-D)', transposeWasm),
  wasm(tf.Slice, 'slow', 'runs copied by our SIMD kernel (stock: one JS copy per run, 4–15 ns per element on 3-D slices)', sliceWasm),
  wasm(tf.SplitV, 'slow', 'one SIMD run copy per piece (stock: ~14 ns per element splitting attention\'s qkv)', splitVWasm),
  wasm(tf.Unpack, 'slow', 'one Slice per output (stock: ~35 ns per element)', unpackWasm),
  wasm(tf.Sum, 'slow', 'over a contiguous block of axes (not the last): our SIMD column sum (stock transposes, then loops: 3–20 ns per element)', sumWasm),
  wasm(tf.Mean, 'slow', 'as Sum, then ÷ n', meanWasm),
  wasm(GELU_ERF, 'missing', 'exact GELU in one SIMD pass (the composed form is 5 kernels), bit-identical to it', geluWasm),
  wasm(GELU_ERF_GRAD, 'missing', "exact GELU's backward in one SIMD pass (the composed form is 11 kernels), bit-identical to it", geluGradWasm),
  wasm(
    LAYER_NORM,
    'missing',
    'LayerNorm over the last axis in one SIMD kernel (y, μ, 1/σ; the composed form is 10 kernels), bit-identical to it',
    layerNormWasm as tf.KernelFunc,
  ),
  wasm(
    LAYER_NORM_GRAD,
    'missing',
    "LayerNorm's backward in one SIMD kernel (dx, dγ, dβ; the composed form is ~14 kernels), bit-identical to it",
    layerNormGradWasm as tf.KernelFunc,
  ),
  wasm(
    BATCH_NORM,
    'missing',
    'training BatchNorm (NHWC, statistics over N, H, W) in one SIMD kernel: y, μ, σ², 1/σ (the composed form is 10 kernels), bit-identical to it',
    batchNormWasm as tf.KernelFunc,
  ),
  wasm(
    BATCH_NORM_GRAD,
    'missing',
    "training BatchNorm's backward in one SIMD kernel (dx, dγ, dβ; the composed form is ~12 kernels), bit-identical to it",
    batchNormGradWasm as tf.KernelFunc,
  ),
  wasm(tf.Conv2D, 'slow', '1×1 stride-1 convolutions as one product on our SIMD kernel (fused multiply-adds, worker threads; routeForwardProducts); the rest stock', (a) => conv2dWasm(a, false)),
  wasm(tf.FusedConv2D, 'slow', 'as Conv2D, then bias and activation kernels', (a) => conv2dWasm(a, true)),
  wasm(tf._FusedMatMul, 'slow', 'transposed/batched cases through the BatchMatMul above, then bias and activation kernels', fusedMatMulWasm),
];

const CPU_KERNELS: KernelReplacement[] = [
  cpu(tf.Conv2DBackpropFilter, 'slow', CONV_FILTER, (a) => conv2DBackpropFilter(a, 'cpu')),
  cpu(tf.DepthwiseConv2dNativeBackpropFilter, 'slow', DW_FILTER, (a) => depthwiseBackpropFilter(a, 'cpu')),
  cpu(tf.UnsortedSegmentSum, 'slow', 'one pass over the rows (stock: a mask-multiply-sum per segment)', segmentSumCpu),
];

const OURS = new Set<tf.KernelFunc>([...WASM_KERNELS, ...CPU_KERNELS].map((k) => k.kernelFunc));

/** Every replacement kernel, for docs and benchmarks. */
export function replacementKernels(backendName?: 'wasm' | 'cpu'): ReadonlyArray<Omit<KernelReplacement, 'kernelFunc'>> {
  return [...WASM_KERNELS, ...CPU_KERNELS]
    .filter((k) => !backendName || k.backendName === backendName)
    .map(({ kernelName, backendName: b, reason, method }) => ({ kernelName, backendName: b, reason, method }));
}

function install(list: KernelReplacement[], only?: readonly string[]): string[] {
  const done: string[] = [];
  for (const k of list) {
    if (only && !only.includes(k.kernelName)) continue;
    const current = tf.getKernel(k.kernelName, k.backendName);
    if (current && OURS.has(current.kernelFunc)) {
      done.push(k.kernelName);
      continue;
    }
    if (current) {
      rememberStock(current);
      tf.unregisterKernel(k.kernelName, k.backendName);
    }
    // The stock setupFunc stays: the stock kernel (which ours may call) needs it when the backend
    // is (re)initialised.
    tf.registerKernel({
      kernelName: k.kernelName,
      backendName: k.backendName,
      kernelFunc: k.kernelFunc,
      setupFunc: current?.setupFunc,
      disposeFunc: current?.disposeFunc,
    });
    done.push(k.kernelName);
  }
  return done;
}

function requireBackendKernels(backendName: string, pkg: string): void {
  if (!tf.getKernel(tf.Conv2D, backendName)) {
    throw new BackendError(
      `install${
        backendName === 'wasm' ? 'Wasm' : 'Cpu'
      }Kernels: the ${backendName} backend's kernels are not registered in this @tensorflow/tfjs-core; import '${pkg}' (before calling this) from the same tfjs-core instance`,
    );
  }
}

export interface InstallKernelsOptions {
  /** Install only these kernels (names as in `replacementKernels()`); default all. */
  only?: readonly string[];
}

/**
 * Registers our wasm kernels: the four backward kernels tfjs-backend-wasm lacks, and fast
 * BatchMatMul/_FusedMatMul/Conv2DBackpropInput for the cases its own run as scalar loops.
 * Idempotent; returns the kernel names now ours. Call after importing
 * `@tensorflow/tfjs-backend-wasm` (`initBackend('wasm')` does all of this).
 */
export function installWasmKernels(options: InstallKernelsOptions = {}): string[] {
  requireBackendKernels('wasm', '@tensorflow/tfjs-backend-wasm');
  return install(WASM_KERNELS, options.only);
}

/** Registers our cpu kernels for the training kernels tfjs-backend-cpu ships pathologically slow. Idempotent. */
export function installCpuKernels(options: InstallKernelsOptions = {}): string[] {
  requireBackendKernels('cpu', '@tensorflow/tfjs-backend-cpu (or @tensorflow/tfjs)');
  return install(CPU_KERNELS, options.only);
}

/** Puts tfjs's own kernels back on `backendName` (for comparisons and benchmarks). Returns the names restored. */
export function restoreStockKernels(backendName: 'wasm' | 'cpu'): string[] {
  const restored: string[] = [];
  for (const k of backendName === 'wasm' ? WASM_KERNELS : CPU_KERNELS) {
    const current = tf.getKernel(k.kernelName, backendName);
    if (!current || !OURS.has(current.kernelFunc)) continue;
    tf.unregisterKernel(k.kernelName, backendName);
    const original = forgetStock(k.kernelName, backendName);
    if (original) tf.registerKernel(original);
    restored.push(k.kernelName);
  }
  return restored;
}

/** The names of our kernels registered on `backendName` now. */
export function installedKernels(backendName: 'wasm' | 'cpu'): string[] {
  return (backendName === 'wasm' ? WASM_KERNELS : CPU_KERNELS)
    .filter((k) => OURS.has(tf.getKernel(k.kernelName, backendName)?.kernelFunc as tf.KernelFunc))
    .map((k) => k.kernelName);
}
