import * as tf from '@tensorflow/tfjs-core';
import {
  assignInit,
  avgPool2d,
  BatchNorm2d,
  checkMap,
  ConfigError,
  Conv2d,
  DeformConv2d,
  DeformConv2dPack,
  Dropout,
  DropPath,
  GELU,
  Identity,
  layerNorm,
  Linear,
  mergeHeads,
  Module,
  ModuleList,
  normal,
  PatchEmbed as CorePatchEmbed,
  positiveInt,
  scaledDotProductAttention,
  ShapeError,
  splitHeads,
  truncNormal,
  windowPartition,
  windowReverse,
  zeros,
  type ActFactory,
  type NormFactory,
  type PatchEmbedOptions,
  type TransformerBlockOptions,
} from '@vit/core';

/**
 * LITv2 building blocks (ziplab/LITv2 `classification/models/{attentions,blocks,layers,patch_embed}.py`)
 * on NHWC maps. Child names equal the official state_dict keys. Every block takes its parts (norm,
 * activation, attention, MLP, downsampling) as factories, so they can be recombined into new
 * backbones; the defaults build the official modules.
 */

/** Builds a token mixer or an MLP for `dim` channels: NHWC in, NHWC out, same shape. */
export type MixerFactory = (dim: number) => Module;

export const defaultNorm: NormFactory = layerNorm(1e-5);
/** Exact (erf) GELU, as every official LITv2 activation. */
export const defaultAct: ActFactory = () => new GELU();

/** The official Linear init (`_init_weights`): trunc-normal(std 0.02) weight, zero bias. */
export function initLinear(m: Linear): void {
  assignInit(m.weight, truncNormal(m.weight.shape, { std: 0.02 }));
  if (m.bias) assignInit(m.bias, zeros(m.bias.shape));
}

// ---------------------------------------------------------------------------------------------
// HiLo attention
// ---------------------------------------------------------------------------------------------

export interface HiLoOptions {
  /** Heads in total (Hi-Fi + Lo-Fi); must divide `dim`. Default 8 (official). */
  numHeads?: number;
  /** Bias on `l_q`, `l_kv`, `h_qkv`. Default false (official HiLo; LITv2 passes true). */
  qkvBias?: boolean;
  /** Overrides head_dim^-0.5 (0 and null mean the default, as Python's `qk_scale or …`). */
  qkScale?: number | null;
  /** Window size s: Hi-Fi attends inside s×s windows, Lo-Fi keys come from s×s average pools. 1 = plain MSA. Default 2. */
  windowSize?: number;
  /** Share of heads that go to Lo-Fi: `int(numHeads·alpha)`. Default 0.5. */
  alpha?: number;
  /**
   * Pad the map right/bottom to a multiple of the window and crop the result (the official
   * detection backbone), so any H, W works. Default false: the classifier's behaviour, where
   * Hi-Fi needs H and W divisible by the window.
   */
  padToWindow?: boolean;
}

/**
 * The official head split of a HiLo layer (`int(heads·alpha)` Lo-Fi heads, the rest Hi-Fi; all
 * Lo-Fi when the window is 1), checking everything the official constructor or forward would fail
 * on. Pure: allocates nothing, so models can validate before building.
 */
export function hiloHeads(dim: number, options: Pick<HiLoOptions, 'numHeads' | 'windowSize' | 'alpha'> = {}): { numHeads: number; windowSize: number; lHeads: number; hHeads: number } {
  const { numHeads = 8, windowSize = 2, alpha = 0.5 } = options;
  positiveInt('HiLo dim', dim);
  positiveInt('HiLo numHeads', numHeads);
  if (dim % numHeads !== 0) throw new ConfigError(`HiLo: dim ${dim} should be divided by num_heads ${numHeads}`);
  if (!Number.isInteger(windowSize) || windowSize < 0) throw new ConfigError(`HiLo windowSize must be a non-negative integer, got ${windowSize}`);
  if (typeof alpha !== 'number' || !(alpha >= 0)) throw new ConfigError(`HiLo alpha must be a number >= 0, got ${JSON.stringify(alpha)}`);
  // Python's int(num_heads * alpha): truncation of the same double product.
  let lHeads = Math.trunc(numHeads * alpha);
  if (lHeads > numHeads) {
    throw new ConfigError(`HiLo: alpha ${alpha} gives int(${numHeads}·${alpha}) = ${lHeads} Lo-Fi heads, more than the ${numHeads} heads (the official output reshape fails)`);
  }
  let hHeads = numHeads - lHeads;
  if (windowSize === 1) {
    // ws = 1 is a standard multi-head self-attention.
    hHeads = 0;
    lHeads = numHeads;
  }
  if (windowSize === 0 && hHeads > 0) {
    throw new ConfigError(`HiLo: window size 0 with ${hHeads} Hi-Fi heads (alpha ${alpha}) cannot run (the official Hi-Fi divides by the window size)`);
  }
  return { numHeads, windowSize, lHeads, hHeads };
}

