import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  Conv2d,
  Dropout,
  GELU,
  Identity,
  LayerNorm2d,
  Linear,
  Module,
  ModuleList,
  Sequential,
  ShapeError,
  assignInit,
  convOutputSize,
  dropPathRates,
  resolveIndices,
  truncNormal,
  zeros,
  type FeatureInfo,
  type VisionModel,
  checkImageBatch,
} from '@vit/core';
import {
  Conv2FormerBlock,
  conv3Stem,
  groupNormDownsample,
  layerNormDownsample,
  pointwiseStem,
} from './blocks.js';

/** `'conv3'`: the official stride-4 stem (3 convs, 2 BatchNorms). `'pointwise'`: the seed's 1×1 conv, stride 1. */
export type Conv2FormerStem = 'conv3' | 'pointwise';
/** `'layernorm'`: official LN + conv2×2 (bias). `'groupnorm'`: the seed's GroupNorm(1, C) + conv2×2 (no bias). */
export type Conv2FormerDownsample = 'layernorm' | 'groupnorm';
/** `'conv'`: official 1×1 conv → GELU → LN (width `headDim`) → pool → `pred`. `'norm'`: the seed's LN → pool → `pred`. */
export type Conv2FormerHead = 'conv' | 'norm';

/** Options of {@link Conv2Former}; defaults are the official constructor's. */
export interface Conv2FormerOptions {
  /** Depthwise kernel of every modulation branch (odd). Official: positional, 11 for most variants. */
  kernelSize?: number;
  inChans?: number;
  /** Classes; 0 makes `pred` an identity (the model returns pre-logits). */
  numClasses?: number;
  depths?: number[];
  dims?: number[];
  mlpRatios?: number[];
  /** Stochastic depth, linear over all blocks (torch.linspace(0, rate, sum(depths))). */
  dropPathRate?: number;
  /** Dropout on the pooled features before `pred`. Default 0. */
  dropRate?: number;
  /** Layer-scale init; `null` = no layer scale (seed). Default 1e-6 (hard-coded officially). */
  layerScaleInitValue?: number | null;
  stem?: Conv2FormerStem;
  downsample?: Conv2FormerDownsample;
  head?: Conv2FormerHead;
  /** Width of the official conv head. Default 1280 (fixed in the official code). */
  headDim?: number;
  /**
   * Stages the forward pass runs. Default all of `dims`. The official forward hard-codes
   * `range(4)` while building `len(dims)` stages; `fromOfficialConfig` sets 4.
   */
  forwardStages?: number;
}

export type ResolvedConv2FormerOptions = Required<Conv2FormerOptions>;

export const CONV2FORMER_DEFAULTS: ResolvedConv2FormerOptions = {
  kernelSize: 11,
  inChans: 3,
  numClasses: 1000,
  depths: [3, 3, 9, 3],
  dims: [96, 192, 384, 768],
  mlpRatios: [4, 4, 4, 4],
  dropPathRate: 0,
  dropRate: 0,
  layerScaleInitValue: 1e-6,
  stem: 'conv3',
  downsample: 'layernorm',
  head: 'conv',
  headDim: 1280,
  forwardStages: 4,
};

function intList(name: string, v: unknown, min = 1): number[] {
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= min)) {
    throw new ConfigError(`Conv2Former ${name} must be a non-empty list of integers >= ${min}, got ${JSON.stringify(v)}`);
  }
  return [...v];
}

