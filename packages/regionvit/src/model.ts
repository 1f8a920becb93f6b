/**
 * The RegionViT model (IBM/RegionViT `RegionViT`): local tokens from a patch stem, regional tokens
 * from a 'linear' patch embedding of ws·patch pixels (the image zero-padded to a multiple), then
 * stages of regional-to-local attention; the head normalises the last regional tokens, averages
 * them and classifies. The local tokens of the last stage do not reach the logits; they are the
 * per-stage features for dense prediction (optionally through `det_norm`).
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  assignInit,
  checkImageBatch,
  ConfigError,
  Dropout,
  dropPathRates,
  geluLayer,
  Identity,
  layerNorm,
  LayerNorm,
  Linear,
  Module,
  ModuleList,
  resolveIndices,
  ShapeError,
  zeros,
  type ActFactory,
  type FeatureInfo,
  type MlpFactory,
  type NormFactory,
  type VisionModel,
  type VisionTransformerOptions,
} from '@vit/core';
import {
  ConvAttBlock,
  RegionViTPatchEmbed,
  r2lBlock,
  regionLayerNorm2d,
  truncNormal02,
  type PatchConvType,
  type R2LBlockFactory,
  type RegionAttentionFactory,
} from './blocks.js';

/** Options of {@link RegionViT}; defaults equal the official `RegionViT` constructor's. */
export interface RegionViTOptions extends VisionTransformerOptions {
  /** Nominal input size (the official `img_size`: informational, any size is accepted). Default 224. */
  imgSize?: number;
  /** Local patch size. Default 16 (every registered variant uses 4). */
  patchSize?: number;
  /** Widths: `embedDim[0]` of both embeddings, `embedDim[i + 1]` of stage i (so stages = length − 1). */
  embedDim?: number[];
  /** Blocks per stage. All entries count for the drop-path schedule (official `sum(depth)`). */
  depth?: number[];
  numHeads?: number[];
  /** One ratio for every stage, or one per stage. */
  mlpRatio?: number | number[];
  /** Stochastic depth, linearly from 0 to this over all blocks. */
  dropPathRate?: number;
  /** eps of the token LayerNorms (official `norm_layer=partial(nn.LayerNorm, eps=1e-6)`). */
  normEps?: number;
  /** Token norm factory; overrides `normEps`. */
  normLayer?: NormFactory;
  /** Window side of each stage (official `kernel_sizes`, required). `kernelSizes[0]·patchSize` is the region size. */
  kernelSizes?: number[];
  /** Projection mode of each stage (official `downsampling`, required): 'c' (1×1, identity if the width stays), 'sc' (3×3 stride 2). */
  downsampling?: string[];
  patchConvType?: PatchConvType;
  /** Depthwise 3×3 position encoding after the first block of every stage. */
  peg?: boolean;
  /** A LayerNorm2d (`norm{i}`) on the local tokens after every stage, as the official detection models. */
  detNorm?: boolean;
  /** Activation everywhere (official: GELU; the constructor does not expose it). */
  actLayer?: ActFactory;
  blockLayer?: R2LBlockFactory;
  attnLayer?: RegionAttentionFactory;
  mlpLayer?: MlpFactory;
}

export const REGIONVIT_DEFAULTS = {
  imgSize: 224,
  patchSize: 16,
  inChans: 3,
  numClasses: 1000,
  embedDim: [768],
  depth: [12],
  numHeads: [12],
  mlpRatio: 4,
  qkvBias: true,
  qkScale: null,
  dropRate: 0,
  attnDropRate: 0,
  dropPathRate: 0,
  normEps: 1e-6,
  patchConvType: '3conv',
  peg: false,
  detNorm: false,
  actLayer: geluLayer,
  blockLayer: r2lBlock,
} satisfies RegionViTOptions;