/**
 * HiLo attention (Pan et al., "Fast Vision Transformers with HiLo Attention", NeurIPS 2022).
 * Heads split into Lo-Fi (`int(heads·alpha)`: queries from every token, keys/values from an
 * AvgPool(s) of the input; params `l_q`, `l_kv`, `l_proj`) and Hi-Fi (the rest: attention inside
 * non-overlapping s×s windows; `h_qkv`, `h_proj`); output = [Hi-Fi, Lo-Fi] concatenated along
 * channels, no joint projection. `windowSize: 1` is plain multi-head self-attention with Lo-Fi
 * parameters only.
 *
 * `forward` takes an NHWC map `[B, H, W, C]`, or tokens `[B, N, C]` with `size = [H, W]`
 * (default: a square grid, as the official code) and returns the same layout, so it drops into
 * token-based backbones too.
 */
export class HiLo extends Module {
  readonly numHeads: number;
  readonly headDim: number;
  readonly lHeads: number;
  readonly lDim: number;
  readonly hHeads: number;
  readonly hDim: number;
  readonly ws: number;
  readonly scale: number;
  readonly padToWindow: boolean;
  readonly l_q: Linear | null = null;
  readonly l_kv: Linear | null = null;
  readonly l_proj: Linear | null = null;
  readonly h_qkv: Linear | null = null;
  readonly h_proj: Linear | null = null;

  constructor(
    readonly dim: number,
    options: HiLoOptions = {},
  ) {
    super();
    const { qkvBias = false, qkScale = null } = options;
    const split = hiloHeads(dim, options);
    const { numHeads, lHeads, hHeads } = split;
    this.numHeads = numHeads;
    this.headDim = dim / numHeads;
    this.ws = split.windowSize;
    this.padToWindow = options.padToWindow ?? false;
    this.lHeads = lHeads;
    this.hHeads = hHeads;
    this.lDim = lHeads * this.headDim;
    this.hDim = hHeads * this.headDim;
    this.scale = qkScale ? qkScale : this.headDim ** -0.5;
    if (lHeads > 0) {
      this.l_q = this.register('l_q', new Linear(dim, this.lDim, { bias: qkvBias }));
      this.l_kv = this.register('l_kv', new Linear(dim, this.lDim * 2, { bias: qkvBias }));
      this.l_proj = this.register('l_proj', new Linear(this.lDim, this.lDim));
    }
    if (hHeads > 0) {
      this.h_qkv = this.register('h_qkv', new Linear(dim, this.hDim * 3, { bias: qkvBias }));
      this.h_proj = this.register('h_proj', new Linear(this.hDim, this.hDim));
    }
  }

  /** Whether an h×w map is accepted (and why not). */
  checkSize(h: number, w: number): string | null {
    const ws = this.ws;
    if (h < 1 || w < 1) return `an empty ${h}x${w} map`;
    if (ws <= 1 || this.padToWindow) return null;
    if (this.hHeads > 0 && (h % ws !== 0 || w % ws !== 0)) {
      return `Hi-Fi needs the ${h}x${w} map divisible by the window size ${ws} (pass padToWindow / padInputs: true to pad as the official detection backbone)`;
    }
    if (h < ws || w < ws) return `Lo-Fi pools ${ws}x${ws} windows and a ${h}x${w} map has none`;
    return null;
  }

