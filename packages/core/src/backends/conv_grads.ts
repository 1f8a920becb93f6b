import * as tf from '@tensorflow/tfjs-core';
import { Scope, runStock, scoped, type Info } from './kernel_util.js';
import { convOnOurs, heapBuffer, heapOffset, heapView, perColumn, plainProduct, productAt, shiftGemmPerTap, shiftLayout, wasmMalloc, wasmMemory, type WasmBackend } from './matmul_wasm.js';
import type { GemmFn } from './wasm_gemm.js';
import { addRunsFor, copyRunsFor, type RunsFn } from './wasm_runs.js';
import { dwConvFor, dwFilterFor, runDwConv } from './wasm_dwconv.js';

/**
 * Convolution backward kernels composed of forward kernels that every backend runs fast
 * (Conv2D / DepthwiseConv2dNative through XNNPACK on wasm), plus Pad, Slice, Transpose, Reverse,
 * Reshape, Sum and BatchMatMul. The same code serves wasm (where tfjs 4.22 has no filter gradients
 * at all) and cpu (where the shipped ones are pathologically slow). NHWC inside; NCHW callers are
 * transposed in and out.
 */

type Pad = tf.Conv2DBackpropFilterAttrs['pad'];
type Rounding = tf.Conv2DBackpropFilterAttrs['dimRoundingMode'];
type KernelArgs = Parameters<tf.KernelFunc>[0];

const stock = (name: string, args: KernelArgs) => runStock(name, 'wasm', args) as Info;

interface Geometry {
  n: number;
  h: number;
  w: number;
  ci: number;
  co: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  dh: number;
  dw: number;
  oh: number;
  ow: number;
  top: number;
  left: number;
}

function geometry(
  xShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  strides: number | [number, number],
  dilations: number | [number, number],
  pad: Pad,
  rounding: Rounding,
  depthwise: boolean,
): Geometry {
  const info = tf.backend_util.computeConv2DInfo(xShape, filterShape, strides, dilations, pad, rounding, depthwise, 'channelsLast');
  return {
    n: info.batchSize,
    h: info.inHeight,
    w: info.inWidth,
    ci: info.inChannels,
    co: info.outChannels,
    kh: info.filterHeight,
    kw: info.filterWidth,
    sh: info.strideHeight,
    sw: info.strideWidth,
    dh: info.dilationHeight,
    dw: info.dilationWidth,
    oh: info.outHeight,
    ow: info.outWidth,
    top: info.padInfo.top,
    left: info.padInfo.left,
  };
}

const NCHW_TO_NHWC = [0, 2, 3, 1];
const NHWC_TO_NCHW = [0, 3, 1, 2];
const toNhwcShape = (s: number[]) => [s[0]!, s[2]!, s[3]!, s[1]!] as [number, number, number, number];

