/**
 * CaiT building blocks (facebookresearch/deit `cait_models.py`): talking-heads self-attention,
 * class attention, and the two LayerScale residual blocks that wrap them. Every block takes its
 * parts (attention, MLP, norm, activation) as factories so they compose into new backbones.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  attentionHeads,
  checkTokens,
  ConfigError,
  Dropout,
  DropPath,
  geluLayer,
  layerNorm,
  Linear,
  mergeHeads,
  Module,
  ShapeError,
  splitHeads,
  timmMlp,
  type MlpFactory,
  type NormFactory,
  type TransformerBlockOptions,
} from '@vit/core';

/** What the blocks pass to an attention factory (the official `Attention_block(dim, ...)` call). */
export interface AttentionOptions {
  numHeads?: number;
  qkvBias?: boolean;
  /** Overrides the `head_dim ** -0.5` logit scale. `null`, `undefined` and 0 keep the default (Python's `qk_scale or …`). */
  qkScale?: number | null;
  /** Dropout on the attention weights (training only). */
  attnDrop?: number;
  /** Dropout after the output projection (training only). */
  projDrop?: number;
}

/** Builds the token mixer of a block: `(dim, options) → Module` whose forward maps `[B, N, C]`. */
export type AttentionFactory = (dim: number, options: AttentionOptions) => Module;

/**
 * What both CaiT attentions share: `dim`, the head split and the logit scale. It registers no
 * child, so each subclass registers its own in the official order.
 */
abstract class HeadedAttention extends Module {
  readonly numHeads: number;
  readonly headDim: number;
  readonly scale: number;

  constructor(
    what: string,
    readonly dim: number,
    options: AttentionOptions,
  ) {
    super();
    const { numHeads = 8, qkScale = null } = options;
    this.numHeads = numHeads;
    ({ headDim: this.headDim, scale: this.scale } = attentionHeads(what, dim, numHeads, qkScale));
  }
}

/**
 * Talking-heads self-attention (official `Attention_talking_head`, timm `TalkingHeadAttn`):
 * `logits = (q·scale)·kᵀ`, then `proj_l` (a Linear over the HEAD axis) mixes the heads before the
 * softmax and `proj_w` after it, both with bias. Children `qkv`, `attn_drop`, `proj`, `proj_l`,
 * `proj_w`, `proj_drop` as the official state_dict.
 */
export class TalkingHeadAttention extends HeadedAttention {
  readonly qkv: Linear;
  readonly attn_drop: Dropout;
  readonly proj: Linear;
  readonly proj_l: Linear;
  readonly proj_w: Linear;
  readonly proj_drop: Dropout;

  constructor(dim: number, options: AttentionOptions = {}) {
    super('TalkingHeadAttention', dim, options);
    const { qkvBias = false, attnDrop = 0, projDrop = 0 } = options;
    this.qkv = this.register('qkv', new Linear(dim, dim * 3, { bias: qkvBias }));
    this.attn_drop = this.register('attn_drop', new Dropout(attnDrop));
    this.proj = this.register('proj', new Linear(dim, dim));
    this.proj_l = this.register('proj_l', new Linear(this.numHeads, this.numHeads));
    this.proj_w = this.register('proj_w', new Linear(this.numHeads, this.numHeads));
    this.proj_drop = this.register('proj_drop', new Dropout(projDrop));
  }

  /**
   * Applies a Linear over the head axis of `[B, H, N, M]` (official
   * `proj(attn.permute(0,2,3,1)).permute(0,3,1,2)`): out[b,g] = Σ_h W[h,g]·attn[b,h] + bias[g], as
   * one batched matMul of the (tiny) weight with the maps seen as `[B, H, N·M]`. The permute form
   * would copy the N×N maps twice per mixing, and autodiff would keep both copies.
   * Porting note: the same sum over heads as the official Linear, accumulated in another order
   * (differences at float rounding).
   */
  private mixHeads(linear: Linear, attn: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const [b, h, n, m] = attn.shape as [number, number, number, number];
      const g = linear.outFeatures;
      const w = tf.tile(tf.reshape(linear.weight, [1, h, g]), [b, 1, 1]);
      let out = tf.matMul(w, tf.reshape(attn, [b, h, n * m]), true, false);
      if (linear.bias) out = tf.add(out, tf.reshape(linear.bias, [1, g, 1]));
      return tf.reshape(out, [b, g, n, m]);
    });
  }

  /** The attention weights `[B, H, N, N]` after proj_w (before attention dropout). */
  attentionMap(x: tf.Tensor): tf.Tensor4D {
    checkTokens(this.typeName, x, this.dim);
    return tf.tidy(() => this.weights(x).attn) as tf.Tensor4D;
  }

  private weights(x: tf.Tensor): { attn: tf.Tensor; v: tf.Tensor } {
    // qkv output channels are laid out (3, heads, head_dim): q, then k, then v.
    const [q, k, v] = tf.split(this.qkv.forward(x), 3, 2);
    const qh = tf.mul(splitHeads(q!, this.numHeads), this.scale);
    let attn = tf.matMul(qh, splitHeads(k!, this.numHeads), false, true);
    attn = this.mixHeads(this.proj_l, attn);
    attn = tf.softmax(attn);
    attn = this.mixHeads(this.proj_w, attn);
    return { attn, v: splitHeads(v!, this.numHeads) };
  }

  override forward(x: tf.Tensor): tf.Tensor3D {
    checkTokens(this.typeName, x, this.dim);
    return tf.tidy(() => {
      const { attn, v } = this.weights(x);
      const out = mergeHeads(tf.matMul(this.attn_drop.forward(attn), v));
      return this.proj_drop.forward(this.proj.forward(out));
    }) as tf.Tensor3D;
  }
}

