/**
 * The CaiT model (official `cait_models`, timm `Cait`): patch embedding + position embedding (no
 * class position), a stack of LayerScale self-attention blocks over the patch tokens, then a few
 * class-attention blocks in which only the class token is updated, and norm → head on the class
 * token.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  assignInit,
  checkImageBatch,
  ConfigError,
  ConvStemPatchEmbed,
  Dropout,
  geluLayer,
  Identity,
  layerNorm,
  LayerNorm,
  Linear,
  Module,
  ModuleList,
  PatchEmbed,
  resolveIndices,
  ShapeError,
  timmMlp,
  zeros,
  type ActFactory,
  type FeatureInfo,
  type MlpFactory,
  type NormFactory,
  type VisionTransformerOptions,
  type VisionModel,
} from '@vit/core';
import {
  classAttention,
  layerScaleBlock,
  layerScaleBlockClassAttention,
  talkingHeadAttention,
  TalkingHeadAttention,
  type AttentionFactory,
  type BlockFactory,
  type TokenBlockFactory,
} from './blocks.js';

/**
 * Builds the patch embedding (official `Patch_layer`): NHWC `[B, H, W, inChans]` → tokens
 * `[B, (H/p)·(W/p), embedDim]`, registered as `patch_embed`.
 */
export type PatchLayerFactory = (o: { imgSize: [number, number]; patchSize: [number, number]; inChans: number; embedDim: number }) => Module;

/** The official patch embedding: one k = s = patch conv (`patch_embed.proj`). */
export const patchEmbedLayer: PatchLayerFactory = (o) => new PatchEmbed({ ...o, flatten: true });

/** A convolutional stem (core's {@link ConvStemPatchEmbed}: `patch_embed.stem.*`, `patch_embed.proj`). */
export const convStemLayer: PatchLayerFactory = (o) => new ConvStemPatchEmbed({ ...o, flatten: true });

/** Options of {@link CaiT}; defaults equal the official `cait_models` constructor's. */
export interface CaiTOptions extends VisionTransformerOptions {
  /** Nominal input size (square or `[H, W]`); sets the position-embedding grid. Default 224. */
  imgSize?: number | [number, number];
  patchSize?: number | [number, number];
  embedDim?: number;
  /** Number of self-attention (talking-heads) blocks. */
  depth?: number;
  numHeads?: number;
  mlpRatio?: number;
  /** Bias on qkv (and on the class attention's q/k/v). Official default false; every registered model sets true. */
  qkvBias?: boolean;
  /** Dropout after the position embedding, and inside the self-attention blocks (projection, MLP). */
  dropRate?: number;
  /** Stochastic depth of the self-attention blocks: the SAME rate for every block, as the official code. */
  dropPathRate?: number;
  /** eps of the default LayerNorms. Official constructor default 1e-5 (`nn.LayerNorm`); every registered model uses 1e-6. */
  normEps?: number;
  /** Norm factory; overrides `normEps`. */
  normLayer?: NormFactory;
  actLayer?: ActFactory;
  blockLayers?: BlockFactory;
  blockLayersToken?: TokenBlockFactory;
  attnBlock?: AttentionFactory;
  mlpBlock?: MlpFactory;
  attnBlockTokenOnly?: AttentionFactory;
  mlpBlockTokenOnly?: MlpFactory;
  /** Patch embedding (official `Patch_layer`); default the patchify conv. */
  patchLayer?: PatchLayerFactory;
  /** LayerScale init value (official `init_scale`). */
  initScale?: number;
  /**
   * Init of every Linear: 'trunc_normal' (official `_init_weights`: std .02, zero bias) or
   * 'pytorch' (PyTorch's default U(±1/√in), which a narrow model trained briefly needs: with std
   * .02 its attention logits start near 0 and learn slowly).
   */
  linearInit?: 'trunc_normal' | 'pytorch';
  /**
   * Init of the talking-heads mixing layers `proj_l`/`proj_w`: 'normal' (official, trunc_normal
   * std .02 like every Linear) or 'identity' (weight = I, bias 0: plain multi-head attention at
   * init, which small models trained briefly need; see `cait_nano`).
   */
  talkingHeadsInit?: 'normal' | 'identity';
  /** Number of class-attention blocks. */
  depthTokenOnly?: number;
  /** MLP ratio of the class-attention blocks (official `mlp_ratio_clstk`). */
  mlpRatioClstk?: number;
  /** Pooling in `forwardHead`: the class token (official) or the mean of the patch tokens (timm's 'avg'). */
  globalPool?: 'token' | 'avg';
  /**
   * Accept inputs of other sizes than `imgSize`, resampling the position embedding bilinearly to
   * the input's patch grid on every call. Default false: the input must be `imgSize` exactly, as
   * the official PatchEmbed asserts.
   */
  dynamicImgSize?: boolean;
}

