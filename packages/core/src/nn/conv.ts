import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { kaimingUniform, uniform } from './init.js';
import { isRecording } from '../autodiff/checkpoint.js';
import { Module } from './module.js';

export type Pair = number | readonly [number, number];

export function toPair(v: Pair, what = 'value'): [number, number] {
  const p: [number, number] = typeof v === 'number' ? [v, v] : [v[0], v[1]];
  if (!Number.isInteger(p[0]) || !Number.isInteger(p[1])) throw new ConfigError(`${what} must be an integer or a pair of integers, got ${JSON.stringify(v)}`);
  return p;
}

export interface Conv2dSpec {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
}

/** PyTorch's output size: floor((n + 2p − d·(k−1) − 1)/s) + 1. */
export function convOutputSize(n: number, k: number, s: number, p: number, d: number): number {
  return Math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1;
}

/**
 * Spreads a `[kh, kw, …]` kernel with zeros so that a plain conv equals the dilated one. tfjs has
 * no gradient for dilated convs and refuses stride and dilation together; this form has neither
 * limit (dilation is rare in these models, so the extra FLOPs do not matter).
 */
function dilateKernel(w: tf.Tensor4D, dh: number, dw: number): tf.Tensor4D {
  const [, kw, i, o] = w.shape;
  let kh = w.shape[0];
  let k: tf.Tensor4D = w;
  if (dh > 1 && kh > 1) {
    const r = kw * i * o;
    const spread = tf.pad(tf.reshape(k, [kh, 1, r]), [[0, 0], [0, dh - 1], [0, 0]]);
    const eh = (kh - 1) * dh + 1;
    k = tf.reshape(tf.slice(tf.reshape(spread, [kh * dh, r]), [0, 0], [eh, r]), [eh, kw, i, o]);
    kh = eh;
  }
  if (dw > 1 && kw > 1) {
    const r = i * o;
    const spread = tf.pad(tf.reshape(k, [kh, kw, 1, r]), [[0, 0], [0, 0], [0, dw - 1], [0, 0]]);
    const ew = (kw - 1) * dw + 1;
    k = tf.reshape(tf.slice(tf.reshape(spread, [kh, kw * dw, r]), [0, 0, 0], [kh, ew, r]), [kh, ew, i, o]);
  }
  return k;
}

/**
 * PyTorch-semantics 2-D convolution on NHWC with a weight in our layout: explicit symmetric zero
 * padding then 'valid' (TF 'same' pads 0/1 for stride 2 on even sizes, PyTorch 1/1), floor output
 * size, groups. The weight is `[kh, kw, in/groups, out]`, or for depthwise (`groups === C > 1`)
 * either `[kh, kw, C, m]` or `[kh, kw, 1, C·m]` (output channel c·m + j reads input channel c in
 * both, as in PyTorch). Caller checks shapes; this checks only what would otherwise fail obscurely.
 */
