/*
 * Backends: replacement kernels, gradient fixes, WebGPU in Node.
 *
 * `initBackend()` (../backend.ts) picks tensorflow → webgpu → webgl → wasm → cpu and installs what is here
 * for the one it picks; users who call `tf.setBackend` themselves call `installWasmKernels()`,
 * `installCpuKernels()` and `installGradientFixes()` (all idempotent) after importing the backend.
 *
 * Why (tfjs 4.22, measured on a shared 2-vCPU Zen 4 VM, SIMD wasm, 1 thread):
 * - wasm has no Conv2DBackpropFilter, DepthwiseConv2dNativeBackpropFilter/Input or
 *   UnsortedSegmentSum: convs cannot train at all. Its BatchMatMul uses XNNPACK only for batch 1
 *   without transposes; every backward matMul and all attention fall to a ~2 GFLOP/s scalar loop,
 *   as do Conv2DBackpropInput (0.3–1.5), DepthToSpace, Reverse, GatherV2, Tile, StridedSlice
 *   (65–140 ns per element), Unpack (35) and Sum/Mean over non-last axes (3–20). XNNPACK's
 *   depthwise conv runs ~1 GFLOP/s at 7×7 and 11×11.
 * - cpu's Conv2DBackpropFilter runs ~0.01 GFLOP/s (6 min for one 3×3 [8,56,56,64] conv),
 *   UnsortedSegmentSum is O(segments·rows·width), the depthwise filter gradient is ~100× slower
 *   than the composition here, and its depthwise backward kernels ignore `dilations`.
 * - tfjs has no gradient for StridedSlice, GatherNd, ScatterNd, Range, DepthToSpace, TopK or
 *   Einsum, and GatherV2's gradient throws when its indices are computed from trainable values.
 *
 * What replaces them (each checked against tfjs's cpu kernels, or a direct loop where those are
 * wrong, in the *.test.ts files here):
 * - Our own WebAssembly SIMD kernels, assembled at run time (wasm_asm.ts) and run on the wasm
 *   backend's memory, on its tensors in place: a 4×8-tile GEMM for batched, transposed and
 *   broadcast products (wasm_gemm.ts, ~25–35 GFLOP/s: [32,196,32]·[32,32,196] went 1.8 → 29
 *   GFLOP/s), depthwise conv forward and filter gradient (wasm_dwconv.ts, 8–18 GFLOP/s against
 *   XNNPACK's ~1), a column sum for Sum/Mean (wasm_reduce.ts, ~10× the stock kernels), exp,
 *   erf and exact GELU (wasm_unary.ts), and LayerNorm and training BatchNorm forward and
 *   backward in one kernel each (wasm_norm.ts, bit-identical to the composed form, 2.4–6× it).
 * - Compositions of fast kernels of the same backend, called directly through their kernel
 *   functions (kernel_util.ts `Scope`: no engine, tape or profiler involvement; every
 *   intermediate freed): the filter gradient as a Conv2D over the batch axis with dy as the
 *   stride-dilated filter (3×3 [8,56,56,64]: 120–146 ms vs 347–437 s for the cpu fallback), the input
 *   gradient of a strided conv as one Conv2D with the s² stacked sub-filters plus depth-to-space
 *   (no zero-dilation), 1×1 convs as matMuls, segment sums through ScatterNd.
 * - Heap-view copies for the data-movement kernels (wasm_copy.ts), and SIMD strided run copies
 *   (wasm_runs.ts) for Transpose, Slice and SplitV (stock: one JS copy per run, 1–15 ns per
 *   element, 91 on a 5-D transpose) and a convolution's im2col/col2im: k×k convolutions, forward
 *   and both gradients, run as columns on our GEMM (conv_grads.ts), 1.3–3× XNNPACK's on ResNet18's
 *   small deep maps and stride-2 layers.
 * - wasm_threads.ts: the threaded SIMD build in Node (tfjs runs one thread there), which
 *   `initBackend` uses by default. Every kernel here works on its shared memory too.
 * - Gradients with differentiable tfjs ops (gradients.ts).
 * tools/bench/kernels.mjs measures every kernel against the stock one (and the cpu-fallback shim
 * where wasm has none) and the issue-3 targets. Measured: a training step of a 1.95 M-parameter
 * conv + attention model (batch 32, 32×32) 434 ms on wasm, 10.7× stock wasm with cpu fallbacks
 * and 344× stock cpu; batched [32,196,32]·[32,32,196] 29 GFLOP/s. Per step of registered models
 * at batch 16, 32×32 on wasm: conv2former_n_cifar 20–26 s → 6.5 s, resnet18_mrlal_cifar
 * 13–15 s → 6.7 s (first numbers with only the first kernels here: stock wasm cannot train them).
 *
 * Known tfjs bugs met on the way (not worked around): the cpu stridedSlice forward returns the
 * wrong elements with shrinkAxisMask plus a stride > 1; einsum('ij,j->j') drops its second
 * operand; the cpu BatchMatMul mis-indexes when both operands broadcast ([2,1,…]·[1,3,…]).
 */
export {
  installWasmKernels,
  installCpuKernels,
  restoreStockKernels,
  installedKernels,
  replacementKernels,
  type KernelReplacement,
  type InstallKernelsOptions,
} from './install.js';
export { installGradientFixes, requireTfjsGradients, GRADIENT_FIXES } from './gradients.js';
export { installTensorflowKernels } from './tensorflow_kernels.js';
export { installNodeWebGPU, registerWebGPUBackend, type DawnResult, type NodeWebGPUOptions } from './dawn.js';
export {
  enableWasmThreads,
  disableWasmThreads,
  wasmThreadsStatus,
  MAX_WASM_THREADS,
  type WasmThreadsOptions,
  type WasmThreadsResult,
  type WasmThreadsStatus,
} from './wasm_threads.js';
