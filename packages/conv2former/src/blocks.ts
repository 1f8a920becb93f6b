import * as tf from '@tensorflow/tfjs-core';
import {
  BatchNorm2d,
  checkMap,
  ConfigError,
  Conv2d,
  DropPath,
  GELU,
  GroupNorm,
  Identity,
  LayerNorm2d,
  Module,
  positiveInt,
  Sequential,
  type ActFactory,
  type NormFactory,
} from '@vit/core';

/**
 * Conv2Former building blocks (HVision-NKU/Conv2Former `models/conv2former.py`), on NHWC maps.
 * Every block takes its parts (norm, activation, attention, MLP) as factories so they can be
 * recombined into new backbones; the defaults build the official modules, with child names equal
 * to the official state_dict keys.
 */

/** Builds a token mixer or an MLP for `dim` channels: NHWC in, NHWC out, same shape. */
export type MixerFactory = (dim: number) => Module;

/** The official channels-first LayerNorm (biased variance over C, eps 1e-6). */
export const defaultNorm: NormFactory = (dim) => new LayerNorm2d(dim, { eps: 1e-6 });
/** Exact (erf) GELU, as every official Conv2Former activation. */
export const defaultAct: ActFactory = () => new GELU();

export interface SpatialAttentionOptions {
  /** Depthwise kernel of the modulation branch; odd (the official padding is k//2). Default 11. */
  kernelSize?: number;
  normLayer?: NormFactory;
  actLayer?: ActFactory;
}

/**
 * Convolutional modulation (the official `SpatialAttention`, the paper's ConvMod):
 * `n = norm(x); proj(att(n) ⊙ v(n))` with `att = 1×1 conv → act → depthwise k×k (pad k//2)`.
 * Children: `norm`, `att.{0,1,2}`, `v`, `proj`.
 */
export class SpatialAttention extends Module {
  readonly norm: Module;
  readonly att: Sequential;
  readonly v: Conv2d;
  readonly proj: Conv2d;
  readonly kernelSize: number;

  constructor(
    readonly dim: number,
    options: SpatialAttentionOptions = {},
  ) {
    super();
    positiveInt('SpatialAttention dim', dim);
    const { kernelSize = 11, normLayer = defaultNorm, actLayer = defaultAct } = options;
    positiveInt('SpatialAttention kernelSize', kernelSize);
    if (kernelSize % 2 === 0) {
      // An even kernel with padding k//2 grows the map by one pixel, and the official `att(x) * v(x)`
      // then fails on mismatched shapes; refuse it up front.
      throw new ConfigError(`SpatialAttention kernelSize must be odd (padding is kernelSize // 2), got ${kernelSize}`);
    }
    this.kernelSize = kernelSize;
    this.norm = this.register('norm', normLayer(dim));
    this.att = this.register(
      'att',
      new Sequential(new Conv2d(dim, dim, 1), actLayer(), new Conv2d(dim, dim, kernelSize, { padding: Math.floor(kernelSize / 2), groups: dim })),
    );
    this.v = this.register('v', new Conv2d(dim, dim, 1));
    this.proj = this.register('proj', new Conv2d(dim, dim, 1));
  }

  override forward(x: tf.Tensor): tf.Tensor {
    checkMap(this, x, this.dim);
    return tf.tidy(() => {
      const n = this.norm.forward(x) as tf.Tensor;
      return this.proj.forward(tf.mul(this.att.forward(n), this.v.forward(n)));
    });
  }
}

/** The paper's name for the official `SpatialAttention`. */
export { SpatialAttention as ConvMod };

export interface ConvMlpOptions {
  /** Hidden width = dim · mlpRatio (must come out an integer). Default 4. */
  mlpRatio?: number;
  /** Explicit hidden width; overrides `mlpRatio`. */
  hiddenDim?: number;
  /** Kernel of the depthwise positional conv (official 3, padding k//2). */
  posKernelSize?: number;
  normLayer?: NormFactory;
  actLayer?: ActFactory;
}

