import * as tf from '@tensorflow/tfjs-core';
import {
  assignInit,
  BatchNorm2d,
  computeFans,
  ConfigError,
  Conv2d,
  dropout,
  Identity,
  kaimingNormal,
  Linear,
  MaxPool2d,
  Module,
  resolveIndices,
  Sequential,
  ShapeError,
  type FeatureInfo,
  type VisionModel,
  checkImageBatch,
  type ActFactory,
  type NormFactory,
} from '@vit/core';
import {
  defaultAct,
  MRLABasicBlock,
  MRLABottleneck,
  MRLAResidualBlock,
  type LayerAttnFactory,
  MRLAModule,
} from './blocks.js';

export type MRLABlockKind = 'bottleneck' | 'basic';
export type MRLAStem = 'imagenet' | 'cifar';

/**
 * Options of `ResNetMRLA`. Defaults are the official `ResNet_mrlal` constructor's (with
 * `MRLA_Bottleneck`, expansion 4, ResNet-50 depths); the extensions are marked.
 */
export interface ResNetMRLAOptions {
  /** `'bottleneck'` = official `MRLA_Bottleneck`; `'basic'` = the seed's BasicBlock (expansion 1). */
  block?: MRLABlockKind;
  /** Blocks per stage, four stages (official `layers`). Default [3, 4, 6, 3]. */
  layers?: readonly number[];
  numClasses?: number;
  /** Extension: input channels (official: 3). */
  inChans?: number;
  /** Official: the `MRLA_Bottleneck.expansion` class attribute (4); basic blocks always use 1. */
  expansion?: number;
  /** Extension: `'imagenet'` (official: 7×7 s2 conv + 3×3 s2 max-pool) or `'cifar'` (the seed's 3×3 s1 conv, no pool). */
  stem?: MRLAStem;
  groups?: number;
  widthPerGroup?: number;
  /** Squeeze-excitation in every block (official `SE`). */
  se?: boolean;
  /** ECA kernel size per stage, or null (official `ECA`: a 4-element list). */
  eca?: ReadonlyArray<number | null> | null;
  /** Zero-init the last norm of every residual branch (official `zero_init_last_bn`, default true). */
  zeroInitLastBn?: boolean;
  /** Dilate instead of striding in stages 2–4 (official `replace_stride_with_dilation`). */
  replaceStrideWithDilation?: readonly [boolean, boolean, boolean] | null;
  /** Norm factory (official `norm_layer`, default BatchNorm2d eps 1e-5 momentum 0.1). */
  normLayer?: NormFactory;
  actLayer?: ActFactory;
  /** Dropout before the classifier (official `drop_rate`). */
  dropRate?: number;
  /** Drop-path rate of the MRLA branch, the same in every block (official `drop_path`). */
  dropPath?: number;
  /** Alias of `dropPath` (the registry's common option name). */
  dropPathRate?: number;
  /** Extension: `false` builds the same ResNet without MRLA (no `mrla`/`bn_mrla`), the seed's baseline. */
  mrla?: boolean;
  /** Channels per MRLA head (official class attribute `mrla_module.dim_perhead` = 32). */
  dimPerhead?: number;
  /** Extension: a custom layer-attention factory replacing `MRLAModule` (overrides `mrla`/`dimPerhead`). */
  layerAttn?: LayerAttnFactory | null;
  /** Extension: stem width (official hard-codes 64). */
  stemWidth?: number;
  /** Extension: `planes` of the four stages (official hard-codes [64, 128, 256, 512]). */
  widths?: readonly number[];
}

const DEFAULTS = {
  block: 'bottleneck' as MRLABlockKind,
  layers: [3, 4, 6, 3],
  numClasses: 1000,
  inChans: 3,
  stem: 'imagenet' as MRLAStem,
  groups: 1,
  widthPerGroup: 64,
  se: false,
  zeroInitLastBn: true,
  dropRate: 0,
  dropPath: 0,
  mrla: true,
  dimPerhead: 32,
  stemWidth: 64,
  widths: [64, 128, 256, 512],
};