/** The padded input rows/cols the conv actually reads: `(o − 1)·s + (k − 1)·d + 1`. */
function paddedInput(s: Scope, x: Info, g: Geometry): Info {
  const hp = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1;
  const wp = (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1;
  return s.padOrCrop(x, [
    [0, 0],
    [g.top, hp - g.top - g.h],
    [g.left, wp - g.left - g.w],
    [0, 0],
  ]);
}

// ---------------------------------------------------------------------------------------------
// Conv2DBackpropFilter: dW[kh,kw,ci,co] = Σ_{n,i,j} xpad[n, i·sh + kh, j·sw + kw, ci] · dy[n,i,j,co]

function conv2dFilterGrad(s: Scope, x: Info, dy: Info, g: Geometry): Info {
  const { n, ci, co, kh, kw, sh, sw, oh, ow } = g;
  const rows = n * oh * ow;
  if (kh === 1 && kw === 1 && g.top === 0 && g.left === 0) {
    // 1×1: a matMul of the (subsampled) input with dy, contracted over every pixel.
    let xs = s.padOrCrop(x, [
      [0, 0],
      [0, (oh - 1) * sh + 1 - g.h],
      [0, (ow - 1) * sw + 1 - g.w],
      [0, 0],
    ]);
    if (sh > 1 || sw > 1) {
      xs = s.run('StridedSlice', { x: xs }, stridedAttrs([0, 0, 0, 0], xs.shape, [1, sh, sw, 1]));
    }
    const dw = s.run('BatchMatMul', { a: s.reshape(xs, [1, rows, ci]), b: s.reshape(dy, [1, rows, co]) }, { transposeA: true, transposeB: false });
    return s.reshape(dw, [1, 1, ci, co]);
  }
  const ours = s.backendName === 'wasm' && g.dh === 1 && g.dw === 1 ? convOnOurs(s.backend) : null;
  // Stride 1 on larger maps: the shift-GEMM below (no copy; its extra work is the padded border,
  // ≤ 30% of the pixels). Otherwise columns: on ResNet18's layers at batch 32, 57 against 43
  // GFLOP/s at 8², 56 against 30 at 4², 39–61 against XNNPACK's 19–27 at stride 2; at 32² the
  // shift-GEMM ran at 49 against 31.
  const shift = sh === 1 && sw === 1 && (oh + kh - 1) * (ow + kw - 1) <= 1.3 * oh * ow;
  const copyRuns = ours && !shift && columnsFit(g) ? copyRunsFor(wasmMemory(s.backend)!) : null;
  if (ours && copyRuns) return columnsFilterGrad(s, x, dy, g, ours, copyRuns);
  const xp = paddedInput(s, x, g);
  const gemm = ours && shift ? ours : null;
  if (gemm) {
    // Our kernel, one product per filter row over the padded input read in place (matmul_wasm.ts
    // shiftGemmPerTap): dy padded to the input's width, zero in the border.
    const [hp, wp] = [xp.shape[1]!, xp.shape[2]!];
    const dyp = s.padOrCrop(dy, [
      [0, 0],
      [0, hp - oh],
      [0, wp - ow],
      [0, 0],
    ]);
    const out = s.adopt((s.backend as unknown as WasmBackend).makeOutput([kh, kw, ci, co], 'float32'));
    shiftGemmPerTap(s.backend as unknown as WasmBackend, gemm, xp, dyp, out, shiftLayout(n, hp, wp, kh, kw, ci), kw * ci, co);
    return out;
  }
  // General: a conv over the batch axis. Input channels become the batch and the batch becomes
  // the channels; dy is the filter, dilated by the stride. The output is exactly [ci,kh,kw,co].
  // (XNNPACK: 20–30 GFLOP/s on ResNet18's 3×3 layers at batch 32, our kernel above 30–45.)
  const xt = s.transpose(xp, [3, 1, 2, 0]);
  const dyt = s.transpose(dy, [1, 2, 0, 3]);
  const out = s.run('Conv2D', { x: xt, filter: dyt }, { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [sh, sw], dimRoundingMode: undefined });
  return s.transpose(out, [1, 2, 0, 3]);
}

export function conv2DBackpropFilter(args: Parameters<tf.KernelFunc>[0], backendName: string): Info {
  const { x, dy } = args.inputs as { x: Info; dy: Info };
  const attrs = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  const nchw = attrs.dataFormat === 'NCHW';
  const xShape = (nchw ? toNhwcShape(x.shape) : x.shape) as [number, number, number, number];
  const g = geometry(xShape, attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false);
  return scoped(args.backend, backendName, (s) => {
    const xn = nchw ? s.transpose(x, NCHW_TO_NHWC) : x;
    const dyn = nchw ? s.transpose(dy, NCHW_TO_NHWC) : dy;
    return conv2dFilterGrad(s, xn, dyn, g);
  });
}

// ---------------------------------------------------------------------------------------------
// Conv2DBackpropInput: the transposed convolution.

function conv2dInputGrad(s: Scope, dy: Info, filter: Info, g: Geometry): Info {
  const { n, h, w, ci, co, kh, kw, sh, sw, oh, ow } = g;
  const rows = n * oh * ow;
  if (kh === 1 && kw === 1 && g.top === 0 && g.left === 0) {
    // dx at the sampled pixels is dy·Wᵀ; the pixels a strided 1×1 conv skips get zero.
    const p = s.run('BatchMatMul', { a: s.reshape(dy, [1, rows, co]), b: s.reshape(filter, [1, ci, co]) }, { transposeA: false, transposeB: true });
    const img = s.dilateSpatial(s.reshape(p, [n, oh, ow, ci]), sh, sw);
    return s.padOrCrop(img, [
      [0, 0],
      [0, h - img.shape[1]!],
      [0, w - img.shape[2]!],
      [0, 0],
    ]);
  }
  const gemm = s.backendName === 'wasm' && g.dh === 1 && g.dw === 1 ? convOnOurs(s.backend) : null;
  const addRuns = gemm && columnsFit(g) ? addRunsFor(wasmMemory(s.backend)!) : null;
  if (gemm && addRuns) return columnsInputGrad(s, dy, filter, g, gemm, addRuns);
  if (sh === sw && sh > 1) return subPixelInputGrad(s, dy, filter, g);
  // Stride 1 (or unequal strides): dy with stride−1 zeros between pixels, padded by k−1−pad,
  // convolved with the flipped filter whose in/out channels are swapped.
  const dil = s.dilateSpatial(dy, sh, sw);
  const padded = s.padOrCrop(dil, [
    [0, 0],
    [kh - 1 - g.top, h + kh - 1 - dil.shape[1]! - (kh - 1 - g.top)],
    [kw - 1 - g.left, w + kw - 1 - dil.shape[2]! - (kw - 1 - g.left)],
    [0, 0],
  ]);
  const flipped = s.transpose(s.reverse(filter, [0, 1]), [0, 1, 3, 2]);
  return s.run('Conv2D', { x: padded, filter: flipped }, { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: undefined });
}

/** Chunks of images for the column kernels below: about this many floats of columns (4 MiB), at least `minRows` rows for the product. */
let columnsChunk = { floats: 1 << 20, minRows: 512 };

/** Sets the chunking above (tests: several chunks on small inputs); returns the previous setting. */
export function setColumnsChunk(chunk: { floats: number; minRows: number }): { floats: number; minRows: number } {
  const prev = columnsChunk;
  columnsChunk = chunk;
  return prev;
}

/**
 * Whether one image's columns stay within 32 MiB (the chunks hold whole images): a 3×3 conv over
 * 64 channels at 224² would need 115 MiB; such convs keep the other routes.
 */
function columnsFit(g: Geometry): boolean {
  return g.oh * g.ow * g.kh * g.kw * g.ci <= COLUMNS_MAX_PER_IMAGE;
}
const COLUMNS_MAX_PER_IMAGE = 1 << 23;

/** Images per chunk of columns (they are read again right after the product: a few MiB stay in cache). */
function columnChunk(n: number, pixels: number, perImage: number): number {
  return Math.max(1, Math.min(n, Math.max(Math.floor(columnsChunk.floats / perImage), Math.ceil(columnsChunk.minRows / pixels))));
}

/**
 * How each filter tap (a, b) moves between an NHWC image and its columns ([pixels, kh·kw·ci],
 * tap-major): the output pixels (y', x') whose input pixel (y'·sh − top + a, x'·sw − left + b)
 * lies inside the image are y0 ≤ y' < y0 + ny, x0 ≤ x' < x0 + nx. For each tap: the byte offsets of
 * its first pixel in an image and of its block in the columns, and ny, nx (≤ 0: none). im2col
 * copies each tap's runs of ci floats from image to columns, col2im adds them back; the strides
 * (bytes) are per image, per row y' and per column x', on the image side and on the columns side.
 */
function tapBlocks(g: Geometry): {
  taps: Array<{ image: number; column: number; ny: number; nx: number }>;
  imageStrides: [number, number, number];
  columnStrides: [number, number, number];
  padded: boolean;
} {
  const { h, w, ci, kh, kw, sh, sw, oh, ow, top, left } = g;
  const cols = kh * kw * ci;
  const taps = [];
  for (let a = 0; a < kh; a++) {
    const y0 = Math.max(0, Math.ceil((top - a) / sh));
    const ny = Math.min(oh, Math.floor((h - 1 + top - a) / sh) + 1) - y0;
    for (let b = 0; b < kw; b++) {
      const x0 = Math.max(0, Math.ceil((left - b) / sw));
      const nx = Math.min(ow, Math.floor((w - 1 + left - b) / sw) + 1) - x0;
      taps.push({ image: ((y0 * sh - top + a) * w + (x0 * sw - left + b)) * ci * 4, column: ((y0 * ow + x0) * cols + (a * kw + b) * ci) * 4, ny, nx });
    }
  }
  return {
    taps,
    imageStrides: [h * w * ci * 4, sh * w * ci * 4, sw * ci * 4],
    columnStrides: [oh * ow * cols * 4, ow * cols * 4, cols * 4],
    // Some tap reads the padding: its columns there are zero.
    padded: taps.some((t) => t.ny < oh || t.nx < ow),
  };
}

/**
 * The input gradient on our kernel, as columns then col2im: P = dy · Wᵀ ([pixels of dy,
 * kh·kw·ci], one product whose inner dimension is co, W read in place as [kh·kw·ci, co]), then
 * each tap's columns added onto the input pixels it came from (`addRuns`, wasm_runs.ts). Any
 * stride, no zeros multiplied, no padded copy of dy; a chunk of whole images at a time
 * (`columnChunk`). On ResNet18's 3×3 layers (batch 32, 2 threads): 46–86 GFLOP/s at 16²–4² where
 * XNNPACK's transposed convolution (a forward conv of the padded dy with the flipped filter) ran at
 * 26–48, slowest on the small deep maps; about even at 32² (34–55 against 29–45).
 * Each element of dx is summed over the taps in one order by one thread: equal on any thread count.
 */
function columnsInputGrad(s: Scope, dy: Info, filter: Info, g: Geometry, gemm: GemmFn, addRuns: RunsFn): Info {
  const { n, h, w, ci, co, kh, kw, oh, ow } = g;
  const backend = s.backend as unknown as WasmBackend;
  const cols = kh * kw * ci;
  const perImage = oh * ow * cols;
  const chunk = columnChunk(n, oh * ow, perImage);
  const dx = s.adopt(backend.makeOutput([n, h, w, ci], 'float32'));
  const columns = wasmMalloc(backend, chunk * perImage * 4);
  try {
    const [dyBase, wBase, dxBase] = [dy, filter, dx].map((t) => heapOffset(backend, t)) as [number, number, number];
    const { taps, imageStrides: [ib, iy, ix], columnStrides: [cb, cy, cx] } = tapBlocks(g);
    for (let i0 = 0; i0 < n; i0 += chunk) {
      const imgs = Math.min(chunk, n - i0);
      productAt(backend, gemm, dyBase + i0 * oh * ow * co * 4, wBase, columns, imgs * oh * ow, co, cols, { tB: true });
      heapView<Float32Array>(backend, dx).fill(0, i0 * h * w * ci, (i0 + imgs) * h * w * ci);
      for (const t of taps) {
        if (t.ny > 0 && t.nx > 0) addRuns(columns + t.column, dxBase + i0 * ib + t.image, ci, imgs, cb, ib, t.ny, cy, iy, t.nx, cx, ix);
      }
    }
  } finally {
    backend.wasm._free(columns);
  }
  return dx;
}

/**
 * DepthToSpace (NHWC) as reshape → transpose → reshape: [n, h, w, (ry·s + rx)·c + k] →
 * [n, h·s + ry, w·s + rx, k]. (tfjs-backend-wasm's own DepthToSpace kernel is a slow scalar loop:
 * ~150 ms for [8, 28, 28, 256].)
 */
export function depthToSpace(s: Scope, z: Info, bs: number): Info {
  const [n, h, w, c] = z.shape as [number, number, number, number];
  const k = c / (bs * bs);
  const t = s.transpose(s.reshape(z, [n * h, w, bs, bs * k]), [0, 2, 1, 3]);
  return s.reshape(t, [n, h * bs, w * bs, k]);
}

/**
 * The transposed conv for stride s > 1 without the s² zeros: output pixel y takes filter taps
 * k ≡ y + pad (mod s), so each of the s² output phases is a stride-1 conv of the undilated dy
 * with a ⌈k/s⌉² sub-filter. All phases run as one Conv2D (sub-filters stacked along the output
 * channels) and DepthToSpace interleaves them: dx[y] = Z[y + pad].
 */
function subPixelInputGrad(s: Scope, dy: Info, filter: Info, g: Geometry): Info {
  const { h, w, ci, co, kh, kw, sh: st } = g;
  const th = Math.ceil(kh / st);
  const tw = Math.ceil(kw / st);
  // F[u, v, co, (ry·s + rx)·ci + c] = W[ry + s·(th−1−u), rx + s·(tw−1−v), c, co] (zero past the filter).
  const padded = s.pad(filter, [
    [0, th * st - kh],
    [0, tw * st - kw],
    [0, 0],
    [0, 0],
  ]);
  const flipped = s.reverse(s.reshape(padded, [th, st, tw, st, ci, co]), [0, 2]);
  const stacked = s.reshape(s.transpose(flipped, [0, 2, 5, 1, 3, 4]), [th, tw, co, st * st * ci]);
  const dyp = s.pad(dy, [
    [0, 0],
    [th - 1, th - 1],
    [tw - 1, tw - 1],
    [0, 0],
  ]);
  const z = s.run('Conv2D', { x: dyp, filter: stacked }, { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: undefined });
  const img = depthToSpace(s, z, st);
  return s.padOrCrop(img, [
    [0, 0],
    [-g.top, h + g.top - img.shape[1]!],
    [-g.left, w + g.left - img.shape[2]!],
    [0, 0],
  ]);
}

export function conv2DBackpropInput(args: Parameters<tf.KernelFunc>[0], backendName: string): Info {
  const { dy, filter } = args.inputs as { dy: Info; filter: Info };
  const attrs = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const nchw = attrs.dataFormat === 'NCHW';
  const inShape = (nchw ? toNhwcShape(attrs.inputShape) : attrs.inputShape) as [number, number, number, number];
  const g = geometry(inShape, filter.shape as [number, number, number, number], attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false);
  return scoped(args.backend, backendName, (s) => {
    const dyn = nchw ? s.transpose(dy, NCHW_TO_NHWC) : dy;
    const dx = conv2dInputGrad(s, dyn, filter, g);
    return nchw ? s.transpose(dx, NHWC_TO_NCHW) : dx;
  });
}

// ---------------------------------------------------------------------------------------------
// Depthwise. Filter [kh, kw, C, m]; output channel c·m + q reads input channel c.

export function depthwiseBackpropInput(args: Parameters<tf.KernelFunc>[0], backendName: string): Info {
  const { dy, filter } = args.inputs as { dy: Info; filter: Info };
  const attrs = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  const fs = filter.shape as [number, number, number, number];
  const g = geometry(attrs.inputShape, fs, attrs.strides, attrs.dilations, attrs.pad, attrs.dimRoundingMode, true);
  const [kh, kw, c, m] = fs;
  const ekh = (kh - 1) * g.dh + 1;
  const ekw = (kw - 1) * g.dw + 1;
  return scoped(args.backend, backendName, (s) => {
    const dil = s.dilateSpatial(dy, g.sh, g.sw);
    const padded = s.padOrCrop(dil, [
      [0, 0],
      [ekh - 1 - g.top, g.h + ekh - 1 - dil.shape[1]! - (ekh - 1 - g.top)],
      [ekw - 1 - g.left, g.w + ekw - 1 - dil.shape[2]! - (ekw - 1 - g.left)],
      [0, 0],
    ]);
    const memory = backendName === 'wasm' && m === 1 && g.dh === g.dw ? wasmMemory(args.backend) : null;
    const simd = memory ? dwConvFor(memory, c) : null;
    if (simd) {
      // Our SIMD depthwise kernel: the flipped filter over the padded dy, written straight into dx.
      const be = args.backend as WasmBackend;
      const flippedW = s.reverse(filter, [0, 1]);
      const dx = s.adopt(be.makeOutput([g.n, g.h, g.w, c], 'float32'));
      runDwConv(memory!, c, simd, heapOffset(be, padded), heapOffset(be, flippedW), heapOffset(be, dx), g.n, padded.shape[1]!, padded.shape[2]!, kh, kw, g.h, g.w, g.dh);
      return dx;
    }
    // Each of the C·m dy channels is convolved with its own flipped filter tap set; the m
    // channels that came from one input channel are then summed.
    const flipped = s.reshape(s.reverse(filter, [0, 1]), [kh, kw, c * m, 1]);
    const attrsConv = { strides: [1, 1], pad: 'valid', dilations: [g.dh, g.dw], dimRoundingMode: undefined };
    const out = s.run('DepthwiseConv2dNative', { x: padded, filter: flipped }, attrsConv);
    if (m === 1) return out;
    return s.sum(s.reshape(out, [g.n, g.h, g.w, c, m]), [4]);
  });
}

export function depthwiseBackpropFilter(args: Parameters<tf.KernelFunc>[0], backendName: string): Info {
  const { x, dy } = args.inputs as { x: Info; dy: Info };
  const attrs = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  const g = geometry(x.shape as [number, number, number, number], attrs.filterShape, attrs.strides, attrs.dilations, attrs.pad, attrs.dimRoundingMode, true);
  const [kh, kw, c, m] = attrs.filterShape;
  const { n, oh, ow } = g;
  return scoped(args.backend, backendName, (s) => {
    // The batch joins the channels (n·C of them, one image) and dy becomes a depthwise filter
    // [oh, ow, n·C, m] dilated by the stride: out[a, b, (n,c,q)] = Σ_ij x[a + i·s, b + j·s, (n,c)]·dy[i, j, (n,c), q].
    const xp = paddedInput(s, x, g);
    const [hp, wp] = [xp.shape[1]!, xp.shape[2]!];
    const memory = backendName === 'wasm' && m === 1 && g.dh === g.dw && g.sh === g.sw ? wasmMemory(args.backend) : null;
    const simd = memory ? dwFilterFor(memory, c, g.dh) : null;
    if (simd) {
      // Our SIMD filter-gradient kernel, accumulating into a zeroed dW.
      const be = args.backend as WasmBackend;
      const dw = s.adopt(be.makeOutput([kh, kw, c, 1], 'float32'));
      heapView(be, dw).fill(0);
      simd(heapOffset(be, xp), heapOffset(be, dy), heapOffset(be, dw), n, hp, wp, kh, kw, oh, ow, g.sh);
      return dw;
    }
    const xt = s.reshape(s.transpose(xp, [1, 2, 0, 3]), [1, hp, wp, n * c]);
    const dyt = s.reshape(s.transpose(dy, [1, 2, 0, 3]), [oh, ow, n * c, m]);
    const attrsConv = { strides: [1, 1], pad: 'valid', dilations: [g.sh, g.sw], dimRoundingMode: undefined };
    let out = s.run('DepthwiseConv2dNative', { x: xt, filter: dyt }, attrsConv);
    // out is [1, ekh, ekw, n·C·m]; the taps of a dilated filter are every d-th position.
    if (g.dh > 1 || g.dw > 1) out = s.run('StridedSlice', { x: out }, stridedAttrs([0, 0, 0, 0], out.shape, [1, g.dh, g.dw, 1]));
    return s.reshape(s.sum(s.reshape(out, [kh, kw, n, c * m]), [2]), [kh, kw, c, m]);
  });
}

/** DepthToSpace kernel (both data formats) through `depthToSpace` above. */
export function depthToSpaceKernel(args: Parameters<tf.KernelFunc>[0], backendName: string): Info {
  const { x } = args.inputs as { x: Info };
  const { blockSize, dataFormat } = args.attrs as unknown as tf.DepthToSpaceAttrs;
  return scoped(args.backend, backendName, (s) => {
    if (dataFormat !== 'NCHW') return depthToSpace(s, x, blockSize);
    return s.transpose(depthToSpace(s, s.transpose(x, NCHW_TO_NHWC), blockSize), NHWC_TO_NCHW);
  });
}

function stridedAttrs(begin: number[], end: number[], strides: number[]): Record<string, unknown> {
  return { begin, end: [...end], strides, beginMask: 0, endMask: 0, ellipsisMask: 0, newAxisMask: 0, shrinkAxisMask: 0 };
}

// ---------------------------------------------------------------------------------------------
// Depthwise forward on wasm: our SIMD kernel for stride 1, multiplier 1, channels a multiple of 4
// (XNNPACK runs ~1 GFLOP/s at 7×7 and 11×11); everything else goes to the stock kernel.

function depthwiseForwardWasm(args: Parameters<tf.KernelFunc>[0], fused: boolean): Info {
  const { x, filter, bias, preluActivationWeights } = args.inputs as { x: Info; filter: Info; bias?: Info; preluActivationWeights?: Info };
  const attrs = args.attrs as unknown as tf.FusedDepthwiseConv2DAttrs;
  const name = fused ? tf.FusedDepthwiseConv2D : tf.DepthwiseConv2dNative;
  const fs = filter.shape as [number, number, number, number];
  const g = geometry(x.shape as [number, number, number, number], fs, attrs.strides, attrs.dilations ?? 1, attrs.pad, attrs.dimRoundingMode, true);
  const memory = fs[3] === 1 && g.sh === 1 && g.sw === 1 && g.dh === g.dw && x.dtype === 'float32' ? wasmMemory(args.backend) : null;
  const simd = memory ? dwConvFor(memory, g.ci) : null;
  const activation = fused ? attrs.activation : 'linear';
  if (!simd || (attrs as { dataFormat?: string }).dataFormat === 'NCHW' || !Scope.FUSED_ACTIVATIONS.has(activation ?? 'linear')) {
    return stock(name, args);
  }
  return scoped(args.backend, 'wasm', (s) => {
    const be = args.backend as WasmBackend;
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      fs,
      1,
      attrs.dilations ?? 1,
      attrs.pad,
      attrs.dimRoundingMode,
      true,
    );
    const xp = s.pad(x, [
      [0, 0],
      [info.padInfo.top, info.padInfo.bottom],
      [info.padInfo.left, info.padInfo.right],
      [0, 0],
    ]);
    const y = s.adopt(be.makeOutput([g.n, g.oh, g.ow, g.ci], 'float32'));
    runDwConv(memory!, g.ci, simd, heapOffset(be, xp), heapOffset(be, filter), heapOffset(be, y), g.n, xp.shape[1]!, xp.shape[2]!, g.kh, g.kw, g.oh, g.ow, g.dh);
    return s.biasAndActivation(y, bias, activation, preluActivationWeights, attrs.leakyreluAlpha, name);
  });
}

