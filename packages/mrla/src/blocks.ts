import * as tf from '@tensorflow/tfjs-core';
import {
  BatchNorm2d,
  ConfigError,
  Conv1d,
  Conv2d,
  conv2dNHWC,
  DropPath,
  Identity,
  Linear,
  Module,
  ReLU,
  Sequential,
  ShapeError,
  Sigmoid,
  vjp,
  type ActFactory,
  type NormFactory,
} from '@vit/core';

/**
 * The official ECA-style kernel-size rule of the Q/K 1-D convolutions:
 * `t = int(|(log2 C + 1) / 2|)`, `k = t` if odd else `t + 1` (C = 64 → 3, 128…1024 → 5, 2048 → 7).
 * `Math.log(C) / Math.log(2)` is exactly Python's `math.log(C, 2)` (both divide two natural logs).
 */
export function mrlaKernelSize(channels: number): number {
  if (!Number.isInteger(channels) || channels <= 0) throw new ConfigError(`MRLA channels must be a positive integer, got ${channels}`);
  const t = Math.trunc(Math.abs((Math.log(channels) / Math.log(2) + 1) / 2));
  return t % 2 ? t : t + 1;
}

export interface MRLALightLayerOptions {
  /** Number of heads; ignored when `dimPerhead` is given (official: one of the two is required). */
  heads?: number;
  /** Channels per head; heads = int(C / dimPerhead). Default 32 (the official `dim_perhead`). */
  dimPerhead?: number;
  /** Kernel of the Q/K 1-D convolutions; default by `mrlaKernelSize(C)`. */
  kSize?: number;
}

/**
 * `mrla_light_layer` (MRLA-light, eq. 6 of the paper) on NHWC maps. A channel descriptor
 * `y = avgpool(x)` `[B, C]` gives the query and key by 1-D convolutions along channels (`Wq`, `Wk`,
 * no bias); heads are contiguous groups of `C / heads` channels; per head
 * `a_h = sigmoid(Σ Q_h·K_h / √(C/heads))` gates the value `V = Wv(x)` (depthwise 3×3, no bias).
 * Keys: `Wq.weight` `[1,1,k]`, `Wk.weight` `[1,1,k]`, `Wv.weight` `[C,1,3,3]` (official layouts).
 */
export class MRLALightLayer extends Module {
  readonly heads: number;
  readonly kSize: number;
  /** 1/√(C/heads), the official `_norm_fact`. */
  readonly normFact: number;
  readonly Wq: Conv1d;
  readonly Wk: Conv1d;
  readonly Wv: Conv2d;

  constructor(
    readonly inputDim: number,
    options: MRLALightLayerOptions = {},
  ) {
    super();
    if (!Number.isInteger(inputDim) || inputDim <= 0) throw new ConfigError(`MRLALightLayer inputDim must be a positive integer, got ${inputDim}`);
    const { dimPerhead } = options;
    let heads: number;
    if (dimPerhead !== undefined) {
      if (!(dimPerhead > 0)) throw new ConfigError(`MRLALightLayer dimPerhead must be positive, got ${dimPerhead}`);
      heads = Math.trunc(inputDim / dimPerhead);
    } else if (options.heads !== undefined) {
      heads = options.heads;
    } else {
      throw new ConfigError('MRLALightLayer: heads and dimPerhead cannot both be undefined');
    }
    if (!Number.isInteger(heads) || heads < 1) {
      throw new ConfigError(
        `MRLALightLayer needs at least one head: ${inputDim} channels with ${dimPerhead !== undefined ? `dimPerhead ${dimPerhead}` : `heads ${heads}`} gives ${heads} heads`,
      );
    }
    if (inputDim % heads !== 0) {
      // The official `view(b, heads, 1, int(c/heads))` fails for such sizes.
      throw new ConfigError(`MRLALightLayer: ${inputDim} channels cannot be split into ${heads} equal heads`);
    }
    this.heads = heads;
    this.kSize = options.kSize ?? mrlaKernelSize(inputDim);
    if (!Number.isInteger(this.kSize) || this.kSize <= 0) throw new ConfigError(`MRLALightLayer kSize must be a positive integer, got ${this.kSize}`);
    this.normFact = 1 / Math.sqrt(inputDim / heads);
    const pad = Math.floor((this.kSize - 1) / 2);
    this.Wq = this.register('Wq', new Conv1d(1, 1, this.kSize, { padding: pad, bias: false }));
    this.Wk = this.register('Wk', new Conv1d(1, 1, this.kSize, { padding: pad, bias: false }));
    this.Wv = this.register('Wv', new Conv2d(inputDim, inputDim, 3, { padding: 1, groups: inputDim, bias: false }));
  }

  /** The per-sample, per-head gate `[B, heads]` (after the sigmoid). */
  headGates(x: tf.Tensor4D): tf.Tensor2D {
    this.checkInput(x);
    const [b, , , c] = x.shape;
    const d = c / this.heads;
    return tf.tidy(() => {
      const y = tf.reshape(tf.mean(x, [1, 2]), [b, c, 1]); // [B, L=C, 1 channel]
      const q = tf.reshape(this.Wq.forward(y), [b, this.heads, d]);
      const k = tf.reshape(this.Wk.forward(y), [b, this.heads, d]);
      return tf.sigmoid(tf.mul(tf.sum(tf.mul(q, k), -1), this.normFact)) as tf.Tensor2D;
    });
  }

