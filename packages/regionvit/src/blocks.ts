/**
 * RegionViT building blocks (IBM/RegionViT `regionvit/regionvit.py`, `regionvit/attention/*.py`):
 * the three patch embeddings, attention with a relative-position bias on local-local pairs,
 * the regional-to-local block, the shared regional/local projection, the flatten/spatial layout
 * conversions (with the padding-and-mask path for inputs that are not a multiple of the region
 * size) and a whole stage. Every block takes its parts (attention, MLP, norm, activation) as
 * factories so that users can compose them into new backbones.
 *
 * Layouts: maps are NHWC; the "flatten" layout is `[B·nW, 1 + ws², C]`: for every window (windows
 * row-major over the regional grid, batch-major) its regional token then its ws×ws local tokens
 * row-major, exactly the official `F.unfold` order.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  attentionHeads,
  checkMap,
  checkTokens,
  ConfigError,
  Conv2d,
  Dropout,
  DropPath,
  geluLayer,
  Identity,
  layerNorm,
  LayerNorm2d,
  Linear,
  mergeHeads,
  Module,
  ModuleList,
  positiveInt,
  Sequential,
  ShapeError,
  splitHeads,
  timmMlp,
  type ActFactory,
  type MlpFactory,
  type NormFactory,
  type TransformerBlockOptions,
} from '@vit/core';

/** A large negative logit for masked pairs (see the Porting note where it is used). */
const MASK_FILL = Math.fround(-3.4e38);

/**
 * The official `LayerNorm2d` (attention2d.py): per pixel, mean and biased variance over channels,
 * eps 1e-5, weight and bias stored `[1, C, 1, 1]`. Core's `LayerNorm2d` computes exactly this on
 * NHWC maps; only the eps and the stored shape are RegionViT's.
 */
export function regionLayerNorm2d(channels: number, eps = 1e-5): LayerNorm2d {
  return new LayerNorm2d(channels, { eps, paramShape: [1, channels, 1, 1] });
}

// ---------------------------------------------------------------------------------------------
// Patch embedding
// ---------------------------------------------------------------------------------------------

/** The official `patch_conv_type`: '3conv' (three 3×3 convs, patch 4 only), '1conv' (k 2p, s p, pad p−1), 'linear' (k = s = p). */
export type PatchConvType = '3conv' | '1conv' | 'linear';

export interface RegionViTPatchEmbedOptions {
  patchSize: number;
  inChans?: number;
  embedDim: number;
  patchConvType?: PatchConvType;
  /** Norm of the '3conv' stem (default the official LayerNorm2d, eps 1e-5). */
  normLayer2d?: (channels: number) => Module;
  /** Activation of the '3conv' stem (default exact GELU). */
  actLayer?: ActFactory;
}

/**
 * The official RegionViT `PatchEmbed`, used twice: `patch_embed` (local tokens, any conv type) and
 * `cls_token` (regional tokens, 'linear' with patch = patch_size · kernel_sizes[0], called with
 * `extraPadding`). The child is `proj` (a Conv2d, or for '3conv' a Sequential `proj.0 … proj.6`).
 *
 * Porting note: core's `PatchEmbed` is timm's k = s = patch conv that refuses non-divisible inputs;
 * this one has the official three forms and the official extra padding, so it lives here.
 */
export class RegionViTPatchEmbed extends Module {
  readonly proj: Module;
  readonly patchSize: number;
  readonly inChans: number;
  readonly embedDim: number;
  readonly patchConvType: PatchConvType;
  /** The convolutions in order with their stride/padding, for output-size arithmetic. */
  private readonly convs: Conv2d[];

  constructor(options: RegionViTPatchEmbedOptions) {
    super();
    const { patchSize, embedDim, inChans = 3, patchConvType = 'linear' } = options;
    positiveInt('PatchEmbed patchSize', patchSize);
    positiveInt('PatchEmbed embedDim', embedDim);
    positiveInt('PatchEmbed inChans', inChans);
    this.patchSize = patchSize;
    this.inChans = inChans;
    this.embedDim = embedDim;
    this.patchConvType = patchConvType;
    if (patchConvType === '3conv') {
      if (patchSize !== 4) throw new ConfigError(`PatchEmbed '3conv' only exists for patch size 4 (official: "Unknown patch size ${patchSize}")`);
      const norm = options.normLayer2d ?? ((c: number) => regionLayerNorm2d(c));
      const act = options.actLayer ?? geluLayer;
      const c4 = Math.floor(embedDim / 4);
      const c2 = Math.floor(embedDim / 2);
      if (c4 <= 0) throw new ConfigError(`PatchEmbed '3conv' needs embedDim >= 4 (it has embedDim // 4 channels first), got ${embedDim}`);
      const conv0 = new Conv2d(inChans, c4, 3, { stride: 2, padding: 1 });
      const conv3 = new Conv2d(c4, c2, 3, { stride: 2, padding: 1 });
      const conv6 = new Conv2d(c2, embedDim, 3, { stride: 1, padding: 1 });
      this.proj = this.register('proj', new Sequential(conv0, norm(c4), act(), conv3, norm(c2), act(), conv6));
      this.convs = [conv0, conv3, conv6];
    } else if (patchConvType === '1conv') {
      const conv = new Conv2d(inChans, embedDim, 2 * patchSize, { stride: patchSize, padding: patchSize - 1 });
      this.proj = this.register('proj', conv);
      this.convs = [conv];
    } else if (patchConvType === 'linear') {
      const conv = new Conv2d(inChans, embedDim, patchSize, { stride: patchSize });
      this.proj = this.register('proj', conv);
      this.convs = [conv];
    } else {
      throw new ConfigError(`PatchEmbed patchConvType must be '3conv', '1conv' or 'linear', got '${String(patchConvType)}'`);
    }
  }