/**
 * `ResNet_mrlal`: a ResNet whose every block adds an MRLA-light branch. Keys are the official ones
 * (`conv1`, `bn1`, `layer{1..4}.{j}.…`, `fc`); NHWC in, logits out.
 */
export class ResNetMRLA extends Module implements VisionModel {
  readonly options: Required<Pick<ResNetMRLAOptions, 'block' | 'stem' | 'inChans' | 'expansion' | 'dropRate'>>;
  readonly layers: number[];
  readonly numFeatures: number;
  readonly featureInfo: FeatureInfo[];
  readonly conv1: Conv2d;
  readonly bn1: Module;
  readonly relu: Module;
  readonly maxpool: Module | null;
  readonly stages: Sequential[];
  private _numClasses: number;
  private fc: Module;

  constructor(options: ResNetMRLAOptions = {}) {
    super();
    const o = { ...DEFAULTS, ...stripUndefined(options) };
    const block = o.block;
    if (block !== 'bottleneck' && block !== 'basic') throw new ConfigError(`ResNetMRLA block must be 'bottleneck' or 'basic', got '${String(block)}'`);
    if (o.stem !== 'imagenet' && o.stem !== 'cifar') throw new ConfigError(`ResNetMRLA stem must be 'imagenet' or 'cifar', got '${String(o.stem)}'`);
    const expansion = block === 'basic' ? 1 : (options.expansion ?? MRLABottleneck.expansion);
    if (block === 'basic' && options.expansion !== undefined && options.expansion !== 1) {
      throw new ConfigError(`ResNetMRLA basic blocks have expansion 1, got expansion ${options.expansion}`);
    }
    if (o.layers.length !== 4 || o.layers.some((n) => !Number.isInteger(n) || n < 0)) {
      throw new ConfigError(`ResNetMRLA layers must be 4 non-negative integers (blocks per stage), got ${JSON.stringify(o.layers)}`);
    }
    // Porting note: the official `_make_layer` always builds the first block, so a stage of 0
    // blocks still has one; reproduced so such configs load their official weights.
    const layers = o.layers.map((n) => Math.max(1, n));
    const widths = [...o.widths];
    if (widths.length !== 4 || widths.some((n) => !Number.isInteger(n) || n < 1)) {
      throw new ConfigError(`ResNetMRLA widths must be 4 positive integers, got ${JSON.stringify(o.widths)}`);
    }
    const rswd = o.replaceStrideWithDilation ?? [false, false, false];
    if (rswd.length !== 3) throw new ConfigError(`replaceStrideWithDilation should be null or a 3-element array, got ${JSON.stringify(rswd)}`);
    const eca = o.eca ?? [null, null, null, null];
    if (eca.length !== 4) throw new ConfigError(`eca should be null or a 4-element array, got ${JSON.stringify(eca)}`);
    if (!Number.isInteger(o.numClasses) || o.numClasses < 0) throw new ConfigError(`numClasses must be a non-negative integer, got ${o.numClasses}`);
    if (!Number.isInteger(o.inChans) || o.inChans < 1) throw new ConfigError(`inChans must be a positive integer, got ${o.inChans}`);
    const dropPath = options.dropPath ?? options.dropPathRate ?? 0;
    const norm: NormFactory = o.normLayer ?? ((c) => new BatchNorm2d(c));
    const act: ActFactory = o.actLayer ?? defaultAct;
    const dimPerhead = o.dimPerhead;
    const layerAttn: LayerAttnFactory | null =
      options.layerAttn !== undefined ? options.layerAttn : o.mrla ? (c) => new MRLAModule(c, { dimPerhead }) : null;

    // Refuse impossible sizes before any variable exists (a throwing constructor would leak them).
    if (block === 'basic' && (o.groups !== 1 || o.widthPerGroup !== 64)) {
      throw new ConfigError(`ResNetMRLA basic blocks only support groups=1 and widthPerGroup=64, got groups=${o.groups}, widthPerGroup=${o.widthPerGroup}`);
    }
    if (block === 'basic' && rswd.some(Boolean)) throw new ConfigError('ResNetMRLA basic blocks do not support replaceStrideWithDilation');
    if (options.layerAttn === undefined && o.mrla) {
      for (const w of widths) {
        const c = w * expansion;
        const heads = Math.trunc(c / dimPerhead);
        if (heads < 1 || c % heads !== 0) {
          throw new ConfigError(`ResNetMRLA: a stage of ${c} channels cannot have MRLA heads of ${dimPerhead} channels (needs at least one head and equal heads)`);
        }
      }
    }

    this.options = { block, stem: o.stem, inChans: o.inChans, expansion, dropRate: o.dropRate };
    this.layers = layers;

    // Stem.
    const stemWidth = o.stemWidth;
    if (o.stem === 'imagenet') {
      this.conv1 = this.register('conv1', new Conv2d(o.inChans, stemWidth, 7, { stride: 2, padding: 3, bias: false }));
    } else {
      // Porting note: the seed's CIFAR stem (3×3 stride 1, no max-pool) replaces the official one.
      this.conv1 = this.register('conv1', new Conv2d(o.inChans, stemWidth, 3, { stride: 1, padding: 1, bias: false }));
    }
    this.bn1 = this.register('bn1', norm(stemWidth));
    this.relu = this.register('relu', act());
    this.maxpool = o.stem === 'imagenet' ? this.register('maxpool', new MaxPool2d(3, { stride: 2, padding: 1 })) : null;

    // Stages (official `_make_layer`).
    let inplanes = stemWidth;
    let dilation = 1;
    let reduction = o.stem === 'imagenet' ? 4 : 1;
    this.stages = [];
    this.featureInfo = [];
    for (let i = 0; i < 4; i++) {
      const planes = widths[i]!;
      let stride = i === 0 ? 1 : 2;
      const previousDilation = dilation;
      if (i > 0 && rswd[i - 1]) {
        dilation *= stride;
        stride = 1;
      }
      const out = planes * expansion;
      const common = {
        groups: o.groups,
        baseWidth: o.widthPerGroup,
        normLayer: norm,
        actLayer: act,
        layerAttn,
        dropPath,
        se: o.se,
        ecaSize: eca[i] ?? null,
      };
      const make = (inp: number, s: number, d: number, downsample: Module | null): MRLAResidualBlock =>
        block === 'bottleneck'
          ? new MRLABottleneck(inp, planes, { ...common, stride: s, dilation: d, downsample, expansion })
          : new MRLABasicBlock(inp, planes, { ...common, stride: s, dilation: d, downsample });
      let downsample: Module | null = null;
      if (stride !== 1 || inplanes !== out) {
        downsample = new Sequential(new Conv2d(inplanes, out, 1, { stride, bias: false }), norm(out));
      }
      const stage = new Sequential(make(inplanes, stride, previousDilation, downsample));
      inplanes = out;
      for (let j = 1; j < layers[i]!; j++) stage.append(make(inplanes, 1, dilation, null));
      this.stages.push(this.register(`layer${i + 1}`, stage));
      reduction *= stride;
      this.featureInfo.push({ numChs: out, reduction, module: `layer${i + 1}` });
    }
    this.numFeatures = inplanes;

    // Classifier (the official avgpool has no parameters and is applied in forwardHead).
    this._numClasses = o.numClasses;
    this.fc = this.register('fc', o.numClasses > 0 ? new Linear(this.numFeatures, o.numClasses) : new Identity());

    this.initWeights(o.zeroInitLastBn);
  }