export function conv2dNHWC(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor | null, spec: Conv2dSpec = {}): tf.Tensor4D {
  const [sh, sw] = toPair(spec.stride ?? 1, 'stride');
  const [ph, pw] = toPair(spec.padding ?? 0, 'padding');
  const [dh, dw] = toPair(spec.dilation ?? 1, 'dilation');
  const groups = spec.groups ?? 1;
  const [, h, w, c] = x.shape as [number, number, number, number];
  const [kh, kw, wi, wo] = weight.shape as [number, number, number, number];
  const ekh = dh * (kh - 1) + 1;
  const ekw = dw * (kw - 1) + 1;
  if (h + 2 * ph < ekh || w + 2 * pw < ekw) {
    throw new ShapeError(`conv2d: padded input ${h + 2 * ph}x${w + 2 * pw} is smaller than the (dilated) kernel ${ekh}x${ekw}; input shape [${x.shape.join(',')}]`);
  }
  return tf.tidy((): tf.Tensor4D => {
    let k = weight as tf.Tensor4D;
    if (dh > 1 || dw > 1) k = dilateKernel(k, dh, dw);
    // Kernel taps that only ever read padding (a 7×7 kernel on a 2×2 map) are cut off, and the
    // padding with them: the result is the same, and backward does not convolve the padding.
    const rows = usefulTaps(h, ekh, sh, ph);
    const cols = usefulTaps(w, ekw, sw, pw);
    if (rows.size < ekh || cols.size < ekw) k = tf.slice(k, [rows.first, cols.first, 0, 0], [rows.size, cols.size, -1, -1]);
    // The conv pads by itself (explicit padding): a padded copy of x would be one more
    // activation-sized buffer, and the one autodiff keeps for the backward pass. Only a cut kernel
    // that also drops trailing input rows needs the input sliced (and then padded) first.
    const crop = rows.keep < h || cols.keep < w;
    const none = rows.before === 0 && rows.after === 0 && cols.before === 0 && cols.after === 0;
    // tfjs-node's kernels take only 'valid' and 'same': 'same' where TF's padding is PyTorch's
    // (odd kernels at stride 1), else a padded copy.
    const explicitOk = tf.getBackend() !== 'tensorflow';
    const same = !crop && !none && tfSamePads(h, rows.size, sh, rows) && tfSamePads(w, cols.size, sw, cols);
    const copy = crop || (!none && !explicitOk && !same);
    const xp = copy ? padFor(x as tf.Tensor4D, rows, cols) : (x as tf.Tensor4D);
    const pad: 'valid' | 'same' | tf.backend_util.ExplicitPadding =
      copy || none
        ? 'valid'
        : explicitOk
          ? [
              [0, 0],
              [rows.before, rows.after],
              [cols.before, cols.after],
              [0, 0],
            ]
          : 'same';
    const strides: [number, number] = [sh, sw];
    const b = (bias ?? undefined) as tf.Tensor1D | undefined;
    // Under a gradient tape tfjs's fused conv (a customGrad) also keeps its output for the backward
    // pass, which a linear activation never reads: one more activation-sized buffer whenever the
    // next op keeps nothing (a residual add). The plain conv keeps x and the filter only.
    if (isRecording()) {
      let y: tf.Tensor4D;
      if (groups === 1) y = tf.conv2d(xp, k, strides, pad);
      else if (groups === c && (wi === c || wi === 1)) {
        const m = wi === c ? wo : wo / c;
        if (wi === 1) k = tf.reshape(k, [k.shape[0], k.shape[1], c, m]);
        y = sh !== sw ? subsample(tf.depthwiseConv2d(xp, k, 1, pad as DwPad), sh, sw) : tf.depthwiseConv2d(xp, k, strides, pad as DwPad);
      } else {
        const xs = tf.split(xp, groups, 3) as tf.Tensor4D[];
        const ks = tf.split(k, groups, 3);
        y = tf.concat(xs.map((xi, g) => tf.conv2d(xi, ks[g]! as tf.Tensor4D, strides, pad)), 3);
      }
      return b ? tf.add(y, b) : y;
    }
    if (groups === 1) return tf.fused.conv2d({ x: xp, filter: k, strides, pad, bias: b });
    if (groups === c && (wi === c || wi === 1)) {
      const m = wi === c ? wo : wo / c;
      if (wi === 1) k = tf.reshape(k, [k.shape[0], k.shape[1], c, m]);
      // TF's DepthwiseConv2dNative only takes equal strides; subsample a stride-1 result otherwise.
      if (sh !== sw) {
        const full = tf.fused.depthwiseConv2d({ x: xp, filter: k, strides: 1, pad: pad as DwPad, bias: b });
        return subsample(full, sh, sw);
      }
      return tf.fused.depthwiseConv2d({ x: xp, filter: k, strides, pad: pad as DwPad, bias: b });
    }
    const xs = tf.split(xp, groups, 3) as tf.Tensor4D[];
    const ks = tf.split(k, groups, 3);
    const ys = xs.map((xi, g) => tf.conv2d(xi, ks[g]! as tf.Tensor4D, strides, pad));
    const y = tf.concat(ys, 3);
    return b ? tf.add(y, b) : y;
  });
}

/**
 * tfjs types fused depthwise padding without the explicit form, but its kernels and gradients
 * compute the geometry with `computeConv2DInfo`, which takes it (tests check every backend).
 */
type DwPad = 'valid' | 'same' | number;

interface Taps {
  /** First useful tap of the (dilated) kernel and how many there are. */
  first: number;
  size: number;
  /** Zero padding before and after the input, and how many input rows to keep, for a 'valid' conv with these taps. */
  before: number;
  after: number;
  keep: number;
}

/**
 * The kernel taps (along one axis) that read the input for at least one output position: tap i
 * reads `o·s + i − p` for o in [0, out), and is useless when that is outside [0, n) for every o.
 * A whole kernel keeps PyTorch's symmetric padding; a cut one gets the padding its taps read, and
 * input rows past the last one read are dropped.
 */