  /**
   * The official `extra_padding`: when either side is not a multiple of the patch, the image is
   * zero-padded SYMMETRICALLY (left/top = floor) by `p − (n mod p)` on BOTH axes, so an axis that
   * was already a multiple gains a whole extra patch (official behaviour, reproduced).
   */
  extraPadding(h: number, w: number): [[number, number], [number, number]] {
    const p = this.patchSize;
    if (h % p === 0 && w % p === 0) return [[0, 0], [0, 0]];
    const ph = p - (h % p);
    const pw = p - (w % p);
    return [
      [Math.floor(ph / 2), ph - Math.floor(ph / 2)],
      [Math.floor(pw / 2), pw - Math.floor(pw / 2)],
    ];
  }

  /** Output grid for an h×w input (PyTorch's floor rule through every conv). */
  outputSize(h: number, w: number, extraPadding = false): [number, number] {
    let [oh, ow] = [h, w];
    if (extraPadding) {
      const [[t, b], [l, r]] = this.extraPadding(h, w);
      oh += t + b;
      ow += l + r;
    }
    for (const c of this.convs) [oh, ow] = c.outputSize(oh, ow);
    return [oh, ow];
  }

  override forward(x: tf.Tensor, extraPadding = false): tf.Tensor4D {
    const [, h, w] = checkMap(this.typeName, x, this.inChans);
    return tf.tidy(() => {
      let y = x as tf.Tensor4D;
      if (extraPadding) {
        const [ph, pw] = this.extraPadding(h, w);
        if (ph[0] + ph[1] + pw[0] + pw[1] > 0) y = tf.pad(y, [[0, 0], ph, pw, [0, 0]]);
      }
      return this.proj.forward(y) as tf.Tensor4D;
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Attention with relative position
// ---------------------------------------------------------------------------------------------

/** Python's `a % n` (non-negative for n > 0): what a negative index wraps to. */
function pyMod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

/**
 * The official `rel_pos_index` for a ws×ws window, flattened over (y, x, dy, dx): entry
 * `tmp[dy − y + ws//2, dx − x + ws//2]` of a (2ws−1)×(2ws−1) arange, with PYTHON negative-index
 * wrap-around (the offset is ws//2, not ws−1, so for ws ≥ 3 some differences index from the end).
 * Query (y, x) is row y·ws + x of the bias, key (dy, dx) column dy·ws + dx.
 */
export function relPosIndex(ws: number): Int32Array {
  positiveInt('relPosIndex window size', ws);
  const r = 2 * ws - 1;
  const o = Math.floor(ws / 2);
  const out = new Int32Array(ws ** 4);
  let i = 0;
  for (let y = 0; y < ws; y++)
    for (let x = 0; x < ws; x++)
      for (let dy = 0; dy < ws; dy++) for (let dx = 0; dx < ws; dx++) out[i++] = pyMod(dy - y + o, r) * r + pyMod(dx - x + o, r);
  return out;
}

export interface RelPosAttentionOptions {
  numHeads?: number;
  qkvBias?: boolean;
  /** Overrides the `head_dim ** -0.5` logit scale; `null`/`undefined`/0 keep it (Python's `qk_scale or …`). */
  qkScale?: number | null;
  attnDrop?: number;
  projDrop?: number;
  /** Window side ws: adds `rel_pos` `[heads, (2ws−1)²]`. `null`: no relative position (no key). */
  windowSize?: number | null;
  /** Leading tokens without relative position (the regional token). */
  numClsTokens?: number;
}

/** Per-call arguments of an R2L attention module. */
export interface RegionAttentionCall {
  /** Add the relative-position bias to the local-local block (the window attention). */
  patchAttn?: boolean;
  /**
   * Window mask `[nW, N, N]` (1 = attend) shared by every image of the batch, or null. Masked logits
   * are REPLACED by float32's lowest value after the bias, so fully masked rows become uniform.
   */
  mask?: tf.Tensor | null;
}

/** An attention module the R2L block can use: `forward(x [B, N, C], call) → [B, N, C]`. */
export interface RegionAttentionModule extends Module {
  forward(x: tf.Tensor, call?: RegionAttentionCall): tf.Tensor;
}

/** Builds the attention of an R2L block: `(dim, options) → RegionAttentionModule`. */
export type RegionAttentionFactory = (dim: number, options: RelPosAttentionOptions) => RegionAttentionModule;

/**
 * The official `AttentionWithRelPos`: multi-head attention whose logits get a learned bias per
 * relative offset on the local-local pairs of a window (not on the regional token's row/column),
 * added BEFORE the mask. Children `qkv`, `attn_drop`, `proj`, `proj_drop`; parameter `rel_pos`.
 *
 * Porting note: core's `scaledDotProductAttention` adds a bias over the whole logit matrix and masks
 * with `tf.where` on a mask broadcast to the full logits. Here the bias covers only the local-local
 * block, and the mask is applied as `logits·keep + (1 − keep)·float32_min` (bit-identical to
 * `masked_fill` for finite logits, and like it passes no gradient to masked logits) on a flat view,
 * so that one `[nW, N, N]` mask serves the whole batch without being tiled over it.
 * The bias table is expanded with two one-hot matmuls (rows and columns of the (2ws−1)² table) rather
 * than `tf.gather`: the same values, but its gradient is a matmul instead of an UnsortedSegmentSum.
 */
export class AttentionWithRelPos extends Module implements RegionAttentionModule {
  readonly numHeads: number;
  readonly headDim: number;
  readonly scale: number;
  readonly windowSize: number | null;
  readonly numClsTokens: number;
  readonly qkv: Linear;
  readonly attn_drop: Dropout;
  readonly proj: Linear;
  readonly proj_drop: Dropout;
  readonly rel_pos: tf.Variable | null;
  /** One-hot selectors: rows `[ws², R]` ((y, dy) → table row) and columns `[R, ws²]` (table column → (x, dx)). */
  private readonly rowSelect: Float32Array | null = null;
  private readonly colSelect: Float32Array | null = null;

  constructor(
    readonly dim: number,
    options: RelPosAttentionOptions = {},
  ) {
    super();
    const { numHeads = 8, qkvBias = false, qkScale = null, attnDrop = 0, projDrop = 0, windowSize = null, numClsTokens = 1 } = options;
    this.numHeads = numHeads;
    ({ headDim: this.headDim, scale: this.scale } = attentionHeads('AttentionWithRelPos', dim, numHeads, qkScale));
    this.numClsTokens = numClsTokens;
    this.windowSize = windowSize;
    // Official registration order: rel_pos is a direct parameter, listed before the children.
    if (windowSize !== null) {
      positiveInt('AttentionWithRelPos windowSize', windowSize);
      const r = 2 * windowSize - 1;
      this.rel_pos = this.addParameter('rel_pos', truncNormal02([numHeads, r * r]));
      const ws = windowSize;
      const o = Math.floor(ws / 2);
      this.rowSelect = new Float32Array(ws * ws * r);
      this.colSelect = new Float32Array(r * ws * ws);
      for (let y = 0; y < ws; y++) {
        for (let d = 0; d < ws; d++) {
          const t = pyMod(d - y + o, r);
          this.rowSelect[(y * ws + d) * r + t] = 1;
          this.colSelect[t * ws * ws + y * ws + d] = 1;
        }
      }
    } else {
      this.rel_pos = null;
    }
    this.qkv = this.register('qkv', new Linear(dim, dim * 3, { bias: qkvBias }));
    this.attn_drop = this.register('attn_drop', new Dropout(attnDrop));
    this.proj = this.register('proj', new Linear(dim, dim));
    this.proj_drop = this.register('proj_drop', new Dropout(projDrop));
  }

  /**
   * The bias `[heads, ws², ws²]` the official `rel_pos[:, rel_pos_index].reshape(heads, ws², ws²)`
   * gives: `bias[h, (y,x), (dy,dx)] = T[h, a(y,dy), b(x,dx)]` with T the table viewed (2ws−1)²,
   * computed as rows·T·columns (separable, so two small matmuls; every tensor ≤ 5-D).
   */
  relPosBias(): tf.Tensor3D {
    if (!this.rel_pos || this.windowSize === null) throw new ConfigError('relPosBias: this attention has no relative-position table (windowSize null)');
    const ws = this.windowSize;
    const r = 2 * ws - 1;
    const h = this.numHeads;
    const rows = this.rowSelect!;
    const cols = this.colSelect!;
    const table = this.rel_pos;
    return tf.tidy(() => {
      const a = tf.tensor2d(rows, [ws * ws, r]);
      const b = tf.tensor2d(cols, [r, ws * ws]);
      // u[h, ta, (x, dx)] = T[h, ta, b(x, dx)]
      const u = tf.matMul(tf.reshape(table, [h * r, r]), b);
      const ut = tf.reshape(tf.transpose(tf.reshape(u, [h, r, ws * ws]), [1, 0, 2]), [r, h * ws * ws]);
      // v[(y, dy), (h, x, dx)] = T[h, a(y, dy), b(x, dx)]
      const v = tf.matMul(a, ut);
      const v5 = tf.reshape(v, [ws, ws, h, ws, ws]);
      return tf.reshape(tf.transpose(v5, [2, 0, 3, 1, 4]), [h, ws * ws, ws * ws]) as tf.Tensor3D;
    });
  }

  /** The attention weights `[B, heads, N, N]` (after softmax, before dropout). */
  attentionWeights(x: tf.Tensor, call: RegionAttentionCall = {}): tf.Tensor4D {
    checkTokens(this.typeName, x, this.dim);
    return tf.tidy(() => this.weightsAndValues(x, call).attn) as tf.Tensor4D;
  }

  private weightsAndValues(x: tf.Tensor, call: RegionAttentionCall): { attn: tf.Tensor; v: tf.Tensor } {
    const [bn, n] = x.shape as [number, number, number];
    const h = this.numHeads;
    // qkv output channels are laid out (3, heads, head_dim): q, then k, then v.
    const [q, k, v] = tf.split(this.qkv.forward(x), 3, 2).map((t) => splitHeads(t, h));
    // Porting note: the official code scales q·kᵀ; scaling q first (as core's attention does) is the
    // same product up to float rounding (~1e-7) and touches d instead of N values per query.
    let logits = tf.matMul(tf.mul(q!, this.scale), k!, false, true);
    if (this.rel_pos && call.patchAttn) {
      const ws = this.windowSize!;
      const c = this.numClsTokens;
      if (n - c !== ws * ws) {
        throw new ShapeError(`AttentionWithRelPos: a window of ${n - c} local tokens does not match the ${ws}x${ws} relative-position table`);
      }
      const bias = tf.pad(this.relPosBias(), [
        [0, 0],
        [c, 0],
        [c, 0],
      ]);
      logits = tf.add(logits, bias);
    }
    if (call.mask) {
      const m = call.mask;
      const nw = m.shape[0]!;
      if (m.rank !== 3 || m.shape[1] !== n || m.shape[2] !== n || bn % nw !== 0) {
        throw new ShapeError(`AttentionWithRelPos: mask [${m.shape.join(', ')}] does not fit ${bn} windows of ${n} tokens`);
      }
      // One image's [nW, heads, N, N] mask against the logits viewed [B, nW·heads·N·N]: the batch is
      // a leading broadcast (the backends' fast path), the mask is never tiled over the batch.
      const keep = tf.reshape(tf.tile(tf.reshape(m, [nw, 1, n, n]), [1, h, 1, 1]), [nw * h * n * n]);
      // Porting note: the official masked_fill uses float32's lowest value; tfjs-backend-webgpu's
      // softmax returns NaN for a row made only of that value (cpu gives the uniform row). -3.4e38 gives
      // the same probabilities on every backend, fully masked rows included.
      const fill = tf.mul(tf.sub(1, keep), MASK_FILL);
      const flat = tf.reshape(logits, [bn / nw, nw * h * n * n]);
      logits = tf.reshape(tf.add(tf.mul(flat, keep), fill), [bn, h, n, n]);
    }
    return { attn: tf.softmax(logits), v: v! };
  }

  override forward(x: tf.Tensor, call: RegionAttentionCall = {}): tf.Tensor3D {
    checkTokens(this.typeName, x, this.dim);
    return tf.tidy(() => {
      const { attn, v } = this.weightsAndValues(x, call);
      const out = mergeHeads(tf.matMul(this.attn_drop.forward(attn), v));
      return this.proj_drop.forward(this.proj.forward(out)) as tf.Tensor3D;
    });
  }
}

/** The official attention: `AttentionWithRelPos`. */
export const relPosAttention: RegionAttentionFactory = (dim, options) => new AttentionWithRelPos(dim, options);

/** timm's `trunc_normal_(std=.02)`: bounds ±2 absolute, i.e. ±100 std, so it is N(0, 0.02²). */
export function truncNormal02(shape: number[]): tf.Tensor {
  return tf.tidy(() => tf.clipByValue(tf.randomNormal(shape, 0, 0.02), -2, 2));
}

// ---------------------------------------------------------------------------------------------
// The regional-to-local block
// ---------------------------------------------------------------------------------------------

export interface R2LBlockOptions extends TransformerBlockOptions {
  /** Window side ws (the official `kernel_size`). */
  windowSize: number;
  numHeads: number;
  /** Hidden width = int(outputChannels · mlpRatio). Official default 1. */
  mlpRatio?: number;
  /** Token norm; official default `nn.LayerNorm` (eps 1e-5); the model passes its `norm_layer`. */
  normLayer?: NormFactory;
  dropPath?: number;
  /** Regional self-attention first (`norm0`); the model always sets it. */
  clsAttn?: boolean;
  /** Attention factory (default {@link relPosAttention}). */
  attnLayer?: RegionAttentionFactory;
  /** MLP factory (default {@link timmMlp}). */
  mlpLayer?: MlpFactory;
  /** Output width; when it differs from the input, `expand` (norm → act → Linear) maps the residual. */
  outputChannels?: number;
}

/** Context the stage passes to each R2L block with the flattened tokens. */
export interface R2LCall {
  /** Images in the batch (the flattened tensor has `batch · nW` rows). */
  batch: number;
  /** Per-image window mask `[nW, N, N]`, or null when nothing is padded. */
  mask?: tf.Tensor | null;
}

/** A block a stage can run on the flatten layout: `forward(tokens [B·nW, 1 + ws², C], call)`. */
export interface R2LBlockModule extends Module {
  forward(tokens: tf.Tensor, call: R2LCall): tf.Tensor;
}

/** Builds a block of a stage: `(dim, options) → R2LBlockModule`. */
export type R2LBlockFactory = (dim: number, options: R2LBlockOptions) => R2LBlockModule;

/**
 * The official `R2LAttentionPlusFFN` on the flatten layout `[B·nW, 1 + ws², C]`:
 * 1. regional self-attention over all regional tokens of each image: `r += attn(norm0(r))`
 *    (no relative position, no mask);
 * 2. per window, `t = [r_w, locals_w]`: `t += attn(norm1(t), rel_pos, mask)` with the SAME attention;
 * 3. `t = (expand(t) or t) + mlp(norm2(t))`.
 * Drop path is applied per row of the tensor it sees (per image in 1., per window in 2. and 3.).
 * Children `norm0`, `norm1`, `attn`, `drop_path`, `norm2`, `mlp`, `expand` as the official state_dict.
 */
export class R2LAttentionPlusFFN extends Module implements R2LBlockModule {
  readonly norm0: Module | null;
  readonly norm1: Module;
  readonly attn: RegionAttentionModule;
  readonly drop_path: Module;
  readonly norm2: Module;
  readonly mlp: Module;
  readonly expand: Sequential | null;
  readonly outputChannels: number;
  readonly windowSize: number;

  constructor(
    readonly inputChannels: number,
    options: R2LBlockOptions,
  ) {
    super();
    positiveInt('R2LAttentionPlusFFN inputChannels', inputChannels);
    const {
      windowSize,
      numHeads,
      mlpRatio = 1,
      qkvBias = false,
      qkScale = null,
      actLayer = geluLayer,
      normLayer = layerNorm(1e-5),
      dropPath = 0,
      attnDrop = 0,
      drop = 0,
      clsAttn = true,
      attnLayer = relPosAttention,
      mlpLayer = timmMlp,
      outputChannels = inputChannels,
    } = options;
    positiveInt('R2LAttentionPlusFFN windowSize', windowSize);
    positiveInt('R2LAttentionPlusFFN outputChannels', outputChannels);
    this.windowSize = windowSize;
    this.outputChannels = outputChannels;
    const hidden = Math.trunc(outputChannels * mlpRatio);
    if (hidden <= 0) throw new ConfigError(`R2LAttentionPlusFFN: int(outputChannels · mlpRatio) = ${hidden} must be positive (mlpRatio ${mlpRatio})`);
    this.norm0 = this.register('norm0', clsAttn ? normLayer(inputChannels) : null);
    this.norm1 = this.register('norm1', normLayer(inputChannels));
    this.attn = this.register('attn', attnLayer(inputChannels, { numHeads, qkvBias, qkScale, attnDrop, projDrop: drop, windowSize, numClsTokens: 1 }));
    this.drop_path = this.register('drop_path', dropPath > 0 ? new DropPath(dropPath) : new Identity());
    this.norm2 = this.register('norm2', normLayer(inputChannels));
    this.mlp = this.register('mlp', mlpLayer(inputChannels, { hiddenFeatures: hidden, outFeatures: outputChannels, actLayer, drop }));
    this.expand = this.register(
      'expand',
      inputChannels !== outputChannels ? new Sequential(normLayer(inputChannels), actLayer(), new Linear(inputChannels, outputChannels)) : null,
    );
  }

  override forward(tokens: tf.Tensor, call: R2LCall): tf.Tensor3D {
    const [bn, n, c] = checkTokens(this.typeName, tokens, this.inputChannels);
    const b = call.batch;
    if (!Number.isInteger(b) || b <= 0 || bn % b !== 0) {
      throw new ShapeError(`R2LAttentionPlusFFN: ${bn} windows cannot be split over a batch of ${b}`);
    }
    return tf.tidy(() => {
      let cls = tf.reshape(tf.slice(tokens, [0, 0, 0], [bn, 1, c]), [b, bn / b, c]);
      if (this.norm0) cls = tf.add(cls, this.drop_path.forward(this.attn.forward(this.norm0.forward(cls))));
      const locals = tf.slice(tokens, [0, 1, 0], [bn, n - 1, c]);
      let t = tf.concat([tf.reshape(cls, [bn, 1, c]), locals], 1);
      t = tf.add(t, this.drop_path.forward(this.attn.forward(this.norm1.forward(t), { patchAttn: true, mask: call.mask ?? null })));
      const identity = this.expand ? this.expand.forward(t) : t;
      return tf.add(identity, this.drop_path.forward(this.mlp.forward(this.norm2.forward(t)))) as tf.Tensor3D;
    });
  }
}

/** The official block: `R2LAttentionPlusFFN`. */
export const r2lBlock: R2LBlockFactory = (dim, options) => new R2LAttentionPlusFFN(dim, options);

// ---------------------------------------------------------------------------------------------
// Projection (downsampling shared by regional and local tokens)
// ---------------------------------------------------------------------------------------------

export interface ProjectionOptions {
  actLayer?: ActFactory;
  /** The official `mode`: contains 'c' → a grouped conv; with 's' too → 3×3 stride 2 pad 1, else 1×1. Default 'sc'. */
  mode?: string;
  /** Norm before the conv (default the official LayerNorm2d, eps 1e-5, params `[1, C, 1, 1]`). */
  normLayer2d?: (channels: number) => Module;
}

/**
 * The official `Projection`: LayerNorm2d → act → Conv2d with `groups = in` ('sc': 3×3, stride 2,
 * pad 1; 'c': 1×1), registered ONCE and named twice, `proj` and `proj_cls`, so the same weights
 * project the regional and the local map (the state dict has both keys; the parameters count once).
 * `Identity` when 'c' and in == out; an empty Sequential (identity, no keys) when the mode has no 'c'.
 */
export class Projection extends Module {
  readonly proj: Sequential;
  readonly proj_cls: Sequential;
  /** Spatial stride of the projection (2 for 'sc', else 1). */
  readonly stride: number;
  private readonly conv: Conv2d | null;

  constructor(
    readonly inputChannels: number,
    readonly outputChannels: number,
    options: ProjectionOptions = {},
  ) {
    super();
    positiveInt('Projection inputChannels', inputChannels);
    positiveInt('Projection outputChannels', outputChannels);
    const { actLayer = geluLayer, mode = 'sc', normLayer2d = (c: number) => regionLayerNorm2d(c) } = options;
    if (typeof mode !== 'string' || mode.length === 0) {
      throw new ConfigError(`Projection mode must be a non-empty string ('sc', 'c', …), got ${JSON.stringify(mode)}`);
    }
    const seq = new Sequential();
    let conv: Conv2d | null = null;
    this.stride = 1;
    if (mode.includes('c')) {
      const strided = mode.includes('s');
      const ks = strided ? 3 : 1;
      this.stride = strided ? 2 : 1;
      const padding = strided ? 1 : 0;
      if (inputChannels === outputChannels && ks === 1) {
        seq.append(new Identity());
      } else {
        if (outputChannels % inputChannels !== 0) {
          throw new ConfigError(`Projection: the grouped conv (groups = ${inputChannels}) needs outputChannels (${outputChannels}) to be a multiple of inputChannels`);
        }
        conv = new Conv2d(inputChannels, outputChannels, ks, { stride: this.stride, padding, groups: inputChannels });
        seq.append(normLayer2d(inputChannels));
        seq.append(actLayer());
        seq.append(conv);
      }
    } else if (inputChannels !== outputChannels) {
      throw new ConfigError(
        `Projection mode '${mode}' has no 'c' (an identity) but the channels change ${inputChannels} -> ${outputChannels}; the official model fails there`,
      );
    }
    this.conv = conv;
    this.proj = this.register('proj', seq);
    this.proj_cls = this.register('proj_cls', seq);
  }

  /** Spatial size after the projection (PyTorch's floor rule). */
  outputSize(h: number, w: number): [number, number] {
    return this.conv ? this.conv.outputSize(h, w) : [h, w];
  }

  /** `[regional, local]` NHWC maps → projected `[regional, local]`. */
  override forward(regional: tf.Tensor, local: tf.Tensor): [tf.Tensor4D, tf.Tensor4D] {
    checkMap(`${this.typeName} (regional)`, regional, this.inputChannels);
    checkMap(`${this.typeName} (local)`, local, this.inputChannels);
    return [this.proj_cls.forward(regional) as tf.Tensor4D, this.proj.forward(local) as tf.Tensor4D];
  }
}

// ---------------------------------------------------------------------------------------------
// Flatten / spatial layouts and the window mask
// ---------------------------------------------------------------------------------------------

/** Python's `range(*slice(start, stop, step).indices(len))` for step > 0. */
function pySlice(len: number, start: number | undefined, stop: number | undefined, step = 1): number[] {
  const norm = (v: number | undefined, dflt: number) => {
    if (v === undefined) return dflt;
    const u = v < 0 ? v + len : v;
    return Math.min(Math.max(u, 0), len);
  };
  const out: number[] = [];
  for (let i = norm(start, 0); i < norm(stop, len); i += step) out.push(i);
  return out;
}

/**
 * The official window mask of `convert_to_flatten_layout` for one image: `[nW, N, N]` (N = 1 + ws²,
 * nW = hS·wS windows row-major), 1 = attend. Built exactly as the official code does, Python slice
 * semantics included:
 * - windows of the right column (except the last row) get `right`: padded columns (the last pR of
 *   each row of the window) neither attend nor are attended; their rows are all zero (uniform
 *   attention after the float32-min fill);
 * - windows of the bottom row get `bottom`: only the regional token and the first ws·(ws − pB) local
 *   tokens form a fully connected block, everything else is zero;
 * - the bottom-right window gets `right` with that top-left block forced to 1 — a UNION, so its valid
 *   tokens DO attend to padded-column tokens (official behaviour; with pB = 0 it is not masked at all).
 * Throws a ShapeError where the official code fails (pR < 0 or pR > ws).
 */
export function regionWindowMask(ws: number, hS: number, wS: number, pR: number, pB: number): Float32Array {
  positiveInt('regionWindowMask ws', ws);
  positiveInt('regionWindowMask hS', hS);
  positiveInt('regionWindowMask wS', wS);
  const n = 1 + ws * ws;
  const nw = hS * wS;
  const L = Math.max(ws - pR, 0) + Math.max(pR, 0);
  if (L !== ws) {
    throw new ShapeError(
      `RegionViT window mask: a right padding of ${pR} local tokens is outside [0, ${ws}] (window ${ws}); the official mask construction fails there`,
    );
  }
  const tmp = new Float32Array(ws * ws);
  const keepCols = pySlice(ws, 0, ws - pR);
  for (const i of keepCols) for (const j of keepCols) tmp[i * ws + j] = 1;
  const right = new Float32Array(n * n);
  for (let i = 0; i < ws * ws; i++) for (let j = 0; j < ws * ws; j++) right[(1 + i) * n + 1 + j] = tmp[(i % ws) * ws + (j % ws)]!;
  right[0] = 1;
  for (let i = 0; i < ws * ws; i++) {
    const v = i % ws < ws - pR ? 1 : 0;
    right[1 + i] = v;
    right[(1 + i) * n] = v;
  }
  const block = pySlice(n, 0, ws * (ws - pB) + 1);
  const bottom = new Float32Array(n * n);
  const bottomRight = right.slice();
  for (const i of block) {
    for (const j of block) {
      bottom[i * n + j] = 1;
      bottomRight[i * n + j] = 1;
    }
  }
  const mask = new Float32Array(nw * n * n).fill(1);
  for (const w of pySlice(nw, wS - 1, (hS - 1) * wS, wS)) mask.set(right, w * n * n);
  for (const w of pySlice(nw, (hS - 1) * wS, undefined)) mask.set(bottom, w * n * n);
  mask.set(bottomRight, (nw - 1) * n * n);
  return mask;
}

/** Where a flattened stage came from: what `toSpatialLayout` needs to undo `toFlattenLayout`. */
export interface FlattenInfo {
  batch: number;
  /** Regional grid. */
  hr: number;
  wr: number;
  ws: number;
  /** Local map size after padding (hr·ws × wr·ws). */
  h: number;
  w: number;
  /** Right/bottom padding (negative: the official F.pad crops). */
  pR: number;
  pB: number;
  /** Per-image window mask `[nW, N, N]` when padding happened, else null. */
  mask: tf.Tensor3D | null;
}

/** Zero-pads (or, for a negative amount, crops) the bottom/right of an NHWC map, as `F.pad`. */
function padBottomRight(x: tf.Tensor4D, pB: number, pR: number): tf.Tensor4D {
  let y = x;
  const [b, h, w, c] = y.shape;
  if (pB < 0 || pR < 0) y = tf.slice(y, [0, 0, 0, 0], [b, pB < 0 ? h + pB : h, pR < 0 ? w + pR : w, c]);
  if (pB > 0 || pR > 0) y = tf.pad(y, [[0, 0], [0, Math.max(pB, 0)], [0, Math.max(pR, 0)], [0, 0]]);
  return y;
}

/**
 * The official `convert_to_flatten_layout` on NHWC maps: pads the local map bottom/right to
 * `hr·ws × wr·ws` when it is not already a multiple of the regional grid times ws (and then builds
 * the window mask), cuts it into ws×ws windows and puts each window's regional token first:
 * `[B·hr·wr, 1 + ws², C]`. The returned mask is a new tensor owned by the caller (like the tokens).
 */
export function toFlattenLayout(regional: tf.Tensor, local: tf.Tensor, ws: number): { tokens: tf.Tensor3D; info: FlattenInfo } {
  positiveInt('toFlattenLayout ws', ws);
  if (regional.rank !== 4 || local.rank !== 4 || regional.shape[0] !== local.shape[0] || regional.shape[3] !== local.shape[3]) {
    throw new ShapeError(
      `toFlattenLayout expected NHWC regional and local maps of one batch and width, got [${regional.shape.join(', ')}] and [${local.shape.join(', ')}]`,
    );
  }
  const [b, hr, wr, c] = regional.shape as [number, number, number, number];
  const [, h0, w0] = local.shape as [number, number, number, number];
  let pR = 0;
  let pB = 0;
  const needMask = h0 % (hr * ws) !== 0 || w0 % (wr * ws) !== 0;
  if (needMask) {
    pR = wr * ws - w0;
    pB = hr * ws - h0;
  }
  const h = h0 + pB;
  const w = w0 + pR;
  // The official unfold kernel is (H // hr, W // wr); every later step needs it to be ws.
  if (h !== hr * ws || w !== wr * ws) {
    throw new ShapeError(
      `RegionViT: the local map ${h0}x${w0} is ${h / hr}x${w / wr} tokens per regional token, not the window ${ws}x${ws} ` +
        `(regional grid ${hr}x${wr}); the official model fails there (its relative-position table is for ${ws}x${ws})`,
    );
  }
  const maskData = needMask ? regionWindowMask(ws, hr, wr, pR, pB) : null;
  const tokens = tf.tidy(() => {
    const x = needMask ? padBottomRight(local as tf.Tensor4D, pB, pR) : (local as tf.Tensor4D);
    // [B, hr·ws, wr·ws, C] → [B·hr, ws, wr, ws·C] → [B·hr, wr, ws, ws·C] → [B·hr·wr, ws², C] (≤ 4-D).
    const win = tf.reshape(tf.transpose(tf.reshape(x, [b * hr, ws, wr, ws * c]), [0, 2, 1, 3]), [b * hr * wr, ws * ws, c]);
    const cls = tf.reshape(regional, [b * hr * wr, 1, c]);
    return tf.concat([cls, win], 1) as tf.Tensor3D;
  });
  const mask = maskData ? tf.tensor3d(maskData, [hr * wr, 1 + ws * ws, 1 + ws * ws]) : null;
  return { tokens, info: { batch: b, hr, wr, ws, h, w, pR, pB, mask } };
}

/**
 * The official `convert_to_spatial_layout`: regional tokens back to `[B, hr, wr, C]`, local windows
 * folded back to `[B, hr·ws, wr·ws, C]`, then (when a mask was made) the bottom/right padding cropped.
 */
export function toSpatialLayout(tokens: tf.Tensor, info: FlattenInfo): [tf.Tensor4D, tf.Tensor4D] {
  const { batch: b, hr, wr, ws } = info;
  const nw = b * hr * wr;
  if (tokens.rank !== 3 || tokens.shape[0] !== nw || tokens.shape[1] !== 1 + ws * ws) {
    throw new ShapeError(`toSpatialLayout expected [${nw}, ${1 + ws * ws}, C] tokens, got [${tokens.shape.join(', ')}]`);
  }
  const c = tokens.shape[2]!;
  return tf.tidy(() => {
    const regional = tf.reshape(tf.slice(tokens, [0, 0, 0], [nw, 1, c]), [b, hr, wr, c]) as tf.Tensor4D;
    const win = tf.slice(tokens, [0, 1, 0], [nw, ws * ws, c]);
    let local = tf.reshape(tf.transpose(tf.reshape(win, [b * hr, wr, ws, ws * c]), [0, 2, 1, 3]), [b, hr * ws, wr * ws, c]) as tf.Tensor4D;
    if (info.mask) {
      const cropB = Math.max(info.pB, 0);
      const cropR = Math.max(info.pR, 0);
      if (cropB > 0 || cropR > 0) local = tf.slice(local, [0, 0, 0, 0], [b, info.h - cropB, info.w - cropR, c]);
    }
    return [regional, local] as [tf.Tensor4D, tf.Tensor4D];
  });
}

// ---------------------------------------------------------------------------------------------
// A stage
// ---------------------------------------------------------------------------------------------

export interface ConvAttBlockOptions {
  /** Window side ws (the official `kernel_size`). */
  windowSize: number;
  /** Number of R2L blocks. */
  numBlocks: number;
  numHeads: number;
  mlpRatio?: number;
  qkvBias?: boolean;
  qkScale?: number | null;
  /** Projection mode (official `pool`, default 'sc'). */
  pool?: string;
  actLayer?: ActFactory;
  normLayer?: NormFactory;
  /** Drop-path rate of each block (official `drop_path_rate`, a list). Default all 0. */
  dropPathRates?: number[];
  attnDropRate?: number;
  dropRate?: number;
  clsAttn?: boolean;
  /** A depthwise 3×3 position-encoding conv (no bias) after the first block, on both maps. */
  peg?: boolean;
  /** Block factory (default {@link r2lBlock}); receives the R2L options. */
  blockLayer?: R2LBlockFactory;
  attnLayer?: RegionAttentionFactory;
  mlpLayer?: MlpFactory;
  /** Norm of the projection (default the official LayerNorm2d). */
  normLayer2d?: (channels: number) => Module;
}

/**
 * The official `ConvAttBlock` (a stage): `block.0` = {@link Projection}, `block.1…` = R2L blocks on
 * the flatten layout, optional `peg` after the first R2L block (back to maps — cropped —, `x + peg(x)`
 * for the regional and the local map with the same depthwise conv, then re-flattened, which re-zeroes
 * the padding). `[regional, local]` NHWC maps in and out.
 */
export class ConvAttBlock extends Module {
  readonly block: ModuleList;
  readonly peg: Conv2d | null;
  readonly windowSize: number;
  readonly projection: Projection;
  readonly blocks: R2LBlockModule[];

  constructor(
    readonly inputChannels: number,
    readonly outputChannels: number,
    options: ConvAttBlockOptions,
  ) {
    super();
    const {
      windowSize,
      numBlocks,
      numHeads,
      mlpRatio = 1,
      qkvBias = false,
      qkScale = null,
      pool = 'sc',
      actLayer = geluLayer,
      normLayer = layerNorm(1e-5),
      attnDropRate = 0,
      dropRate = 0,
      clsAttn = true,
      peg = false,
      blockLayer = r2lBlock,
      attnLayer,
      mlpLayer,
      normLayer2d,
    } = options;
    positiveInt('ConvAttBlock windowSize', windowSize);
    if (!Number.isInteger(numBlocks) || numBlocks < 0) throw new ConfigError(`ConvAttBlock numBlocks must be a non-negative integer, got ${numBlocks}`);
    const rates = options.dropPathRates ?? Array<number>(numBlocks).fill(0);
    if (rates.length < numBlocks) throw new ConfigError(`ConvAttBlock needs ${numBlocks} drop-path rates, got ${rates.length}`);
    // Porting note: the official `if pool:` skips the projection for a falsy pool, and then calls an
    // R2L block with the (regional, local) pair, which fails; a projection is required here.
    if (!pool) throw new ConfigError(`ConvAttBlock pool must be a projection mode such as 'sc' or 'c', got ${JSON.stringify(pool)}`);
    this.windowSize = windowSize;
    this.block = this.register('block', new ModuleList());
    this.projection = new Projection(inputChannels, outputChannels, { actLayer, mode: pool, normLayer2d });
    this.block.append(this.projection);
    this.blocks = [];
    for (let i = 0; i < numBlocks; i++) {
      const blk = blockLayer(outputChannels, {
        windowSize,
        numHeads,
        mlpRatio,
        qkvBias,
        qkScale,
        actLayer,
        normLayer,
        dropPath: rates[i]!,
        attnDrop: attnDropRate,
        drop: dropRate,
        clsAttn,
        attnLayer,
        mlpLayer,
      });
      this.block.append(blk);
      this.blocks.push(blk);
    }
    this.peg = this.register('peg', peg ? new Conv2d(outputChannels, outputChannels, 3, { padding: 1, groups: outputChannels, bias: false }) : null);
  }

  /** `[regional, local]` sizes after this stage for given input sizes. */
  outputSizes(regional: [number, number], local: [number, number]): { regional: [number, number]; local: [number, number] } {
    const r = this.projection.outputSize(...regional);
    const l = this.projection.outputSize(...local);
    return { regional: r, local: l };
  }

  override forward(regional: tf.Tensor, local: tf.Tensor): [tf.Tensor4D, tf.Tensor4D] {
    return tf.tidy(() => {
      const [r0, l0] = this.projection.forward(regional, local);
      let { tokens, info } = toFlattenLayout(r0, l0, this.windowSize);
      for (let i = 0; i < this.blocks.length; i++) {
        tokens = this.blocks[i]!.forward(tokens, { batch: info.batch, mask: info.mask }) as tf.Tensor3D;
        if (this.peg && i === 0) {
          const [r, l] = toSpatialLayout(tokens, info);
          ({ tokens, info } = toFlattenLayout(tf.add(r, this.peg.forward(r)), tf.add(l, this.peg.forward(l)), this.windowSize));
        }
      }
      return toSpatialLayout(tokens, info);
    });
  }
}
