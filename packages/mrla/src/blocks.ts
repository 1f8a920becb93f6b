import * as tf from '@tensorflow/tfjs-core';
import {
  BatchNorm2d,
  ConfigError,
  Conv1d,
  Conv2d,
  DropPath,
  Identity,
  Linear,
  Module,
  ReLU,
  Sequential,
  ShapeError,
  Sigmoid,
} from '@vit/core';
import { mrlaKernelSize, MRLAModule } from './mrla.js';

/** Builds a normalisation layer for `channels` (default `BatchNorm2d`, eps 1e-5, momentum 0.1). */
export type NormFactory = (channels: number) => Module;
/** Builds an activation module (default `ReLU`). */
export type ActFactory = () => Module;
/**
 * Builds the layer-attention module of a block for `channels`: a module whose
 * `forward(x_t, o_{t−1})` returns a map of x_t's shape (default `new MRLAModule(channels)`).
 */
export type LayerAttnFactory = (channels: number) => Module;

export const defaultNorm: NormFactory = (c) => new BatchNorm2d(c);
export const defaultAct: ActFactory = () => new ReLU();
export const defaultLayerAttn: LayerAttnFactory = (c) => new MRLAModule(c);

/** `se_layer` (squeeze-excitation, reduction 16, no biases): keys `fc.0.weight`, `fc.2.weight`. */
export class SELayer extends Module {
  readonly fc: Sequential;

  constructor(
    readonly channels: number,
    readonly reduction = 16,
  ) {
    super();
    const hidden = Math.floor(channels / reduction);
    if (hidden < 1) throw new ConfigError(`SELayer: ${channels} channels with reduction ${reduction} leaves no hidden unit`);
    this.fc = this.register('fc', new Sequential(new Linear(channels, hidden, { bias: false }), new ReLU(), new Linear(hidden, channels, { bias: false }), new Sigmoid()));
  }

  override forward(x: tf.Tensor4D): tf.Tensor4D {
    const [b, , , c] = x.shape;
    return tf.tidy(() => tf.mul(x, tf.reshape(this.fc.forward(tf.mean(x, [1, 2])), [b, 1, 1, c])) as tf.Tensor4D);
  }
}

/** `eca_layer` (efficient channel attention): a 1-D conv along the pooled channels, key `conv.weight`. */
export class ECALayer extends Module {
  readonly conv: Conv1d;
  readonly kSize: number;

  constructor(
    readonly channels: number,
    kSize?: number | null,
  ) {
    super();
    this.kSize = kSize ?? mrlaKernelSize(channels);
    this.conv = this.register('conv', new Conv1d(1, 1, this.kSize, { padding: Math.floor((this.kSize - 1) / 2), bias: false }));
  }

  override forward(x: tf.Tensor4D): tf.Tensor4D {
    const [b, , , c] = x.shape;
    return tf.tidy(() => {
      const y = this.conv.forward(tf.reshape(tf.mean(x, [1, 2]), [b, c, 1]));
      return tf.mul(x, tf.reshape(tf.sigmoid(y), [b, 1, 1, c])) as tf.Tensor4D;
    });
  }
}

export interface MRLABlockOptions {
  stride?: number;
  /** Shortcut projection (official: conv1x1 stride + norm, keys `downsample.0/1`); null = identity. */
  downsample?: Module | null;
  groups?: number;
  /** `width_per_group` of the model (64 = plain ResNet). */
  baseWidth?: number;
  dilation?: number;
  normLayer?: NormFactory;
  actLayer?: ActFactory;
  /** Layer attention on (output, identity); `null` gives the plain ResNet block (no `mrla`/`bn_mrla`). */
  layerAttn?: LayerAttnFactory | null;
  /** Stochastic depth on the MRLA branch (official: one rate for every block). */
  dropPath?: number;
  /** Squeeze-excitation on the residual branch (official `SE`). */
  se?: boolean;
  /** ECA kernel size on the residual branch (official `ECA_size`); null/undefined = none. */
  ecaSize?: number | null;
}

/**
 * What MRLA blocks share after their residual branch (official order):
 * `out = se/eca(branch(x))`; `identity = downsample(x)`; `out = act(out + identity)`;
 * `out = out + drop_path(bn_mrla(mrla(out, identity)))`.
 */
export abstract class MRLAResidualBlock extends Module {
  abstract readonly outChannels: number;
  protected act!: Module;
  protected downsample: Module | null = null;
  protected se: SELayer | null = null;
  protected eca: ECALayer | null = null;
  protected mrla: Module | null = null;
  protected bn_mrla: Module | null = null;
  protected drop_path!: Module;

  constructor(readonly inChannels: number) {
    super();
  }

  /** The residual branch up to (and including) its last norm. */
  protected abstract branch(x: tf.Tensor4D): tf.Tensor4D;