function usefulTaps(n: number, k: number, s: number, p: number): Taps {
  const out = convOutputSize(n, k, s, p, 1);
  const reads = (i: number) => {
    for (let o = 0; o < out; o++) {
      const at = o * s + i - p;
      if (at >= 0 && at < n) return true;
    }
    return false;
  };
  let first = 0;
  while (first < k - 1 && !reads(first)) first++;
  let last = k - 1;
  while (last > first && !reads(last)) last--;
  const size = last - first + 1;
  if (size === k) return { first, size, before: p, after: p, keep: n };
  // `before` is never negative: the tap at offset p reads input position 0 for output 0.
  const before = p - first;
  const after = (out - 1) * s + size - before - n;
  return { first, size, before, after: Math.max(0, after), keep: n + Math.min(0, after) };
}

/** Whether TF's 'same' padding of n by a kernel of k at stride s is `taps`' (before, after) with the same output size. */
function tfSamePads(n: number, k: number, s: number, taps: Taps): boolean {
  const out = Math.ceil(n / s);
  const total = Math.max((out - 1) * s + k - n, 0);
  const before = Math.floor(total / 2);
  return taps.before === taps.after && before === taps.before && total - before === taps.after && out === convOutputSize(n, k, s, taps.before, 1);
}

/** The input padded (and cropped) as `usefulTaps` says, for a 'valid' conv. */
function padFor(x: tf.Tensor4D, rows: Taps, cols: Taps): tf.Tensor4D {
  const [, h, w] = x.shape;
  let y = x;
  if (rows.keep < h || cols.keep < w) y = tf.slice(y, [0, 0, 0, 0], [-1, rows.keep, cols.keep, -1]);
  if (rows.before > 0 || rows.after > 0 || cols.before > 0 || cols.after > 0) {
    y = tf.pad(y, [[0, 0], [rows.before, rows.after], [cols.before, cols.after], [0, 0]]);
  }
  return y;
}

/** Every s-th row and column from the first, via gather (tfjs has no StridedSlice gradient). */
function subsample(y: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  const idx = (n: number, s: number) => tf.range(0, n, s, 'int32');
  let out = y;
  if (sh > 1) out = tf.gather(out, idx(out.shape[1], sh), 1);
  if (sw > 1) out = tf.gather(out, idx(out.shape[2], sw), 2);
  return out;
}

/**
 * What the 2-D convolution modules share ({@link Conv2d}, `DeformConv2d`): the channels, the groups
 * and the kernel geometry as `[h, w]` pairs (`what` names the module in the errors), and PyTorch's
 * output size. It registers nothing: each subclass checks its configuration and adds its own
 * parameters.
 */
export abstract class Conv2dGeometry extends Module {
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;

  constructor(
    what: string,
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: Pair,
    spec: Conv2dSpec,
  ) {
    super();
    this.kernelSize = toPair(kernelSize, `${what} kernelSize`);
    this.stride = toPair(spec.stride ?? 1, `${what} stride`);
    this.padding = toPair(spec.padding ?? 0, `${what} padding`);
    this.dilation = toPair(spec.dilation ?? 1, `${what} dilation`);
    this.groups = spec.groups ?? 1;
  }

  /** Output spatial size for an input of h×w (PyTorch's floor rule). */
  outputSize(h: number, w: number): [number, number] {
    const [kh, kw] = this.kernelSize;
    return [
      convOutputSize(h, kh, this.stride[0], this.padding[0], this.dilation[0]),
      convOutputSize(w, kw, this.stride[1], this.padding[1], this.dilation[1]),
    ];
  }
}

export interface Conv2dOptions extends Conv2dSpec {
  bias?: boolean;
  /** Seeds the default initialisation (weight with `seed`, bias with `seed + 1`). */
  seed?: number;
}

/**
 * `nn.Conv2d` on NHWC. Weight `[kh, kw, in/groups, out]` (kind 'conv2d'), or `[kh, kw, C, m]`
 * (kind 'depthwise') when `groups === inChannels > 1`. Default init as PyTorch: U(±1/√fan_in),
 * fan_in = in/groups·kh·kw, for weight and bias.
 */
export class Conv2d extends Conv2dGeometry {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | null;
  readonly depthwise: boolean;