/** Fills defaults and checks every option, with errors that name the option. */
export function resolveConv2FormerOptions(options: Conv2FormerOptions = {}): ResolvedConv2FormerOptions {
  const o = { ...CONV2FORMER_DEFAULTS, ...stripUndefined(options) };
  const dims = intList('dims', o.dims);
  // A stage of depth 0 is an empty nn.Sequential (identity) in the official code.
  const depths = intList('depths', o.depths, 0);
  if (depths.length !== dims.length) {
    throw new ConfigError(`Conv2Former depths (${depths.length} entries) must have one entry per stage of dims (${dims.length})`);
  }
  // Without explicit ratios, every stage gets the official 4.
  if (options.mlpRatios === undefined) o.mlpRatios = dims.map(() => 4);
  if (!Array.isArray(o.mlpRatios) || o.mlpRatios.length !== dims.length) {
    throw new ConfigError(`Conv2Former mlpRatios must have one entry per stage (${dims.length}), got ${JSON.stringify(o.mlpRatios)}`);
  }
  o.mlpRatios.forEach((r, i) => {
    if (typeof r !== 'number' || !(r > 0) || !Number.isInteger(dims[i]! * r)) {
      throw new ConfigError(`Conv2Former mlpRatios[${i}] = ${r}: dims[${i}]·ratio (${dims[i]}·${r}) must be a positive integer`);
    }
  });
  if (!Number.isInteger(o.kernelSize) || o.kernelSize <= 0 || o.kernelSize % 2 === 0) {
    throw new ConfigError(`Conv2Former kernelSize must be a positive odd integer, got ${o.kernelSize}`);
  }
  if (!Number.isInteger(o.inChans) || o.inChans <= 0) throw new ConfigError(`Conv2Former inChans must be a positive integer, got ${o.inChans}`);
  if (!Number.isInteger(o.numClasses) || o.numClasses < 0) {
    throw new ConfigError(`Conv2Former numClasses must be a non-negative integer, got ${o.numClasses}`);
  }
  if (!(o.dropPathRate >= 0 && o.dropPathRate < 1)) throw new ConfigError(`Conv2Former dropPathRate must be in [0, 1), got ${o.dropPathRate}`);
  if (!(o.dropRate >= 0 && o.dropRate < 1)) throw new ConfigError(`Conv2Former dropRate must be in [0, 1), got ${o.dropRate}`);
  if (o.layerScaleInitValue !== null && typeof o.layerScaleInitValue !== 'number') {
    throw new ConfigError(`Conv2Former layerScaleInitValue must be a number or null, got ${JSON.stringify(o.layerScaleInitValue)}`);
  }
  if (o.stem !== 'conv3' && o.stem !== 'pointwise') throw new ConfigError(`Conv2Former stem must be 'conv3' or 'pointwise', got '${String(o.stem)}'`);
  if (o.stem === 'conv3' && dims[0]! < 2) throw new ConfigError(`Conv2Former's conv3 stem works at dims[0] // 2 channels: dims[0] must be >= 2, got ${dims[0]}`);
  if (o.downsample !== 'layernorm' && o.downsample !== 'groupnorm') {
    throw new ConfigError(`Conv2Former downsample must be 'layernorm' or 'groupnorm', got '${String(o.downsample)}'`);
  }
  if (o.head !== 'conv' && o.head !== 'norm') throw new ConfigError(`Conv2Former head must be 'conv' or 'norm', got '${String(o.head)}'`);
  if (!Number.isInteger(o.headDim) || o.headDim <= 0) throw new ConfigError(`Conv2Former headDim must be a positive integer, got ${o.headDim}`);
  // Without an explicit value, run every stage that was built.
  const forwardStages = options.forwardStages ?? dims.length;
  if (!Number.isInteger(forwardStages) || forwardStages < 1 || forwardStages > dims.length) {
    throw new ConfigError(`Conv2Former forwardStages must be an integer in [1, ${dims.length}], got ${forwardStages}`);
  }
  if (dims[forwardStages - 1] !== dims[dims.length - 1]) {
    throw new ConfigError(
      `Conv2Former's head is built for dims[-1] = ${dims[dims.length - 1]} channels but the forward pass stops after stage ${forwardStages - 1} with ${dims[forwardStages - 1]}`,
    );
  }
  return { ...o, dims, depths, mlpRatios: [...o.mlpRatios], forwardStages };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Conv2Former (Hou et al., "Conv2Former: A Simple Transformer-Style ConvNet for Visual
 * Recognition"), official tree: `downsample_layers.{0..n-1}` (stem, then LN + conv2×2),
 * `stages.{i}.{j}` (blocks), `head` (1×1 conv → GELU → LN, width 1280), `pred`.
 * NHWC in, logits out. The seed's CIFAR port is the same tree with `stem: 'pointwise'`,
 * `downsample: 'groupnorm'`, `layerScaleInitValue: null`, `head: 'norm'`.
 */
export class Conv2Former extends Module implements VisionModel {
  readonly options: ResolvedConv2FormerOptions;
  readonly downsample_layers: ModuleList<Sequential>;
  readonly stages: ModuleList<Sequential>;
  readonly head: Sequential;
  readonly headDrop: Dropout;
  private _pred: Module;
  private _numClasses: number;
  readonly numFeatures: number;
  readonly featureInfo: FeatureInfo[];

  constructor(options: Conv2FormerOptions = {}) {
    super();
    const o = resolveConv2FormerOptions(options);
    this.options = o;
    const { dims, depths, inChans } = o;
    const n = dims.length;

    this.downsample_layers = this.register('downsample_layers', new ModuleList<Sequential>());
    this.downsample_layers.append(o.stem === 'conv3' ? conv3Stem(inChans, dims[0]!) : pointwiseStem(inChans, dims[0]!));
    for (let i = 0; i < n - 1; i++) {
      // Porting note: the seed applies its GroupNorm downsampling at the END of stage i; running it
      // at the start of stage i + 1 is the same computation and keeps one tree for both forms.
      this.downsample_layers.append(o.downsample === 'layernorm' ? layerNormDownsample(dims[i]!, dims[i + 1]!) : groupNormDownsample(dims[i]!, dims[i + 1]!));
    }

    const rates = dropPathRates(o.dropPathRate, depths.reduce((a, b) => a + b, 0));
    this.stages = this.register('stages', new ModuleList<Sequential>());
    let cur = 0;
    for (let i = 0; i < n; i++) {
      const stage = new Sequential();
      for (let j = 0; j < depths[i]!; j++) {
        stage.append(
          new Conv2FormerBlock(dims[i]!, {
            kernelSize: o.kernelSize,
            mlpRatio: o.mlpRatios[i]!,
            dropPath: rates[cur + j]!,
            layerScaleInitValue: o.layerScaleInitValue,
          }),
        );
      }
      this.stages.append(stage);
      cur += depths[i]!;
    }

    const last = dims[n - 1]!;
    if (o.head === 'conv') {
      this.head = this.register('head', new Sequential(new Conv2d(last, o.headDim, 1), new GELU(), new LayerNorm2d(o.headDim, { eps: 1e-6 })));
      this.numFeatures = o.headDim;
    } else {
      // The seed: LayerNorm(C, eps 1e-6) on the channels-last map, then pooling and a Linear.
      this.head = this.register('head', new Sequential(new LayerNorm2d(last, { eps: 1e-6 })));
      this.numFeatures = last;
    }
    // Porting note: the official constructor accepts drop_rate and ignores it; here it is a dropout
    // before `pred` (default 0, so the default model is the official one). No parameters.
    this.headDrop = this.register('head_drop', new Dropout(o.dropRate));
    this._numClasses = o.numClasses;
    this._pred = this.register('pred', this.makePred(o.numClasses));

    const stemReduction = o.stem === 'conv3' ? 4 : 1;
    this.featureInfo = Array.from({ length: o.forwardStages }, (_, i) => ({
      numChs: dims[i]!,
      reduction: stemReduction * 2 ** i,
      module: `stages.${i}`,
    }));
    this.initWeights();
  }

  get numClasses(): number {
    return this._numClasses;
  }

  /** The classifier (`pred`): Linear(numFeatures, numClasses), or Identity when numClasses is 0. */
  get pred(): Module {
    return this._pred;
  }

  private makePred(numClasses: number): Module {
    return numClasses > 0 ? new Linear(this.numFeatures, numClasses) : new Identity();
  }

  /** The official `_init_weights`: trunc-normal(0.02) conv/linear weights, zero biases. */
  private initWeights(): void {
    this.apply((m) => {
      if (m instanceof Conv2d || m instanceof Linear) {
        assignInit(m.weight, truncNormal(m.weight.shape, { std: 0.02 }));
        if (m.bias) assignInit(m.bias, zeros(m.bias.shape));
      }
    });
  }

  /** Spatial size after each stage for an h×w input (PyTorch's floor rules). */
  stageSizes(h: number, w: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    let [ch, cw] = [h, w];
    if (this.options.stem === 'conv3') {
      const stem = (s: number) => convOutputSize(convOutputSize(convOutputSize(s, 3, 2, 1, 1), 3, 1, 1, 1), 2, 2, 0, 1);
      [ch, cw] = [stem(ch), stem(cw)];
    }
    for (let i = 0; i < this.options.forwardStages; i++) {
      if (i > 0) [ch, cw] = [convOutputSize(ch, 2, 2, 0, 1), convOutputSize(cw, 2, 2, 0, 1)];
      out.push([ch, cw]);
    }
    return out;
  }

  /** Smallest input side that leaves at least one pixel in the last stage. */
  minInputSize(): number {
    let s = 1;
    while (this.stageSizes(s, s).some(([a]) => a < 1)) s++;
    return s;
  }

  private checkInput(x: tf.Tensor): void {
    checkImageBatch('Conv2Former', x);
    const c = this.options.inChans;
    if (x.rank !== 4) {
      throw new ShapeError(`Conv2Former expects NHWC input [B, H, W, ${c}] (rank 4), got rank ${x.rank} shape [${x.shape.join(', ')}]`);
    }
    const [, h, w, ch] = x.shape as [number, number, number, number];
    if (ch !== c) throw new ShapeError(`Conv2Former expects ${c} input channels (NHWC, channels last), got ${ch} in shape [${x.shape.join(', ')}]`);
    if (this.stageSizes(h, w).some(([a, b]) => a < 1 || b < 1)) {
      const m = this.minInputSize();
      throw new ShapeError(
        `Conv2Former input ${h}x${w} is too small: the ${this.options.forwardStages} stages (total stride ${this.featureInfo.at(-1)!.reduction}) need at least ${m}x${m}`,
      );
    }
  }

  private runStages(x: tf.Tensor4D, upTo: number, collect?: (i: number, t: tf.Tensor4D) => void): tf.Tensor4D {
    let y: tf.Tensor4D = x;
    for (let i = 0; i <= upTo; i++) {
      y = this.downsample_layers.at(i).forward(y) as tf.Tensor4D;
      y = this.stages.at(i).forward(y) as tf.Tensor4D;
      collect?.(i, y);
    }
    return y;
  }

  /** Stem and stages: the last stage's NHWC map (unpooled, before the head). */
  forwardFeatures(x: tf.Tensor4D): tf.Tensor4D {
    this.checkInput(x);
    return tf.tidy(() => this.runStages(x, this.options.forwardStages - 1));
  }

  /** Head (conv/LN, or LN) → mean over H, W → dropout → `pred`; `preLogits` stops before `pred`. */
  forwardHead(features: tf.Tensor, options: { preLogits?: boolean } = {}): tf.Tensor2D {
    const c = this.options.dims[this.options.dims.length - 1]!;
    if (features.rank !== 4 || features.shape[3] !== c) {
      throw new ShapeError(`Conv2Former.forwardHead expects the last stage's NHWC map [B, H, W, ${c}], got shape [${features.shape.join(', ')}]`);
    }
    return tf.tidy(() => {
      const h = this.head.forward(features);
      const pooled = this.headDrop.forward(tf.mean(h, [1, 2])) as tf.Tensor2D;
      return options.preLogits ? pooled : (this._pred.forward(pooled) as tf.Tensor2D);
    });
  }

  forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x)));
  }

  /** Per-stage NHWC maps (outputs of `stages.i`), in `featureInfo` order. */
  forwardIntermediates(x: tf.Tensor4D, options: { indices?: number[] } = {}): tf.Tensor4D[] {
    this.checkInput(x);
    const idx = resolveIndices(options.indices, this.options.forwardStages);
    if (idx.length === 0) return [];
    return tf.tidy(() => {
      const maps: tf.Tensor4D[] = [];
      this.runStages(x, Math.max(...idx), (i, t) => {
        maps[i] = t;
      });
      return idx.map((i) => maps[i]!);
    });
  }

  /** `setGradCheckpointing` recomputes each block of every stage. */
  protected override gradCheckpointUnits(): Module[] {
    return [...this.stages].flatMap((s) => [...s]);
  }

  resetClassifier(numClasses: number): void {
    if (!Number.isInteger(numClasses) || numClasses < 0) {
      throw new ConfigError(`resetClassifier: numClasses must be a non-negative integer, got ${numClasses}`);
    }
    const old = this._pred;
    this._pred = this.register('pred', this.makePred(numClasses));
    this._pred.train(this.training);
    this._numClasses = numClasses;
    old.dispose();
    if (this._pred instanceof Linear) {
      assignInit(this._pred.weight, truncNormal(this._pred.weight.shape, { std: 0.02 }));
      assignInit(this._pred.bias!, zeros(this._pred.bias!.shape));
    }
  }
}