  override forward(x: tf.Tensor, size?: readonly [number, number]): tf.Tensor {
    if (x.rank === 3) {
      const [b, n, c] = x.shape as [number, number, number];
      const [h, w] = size ?? squareSide(this, n);
      if (h * w !== n) throw new ShapeError(`${this.typeName}: ${n} tokens do not form the given ${h}x${w} grid`);
      return tf.tidy(() => tf.reshape(this.forward(tf.reshape(x, [b, h, w, c])), [b, n, c]));
    }
    const [b, h, w] = checkMap(this, x, this.dim);
    const problem = this.checkSize(h, w);
    if (problem) throw new ShapeError(`${this.typeName}: ${problem}`);
    return tf.tidy(() => {
      const ws = this.ws;
      const padB = this.padToWindow && ws > 1 ? (ws - (h % ws)) % ws : 0;
      const padR = this.padToWindow && ws > 1 ? (ws - (w % ws)) % ws : 0;
      const xp = padB || padR ? tf.pad(x, [[0, 0], [0, padB], [0, padR], [0, 0]]) : x;
      const parts: tf.Tensor[] = [];
      if (this.hHeads > 0) parts.push(this.hifi(xp));
      if (this.lHeads > 0) parts.push(this.lofi(xp));
      let y = parts.length === 1 ? parts[0]! : tf.concat(parts, 3);
      if (padB || padR) y = tf.slice(y, [0, 0, 0, 0], [b, h, w, this.dim]);
      return y;
    });
  }

  /** Attention inside non-overlapping ws×ws windows. */
  private hifi(x: tf.Tensor): tf.Tensor {
    const [b, h, w] = x.shape as [number, number, number, number];
    const ws = this.ws;
    const qkv = this.h_qkv!.forward(x); // per token, so it commutes with the window partition
    const win = tf.reshape(windowPartition(qkv, ws), [-1, ws * ws, 3 * this.hDim]);
    const [q, k, v] = tf.split(win, 3, 2).map((t) => splitHeads(t, this.hHeads)) as [tf.Tensor, tf.Tensor, tf.Tensor];
    const o = mergeHeads(scaledDotProductAttention(q, k, v, { scale: this.scale }));
    const y = windowReverse(tf.reshape(o, [-1, ws, ws, this.hDim]), ws, h, w);
    return this.h_proj!.forward(tf.reshape(y, [b, h, w, this.hDim]));
  }

  /** Queries from every token, keys/values from the ws×ws average pools (all tokens when ws ≤ 1). */
  private lofi(x: tf.Tensor): tf.Tensor {
    const [b, h, w, c] = x.shape as [number, number, number, number];
    const q = splitHeads(tf.reshape(this.l_q!.forward(x), [b, h * w, this.lDim]), this.lHeads);
    // AvgPool2d(ws, ws) floors: a map not divisible by ws drops its last rows/columns here.
    const src = this.ws > 1 ? avgPool2d(x, this.ws, { stride: this.ws }) : x;
    const m = src.shape[1]! * src.shape[2]!;
    const kv = tf.reshape(this.l_kv!.forward(tf.reshape(src, [b, m, c])), [b, m, 2 * this.lDim]);
    const [k, v] = tf.split(kv, 2, 2).map((t) => splitHeads(t, this.lHeads)) as [tf.Tensor, tf.Tensor];
    const o = mergeHeads(scaledDotProductAttention(q, k, v, { scale: this.scale }));
    return this.l_proj!.forward(tf.reshape(o, [b, h, w, this.lDim]));
  }
}

function squareSide(m: Module, n: number): [number, number] {
  const s = Math.floor(Math.sqrt(n));
  if (s * s !== n) throw new ShapeError(`${m.typeName}: ${n} tokens are not a square grid; pass the grid size [H, W] or an NHWC map`);
  return [s, s];
}

// ---------------------------------------------------------------------------------------------
// ConvFFN
// ---------------------------------------------------------------------------------------------

/** The official `DWConv`: a depthwise 3×3 conv (padding 1, bias) on the map; child `dwconv`. */
export class DWConv extends Module {
  readonly dwconv: Conv2d;
  constructor(readonly dim = 768) {
    super();
    positiveInt('DWConv dim', dim);
    this.dwconv = this.register('dwconv', new Conv2d(dim, dim, 3, { padding: 1, groups: dim }));
  }
  override forward(x: tf.Tensor): tf.Tensor {
    checkMap(this, x, this.dim);
    return this.dwconv.forward(x);
  }
}