  constructor(inChannels: number, outChannels: number, kernelSize: Pair, options: Conv2dOptions = {}) {
    super('Conv2d', inChannels, outChannels, kernelSize, options);
    const { bias = true, groups = 1, seed } = options;
    checkConvConfig('Conv2d', inChannels, outChannels, groups, [...this.kernelSize, ...this.stride, ...this.dilation], this.padding);
    this.depthwise = groups > 1 && groups === inChannels;
    const [kh, kw] = this.kernelSize;
    const fanIn = (inChannels / groups) * kh * kw;
    const shape = this.depthwise ? [kh, kw, inChannels, outChannels / inChannels] : [kh, kw, inChannels / groups, outChannels];
    this.weight = this.addParameter('weight', kaimingUniform(shape, fanIn, { a: Math.sqrt(5), seed }), {
      kind: this.depthwise ? 'depthwise' : 'conv2d',
    });
    const bound = 1 / Math.sqrt(fanIn);
    this.bias = bias
      ? this.addParameter('bias', uniform([outChannels], { low: -bound, high: bound, seed: seed === undefined ? undefined : seed + 1 }))
      : null;
  }

  override forward(x: tf.Tensor): tf.Tensor {
    if (x.rank !== 4 || x.shape[3] !== this.inChannels) {
      throw new ShapeError(`${this.typeName} expected NHWC input with ${this.inChannels} channels, got shape [${x.shape.join(',')}]`);
    }
    return conv2dNHWC(x, this.weight, this.bias, this);
  }
}

function checkConvConfig(what: string, inC: number, outC: number, groups: number, positive: number[], padding: number[]): void {
  for (const [n, v] of [['inChannels', inC], ['outChannels', outC], ['groups', groups]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`${what} ${n} must be a positive integer, got ${v}`);
  }
  if (inC % groups !== 0) throw new ConfigError(`${what}: inChannels (${inC}) must be divisible by groups (${groups})`);
  if (outC % groups !== 0) throw new ConfigError(`${what}: outChannels (${outC}) must be divisible by groups (${groups})`);
  if (positive.some((v) => v <= 0)) throw new ConfigError(`${what}: kernel size, stride and dilation must be positive, got ${positive.join(', ')}`);
  if (padding.some((v) => v < 0)) throw new ConfigError(`${what}: padding must be >= 0, got ${padding.join(', ')}`);
}

export interface Conv1dOptions {
  stride?: number;
  padding?: number;
  dilation?: number;
  groups?: number;
  bias?: boolean;
  seed?: number;
}

/**
 * `nn.Conv1d` on channels-last `[B, L, C]`. Weight `[k, in/groups, out]` (kind 'conv1d'; for
 * depthwise that is `[k, 1, C·m]`). Runs as a 1×k conv2d on a `[B, 1, L, C]` view.
 */
export class Conv1d extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | null;
  readonly stride: number;
  readonly padding: number;
  readonly dilation: number;
  readonly groups: number;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    options: Conv1dOptions = {},
  ) {
    super();
    const { stride = 1, padding = 0, dilation = 1, groups = 1, bias = true, seed } = options;
    this.stride = stride;
    this.padding = padding;
    this.dilation = dilation;
    this.groups = groups;
    for (const [n, v] of [['kernelSize', kernelSize], ['stride', stride], ['padding', padding], ['dilation', dilation]] as const) {
      if (!Number.isInteger(v)) throw new ConfigError(`Conv1d ${n} must be an integer, got ${v}`);
    }
    checkConvConfig('Conv1d', inChannels, outChannels, groups, [kernelSize, stride, dilation], [padding]);
    const fanIn = (inChannels / groups) * kernelSize;
    this.weight = this.addParameter('weight', kaimingUniform([kernelSize, inChannels / groups, outChannels], fanIn, { a: Math.sqrt(5), seed }), {
      kind: 'conv1d',
    });
    const bound = 1 / Math.sqrt(fanIn);
    this.bias = bias
      ? this.addParameter('bias', uniform([outChannels], { low: -bound, high: bound, seed: seed === undefined ? undefined : seed + 1 }))
      : null;
  }

  outputLength(l: number): number {
    return convOutputSize(l, this.kernelSize, this.stride, this.padding, this.dilation);
  }

  override forward(x: tf.Tensor): tf.Tensor {
    if (x.rank !== 3 || x.shape[2] !== this.inChannels) {
      throw new ShapeError(`${this.typeName} expected [B, L, C] input with ${this.inChannels} channels, got shape [${x.shape.join(',')}]`);
    }
    const [b, l] = x.shape as [number, number, number];
    return tf.tidy(() => {
      const w = tf.reshape(this.weight, [1, ...this.weight.shape]);
      const y = conv2dNHWC(tf.reshape(x, [b, 1, l, this.inChannels]), w, this.bias, {
        stride: [1, this.stride],
        padding: [0, this.padding],
        dilation: [1, this.dilation],
        groups: this.groups,
      });
      return tf.reshape(y, [b, y.shape[2], this.outChannels]);
    });
  }
}
