import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { convOutputSize, toPair, type Pair } from '../nn/conv.js';
import { bilinearSample } from './sampling.js';

/**
 * Deformable convolution (Dai et al. 2017, DCNv1; Zhu et al. 2019, DCNv2 with a modulation mask),
 * pure TF.js on NHWC, with the official sampling rule (mmcv / torchvision `deform_conv2d`, see
 * {@link bilinearSample}).
 *
 * It runs as sampling into an im2col tensor `[B, Ho·Wo, K·C]` followed by one matMul with the
 * weights, so every gradient is built from kernels all backends have in forward form: the weight
 * gradient is a matMul (not Conv2DBackpropFilter), the input and offset gradients come from the
 * sampler's hand-written backward, the mask gradient is a product. Tensors stay ≤ 5-D.
 */

export interface DeformConv2dSpec {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  /** Convolution groups (input and output channels split into `groups` independent convs). */
  groups?: number;
  /** Offset groups: input channels split into this many groups, each with its own offsets (and mask). */
  deformableGroups?: number;
}

export interface DeformIm2colOptions extends Omit<DeformConv2dSpec, 'groups'> {
  /** Kernel size (kh, kw). */
  kernelSize: Pair;
  /** DCNv2 modulation `[B, Ho, Wo, deformableGroups·kh·kw]` (used as given: no sigmoid); null/absent = DCNv1. */
  mask?: tf.Tensor | null;
}

interface Geometry {
  b: number;
  h: number;
  w: number;
  c: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
  dh: number;
  dw: number;
  ho: number;
  wo: number;
  dg: number;
}

function geometry(what: string, x: tf.Tensor, kernelSize: Pair, o: Omit<DeformConv2dSpec, 'groups'>): Geometry {
  if (x.rank !== 4) throw new ShapeError(`${what} expected an NHWC input [B, H, W, C], got shape [${x.shape.join(',')}]`);
  const [b, h, w, c] = x.shape as [number, number, number, number];
  const [kh, kw] = toPair(kernelSize, `${what} kernelSize`);
  const [sh, sw] = toPair(o.stride ?? 1, `${what} stride`);
  const [ph, pw] = toPair(o.padding ?? 0, `${what} padding`);
  const [dh, dw] = toPair(o.dilation ?? 1, `${what} dilation`);
  const dg = o.deformableGroups ?? 1;
  if ([kh, kw, sh, sw, dh, dw].some((v) => v <= 0) || ph < 0 || pw < 0) {
    throw new ConfigError(`${what}: kernel size, stride and dilation must be positive and padding >= 0, got kernel ${kh}x${kw}, stride ${sh}x${sw}, dilation ${dh}x${dw}, padding ${ph}x${pw}`);
  }
  if (!Number.isInteger(dg) || dg <= 0 || c % dg !== 0) {
    throw new ConfigError(`${what}: deformableGroups must be a positive integer dividing the ${c} input channels, got ${dg}`);
  }
  const ho = convOutputSize(h, kh, sh, ph, dh);
  const wo = convOutputSize(w, kw, sw, pw, dw);
  if (ho <= 0 || wo <= 0) {
    throw new ShapeError(`${what}: a ${h}x${w} input is too small for kernel ${kh}x${kw} (dilation ${dh}x${dw}, padding ${ph}x${pw}): output would be ${ho}x${wo}`);
  }
  return { b, h, w, c, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dg };
}

/** Regular-grid sampling positions (y, x) per output pixel and tap, `[1, Ho·Wo, 1, K, 2]`. */
function baseGrid(g: Geometry): tf.Tensor {
  const k = g.kh * g.kw;
  const data = new Float32Array(g.ho * g.wo * k * 2);
  let n = 0;
  for (let oh = 0; oh < g.ho; oh++)
    for (let ow = 0; ow < g.wo; ow++)
      for (let i = 0; i < g.kh; i++)
        for (let j = 0; j < g.kw; j++) {
          data[n++] = oh * g.sh - g.ph + i * g.dh;
          data[n++] = ow * g.sw - g.pw + j * g.dw;
        }
  return tf.tensor(data, [1, g.ho * g.wo, 1, k, 2]);
}

/**
 * The deformable im2col: for every output pixel and kernel tap, the input sampled at the regular
 * position plus its offset (times the mask), as `[B, Ho, Wo, K·C]` with K = kh·kw taps row-major
 * (`k = i·kw + j`) and channels innermost, the order of a `[kh, kw, C, out]` weight.
 *
 * `offset` is `[B, Ho, Wo, 2·dg·K]` in the official channel order: for offset group `g` and tap
 * `k`, channel `2·(g·K + k)` is dy (rows) and the next one dx. Input channel `c` belongs to offset
 * group `⌊c / (C/dg)⌋`. Sampling position: `(oh·sh − ph + i·dh + dy, ow·sw − pw + j·dw + dx)`.
 */
export function deformIm2col(x: tf.Tensor, offset: tf.Tensor, options: DeformIm2colOptions): tf.Tensor4D {
  const g = geometry('deformIm2col', x, options.kernelSize, options);
  return tf.tidy(() => tf.reshape(sampleColumns(g, x, offset, options.mask ?? null, 'deformIm2col'), [g.b, g.ho, g.wo, g.kh * g.kw * g.c]));
}