export interface DWMlpOptions {
  hiddenFeatures?: number;
  outFeatures?: number;
  actLayer?: ActFactory;
  drop?: number;
}

/**
 * ConvFFN (the official `DWMlp`): fc1 → depthwise 3×3 → act → drop → fc2 → drop, on NHWC maps.
 * Children `fc1`, `dwconv.dwconv`, `act`, `fc2`, `drop`. Initialised as the official module:
 * trunc-normal(0.02) Linear weights, N(0, 2/fan_out) depthwise weight, zero biases.
 */
export class DWMlp extends Module {
  readonly fc1: Linear;
  readonly dwconv: DWConv;
  readonly act: Module;
  readonly fc2: Linear;
  readonly drop: Dropout;
  readonly hiddenFeatures: number;

  constructor(
    readonly inFeatures: number,
    options: DWMlpOptions = {},
  ) {
    super();
    const hidden = options.hiddenFeatures || inFeatures;
    const out = options.outFeatures || inFeatures;
    positiveInt('DWMlp hiddenFeatures', hidden);
    this.hiddenFeatures = hidden;
    this.fc1 = this.register('fc1', new Linear(inFeatures, hidden));
    this.dwconv = this.register('dwconv', new DWConv(hidden));
    this.act = this.register('act', (options.actLayer ?? defaultAct)());
    this.fc2 = this.register('fc2', new Linear(hidden, out));
    this.drop = this.register('drop', new Dropout(options.drop ?? 0));
    initLinear(this.fc1);
    initLinear(this.fc2);
    // fan_out = k·k·out / groups = 9.
    const dw = this.dwconv.dwconv;
    assignInit(dw.weight, normal(dw.weight.shape, { std: Math.sqrt(2 / 9) }));
    assignInit(dw.bias!, zeros(dw.bias!.shape));
  }

  override forward(x: tf.Tensor): tf.Tensor {
    checkMap(this, x, this.inFeatures);
    return tf.tidy(() => {
      const h = this.drop.forward(this.act.forward(this.dwconv.forward(this.fc1.forward(x))));
      return this.drop.forward(this.fc2.forward(h));
    });
  }
}

/** The paper's name for the official `DWMlp`. */
export { DWMlp as ConvFFN };

// ---------------------------------------------------------------------------------------------
// Blocks
// ---------------------------------------------------------------------------------------------

export interface ConvFFNBlockOptions {
  mlpRatio?: number;
  drop?: number;
  dropPath?: number;
  actLayer?: ActFactory;
  normLayer?: NormFactory;
  /** Replaces the ConvFFN (NHWC in/out). Default: `DWMlp(dim, int(dim·mlpRatio))`. */
  mlpLayer?: MixerFactory;
}

export function mlpHidden(dim: number, ratio: number): number {
  // Python's int(dim * mlp_ratio).
  const h = Math.trunc(dim * ratio);
  if (!(h > 0)) throw new ConfigError(`mlp hidden width int(${dim}·${ratio}) = ${h} must be positive`);
  return h;
}

/**
 * The ConvFFN half both LITv2 blocks end with, registered on `block` in the official order:
 * `drop_path`, `norm2`, `mlp` (default `DWMlp(dim, int(dim·mlpRatio))`).
 */
function registerConvFFN(block: Module, dim: number, options: ConvFFNBlockOptions): { dropPath: Module; norm2: Module; mlp: Module } {
  const { mlpRatio = 4, drop = 0, dropPath = 0 } = options;
  return {
    dropPath: block.register('drop_path', dropPath > 0 ? new DropPath(dropPath) : new Identity()),
    norm2: block.register('norm2', (options.normLayer ?? defaultNorm)(dim)),
    mlp: block.register(
      'mlp',
      options.mlpLayer ? options.mlpLayer(dim) : new DWMlp(dim, { hiddenFeatures: mlpHidden(dim, mlpRatio), actLayer: options.actLayer, drop }),
    ),
  };
}

/** Early-stage block without attention: `x + drop_path(mlp(norm2(x)))`. Children `norm2`, `mlp`. */
export class ConvFFNBlock extends Module {
  readonly norm2: Module;
  readonly mlp: Module;
  readonly dropPath: Module;