  /** Registers the shared tail; call at the end of the subclass constructor (keeps the official key order). */
  protected buildTail(outChannels: number, o: MRLABlockOptions): void {
    this.downsample = this.register('downsample', o.downsample ?? null);
    this.se = this.register('se', o.se ? new SELayer(outChannels, 16) : null);
    this.eca = this.register('eca', o.ecaSize !== undefined && o.ecaSize !== null ? new ECALayer(outChannels, Math.trunc(o.ecaSize)) : null);
    const layerAttn = o.layerAttn === undefined ? defaultLayerAttn : o.layerAttn;
    this.mrla = layerAttn ? this.register('mrla', layerAttn(outChannels)) : null;
    this.bn_mrla = layerAttn ? this.register('bn_mrla', (o.normLayer ?? defaultNorm)(outChannels)) : null;
    const dp = o.dropPath ?? 0;
    this.drop_path = this.register('drop_path', dp > 0 ? new DropPath(dp) : new Identity());
  }

  override forward(x: tf.Tensor4D): tf.Tensor4D {
    if (x.rank !== 4 || x.shape[3] !== this.inChannels) {
      throw new ShapeError(`${this.typeName} expected NHWC input with ${this.inChannels} channels, got shape [${x.shape.join(',')}]`);
    }
    return tf.tidy(() => {
      let out = this.branch(x);
      if (this.se) out = this.se.forward(out);
      if (this.eca) out = this.eca.forward(out);
      const identity = this.downsample ? (this.downsample.forward(x) as tf.Tensor4D) : x;
      if (identity.shape.some((v, i) => v !== out.shape[i])) {
        throw new ShapeError(
          `${this.typeName}: residual branch gives [${out.shape.join(',')}] but the shortcut gives [${identity.shape.join(',')}] (a downsample is needed)`,
        );
      }
      out = this.act.forward(tf.add(out, identity)) as tf.Tensor4D;
      if (this.mrla && this.bn_mrla) {
        const o = this.bn_mrla.forward(this.mrla.forward(out, identity)) as tf.Tensor4D;
        out = tf.add(out, this.drop_path.forward(o)) as tf.Tensor4D;
      }
      return out;
    });
  }

  /** Zero-initialises the scale of the branch's last norm (official `zero_init_last_bn`). */
  abstract zeroInitLast(): void;
}

function zeroWeight(norm: Module): void {
  const w = (norm as { weight?: unknown }).weight;
  if (w instanceof tf.Variable) tf.tidy(() => w.assign(tf.zerosLike(w)));
}

export interface MRLABottleneckOptions extends MRLABlockOptions {
  /** Output channels = planes·expansion. Official class attribute 4; the goldens override it to 1. */
  expansion?: number;
}

/**
 * `MRLA_Bottleneck` (official): conv1x1 → norm → act → conv3x3 (stride, groups, dilation) → norm →
 * act → conv1x1 → norm, with `width = int(planes·baseWidth/64)·groups`, then the shared MRLA tail.
 */
export class MRLABottleneck extends MRLAResidualBlock {
  static readonly expansion = 4;
  readonly outChannels: number;
  readonly width: number;
  readonly conv1: Conv2d;
  readonly bn1: Module;
  readonly conv2: Conv2d;
  readonly bn2: Module;
  readonly conv3: Conv2d;
  readonly bn3: Module;

  constructor(inplanes: number, planes: number, options: MRLABottleneckOptions = {}) {
    super(inplanes);
    const { stride = 1, groups = 1, baseWidth = 64, dilation = 1, expansion = MRLABottleneck.expansion } = options;
    const norm = options.normLayer ?? defaultNorm;
    if (!Number.isInteger(expansion) || expansion <= 0) throw new ConfigError(`MRLABottleneck expansion must be a positive integer, got ${expansion}`);
    this.width = Math.trunc(planes * (baseWidth / 64)) * groups;
    if (this.width <= 0) throw new ConfigError(`MRLABottleneck width int(${planes}·${baseWidth}/64)·${groups} must be positive`);
    this.outChannels = planes * expansion;
    this.conv1 = this.register('conv1', new Conv2d(inplanes, this.width, 1, { bias: false }));
    this.bn1 = this.register('bn1', norm(this.width));
    this.conv2 = this.register('conv2', new Conv2d(this.width, this.width, 3, { stride, padding: dilation, groups, dilation, bias: false }));
    this.bn2 = this.register('bn2', norm(this.width));
    this.conv3 = this.register('conv3', new Conv2d(this.width, this.outChannels, 1, { bias: false }));
    this.bn3 = this.register('bn3', norm(this.outChannels));
    this.act = this.register('relu', (options.actLayer ?? defaultAct)());
    this.buildTail(this.outChannels, options);
  }