/**
 * Class attention (official `Class_Attention`, timm `ClassAttn`): the query comes from the first
 * token (the class token) only, keys and values from every token; returns the updated class token
 * `[B, 1, C]`. Children `q`, `k`, `v`, `attn_drop`, `proj`, `proj_drop`.
 */
export class ClassAttention extends HeadedAttention {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly attn_drop: Dropout;
  readonly proj: Linear;
  readonly proj_drop: Dropout;

  constructor(dim: number, options: AttentionOptions = {}) {
    super('ClassAttention', dim, options);
    const { qkvBias = false, attnDrop = 0, projDrop = 0 } = options;
    this.q = this.register('q', new Linear(dim, dim, { bias: qkvBias }));
    this.k = this.register('k', new Linear(dim, dim, { bias: qkvBias }));
    this.v = this.register('v', new Linear(dim, dim, { bias: qkvBias }));
    this.attn_drop = this.register('attn_drop', new Dropout(attnDrop));
    this.proj = this.register('proj', new Linear(dim, dim));
    this.proj_drop = this.register('proj_drop', new Dropout(projDrop));
  }

  /** The class token's attention over all tokens, `[B, H, 1, N]` (before attention dropout). */
  attentionMap(x: tf.Tensor): tf.Tensor4D {
    checkTokens(this.typeName, x, this.dim);
    return tf.tidy(() => this.weights(x)) as tf.Tensor4D;
  }

  private weights(x: tf.Tensor): tf.Tensor {
    const [b, , c] = x.shape as [number, number, number];
    const q = tf.mul(splitHeads(this.q.forward(tf.slice(x, [0, 0, 0], [b, 1, c])), this.numHeads), this.scale);
    return tf.softmax(tf.matMul(q, splitHeads(this.k.forward(x), this.numHeads), false, true));
  }

  override forward(x: tf.Tensor): tf.Tensor3D {
    checkTokens(this.typeName, x, this.dim);
    return tf.tidy(() => {
      const attn = this.attn_drop.forward(this.weights(x));
      const out = mergeHeads(tf.matMul(attn, splitHeads(this.v.forward(x), this.numHeads)));
      return this.proj_drop.forward(this.proj.forward(out));
    }) as tf.Tensor3D;
  }
}

/** Default constructors of the official block signature (`dim, num_heads, mlp_ratio, …`). */
export interface LayerScaleBlockOptions extends TransformerBlockOptions {
  dropPath?: number;
  /** Default `nn.LayerNorm` (eps 1e-5) as the official block; CaiT models pass eps 1e-6. */
  normLayer?: NormFactory;
  attnBlock?: AttentionFactory;
  mlpBlock?: MlpFactory;
  /** LayerScale init value of gamma_1/gamma_2 (official `init_values`, default 1e-4). */
  initValues?: number;
}

function hidden(dim: number, ratio: number): number {
  // Python's int(dim * mlp_ratio) truncates.
  const h = Math.trunc(dim * ratio);
  if (!(h > 0)) throw new ConfigError(`mlpRatio ${ratio} gives ${h} hidden features for dim ${dim}; need at least 1`);
  return h;
}

/** Shared by both LayerScale blocks: norm1, attn, drop_path, norm2, mlp and the two gammas. */
abstract class LayerScaleBase extends Module {
  readonly gamma_1: tf.Variable;
  readonly gamma_2: tf.Variable;
  readonly norm1: Module;
  readonly attn: Module;
  readonly drop_path: DropPath;
  readonly norm2: Module;
  readonly mlp: Module;