  constructor(
    readonly dim: number,
    options: ConvFFNBlockOptions = {},
  ) {
    super();
    positiveInt('ConvFFNBlock dim', dim);
    ({ dropPath: this.dropPath, norm2: this.norm2, mlp: this.mlp } = registerConvFFN(this, dim, options));
  }

  override forward(x: tf.Tensor): tf.Tensor {
    checkMap(this, x, this.dim);
    return tf.tidy(() => tf.add(x, this.dropPath.forward(this.mlp.forward(this.norm2.forward(x)))));
  }
}

export interface BlockOptions extends ConvFFNBlockOptions, Omit<HiLoOptions, 'windowSize'> {
  /** HiLo window size (official `local_ws`). Default 1 (official Block default; LITv2 stage 3 uses 2). */
  localWs?: number;
  attnDrop?: number;
  /** Replaces HiLo (NHWC in/out). */
  attnLayer?: MixerFactory;
}

/**
 * The LITv2 transformer block: `x + drop_path(attn(norm1(x)))` then `x + drop_path(mlp(norm2(x)))`
 * with HiLo attention and the ConvFFN. Children `norm1`, `attn`, `norm2`, `mlp`. Defaults are the
 * official `Block`'s (qkv_bias False, local_ws 1, alpha 0.5).
 */
export class Block extends Module {
  readonly norm1: Module;
  readonly attn: Module;
  readonly norm2: Module;
  readonly mlp: Module;
  readonly dropPath: Module;

  constructor(
    readonly dim: number,
    options: BlockOptions = {},
  ) {
    super();
    positiveInt('Block dim', dim);
    this.norm1 = this.register('norm1', (options.normLayer ?? defaultNorm)(dim));
    // Porting note: the official HiLo accepts attn_drop/proj_drop and applies neither.
    this.attn = this.register(
      'attn',
      options.attnLayer
        ? options.attnLayer(dim)
        : new HiLo(dim, {
            numHeads: options.numHeads,
            qkvBias: options.qkvBias ?? false,
            qkScale: options.qkScale,
            windowSize: options.localWs ?? 1,
            alpha: options.alpha,
            padToWindow: options.padToWindow,
          }),
    );
    ({ dropPath: this.dropPath, norm2: this.norm2, mlp: this.mlp } = registerConvFFN(this, dim, options));
  }