/** Everything the stages produce, for features and analysis. */
export interface RegionViTTrace {
  /** Local tokens returned by each stage, `[B, H_i, W_i, C_i]` (before `det_norm`). */
  local: tf.Tensor4D[];
  /** Regional tokens returned by each stage, `[B, h_i, w_i, C_i]`. */
  regional: tf.Tensor4D[];
  /** The detection outputs (official `forward_features(x, detection=True)`): `local`, through `norm{i}` when `detNorm`. */
  detection: tf.Tensor4D[];
}

/** RegionViT: "RegionViT: Regional-to-Local Attention for Vision Transformers" (Chen, Panda, Fan; ICLR 2022). NHWC in, logits out. */
export class RegionViT extends Module implements VisionModel {
  numClasses: number;
  readonly numFeatures: number;
  readonly embedDim: number[];
  readonly patchSize: number;
  readonly inChans: number;
  readonly imgSize: number;
  readonly kernelSizes: number[];
  readonly detNorm: boolean;
  readonly featureInfo: FeatureInfo[];

  readonly patch_embed: RegionViTPatchEmbed;
  readonly cls_token: RegionViTPatchEmbed;
  readonly pos_drop: Dropout;
  readonly layers: ModuleList<ConvAttBlock>;
  readonly norm: Module;
  head: Module;
  /** `norm0 … norm{n−1}` (LayerNorm2d on the local tokens) when `detNorm`. */
  readonly detNorms: Module[];

  constructor(options: RegionViTOptions = {}) {
    super();
    const o = { ...REGIONVIT_DEFAULTS, ...stripUndefined(options) };
    for (const [what, v] of [
      ['patchSize', o.patchSize],
      ['inChans', o.inChans],
      ['imgSize', o.imgSize],
    ] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`RegionViT ${what} must be a positive integer, got ${v}`);
    }
    if (!Number.isInteger(o.numClasses) || o.numClasses < 0) throw new ConfigError(`RegionViT numClasses must be a non-negative integer, got ${o.numClasses}`);
    const embed = intList('embedDim', o.embedDim, 1);
    const stages = embed.length - 1;
    const depth = intList('depth', o.depth, stages, true);
    const heads = intList('numHeads', o.numHeads, stages);
    if (!o.kernelSizes) throw new ConfigError('RegionViT kernelSizes is required (the window side of each stage; official kernel_sizes)');
    const kernels = intList('kernelSizes', o.kernelSizes, Math.max(stages, 1));
    if (!o.downsampling) throw new ConfigError("RegionViT downsampling is required (one projection mode per stage, e.g. ['c', 'sc', 'sc', 'sc'])");
    if (!Array.isArray(o.downsampling) || o.downsampling.length < stages) {
      throw new ConfigError(`RegionViT downsampling needs one mode per stage (${stages}), got ${JSON.stringify(o.downsampling)}`);
    }
    const ratios = Array.isArray(o.mlpRatio) ? o.mlpRatio : Array<number>(depth.length).fill(o.mlpRatio);
    if (ratios.length < stages || ratios.some((r) => typeof r !== 'number' || !Number.isFinite(r))) {
      throw new ConfigError(`RegionViT mlpRatio must be a number or one number per stage (${stages}), got ${JSON.stringify(o.mlpRatio)}`);
    }
    this.embedDim = embed;
    this.numFeatures = embed[embed.length - 1]!;
    this.numClasses = o.numClasses;
    this.patchSize = o.patchSize;
    this.inChans = o.inChans;
    this.imgSize = o.imgSize;
    this.kernelSizes = kernels;
    this.detNorm = o.detNorm;
    const normLayer = o.normLayer ?? layerNorm(o.normEps);
    const dpr = dropPathRates(o.dropPathRate, depth.reduce((a, b) => a + b, 0));