  protected branch(x: tf.Tensor4D): tf.Tensor4D {
    let out = this.act.forward(this.bn1.forward(this.conv1.forward(x)));
    out = this.act.forward(this.bn2.forward(this.conv2.forward(out)));
    return this.bn3.forward(this.conv3.forward(out)) as tf.Tensor4D;
  }

  zeroInitLast(): void {
    zeroWeight(this.bn3);
  }
}

/**
 * The seed's `BasicBlock` with MRLA (CIFAR ResNet-18): conv3x3 (stride) → norm → act → conv3x3 →
 * norm, expansion 1, then the same MRLA tail as the bottleneck.
 * Porting note: the seed (Paddle) names the branch `mrla_bn` and `mrla.mla.convq/convk/convv` with
 * `lambda_t` `[1,C,1,1]`; we use the official names (`bn_mrla`, `mrla.mrla.Wq/Wk/Wv`, `lambda_t`
 * `[C,1,1]`) so both block kinds share one key scheme. Same computation and parameter count.
 */
export class MRLABasicBlock extends MRLAResidualBlock {
  static readonly expansion = 1;
  readonly outChannels: number;
  readonly conv1: Conv2d;
  readonly bn1: Module;
  readonly conv2: Conv2d;
  readonly bn2: Module;

  constructor(inplanes: number, planes: number, options: MRLABlockOptions = {}) {
    super(inplanes);
    const { stride = 1, groups = 1, baseWidth = 64, dilation = 1 } = options;
    if (groups !== 1 || baseWidth !== 64) throw new ConfigError(`MRLABasicBlock only supports groups=1 and widthPerGroup=64, got groups=${groups}, widthPerGroup=${baseWidth}`);
    if (dilation > 1) throw new ConfigError('MRLABasicBlock does not support dilation > 1 (as torchvision and the seed)');
    const norm = options.normLayer ?? defaultNorm;
    this.outChannels = planes;
    this.conv1 = this.register('conv1', new Conv2d(inplanes, planes, 3, { stride, padding: 1, bias: false }));
    this.bn1 = this.register('bn1', norm(planes));
    this.act = this.register('relu', (options.actLayer ?? defaultAct)());
    this.conv2 = this.register('conv2', new Conv2d(planes, planes, 3, { padding: 1, bias: false }));
    this.bn2 = this.register('bn2', norm(planes));
    this.buildTail(planes, options);
  }

  protected branch(x: tf.Tensor4D): tf.Tensor4D {
    const out = this.act.forward(this.bn1.forward(this.conv1.forward(x)));
    return this.bn2.forward(this.conv2.forward(out)) as tf.Tensor4D;
  }

  zeroInitLast(): void {
    zeroWeight(this.bn2);
  }
}

export interface WithMRLAOptions {
  /** Layer attention (default `MRLAModule` with heads of 32 channels). */
  layerAttn?: LayerAttnFactory;
  /** Norm after the attention (official `bn_mrla`; default BatchNorm2d). */
  normLayer?: NormFactory;
  /** Maps the block input to the block's identity o_{t−1} when shapes change (default: the input itself). */
  shortcut?: Module | null;
  dropPath?: number;
}

/**
 * The MRLA plug-in for any residual block of another architecture: `y = block(x)`,
 * `identity = shortcut(x) ?? x`, `out = y + drop_path(bn_mrla(mrla(y, identity)))` — the insertion
 * point and formula of the official MRLA blocks. Children: `block`, `shortcut`, `mrla`, `bn_mrla`.
 */
export class WithMRLA extends Module {
  readonly block: Module;
  readonly shortcut: Module | null;
  readonly mrla: Module;
  readonly bn_mrla: Module;
  readonly drop_path: Module;

  constructor(
    block: Module,
    readonly channels: number,
    options: WithMRLAOptions = {},
  ) {
    super();
    this.block = this.register('block', block);
    this.shortcut = this.register('shortcut', options.shortcut ?? null);
    this.mrla = this.register('mrla', (options.layerAttn ?? defaultLayerAttn)(channels));
    this.bn_mrla = this.register('bn_mrla', (options.normLayer ?? defaultNorm)(channels));
    const dp = options.dropPath ?? 0;
    this.drop_path = this.register('drop_path', dp > 0 ? new DropPath(dp) : new Identity());
  }

  override forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const y = this.block.forward(x) as tf.Tensor4D;
      if (y.rank !== 4 || y.shape[3] !== this.channels) {
        throw new ShapeError(`WithMRLA expected the wrapped block to give NHWC maps with ${this.channels} channels, got [${y.shape.join(',')}]`);
      }
      const identity = this.shortcut ? (this.shortcut.forward(x) as tf.Tensor4D) : x;
      const o = this.bn_mrla.forward(this.mrla.forward(y, identity)) as tf.Tensor4D;
      return tf.add(y, this.drop_path.forward(o)) as tf.Tensor4D;
    });
  }
}