export const depthwiseConvWasm = (args: Parameters<tf.KernelFunc>[0]) => depthwiseForwardWasm(args, false);
export const fusedDepthwiseConvWasm = (args: Parameters<tf.KernelFunc>[0]) => depthwiseForwardWasm(args, true);

// ---------------------------------------------------------------------------------------------
// Forward convolutions on wasm.

/**
 * Conv2D / FusedConv2D on our kernel (unless `routeForwardProducts(false)`), NHWC float32:
 * - a 1×1, stride-1, unpadded convolution is the product [N·H·W, Ci]·[Ci, Co], read in place;
 * - a larger kernel (dilation 1, any stride and padding, at least 64 columns kh·kw·Ci) runs as
 *   im2col then one product per chunk of images (`columnsConv`).
 * The bias is fused into the product, then an activation kernel. Everything else: the stock
 * (XNNPACK) kernel.
 */
export function conv2dWasm(args: KernelArgs, fused: boolean): Info {
  const { x, filter, bias, preluActivationWeights } = args.inputs as { x: Info; filter: Info; bias?: Info; preluActivationWeights?: Info };
  const attrs = args.attrs as unknown as tf.FusedConv2DAttrs;
  const name = fused ? tf.FusedConv2D : tf.Conv2D;
  const [kh, kw, ci, co] = filter.shape as [number, number, number, number];
  const gemm = convOnOurs(args.backend);
  if (!gemm || x.dtype !== 'float32' || (attrs.dataFormat ?? 'NHWC') !== 'NHWC') return stock(name, args);
  const dil = attrs.dilations ?? 1;
  const dilated = typeof dil === 'number' ? dil !== 1 : dil[0] !== 1 || dil[1] !== 1;
  const g = geometry(x.shape as [number, number, number, number], filter.shape as [number, number, number, number], attrs.strides, dil, attrs.pad, attrs.dimRoundingMode, false);
  const pointwise = kh === 1 && kw === 1 && g.sh === 1 && g.sw === 1 && g.top === 0 && g.left === 0 && g.oh === g.h && g.ow === g.w;
  const copyRuns = pointwise || dilated || kh * kw * ci < COLUMNS_MIN_K || !columnsFit(g) ? null : copyRunsFor(wasmMemory(args.backend)!);
  if (!pointwise && !copyRuns) return stock(name, args);
  const fuse = perColumn(bias, co);
  const backend = args.backend as WasmBackend;
  return scoped(args.backend, 'wasm', (s) => {
    const y = pointwise
      ? // The NHWC input is already the [n·h·w, ci] matrix and the filter [ci, co]: no copies.
        s.adopt(plainProduct(backend, gemm, x, filter, g.n * g.h * g.w, ci, co, [g.n, g.h, g.w, co], fuse ? bias : undefined))
      : columnsConv(s, x, filter, fuse ? bias : undefined, g, gemm, copyRuns!);
    return s.biasAndActivation(y, fuse ? undefined : bias, fused ? attrs.activation : undefined, preluActivationWeights, attrs.leakyreluAlpha, name);
  });
}