/** `[B, Ho·Wo, K, C]` sampled (and masked) columns. */
function sampleColumns(g: Geometry, x: tf.Tensor, offset: tf.Tensor, mask: tf.Tensor | null, what: string): tf.Tensor {
  const { b, h, w, c, ho, wo, dg } = g;
  const k = g.kh * g.kw;
  const want = [b, ho, wo, 2 * dg * k];
  if (offset.rank !== 4 || offset.shape.some((v, i) => v !== want[i])) {
    throw new ShapeError(
      `${what} expected offsets [${want.join(', ')}] (B, Ho, Wo, 2·deformableGroups·kh·kw) for input [${x.shape.join(', ')}], got [${offset.shape.join(', ')}]`,
    );
  }
  if (mask) {
    const wantM = [b, ho, wo, dg * k];
    if (mask.rank !== 4 || mask.shape.some((v, i) => v !== wantM[i])) {
      throw new ShapeError(`${what} expected a mask [${wantM.join(', ')}] (B, Ho, Wo, deformableGroups·kh·kw), got [${mask.shape.join(', ')}]`);
    }
  }
  const n = ho * wo;
  const cd = c / dg;
  // [B, Ho·Wo, dg, K, 2] absolute (y, x).
  const coords = tf.add(tf.reshape(offset, [b, n, dg, k, 2]), baseGrid(g));
  let cols: tf.Tensor;
  if (dg === 1) {
    cols = tf.reshape(bilinearSample(x, tf.reshape(coords, [b, n * k, 2])), [b, n, k, c]);
    if (mask) cols = tf.mul(cols, tf.reshape(mask, [b, n, k, 1]));
  } else {
    // Fold the offset groups into the batch: [B·dg, H, W, C/dg] sampled at [B·dg, Ho·Wo·K] points.
    const xg = tf.reshape(tf.transpose(tf.reshape(x, [b, h * w, dg, cd]), [0, 2, 1, 3]), [b * dg, h, w, cd]);
    const cg = tf.reshape(tf.transpose(coords, [0, 2, 1, 3, 4]), [b * dg, n * k, 2]);
    let s = tf.transpose(tf.reshape(bilinearSample(xg, cg), [b, dg, n, k, cd]), [0, 2, 3, 1, 4]);
    if (mask) s = tf.mul(s, tf.reshape(tf.transpose(tf.reshape(mask, [b, n, dg, k]), [0, 1, 3, 2]), [b, n, k, dg, 1]));
    cols = tf.reshape(s, [b, n, k, c]);
  }
  return cols;
}

/**
 * Deformable 2-D convolution on NHWC (DCNv1 without `mask`, modulated DCNv2 with it):
 * `x` `[B, H, W, Cin]`, `offset` `[B, Ho, Wo, 2·dg·kh·kw]` (layout in {@link deformIm2col}),
 * `weight` `[kh, kw, Cin/groups, Cout]` (our Conv2d layout; PyTorch's `[Cout, Cin/groups, kh, kw]`
 * converts as any conv weight), `bias` `[Cout]` or null, optional `mask` `[B, Ho, Wo, dg·kh·kw]`
 * multiplied into each sample as given (DCNv2 code applies a sigmoid before; the seed's LITv2 does
 * not). Output `[B, Ho, Wo, Cout]` with PyTorch's output size. With zero offsets and no mask it is
 * exactly a Conv2d with the same weights.
 */
export function deformConv2d(
  x: tf.Tensor,
  offset: tf.Tensor,
  weight: tf.Tensor,
  bias: tf.Tensor | null,
  options: DeformConv2dSpec & { mask?: tf.Tensor | null } = {},
): tf.Tensor4D {
  if (weight.rank !== 4) throw new ShapeError(`deformConv2d expected a weight [kh, kw, Cin/groups, Cout], got shape [${weight.shape.join(',')}]`);
  const [kh, kw, wi, co] = weight.shape as [number, number, number, number];
  const g = geometry('deformConv2d', x, [kh, kw], options);
  const groups = options.groups ?? 1;
  if (!Number.isInteger(groups) || groups <= 0 || g.c % groups !== 0 || co % groups !== 0) {
    throw new ConfigError(`deformConv2d: groups must be a positive integer dividing the ${g.c} input and ${co} output channels, got ${groups}`);
  }
  if (wi !== g.c / groups) {
    throw new ShapeError(`deformConv2d: weight [${weight.shape.join(', ')}] needs Cin/groups = ${g.c}/${groups} = ${g.c / groups} input channels, got ${wi}`);
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== co)) throw new ShapeError(`deformConv2d expected a bias [${co}], got shape [${bias.shape.join(',')}]`);
  const k = kh * kw;
  const n = g.b * g.ho * g.wo;
  return tf.tidy(() => {
    const cols = sampleColumns(g, x, offset, options.mask ?? null, 'deformConv2d');
    let y: tf.Tensor;
    if (groups === 1) {
      y = tf.matMul(tf.reshape(cols, [n, k * g.c]), tf.reshape(weight, [k * g.c, co]));
    } else {
      // Per group: [G, N, K·Cg] × [G, K·Cg, Og] → [N, G·Og] (output channel o = group·Og + j).
      const cg = g.c / groups;
      const og = co / groups;
      const a = tf.reshape(tf.transpose(tf.reshape(cols, [n, k, groups, cg]), [2, 0, 1, 3]), [groups, n, k * cg]);
      const wm = tf.reshape(tf.transpose(tf.reshape(weight, [k, cg, groups, og]), [2, 0, 1, 3]), [groups, k * cg, og]);
      y = tf.reshape(tf.transpose(tf.matMul(a, wm), [1, 0, 2]), [n, co]);
    }
    if (bias) y = tf.add(y, bias);
    return tf.reshape(y, [g.b, g.ho, g.wo, co]);
  });
}