export const CAIT_DEFAULTS = {
  imgSize: 224,
  patchSize: 16,
  inChans: 3,
  numClasses: 1000,
  embedDim: 768,
  depth: 12,
  numHeads: 12,
  mlpRatio: 4,
  qkvBias: false,
  qkScale: null,
  dropRate: 0,
  attnDropRate: 0,
  dropPathRate: 0,
  normEps: 1e-5,
  normLayer: undefined,
  actLayer: geluLayer,
  blockLayers: layerScaleBlock,
  blockLayersToken: layerScaleBlockClassAttention,
  attnBlock: talkingHeadAttention,
  mlpBlock: timmMlp,
  attnBlockTokenOnly: classAttention,
  mlpBlockTokenOnly: timmMlp,
  patchLayer: patchEmbedLayer,
  initScale: 1e-4,
  linearInit: 'trunc_normal',
  talkingHeadsInit: 'normal',
  depthTokenOnly: 2,
  mlpRatioClstk: 4,
  globalPool: 'token',
  dynamicImgSize: false,
} satisfies Required<Omit<CaiTOptions, 'normLayer' | 'qkScale'>> & Pick<CaiTOptions, 'normLayer' | 'qkScale'>;

/**
 * Resamples an absolute position embedding `[1, P + gh·gw, C]` (P prefix tokens, patch tokens
 * row-major) to a new grid with bilinear interpolation, half-pixel centres (PyTorch
 * `F.interpolate(mode='bilinear', align_corners=False)`). Returns a new tensor.
 *
 * Porting note: timm's `resample_abs_pos_embed` defaults to bicubic with antialias; this is plain
 * bilinear. Antialias changes nothing when upsampling; when downsampling the two differ slightly.
 */
export function resamplePosEmbed(
  posEmbed: tf.Tensor,
  newSize: [number, number],
  oldSize?: [number, number],
  numPrefixTokens = 0,
): tf.Tensor3D {
  if (posEmbed.rank !== 3 || posEmbed.shape[0] !== 1) {
    throw new ShapeError(`resamplePosEmbed expected [1, N, C], got shape [${posEmbed.shape.join(', ')}]`);
  }
  const [, n, c] = posEmbed.shape as [number, number, number];
  const patches = n - numPrefixTokens;
  let old = oldSize;
  if (!old) {
    const side = Math.round(Math.sqrt(patches));
    if (side * side !== patches) {
      throw new ShapeError(`resamplePosEmbed: ${patches} patch positions are not a square grid; pass oldSize`);
    }
    old = [side, side];
  }
  if (old[0] * old[1] !== patches) {
    throw new ShapeError(`resamplePosEmbed: oldSize ${old[0]}x${old[1]} does not match ${patches} patch positions`);
  }
  if (!newSize.every((s) => Number.isInteger(s) && s > 0)) throw new ConfigError(`resamplePosEmbed: newSize must be positive integers, got ${newSize}`);
  return tf.tidy(() => {
    const prefix = numPrefixTokens > 0 ? tf.slice(posEmbed, [0, 0, 0], [1, numPrefixTokens, c]) : null;
    const grid = tf.reshape(tf.slice(posEmbed, [0, numPrefixTokens, 0], [1, patches, c]), [1, old[0], old[1], c]) as tf.Tensor4D;
    const same = old[0] === newSize[0] && old[1] === newSize[1];
    const resized = same ? grid : tf.image.resizeBilinear(grid, newSize, false, true);
    const flat = tf.reshape(resized, [1, newSize[0] * newSize[1], c]);
    return (prefix ? tf.concat([prefix, flat], 1) : flat) as tf.Tensor3D;
  });
}