/**
 * The official Conv2Former `MLP`: `h = act(fc1(norm(x))); h = h + act(pos(h)); fc2(h)`, 1×1 convs
 * with a depthwise 3×3 positional conv in between. Children: `norm`, `fc1`, `pos`, `fc2`, `act`.
 */
export class ConvMlp extends Module {
  readonly norm: Module;
  readonly fc1: Conv2d;
  readonly pos: Conv2d;
  readonly fc2: Conv2d;
  readonly act: Module;
  readonly hiddenDim: number;

  constructor(
    readonly dim: number,
    options: ConvMlpOptions = {},
  ) {
    super();
    positiveInt('ConvMlp dim', dim);
    const { mlpRatio = 4, normLayer = defaultNorm, actLayer = defaultAct, posKernelSize = 3 } = options;
    const hidden = options.hiddenDim ?? dim * mlpRatio;
    if (!Number.isInteger(hidden) || hidden <= 0) {
      throw new ConfigError(`ConvMlp hidden width dim·mlpRatio = ${dim}·${mlpRatio} = ${hidden} must be a positive integer`);
    }
    positiveInt('ConvMlp posKernelSize', posKernelSize);
    if (posKernelSize % 2 === 0) throw new ConfigError(`ConvMlp posKernelSize must be odd, got ${posKernelSize}`);
    this.hiddenDim = hidden;
    this.norm = this.register('norm', normLayer(dim));
    this.fc1 = this.register('fc1', new Conv2d(dim, hidden, 1));
    this.pos = this.register('pos', new Conv2d(hidden, hidden, posKernelSize, { padding: Math.floor(posKernelSize / 2), groups: hidden }));
    this.fc2 = this.register('fc2', new Conv2d(hidden, dim, 1));
    this.act = this.register('act', actLayer());
  }

  override forward(x: tf.Tensor): tf.Tensor {
    checkMap(this, x, this.dim);
    return tf.tidy(() => {
      let h = this.act.forward(this.fc1.forward(this.norm.forward(x))) as tf.Tensor;
      h = tf.add(h, this.act.forward(this.pos.forward(h)) as tf.Tensor);
      return this.fc2.forward(h);
    });
  }
}

export interface Conv2FormerBlockOptions {
  /** Token mixer factory; default the official `SpatialAttention` with `kernelSize`. */
  attnLayer?: MixerFactory;
  /** Channel MLP factory; default the official `ConvMlp` with `mlpRatio`. */
  mlpLayer?: MixerFactory;
  kernelSize?: number;
  mlpRatio?: number;
  dropPath?: number;
  /**
   * Initial value of the per-channel layer scales `layer_scale_1/2` ([dim], broadcast over H, W).
   * `null` builds a block without layer scale (the seed's CIFAR port). Default 1e-6 (the official
   * code hard-codes it, whatever its `layer_scale_init_value` argument says).
   */
  layerScaleInitValue?: number | null;
  normLayer?: NormFactory;
  actLayer?: ActFactory;
}

/**
 * The official `Block`: `x + drop_path(ls1·attn(x))`, then `x + drop_path(ls2·mlp(x))`; the
 * norms live inside `attn` and `mlp`. Children: `attn`, `drop_path`, `mlp`; parameters
 * `layer_scale_1`, `layer_scale_2` (when layer scale is on).
 */
export class Conv2FormerBlock extends Module {
  readonly attn: Module;
  readonly drop_path: Module;
  readonly mlp: Module;
  readonly layer_scale_1: tf.Variable | null;
  readonly layer_scale_2: tf.Variable | null;