  /**
   * Official init: kaiming-normal (fan_out, relu) for every Conv2d (MRLA's depthwise Wv included),
   * norms at weight 1 / bias 0, then the last norm of each residual branch zeroed if asked.
   * Conv1d (Wq, Wk, ECA), Linear and `lambda_t` (randn) keep their PyTorch defaults.
   */
  private initWeights(zeroInitLastBn: boolean): void {
    for (const [, m] of this.namedModules()) {
      if (m instanceof Conv2d) {
        assignInit(m.weight, kaimingNormal(m.weight.shape, computeFans(m.weight.shape, m.depthwise ? 'depthwise' : 'conv2d'), { mode: 'fan_out', nonlinearity: 'relu' }));
      }
    }
    if (zeroInitLastBn) {
      for (const [, m] of this.namedModules()) if (m instanceof MRLAResidualBlock) m.zeroInitLast();
    }
  }

  get numClasses(): number {
    return this._numClasses;
  }

  /** The classifier module (`fc`; `Identity` when there are no classes). */
  get head(): Module {
    return this.fc;
  }

  /** `setGradCheckpointing` recomputes each residual block (with its MRLA layer) of every stage. */
  protected override gradCheckpointUnits(): Module[] {
    return this.stages.flatMap((s) => [...s]);
  }