/** Everything `forwardFeatures` computes, for feature extraction and the official per-block features. */
export interface CaiTTrace {
  /** Output of every self-attention block, `[B, N, C]` patch tokens. */
  blocks: tf.Tensor3D[];
  /** The class token after every class-attention block, `[B, 1, C]`. */
  classTokens: tf.Tensor3D[];
  /** `norm(cat(cls, x))`, `[B, 1 + N, C]`. */
  features: tf.Tensor3D;
}

/** CaiT: "Going deeper with Image Transformers" (Touvron et al., ICCV 2021). NHWC in, logits out. */
export class CaiT extends Module implements VisionModel {
  numClasses: number;
  readonly numFeatures: number;
  readonly embedDim: number;
  readonly imgSize: [number, number];
  readonly patchSize: [number, number];
  readonly gridSize: [number, number];
  readonly inChans: number;
  readonly globalPool: 'token' | 'avg';
  readonly dynamicImgSize: boolean;
  readonly featureInfo: FeatureInfo[];

  readonly cls_token: tf.Variable;
  readonly pos_embed: tf.Variable;
  readonly patch_embed: Module;
  readonly pos_drop: Dropout;
  readonly blocks: ModuleList;
  readonly blocks_token_only: ModuleList;
  readonly norm: Module;
  head: Module;