/** Convolutions with fewer columns (kh·kw·Ci: a stem on RGB) stay XNNPACK's: a short inner dimension is where our kernel is slowest. */
const COLUMNS_MIN_K = 64;

/**
 * y = im2col(x) · W, a chunk of whole images at a time: each tap's input pixels copied into its
 * block of columns by the SIMD run copy (zero where the tap falls in the padding), then one
 * product [pixels, kh·kw·ci]·[kh·kw·ci, co] with W read in place. On ResNet18's 3×3 layers (batch
 * 32, 2 threads): 50–83 GFLOP/s at 8² and 4² against XNNPACK's 41–52, even at 16² and 32².
 */
function columnsConv(s: Scope, x: Info, filter: Info, bias: Info | undefined, g: Geometry, gemm: GemmFn, copyRuns: RunsFn): Info {
  const { n, ci, co, kh, kw, oh, ow } = g;
  const backend = s.backend as unknown as WasmBackend;
  const y = s.adopt(backend.makeOutput([n, oh, ow, co], 'float32'));
  const [wBase, yBase] = [filter, y].map((t) => heapOffset(backend, t)) as [number, number];
  eachColumnChunk(backend, copyRuns, x, g, (columns, i0, imgs) =>
    productAt(backend, gemm, columns, wBase, yBase + i0 * oh * ow * co * 4, imgs * oh * ow, kh * kw * ci, co, { bias }),
  );
  return y;
}