    // Feature strides: the stem's, then ×2 for every strided ('s' + 'c') projection.
    const stemStride = o.patchConvType === '3conv' ? 4 : o.patchSize;
    this.featureInfo = [];
    let reduction = stemStride;
    for (let i = 0; i < stages; i++) {
      const mode = o.downsampling[i]!;
      if (typeof mode === 'string' && mode.includes('c') && mode.includes('s')) reduction *= 2;
      this.featureInfo.push({ numChs: embed[i + 1]!, reduction, module: o.detNorm ? `norm${i}` : `layers.${i}` });
    }

    try {
      this.patch_embed = this.register(
        'patch_embed',
        new RegionViTPatchEmbed({ patchSize: o.patchSize, inChans: o.inChans, embedDim: embed[0]!, patchConvType: o.patchConvType, actLayer: o.actLayer }),
      );
      this.cls_token = this.register(
        'cls_token',
        new RegionViTPatchEmbed({ patchSize: o.patchSize * kernels[0]!, inChans: o.inChans, embedDim: embed[0]!, patchConvType: 'linear' }),
      );
      this.pos_drop = this.register('pos_drop', new Dropout(o.dropRate));
      this.layers = this.register('layers', new ModuleList<ConvAttBlock>());
      let ptr = 0;
      for (let i = 0; i < stages; i++) {
        this.layers.append(
          new ConvAttBlock(embed[i]!, embed[i + 1]!, {
            windowSize: kernels[i]!,
            numBlocks: depth[i]!,
            dropPathRates: dpr.slice(ptr, ptr + depth[i]!),
            numHeads: heads[i]!,
            mlpRatio: ratios[i]!,
            qkvBias: o.qkvBias,
            qkScale: o.qkScale,
            pool: o.downsampling[i]!,
            normLayer,
            actLayer: o.actLayer,
            attnDropRate: o.attnDropRate,
            dropRate: o.dropRate,
            clsAttn: true,
            peg: o.peg,
            blockLayer: o.blockLayer,
            attnLayer: o.attnLayer,
            mlpLayer: o.mlpLayer,
          }),
        );
        ptr += depth[i]!;
      }
      this.norm = this.register('norm', normLayer(this.numFeatures));
      this.head = this.register('head', o.numClasses > 0 ? new Linear(this.numFeatures, o.numClasses) : new Identity());
      // Porting note: the official constructor builds norm0..norm3 from embed_dim[1..4] (so it needs 4
      // stages or more, and its forward needs exactly 4); here there is one per stage.
      this.detNorms = [];
      if (o.detNorm) for (let i = 0; i < stages; i++) this.detNorms.push(this.register(`norm${i}`, regionLayerNorm2d(embed[i + 1]!)));
      this.initWeights();
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** The official `_init_weights`: every Linear trunc_normal(std .02) with zero bias; LayerNorms 1/0 (convs keep PyTorch's default). */
  private initWeights(): void {
    this.apply((m) => {
      if (m instanceof Linear) {
        assignInit(m.weight, truncNormal02(m.weight.shape));
        if (m.bias) assignInit(m.bias, zeros(m.bias.shape));
      } else if (m instanceof LayerNorm) {
        if (m.weight) assignInit(m.weight, tf.ones(m.weight.shape));
        if (m.bias) assignInit(m.bias, zeros(m.bias.shape));
      }
    });
  }

  private checkInput(x: tf.Tensor): void {
    checkImageBatch('RegionViT', x);
    if (x.rank !== 4) {
      throw new ShapeError(`RegionViT expected an NHWC image batch [B, H, W, ${this.inChans}], got rank ${x.rank} shape [${x.shape.join(', ')}]`);
    }
    const c = x.shape[3];
    if (c !== this.inChans) throw new ShapeError(`RegionViT expected ${this.inChans} input channels, got ${c} (shape [${x.shape.join(', ')}])`);
  }

  /**
   * Runs the stem and the stages: every stage's regional and local tokens and the detection outputs.
   * `upTo` stops after that stage. Caller owns the returned tensors (wrap in `tf.tidy`).
   */
  trace(x: tf.Tensor4D, upTo = this.layers.length - 1): RegionViTTrace & { last: tf.Tensor4D } {
    this.checkInput(x);
    return tf.tidy(() => {
      let local = this.pos_drop.forward(this.patch_embed.forward(x)) as tf.Tensor4D;
      let regional = this.cls_token.forward(x, true);
      const out: RegionViTTrace = { local: [], regional: [], detection: [] };
      for (let i = 0; i <= upTo && i < this.layers.length; i++) {
        [regional, local] = this.layers.at(i).forward(regional, local);
        out.local.push(local);
        out.regional.push(regional);
        // det_norm feeds the NEXT stage too (official: x = norm_layer(x) inside the loop).
        if (this.detNorm) local = this.detNorms[i]!.forward(local) as tf.Tensor4D;
        out.detection.push(local);
      }
      return { ...out, last: regional };
    });
  }

  /** The normalised regional tokens of the last stage as a map `[B, h, w, C]` (before pooling). */
  forwardFeatures(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => this.norm.forward(this.trace(x).last) as tf.Tensor4D);
  }

  /** Mean of the (normalised) regional tokens, then the classifier. Accepts the map or tokens `[B, N, C]`. */
  forwardHead(features: tf.Tensor, options: { preLogits?: boolean } = {}): tf.Tensor2D {
    if ((features.rank !== 4 && features.rank !== 3) || features.shape[features.rank - 1] !== this.numFeatures) {
      throw new ShapeError(`RegionViT forwardHead expected [B, h, w, ${this.numFeatures}] or [B, N, ${this.numFeatures}], got [${features.shape.join(', ')}]`);
    }
    return tf.tidy(() => {
      const pooled = tf.mean(features, features.rank === 4 ? [1, 2] : 1) as tf.Tensor2D;
      return options.preLogits ? pooled : (this.head.forward(pooled) as tf.Tensor2D);
    });
  }

  override forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x)));
  }

  /** Replaces the classifier (0 → Identity: the logits are the pooled features). */
  /** `setGradCheckpointing` recomputes each regional-to-local block of every stage. */
  protected override gradCheckpointUnits(): Module[] {
    return [...this.layers].flatMap((l) => l.blocks);
  }

  resetClassifier(numClasses: number): void {
    if (!Number.isInteger(numClasses) || numClasses < 0) throw new ConfigError(`resetClassifier expects a non-negative integer, got ${numClasses}`);
    this.head.dispose();
    this.head = this.register('head', numClasses > 0 ? new Linear(this.numFeatures, numClasses) : new Identity());
    if (this.head instanceof Linear) {
      assignInit(this.head.weight, truncNormal02(this.head.weight.shape));
      assignInit(this.head.bias!, zeros(this.head.bias!.shape));
    }
    this.numClasses = numClasses;
  }

  /**
   * Per-stage local tokens as NHWC maps (official `forward_features(x, detection=True)`: through
   * `norm{i}` when `detNorm`), in `featureInfo` order; `indices` pick stages (negative from the
   * end). Only the stages up to the last one asked for are run.
   */
  forwardIntermediates(x: tf.Tensor4D, options: { indices?: number[] } = {}): tf.Tensor4D[] {
    const idx = resolveIndices(options.indices, this.layers.length);
    return tf.tidy(() => {
      const t = this.trace(x, Math.max(-1, ...idx));
      return idx.map((i) => t.detection[i]!);
    });
  }
}

function intList(what: string, v: unknown, minLength: number, allowZero = false): number[] {
  if (!Array.isArray(v) || v.length < minLength) {
    throw new ConfigError(`RegionViT ${what} must be a list of at least ${minLength} integers, got ${JSON.stringify(v)}`);
  }
  for (const d of v) {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < (allowZero ? 0 : 1)) {
      throw new ConfigError(`RegionViT ${what} entries must be ${allowZero ? 'non-negative' : 'positive'} integers, got ${JSON.stringify(v)}`);
    }
  }
  return v as number[];
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