  override forward(x: tf.Tensor): tf.Tensor {
    checkMap(this, x, this.dim);
    return tf.tidy(() => {
      const y = tf.add(x, this.dropPath.forward(this.attn.forward(this.norm1.forward(x))));
      return tf.add(y, this.dropPath.forward(this.mlp.forward(this.norm2.forward(y))));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Deformable convolution modules and DTM
// ---------------------------------------------------------------------------------------------

/** `'dcnv1'`: official DTM (DeformConv2dPack, no mask). `'dcnv2'`: the seed's separate offset and mask convs, mask used raw. */
export type DTMKind = 'dcnv1' | 'dcnv2';

export interface DTMOptions {
  /** Output channels. Default 2·dim. */
  outDim?: number;
  kind?: DTMKind;
  /** Default BatchNorm2d (key `norm_layer`). */
  normLayer?: NormFactory;
  /** Default exact GELU (`act_layer`). */
  actLayer?: ActFactory;
  /** Accept odd maps and floor them (the official detection backbone). Default false: the classifier asserts even sizes. */
  allowOdd?: boolean;
}

/**
 * Deformable token merging: a 2×2 stride-2 deformable convolution → BatchNorm2d → GELU, on NHWC
 * maps (halves H and W). `kind: 'dcnv1'` is the official DTM (children `dconv` =
 * {@link DeformConv2dPack} with `dconv.conv_offset`, `norm_layer`); `'dcnv2'` the seed's modulated
 * variant (children `offset` (8 ch) and `mask` (4 ch) convs, `dconv` = {@link DeformConv2d},
 * `norm_layer`; the mask multiplies the samples as it comes out of its conv, without a sigmoid).
 */
export class DTM extends Module {
  readonly kind: DTMKind;
  readonly outDim: number;
  readonly dconv: DeformConv2d;
  readonly offset: Conv2d | null = null;
  readonly mask: Conv2d | null = null;
  readonly norm_layer: Module;
  readonly act_layer: Module;
  readonly allowOdd: boolean;

  constructor(
    readonly dim: number,
    options: DTMOptions = {},
  ) {
    super();
    positiveInt('DTM dim', dim);
    this.kind = options.kind ?? 'dcnv1';
    if (this.kind !== 'dcnv1' && this.kind !== 'dcnv2') throw new ConfigError(`DTM kind must be 'dcnv1' or 'dcnv2', got '${String(this.kind)}'`);
    this.outDim = options.outDim ?? dim * 2;
    positiveInt('DTM outDim', this.outDim);
    this.allowOdd = options.allowOdd ?? false;
    if (this.kind === 'dcnv1') {
      this.dconv = this.register('dconv', new DeformConv2dPack(dim, this.outDim, 2, { stride: 2, padding: 0 }));
    } else {
      this.offset = this.register('offset', new Conv2d(dim, 8, 2, { stride: 2 }));
      this.mask = this.register('mask', new Conv2d(dim, 4, 2, { stride: 2 }));
      this.dconv = this.register('dconv', new DeformConv2d(dim, this.outDim, 2, { stride: 2, padding: 0 }));
    }
    this.norm_layer = this.register('norm_layer', (options.normLayer ?? ((d: number) => new BatchNorm2d(d)))(this.outDim));
    this.act_layer = this.register('act_layer', (options.actLayer ?? defaultAct)());
  }

  /** Output size for an h×w map. */
  outputSize(h: number, w: number): [number, number] {
    return this.dconv.outputSize(h, w);
  }

  /** Whether an h×w map is accepted (and why not). */
  checkSize(h: number, w: number): string | null {
    if (h < 2 || w < 2) return `a ${h}x${w} map is too small for the 2x2 stride-2 merge`;
    if (!this.allowOdd && (h % 2 !== 0 || w % 2 !== 0)) return `x size (${h}*${w}) are not even (pass padInputs: true to floor odd maps as the official detection backbone)`;
    return null;
  }

  /** The sampling offsets `[B, H/2, W/2, 8]` (channel 2k = dy, 2k+1 = dx for tap k = i·2 + j). */
  offsets(x: tf.Tensor): tf.Tensor {
    return this.kind === 'dcnv1' ? (this.dconv as DeformConv2dPack).offsets(x) : this.offset!.forward(x);
  }

  override forward(x: tf.Tensor): tf.Tensor {
    const [, h, w] = checkMap(this, x, this.dim);
    const problem = this.checkSize(h, w);
    if (problem) throw new ShapeError(`${this.typeName}: ${problem}`);
    return tf.tidy(() => {
      const y = this.kind === 'dcnv1' ? this.dconv.forward(x) : this.dconv.forward(x, this.offset!.forward(x), this.mask!.forward(x));
      return this.act_layer.forward(this.norm_layer.forward(y));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Patch embedding and stages
// ---------------------------------------------------------------------------------------------

export interface LITPatchEmbedOptions extends Omit<PatchEmbedOptions, 'flatten' | 'strictImgSize'> {
  /**
   * How a size not divisible by the patch is handled: `'floor'` (the official classifier's
   * stride-p conv drops the remainder) or `'pad'` (the detection backbone pads right/bottom).
   */
  remainder?: 'floor' | 'pad';
}

/**
 * LITv2's patch embedding: core's `PatchEmbed` (a k = s = patch conv `proj`, optional `norm`)
 * returning an NHWC map, with the official remainder rules instead of a divisibility error.
 */
export class LITv2PatchEmbed extends CorePatchEmbed {
  readonly remainder: 'floor' | 'pad';
  constructor(options: LITPatchEmbedOptions) {
    super({ ...options, flatten: false });
    this.remainder = options.remainder ?? 'floor';
  }

  override outputSize(h: number, w: number): [number, number] {
    const [ph, pw] = this.patchSize;
    return this.remainder === 'pad' ? [Math.ceil(h / ph), Math.ceil(w / pw)] : [Math.floor(h / ph), Math.floor(w / pw)];
  }

  override forward(x: tf.Tensor): tf.Tensor {
    if (x.rank !== 4 || x.shape[3] !== this.inChans) {
      throw new ShapeError(`${this.typeName} expected NHWC input [B, H, W, ${this.inChans}], got shape [${x.shape.join(', ')}]`);
    }
    const [, h, w] = x.shape as [number, number, number, number];
    const [ph, pw] = this.patchSize;
    const [gh, gw] = this.outputSize(h, w);
    if (gh < 1 || gw < 1) throw new ShapeError(`${this.typeName}: a ${h}x${w} input is smaller than one ${ph}x${pw} patch`);
    return tf.tidy(() => {
      let xi = x;
      if (this.remainder === 'pad' && (h % ph !== 0 || w % pw !== 0)) {
        xi = tf.pad(x, [[0, 0], [0, gh * ph - h], [0, gw * pw - w], [0, 0]]);
      }
      // 'floor': the stride-p conv itself ignores the remainder rows/columns.
      const y = this.proj.forward(xi);
      return this.norm ? this.norm.forward(y) : y;
    });
  }
}

export interface LITLayerOptions extends TransformerBlockOptions {
  depth: number;
  /** One rate for all blocks or one per block. */
  dropPath?: number | number[];
  /** Attention stage (`Block`) or ConvFFN-only stage (`ConvFFNBlock`). Default true. */
  hasMsa?: boolean;
  localWs?: number;
  alpha?: number;
  /** Merge with a DTM at the end (official: every stage but the last). Default false. */
  downsample?: boolean | ((dim: number) => Module);
  /** DTM kind when `downsample` is true. */
  dtm?: DTMKind;
  /** Detection-backbone size handling (pad HiLo windows, floor odd DTM inputs). Default false. */
  padInputs?: boolean;
}

/**
 * One LITv2 stage: `blocks.{j}` (HiLo `Block`s or `ConvFFNBlock`s) then an optional `downsample`
 * (DTM). NHWC in and out.
 */
export class LITLayer extends Module {
  readonly blocks: ModuleList;
  readonly downsample: Module | null;
  readonly hasMsa: boolean;

  constructor(
    readonly dim: number,
    options: LITLayerOptions,
  ) {
    super();
    positiveInt('LITLayer dim', dim);
    const depth = options.depth;
    if (!Number.isInteger(depth) || depth < 0) throw new ConfigError(`LITLayer depth must be a non-negative integer, got ${depth}`);
    this.hasMsa = options.hasMsa ?? true;
    const rates = Array.isArray(options.dropPath) ? options.dropPath : Array<number>(depth).fill(options.dropPath ?? 0);
    if (rates.length < depth) throw new ConfigError(`LITLayer: ${depth} blocks but ${rates.length} drop-path rates`);
    this.blocks = this.register('blocks', new ModuleList());
    for (let j = 0; j < depth; j++) {
      const common = { mlpRatio: options.mlpRatio ?? 4, drop: options.drop ?? 0, dropPath: rates[j]!, normLayer: options.normLayer, actLayer: options.actLayer };
      this.blocks.append(
        this.hasMsa
          ? new Block(dim, {
              ...common,
              numHeads: options.numHeads,
              qkvBias: options.qkvBias ?? true,
              qkScale: options.qkScale,
              attnDrop: options.attnDrop,
              localWs: options.localWs ?? 1,
              alpha: options.alpha ?? 0.5,
              padToWindow: options.padInputs,
            })
          : new ConvFFNBlock(dim, common),
      );
    }
    const ds = options.downsample ?? false;
    const make = typeof ds === 'function' ? ds : ds ? (d: number) => new DTM(d, { kind: options.dtm, allowOdd: options.padInputs }) : null;
    this.downsample = make ? this.register('downsample', make(dim)) : null;
  }

  /** The blocks' output (before the downsample) and the stage output. */
  forwardBoth(x: tf.Tensor): { pre: tf.Tensor; out: tf.Tensor } {
    return tf.tidy(() => {
      let y = x;
      for (const b of this.blocks) y = b.forward(y) as tf.Tensor;
      return { pre: y, out: this.downsample ? (this.downsample.forward(y) as tf.Tensor) : y };
    });
  }

  override forward(x: tf.Tensor): tf.Tensor {
    checkMap(this, x, this.dim);
    return tf.tidy(() => {
      let y = x;
      for (const b of this.blocks) y = b.forward(y) as tf.Tensor;
      return this.downsample ? (this.downsample.forward(y) as tf.Tensor) : y;
    });
  }
}