  resetClassifier(numClasses: number): void {
    if (!Number.isInteger(numClasses) || numClasses < 0) throw new ConfigError(`numClasses must be a non-negative integer, got ${numClasses}`);
    this.fc.dispose();
    this.fc = this.register('fc', numClasses > 0 ? new Linear(this.numFeatures, numClasses) : new Identity());
    this._numClasses = numClasses;
  }

  private checkInput(x: tf.Tensor): void {
    checkImageBatch('ResNetMRLA', x);
    const c = this.options.inChans;
    if (x.rank !== 4) throw new ShapeError(`ResNetMRLA expected an NHWC batch [B, H, W, ${c}] of rank 4, got shape [${x.shape.join(',')}]`);
    if (x.shape[3] !== c) throw new ShapeError(`ResNetMRLA expected ${c} input channels (NHWC), got shape [${x.shape.join(',')}]`);
  }

  private stem(x: tf.Tensor4D): tf.Tensor4D {
    let y = this.relu.forward(this.bn1.forward(this.conv1.forward(x))) as tf.Tensor4D;
    if (this.maxpool) y = this.maxpool.forward(y) as tf.Tensor4D;
    return y;
  }

  /** The layer4 map `[B, H/32, W/32, numFeatures]` (before pooling). */
  forwardFeatures(x: tf.Tensor4D): tf.Tensor4D {
    this.checkInput(x);
    return tf.tidy(() => {
      let y = this.stem(x);
      for (const s of this.stages) y = s.forward(y) as tf.Tensor4D;
      return y;
    });
  }

  /** Global average pool → dropout (`dropRate`, training only) → `fc`; `preLogits` stops before `fc`. */
  forwardHead(features: tf.Tensor, options: { preLogits?: boolean } = {}): tf.Tensor2D {
    if (features.rank !== 4 || features.shape[3] !== this.numFeatures) {
      throw new ShapeError(`ResNetMRLA.forwardHead expected NHWC features with ${this.numFeatures} channels, got shape [${features.shape.join(',')}]`);
    }
    return tf.tidy(() => {
      let y = tf.mean(features, [1, 2]) as tf.Tensor2D;
      y = dropout(y, this.options.dropRate, this.training) as tf.Tensor2D;
      return options.preLogits ? y : (this.fc.forward(y) as tf.Tensor2D);
    });
  }

  override forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x)));
  }

  /** Outputs of `layer1..layer4` (NHWC), the official per-stage features; `indices` picks stages. */
  forwardIntermediates(x: tf.Tensor4D, options: { indices?: number[] } = {}): tf.Tensor4D[] {
    this.checkInput(x);
    const idx = resolveIndices(options.indices, this.stages.length);
    const last = Math.max(...idx);
    return tf.tidy(() => {
      const outs: tf.Tensor4D[] = [];
      let y = this.stem(x);
      for (let i = 0; i <= last; i++) {
        y = this.stages[i]!.forward(y) as tf.Tensor4D;
        outs.push(y);
      }
      return idx.map((i) => outs[i]!);
    });
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