/**
 * Runs `use(columns, i0, imgs)` on the columns of each chunk of images of the NHWC input x
 * (`columnChunk`): [pixels, kh·kw·ci], tap-major, each tap's input pixels copied into its block by
 * the SIMD run copy, zero where a tap falls in the padding. The buffer is freed at the end.
 */
function eachColumnChunk(backend: WasmBackend, copyRuns: RunsFn, x: Info, g: Geometry, use: (columns: number, i0: number, imgs: number) => void): void {
  const { n, ci, kh, kw, oh, ow } = g;
  const perImage = oh * ow * kh * kw * ci;
  const chunk = columnChunk(n, oh * ow, perImage);
  const { taps, imageStrides: [ib, iy, ix], columnStrides: [cb, cy, cx], padded } = tapBlocks(g);
  const columns = wasmMalloc(backend, chunk * perImage * 4);
  try {
    const xBase = heapOffset(backend, x);
    for (let i0 = 0; i0 < n; i0 += chunk) {
      const imgs = Math.min(chunk, n - i0);
      if (padded) new Float32Array(heapBuffer(backend), columns, imgs * perImage).fill(0);
      for (const t of taps) {
        if (t.ny > 0 && t.nx > 0) copyRuns(xBase + i0 * ib + t.image, columns + t.column, ci, imgs, ib, cb, t.ny, iy, cy, t.nx, ix, cx);
      }
      use(columns, i0, imgs);
    }
  } finally {
    backend.wasm._free(columns);
  }
}

/** dW [kh·kw·ci, co] = Σ over chunks of images of im2col(x)ᵀ · dy, on our kernel. */
function columnsFilterGrad(s: Scope, x: Info, dy: Info, g: Geometry, gemm: GemmFn, copyRuns: RunsFn): Info {
  const { ci, co, kh, kw, oh, ow } = g;
  const backend = s.backend as unknown as WasmBackend;
  const dw = s.adopt(backend.makeOutput([kh, kw, ci, co], 'float32'));
  const [dyBase, dwBase] = [dy, dw].map((t) => heapOffset(backend, t)) as [number, number];
  eachColumnChunk(backend, copyRuns, x, g, (columns, i0, imgs) =>
    productAt(backend, gemm, columns, dyBase + i0 * oh * ow * co * 4, dwBase, kh * kw * ci, imgs * oh * ow, co, { tA: true, accumulate: i0 > 0 }),
  );
  return dw;
}