  constructor(
    readonly dim: number,
    options: Conv2FormerBlockOptions = {},
  ) {
    super();
    positiveInt('Conv2FormerBlock dim', dim);
    const { kernelSize = 11, mlpRatio = 4, dropPath = 0, normLayer = defaultNorm, actLayer = defaultAct } = options;
    const layerScale = options.layerScaleInitValue === undefined ? 1e-6 : options.layerScaleInitValue;
    const attnLayer = options.attnLayer ?? ((d: number) => new SpatialAttention(d, { kernelSize, normLayer, actLayer }));
    const mlpLayer = options.mlpLayer ?? ((d: number) => new ConvMlp(d, { mlpRatio, normLayer, actLayer }));
    if (layerScale !== null) {
      this.layer_scale_1 = this.addParameter('layer_scale_1', tf.fill([dim], layerScale), { noWeightDecay: true });
      this.layer_scale_2 = this.addParameter('layer_scale_2', tf.fill([dim], layerScale), { noWeightDecay: true });
    } else {
      this.layer_scale_1 = null;
      this.layer_scale_2 = null;
    }
    this.attn = this.register('attn', attnLayer(dim));
    this.drop_path = this.register('drop_path', dropPath > 0 ? new DropPath(dropPath) : new Identity());
    this.mlp = this.register('mlp', mlpLayer(dim));
  }

  override forward(x: tf.Tensor): tf.Tensor {
    checkMap(this, x, this.dim);
    return tf.tidy(() => {
      let a = this.attn.forward(x) as tf.Tensor;
      if (this.layer_scale_1) a = tf.mul(a, this.layer_scale_1);
      const y = tf.add(x, this.drop_path.forward(a) as tf.Tensor);
      let m = this.mlp.forward(y) as tf.Tensor;
      if (this.layer_scale_2) m = tf.mul(m, this.layer_scale_2);
      return tf.add(y, this.drop_path.forward(m) as tf.Tensor);
    });
  }
}

/**
 * The official stem (`downsample_layers.0`), stride 4: conv3×3 s2 p1 → GELU → BN → conv3×3 s1 p1 →
 * GELU → BN → conv2×2 s2, convs without bias, width `outDim // 2` inside. GELU comes BEFORE each
 * BatchNorm, as in the official code. Sequential indices 0, 2, 3, 5, 6 hold weights.
 */
export function conv3Stem(inChans: number, outDim: number, options: { actLayer?: ActFactory } = {}): Sequential {
  const { actLayer = defaultAct } = options;
  const mid = Math.floor(outDim / 2);
  if (mid < 1) throw new ConfigError(`conv3Stem needs an output width of at least 2 (it works at outDim // 2), got ${outDim}`);
  return new Sequential(
    new Conv2d(inChans, mid, 3, { stride: 2, padding: 1, bias: false }),
    actLayer(),
    new BatchNorm2d(mid),
    new Conv2d(mid, mid, 3, { stride: 1, padding: 1, bias: false }),
    actLayer(),
    new BatchNorm2d(mid),
    new Conv2d(mid, outDim, 2, { stride: 2, bias: false }),
  );
}

/** The seed's CIFAR stem: one 1×1 conv with bias, stride 1 (`fc1` in the seed). */
export function pointwiseStem(inChans: number, outDim: number): Sequential {
  return new Sequential(new Conv2d(inChans, outDim, 1));
}

/** The official downsampling between stages: channels-first LayerNorm → conv2×2 s2 (with bias). */
export function layerNormDownsample(inDim: number, outDim: number, options: { normLayer?: NormFactory } = {}): Sequential {
  const { normLayer = defaultNorm } = options;
  return new Sequential(normLayer(inDim), new Conv2d(inDim, outDim, 2, { stride: 2 }));
}

/**
 * The seed's downsampling: GroupNorm(1, C) (statistics over C, H and W jointly, eps 1e-5) →
 * bias-free conv2×2 s2.
 */
export function groupNormDownsample(inDim: number, outDim: number): Sequential {
  return new Sequential(new GroupNorm(1, inDim), new Conv2d(inDim, outDim, 2, { stride: 2, bias: false }));
}