  constructor(options: CaiTOptions = {}) {
    super();
    const o = { ...CAIT_DEFAULTS, ...stripUndefined(options) };
    this.imgSize = pair(o.imgSize, 'CaiT imgSize');
    this.patchSize = pair(o.patchSize, 'CaiT patchSize');
    for (const [what, v] of [
      ['imgSize', this.imgSize[0]],
      ['imgSize', this.imgSize[1]],
      ['patchSize', this.patchSize[0]],
      ['patchSize', this.patchSize[1]],
      ['inChans', o.inChans],
      ['embedDim', o.embedDim],
      ['numHeads', o.numHeads],
    ] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`CaiT ${what} must be a positive integer, got ${v}`);
    }
    for (const [what, v] of [
      ['depth', o.depth],
      ['depthTokenOnly', o.depthTokenOnly],
      ['numClasses', o.numClasses],
    ] as const) {
      if (!Number.isInteger(v) || v < 0) throw new ConfigError(`CaiT ${what} must be a non-negative integer, got ${v}`);
    }
    if (this.imgSize[0] < this.patchSize[0] || this.imgSize[1] < this.patchSize[1]) {
      throw new ConfigError(`CaiT imgSize ${this.imgSize.join('x')} is smaller than one patch (${this.patchSize.join('x')})`);
    }
    if (o.linearInit !== 'trunc_normal' && o.linearInit !== 'pytorch') {
      throw new ConfigError(`CaiT linearInit must be 'trunc_normal' or 'pytorch', got '${String(o.linearInit)}'`);
    }
    if (o.talkingHeadsInit !== 'normal' && o.talkingHeadsInit !== 'identity') {
      throw new ConfigError(`CaiT talkingHeadsInit must be 'normal' or 'identity', got '${String(o.talkingHeadsInit)}'`);
    }
    if (o.globalPool !== 'token' && o.globalPool !== 'avg') throw new ConfigError(`CaiT globalPool must be 'token' or 'avg', got '${String(o.globalPool)}'`);
    const dim = o.embedDim;
    this.embedDim = dim;
    this.numFeatures = dim;
    this.numClasses = o.numClasses;
    this.inChans = o.inChans;
    this.globalPool = o.globalPool;
    this.dynamicImgSize = o.dynamicImgSize;
    this.gridSize = [Math.floor(this.imgSize[0] / this.patchSize[0]), Math.floor(this.imgSize[1] / this.patchSize[1])];
    const numPatches = this.gridSize[0] * this.gridSize[1];
    const normLayer = o.normLayer ?? layerNorm(o.normEps);
    // The official reshape (B, N, heads, C // heads) needs heads to divide the width.
    if (dim % o.numHeads !== 0) throw new ConfigError(`CaiT embedDim (${dim}) must be divisible by numHeads (${o.numHeads})`);
    this.featureInfo = Array.from({ length: o.depth }, (_, i) => ({ numChs: dim, reduction: this.patchSize[0], module: `blocks.${i}` }));
    try {
      // Registration order mirrors the official state_dict: cls_token, pos_embed, patch_embed, blocks…
      this.cls_token = this.addParameter('cls_token', initNormal([1, 1, dim]), { noWeightDecay: true });
      this.pos_embed = this.addParameter('pos_embed', initNormal([1, numPatches, dim]), { noWeightDecay: true });
      // Porting note: by default timm's PatchEmbed (no norm) under the official name
      // `patch_embed.proj`; size checks happen in `tokens()` so that `dynamicImgSize` can relax them.
      this.patch_embed = this.register('patch_embed', o.patchLayer({ imgSize: this.imgSize, patchSize: this.patchSize, inChans: o.inChans, embedDim: dim }));
      this.pos_drop = this.register('pos_drop', new Dropout(o.dropRate));
      // Appended one by one, so a block that throws leaves nothing unregistered (and undisposed).
      this.blocks = this.register('blocks', new ModuleList());
      for (let i = 0; i < o.depth; i++) {
        this.blocks.append(
          o.blockLayers(dim, {
            numHeads: o.numHeads,
            mlpRatio: o.mlpRatio,
            qkvBias: o.qkvBias,
            qkScale: o.qkScale,
            drop: o.dropRate,
            attnDrop: o.attnDropRate,
            // Official: dpr = [drop_path_rate for i in range(depth)] (constant, not a linspace).
            dropPath: o.dropPathRate,
            normLayer,
            actLayer: o.actLayer,
            attnBlock: o.attnBlock,
            mlpBlock: o.mlpBlock,
            initValues: o.initScale,
          }),
        );
      }
      this.blocks_token_only = this.register('blocks_token_only', new ModuleList());
      for (let j = 0; j < o.depthTokenOnly; j++) {
        this.blocks_token_only.append(
          // Official: the class-attention blocks get drop=0, attn_drop=0, drop_path=0 whatever the model's rates.
          o.blockLayersToken(dim, {
            numHeads: o.numHeads,
            mlpRatio: o.mlpRatioClstk,
            qkvBias: o.qkvBias,
            qkScale: o.qkScale,
            drop: 0,
            attnDrop: 0,
            dropPath: 0,
            normLayer,
            actLayer: o.actLayer,
            attnBlock: o.attnBlockTokenOnly,
            mlpBlock: o.mlpBlockTokenOnly,
            initValues: o.initScale,
          }),
        );
      }
      this.norm = this.register('norm', normLayer(dim));
      this.head = this.register('head', o.numClasses > 0 ? new Linear(dim, o.numClasses) : new Identity());
      this.initWeights(o.linearInit === 'trunc_normal');
      if (o.talkingHeadsInit === 'identity') this.identityTalkingHeads();
    } catch (e) {
      // A block refused its options: release what was already allocated.
      this.dispose();
      throw e;
    }
  }

  /** The official `_init_weights`: every Linear trunc_normal(std .02) with zero bias; LayerNorms 1/0. */
  private initWeights(linears: boolean): void {
    this.apply((m) => {
      if (m instanceof Linear) {
        if (!linears) return;
        assignInit(m.weight, initNormal(m.weight.shape));
        if (m.bias) assignInit(m.bias, zeros(m.bias.shape));
      } else if (m instanceof LayerNorm) {
        if (m.weight) assignInit(m.weight, tf.ones(m.weight.shape));
        if (m.bias) assignInit(m.bias, zeros(m.bias.shape));
      }
    });
  }

  /**
   * Porting note: not in the official code. With trunc_normal(.02) head mixing, a model with few
   * heads starts with near-uniform, ~0.02-scaled attention whose proj_l gradients (~5e-18 in a
   * 2-head cait_nano) sit far below Adam's eps, so token mixing never trains in a short run.
   */
  private identityTalkingHeads(): void {
    this.apply((m) => {
      if (!(m instanceof TalkingHeadAttention)) return;
      for (const lin of [m.proj_l, m.proj_w]) {
        assignInit(lin.weight, tf.eye(m.numHeads));
        if (lin.bias) assignInit(lin.bias, zeros(lin.bias.shape));
      }
    });
  }

  /** Checks an NHWC input and returns its patch grid. */
  private checkInput(x: tf.Tensor): [number, number] {
    checkImageBatch('CaiT', x);
    if (x.rank !== 4) {
      throw new ShapeError(`CaiT expected an NHWC image batch [B, H, W, ${this.inChans}], got rank ${x.rank} shape [${x.shape.join(', ')}]`);
    }
    const [, h, w, c] = x.shape as [number, number, number, number];
    if (c !== this.inChans) throw new ShapeError(`CaiT expected ${this.inChans} input channels, got ${c} (shape [${x.shape.join(', ')}])`);
    if (this.dynamicImgSize) {
      if (h < this.patchSize[0] || w < this.patchSize[1]) {
        throw new ShapeError(`CaiT expected an input of at least one patch (${this.patchSize.join('x')}), got ${h}x${w}`);
      }
    } else if (h !== this.imgSize[0] || w !== this.imgSize[1]) {
      throw new ShapeError(
        `CaiT expected a ${this.imgSize[0]}x${this.imgSize[1]} input (its position embedding is fixed to that size), got ${h}x${w}; ` +
          'create the model with imgSize set to your size, or dynamicImgSize: true to resample the position embedding',
      );
    }
    return [Math.floor(h / this.patchSize[0]), Math.floor(w / this.patchSize[1])];
  }

  /** Patch tokens with position embedding: `[B, gh·gw, C]` and the grid. */
  private tokens(x: tf.Tensor): { t: tf.Tensor3D; grid: [number, number] } {
    const grid = this.checkInput(x);
    const [b, h, w, c] = x.shape as [number, number, number, number];
    const [gh, gw] = grid;
    const [ph, pw] = this.patchSize;
    // Porting note: the official stride = kernel = patch conv ignores trailing rows/columns that do
    // not fill a patch; core's PatchEmbed refuses such inputs, so they are cropped first (same result).
    const xc = h === gh * ph && w === gw * pw ? x : tf.slice(x, [0, 0, 0, 0], [b, gh * ph, gw * pw, c]);
    const t = this.patch_embed.forward(xc) as tf.Tensor3D;
    const same = gh === this.gridSize[0] && gw === this.gridSize[1];
    const pos = same ? this.pos_embed : resamplePosEmbed(this.pos_embed, grid, this.gridSize);
    return { t: this.pos_drop.forward(tf.add(t, pos)) as tf.Tensor3D, grid };
  }

  /**
   * Runs the network and returns every block output (for features / analysis). Caller owns the
   * returned tensors (wrap in `tf.tidy`).
   */
  trace(x: tf.Tensor4D): CaiTTrace {
    return tf.tidy(() => {
      let { t } = this.tokens(x);
      const blocks: tf.Tensor3D[] = [];
      for (const blk of this.blocks) {
        t = blk.forward(t) as tf.Tensor3D;
        blocks.push(t);
      }
      const classTokens: tf.Tensor3D[] = [];
      let cls = this.classToken(t.shape[0]);
      for (const blk of this.blocks_token_only) {
        cls = blk.forward(t, cls) as tf.Tensor3D;
        classTokens.push(cls);
      }
      const features = this.norm.forward(tf.concat([cls, t], 1)) as tf.Tensor3D;
      return { blocks, classTokens, features };
    });
  }

  private classToken(b: number): tf.Tensor3D {
    return tf.tile(this.cls_token, [b, 1, 1]) as tf.Tensor3D;
  }

  /** `norm(cat(cls, x))`: `[B, 1 + N, C]` (the class token first). */
  forwardFeatures(x: tf.Tensor4D): tf.Tensor3D {
    return tf.tidy(() => {
      let { t } = this.tokens(x);
      for (const blk of this.blocks) t = blk.forward(t) as tf.Tensor3D;
      let cls = this.classToken(t.shape[0]);
      for (const blk of this.blocks_token_only) cls = blk.forward(t, cls) as tf.Tensor3D;
      return this.norm.forward(tf.concat([cls, t], 1)) as tf.Tensor3D;
    });
  }

  /** Class token (or mean of the patch tokens with `globalPool: 'avg'`) → head. */
  forwardHead(features: tf.Tensor, options: { preLogits?: boolean } = {}): tf.Tensor2D {
    if (features.rank !== 3 || features.shape[2] !== this.embedDim || features.shape[1]! < 1) {
      throw new ShapeError(`CaiT.forwardHead expected tokens [B, 1 + N, ${this.embedDim}], got shape [${features.shape.join(', ')}]`);
    }
    return tf.tidy(() => {
      const [b, n, c] = features.shape as [number, number, number];
      const pooled =
        this.globalPool === 'avg' && n > 1
          ? tf.mean(tf.slice(features, [0, 1, 0], [b, n - 1, c]), 1)
          : tf.reshape(tf.slice(features, [0, 0, 0], [b, 1, c]), [b, c]);
      return (options.preLogits ? pooled : this.head.forward(pooled)) as tf.Tensor2D;
    });
  }

  forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x)));
  }

  /** Replaces the classifier with a fresh `Linear(embedDim, n)` (timm's init), or Identity for 0. */
  /** `setGradCheckpointing` recomputes each self-attention and class-attention block. */
  protected override gradCheckpointUnits(): Module[] {
    return [...this.blocks, ...this.blocks_token_only];
  }

  resetClassifier(numClasses: number): void {
    if (!Number.isInteger(numClasses) || numClasses < 0) throw new ConfigError(`resetClassifier expects a non-negative integer, got ${numClasses}`);
    this.head.dispose();
    this.head = this.register('head', numClasses > 0 ? new Linear(this.embedDim, numClasses) : new Identity());
    this.numClasses = numClasses;
  }

  /**
   * Outputs of the self-attention blocks as NHWC maps `[B, gh, gw, C]` (timm's
   * forward_intermediates for ViTs: patch tokens only, no final norm). `indices` pick blocks
   * (negative from the end); default all. Only the blocks up to the last one asked for are run.
   */
  forwardIntermediates(x: tf.Tensor4D, options: { indices?: number[] } = {}): tf.Tensor4D[] {
    const idx = resolveIndices(options.indices, this.blocks.length);
    return tf.tidy(() => {
      const { t: t0, grid } = this.tokens(x);
      const want = new Set(idx);
      const last = Math.max(-1, ...idx);
      const maps = new Map<number, tf.Tensor4D>();
      let t = t0;
      for (let i = 0; i <= last; i++) {
        t = this.blocks.at(i).forward(t) as tf.Tensor3D;
        if (want.has(i)) maps.set(i, tf.reshape(t, [t.shape[0], grid[0], grid[1], this.embedDim]) as tf.Tensor4D);
      }
      return idx.map((i) => maps.get(i)!);
    });
  }
}

/**
 * timm's `trunc_normal_(t, std=.02)`: its bounds are ABSOLUTE ±2, i.e. ±100 std, so the truncation
 * never bites and the distribution is N(0, 0.02²). tf.randomNormal draws it ~10x faster than the
 * inverse-CDF sampler (which matters for the 300M-parameter variants); same distribution.
 */
function initNormal(shape: readonly number[]): tf.Tensor {
  return tf.tidy(() => tf.clipByValue(tf.randomNormal(shape as number[], 0, 0.02), -2, 2));
}

/** An int or an `[h, w]` pair of positive integers. */
function pair(v: number | readonly [number, number], what: string): [number, number] {
  const p: [number, number] = typeof v === 'number' ? [v, v] : [v[0], v[1]];
  if (!p.every((d) => Number.isInteger(d) && d > 0)) throw new ConfigError(`${what} must be a positive integer or a pair of them, got ${JSON.stringify(v)}`);
  return p;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