  constructor(
    readonly dim: number,
    options: LayerScaleBlockOptions,
    defaultAttn: AttentionFactory,
  ) {
    super();
    const {
      numHeads = 8,
      mlpRatio = 4,
      qkvBias = false,
      qkScale = null,
      drop = 0,
      attnDrop = 0,
      dropPath = 0,
      actLayer = geluLayer,
      normLayer = layerNorm(1e-5),
      attnBlock = defaultAttn,
      mlpBlock = timmMlp,
      initValues = 1e-4,
    } = options;
    if (!Number.isInteger(dim) || dim <= 0) throw new ConfigError(`${this.typeName} dim must be a positive integer, got ${dim}`);
    const hiddenFeatures = hidden(dim, mlpRatio);
    try {
      // LayerScale is excluded from weight decay like the other per-channel vectors.
      this.gamma_1 = this.addParameter('gamma_1', tf.fill([dim], initValues), { noWeightDecay: true });
      this.gamma_2 = this.addParameter('gamma_2', tf.fill([dim], initValues), { noWeightDecay: true });
      this.norm1 = this.register('norm1', normLayer(dim));
      this.attn = this.register('attn', attnBlock(dim, { numHeads, qkvBias, qkScale, attnDrop, projDrop: drop }));
      this.drop_path = this.register('drop_path', new DropPath(dropPath));
      this.norm2 = this.register('norm2', normLayer(dim));
      this.mlp = this.register('mlp', mlpBlock(dim, { hiddenFeatures, actLayer, drop }));
    } catch (e) {
      // A part refused its options: release what was already allocated.
      this.dispose();
      throw e;
    }
  }

  /** `x + drop_path(gamma · f(x))`. */
  protected residual(x: tf.Tensor, gamma: tf.Variable, fx: tf.Tensor): tf.Tensor {
    return tf.add(x, this.drop_path.forward(tf.mul(gamma, fx)));
  }
}

/**
 * Self-attention block with LayerScale (official `LayerScale_Block`):
 * `x + gamma_1·attn(norm1(x))`, then `x + gamma_2·mlp(norm2(x))`. Default attention: talking heads.
 */
export class LayerScaleBlock extends LayerScaleBase {
  constructor(dim: number, options: LayerScaleBlockOptions = {}) {
    super(dim, options, (d, o) => new TalkingHeadAttention(d, o));
  }

  override forward(x: tf.Tensor): tf.Tensor3D {
    checkTokens(this.typeName, x, this.dim);
    return tf.tidy(() => {
      const y = this.residual(x, this.gamma_1, this.attn.forward(this.norm1.forward(x)));
      return this.residual(y, this.gamma_2, this.mlp.forward(this.norm2.forward(y)));
    }) as tf.Tensor3D;
  }
}

/**
 * Class-attention block with LayerScale (official `LayerScale_Block_CA`): with `u = cat(cls, x)`,
 * `cls + gamma_1·attn(norm1(u))`, then `cls + gamma_2·mlp(norm2(cls))`. Only the class token is
 * updated; the patch tokens `x` pass through unchanged. Default attention: class attention.
 */
export class LayerScaleBlockClassAttention extends LayerScaleBase {
  constructor(dim: number, options: LayerScaleBlockOptions = {}) {
    super(dim, options, (d, o) => new ClassAttention(d, o));
  }

  override forward(x: tf.Tensor, xCls: tf.Tensor): tf.Tensor3D {
    const [b] = checkTokens(this.typeName, x, this.dim);
    if (xCls === undefined || xCls.rank !== 3 || xCls.shape[0] !== b || xCls.shape[1] !== 1 || xCls.shape[2] !== this.dim) {
      throw new ShapeError(`${this.typeName} expected a class token [${b}, 1, ${this.dim}], got ${xCls ? `shape [${xCls.shape.join(', ')}]` : 'none'}`);
    }
    return tf.tidy(() => {
      const u = tf.concat([xCls, x], 1);
      const c = this.residual(xCls, this.gamma_1, this.attn.forward(this.norm1.forward(u)));
      return this.residual(c, this.gamma_2, this.mlp.forward(this.norm2.forward(c)));
    }) as tf.Tensor3D;
  }
}

/** Builds a self-attention stage block (official `block_layers`). */
export type BlockFactory = (dim: number, options: LayerScaleBlockOptions) => Module;
/** Builds a class-attention stage block (official `block_layers_token`): forward `(x, cls) → cls`. */
export type TokenBlockFactory = (dim: number, options: LayerScaleBlockOptions) => Module;

/** The official `Attention_block` (talking heads) as a factory. */
export const talkingHeadAttention: AttentionFactory = (dim, o) => new TalkingHeadAttention(dim, o);
/** The official `Attention_block_token_only` (class attention) as a factory. */
export const classAttention: AttentionFactory = (dim, o) => new ClassAttention(dim, o);
/** The official `block_layers` as a factory. */
export const layerScaleBlock: BlockFactory = (dim, o) => new LayerScaleBlock(dim, o);
/** The official `block_layers_token` as a factory. */
export const layerScaleBlockClassAttention: TokenBlockFactory = (dim, o) => new LayerScaleBlockClassAttention(dim, o);