  override forward(x: tf.Tensor4D): tf.Tensor4D {
    this.checkInput(x);
    const b = x.shape[0];
    return tf.tidy(() => {
      const gate = tf.reshape(this.headGates(x), [b, 1, 1, this.heads, 1]);
      return gatedDepthwise(x, this.Wv, gate, this.heads) as tf.Tensor4D;
    });
  }

  private checkInput(x: tf.Tensor): void {
    if (x.rank !== 4 || x.shape[3] !== this.inputDim) {
      throw new ShapeError(`${this.typeName} expected NHWC input with ${this.inputDim} channels, got shape [${x.shape.join(',')}]`);
    }
  }
}

/**
 * `Wv(x)` gated per head, `[B, H, W, C]` from x `[B, H, W, C]` and the gate `[B, 1, 1, heads, 1]`,
 * as one differentiable op that keeps only x, Wv's weight and the gate for the backward pass: the
 * composed form kept V = Wv(x), a full activation-sized map per MRLA layer (12% of what a
 * resnet18_mrlal_cifar step keeps). The backward pass recomputes V (one depthwise conv) for the
 * gate's gradient Σ dy·V and takes x's and the weight's gradients through the conv's own.
 */
export function gatedDepthwise(x: tf.Tensor4D, conv: Conv2d, gate: tf.Tensor, heads: number): tf.Tensor4D {
  if (conv.bias) throw new ConfigError(`gatedDepthwise takes a conv without bias (its gradient is not computed), got ${conv.typeName} with bias`);
  const [b, h, w, c] = x.shape;
  if (c % heads !== 0 || gate.size !== b * heads) {
    throw new ShapeError(`gatedDepthwise: ${c} channels in ${heads} heads need a gate of ${b}×${heads} values, got shape [${gate.shape.join(',')}]`);
  }
  const d = c / heads;
  const split = [b, h, w, heads, d];
  const value = (xi: tf.Tensor, wi: tf.Tensor) => conv2dNHWC(xi, wi, null, conv);
  const op = tf.customGrad(((xi: tf.Tensor, wi: tf.Tensor, gi: tf.Tensor, save: tf.GradSaveFunc) => {
    save([xi, wi, gi]);
    return {
      value: tf.tidy(() => tf.reshape(tf.mul(tf.reshape(value(xi, wi), split), gi), [b, h, w, c])),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ws, gs] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const dy5 = tf.reshape(dy, split);
        const dv = tf.tidy(() => tf.reshape(tf.mul(dy5, gs), [b, h, w, c]));
        const { values, grads } = vjp(() => [value(xs, ws)], [xs, ws], [dv]);
        dv.dispose();
        const dg = tf.tidy(() => tf.sum(tf.mul(dy5, tf.reshape(values[0]!, split)), [1, 2, 4], true));
        tf.dispose([dy5, ...values]);
        return [grads[0] ?? tf.zerosLike(xs), grads[1] ?? tf.zerosLike(ws), dg];
      },
    };
  }) as Parameters<typeof tf.customGrad>[0]);
  return op(x, conv.weight, gate) as tf.Tensor4D;
}

export interface MRLAModuleOptions extends MRLALightLayerOptions {
  /**
   * Builds the layer-attention part `f(x_t)` (default `MRLALightLayer`). It must map an NHWC map of
   * `inputDim` channels to one of the same shape.
   */
  layer?: (inputDim: number) => Module;
}

/**
 * `mrla_module`: `o_t = mrla_light(x_t) + λ_t ⊙ o_{t−1}` with `λ_t` of shape `[C, 1, 1]` (key
 * `lambda_t`, official layout kept) broadcast over batch and space. In a residual block `x_t` is
 * the block output after `relu(out + identity)` and `o_{t−1}` is the block's own, possibly
 * downsampled, identity. A plug-in: any residual block can call it on (output, identity).
 */
export class MRLAModule extends Module {
  readonly lambda_t: tf.Variable;
  readonly mrla: Module;

  constructor(
    readonly inputDim: number,
    options: MRLAModuleOptions = {},
  ) {
    super();
    const { layer, ...layerOptions } = options;
    this.mrla = this.register(
      'mrla',
      layer
        ? layer(inputDim)
        : new MRLALightLayer(inputDim, {
            heads: layerOptions.heads,
            dimPerhead: layerOptions.dimPerhead ?? (layerOptions.heads === undefined ? 32 : undefined),
            kSize: layerOptions.kSize,
          }),
    );
    // Official init: torch.randn(input_dim, 1, 1).
    this.lambda_t = this.addParameter('lambda_t', tf.randomNormal([inputDim, 1, 1]));
  }

  override forward(xt: tf.Tensor4D, ot1: tf.Tensor4D): tf.Tensor4D {
    if (xt.rank !== 4 || xt.shape[3] !== this.inputDim) {
      throw new ShapeError(`${this.typeName} expected x_t NHWC with ${this.inputDim} channels, got shape [${xt.shape.join(',')}]`);
    }
    if (ot1.rank !== 4 || ot1.shape.some((v, i) => v !== xt.shape[i])) {
      throw new ShapeError(`${this.typeName} expected o_(t-1) of the same shape as x_t [${xt.shape.join(',')}], got [${ot1.shape.join(',')}]`);
    }
    return tf.tidy(() => tf.add(this.mrla.forward(xt), tf.mul(tf.reshape(this.lambda_t, [this.inputDim]), ot1)) as tf.Tensor4D);
  }
}

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
