/**
 * Deformable convolution modules (mmcv/torchvision semantics) on core's `deformConv2d` op:
 * LITv2's deformable token merging uses them, and any backbone can.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { deformConv2d } from '../ops/deform.js';
import { Conv2d, Conv2dGeometry, type Pair } from './conv.js';
import { assignInit, kaimingUniform, uniform, zeros } from './init.js';
import { checkMap, positiveInt } from './input.js';

export interface DeformConv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  deformableGroups?: number;
  /**
   * false: the bias is a frozen zero (the official module keeps the `bias` key either way, with
   * `requires_grad = False`). Default true.
   */
  bias?: boolean;
}

/**
 * The official `DeformConv2d` (DCNv1 op, mmcv/torchvision semantics) as a module: parameters
 * `weight` (our conv layout `[kh, kw, in/groups, out]`, PyTorch `[out, in/groups, kh, kw]`) and
 * `bias`; `forward(x, offset, mask?)` on NHWC with offsets `[B, Ho, Wo, 2·dg·kh·kw]` (and an
 * optional DCNv2 mask `[B, Ho, Wo, dg·kh·kw]`, used as given). Runs core's `deformConv2d`.
 */
export class DeformConv2d extends Conv2dGeometry {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;
  readonly deformableGroups: number;

  constructor(inChannels: number, outChannels: number, kernelSize: Pair, options: DeformConv2dOptions = {}) {
    super('DeformConv2d', inChannels, outChannels, kernelSize, options);
    const { groups = 1, deformableGroups = 1, bias = true } = options;
    positiveInt(`${this.typeName} inChannels`, inChannels);
    positiveInt(`${this.typeName} outChannels`, outChannels);
    positiveInt(`${this.typeName} groups`, groups);
    positiveInt(`${this.typeName} deformableGroups`, deformableGroups);
    if (inChannels % groups !== 0) throw new ConfigError(`in_channels ${inChannels} must be divisible by groups ${groups}`);
    if (outChannels % groups !== 0) throw new ConfigError(`out_channels ${outChannels} must be divisible by groups ${groups}`);
    if (inChannels % deformableGroups !== 0) throw new ConfigError(`in_channels ${inChannels} must be divisible by deformable_groups ${deformableGroups}`);
    if ([...this.kernelSize, ...this.stride, ...this.dilation].some((v) => v <= 0) || this.padding.some((v) => v < 0)) {
      throw new ConfigError(`DeformConv2d: kernel size, stride and dilation must be positive and padding >= 0`);
    }
    this.deformableGroups = deformableGroups;
    const [kh, kw] = this.kernelSize;
    const fanIn = (inChannels / groups) * kh * kw;
    // reset_parameters(): kaiming_uniform(a=√5) weight, U(±1/√fan_in) bias.
    this.weight = this.addParameter('weight', kaimingUniform([kh, kw, inChannels / groups, outChannels], fanIn, { a: Math.sqrt(5) }), { kind: 'conv2d' });
    const bound = 1 / Math.sqrt(fanIn);
    this.bias = this.addParameter('bias', bias ? uniform([outChannels], { low: -bound, high: bound }) : zeros([outChannels]), { trainable: bias });
  }

  override forward(x: tf.Tensor, offset?: tf.Tensor, mask?: tf.Tensor | null): tf.Tensor {
    checkMap(this, x, this.inChannels);
    if (!offset) throw new ShapeError(`${this.typeName}.forward needs offsets [B, Ho, Wo, ${2 * this.deformableGroups * this.kernelSize[0] * this.kernelSize[1]}]`);
    return deformConv2d(x, offset, this.weight, this.bias, {
      stride: this.stride,
      padding: this.padding,
      dilation: this.dilation,
      groups: this.groups,
      deformableGroups: this.deformableGroups,
      mask: mask ?? null,
    });
  }
}

/**
 * The official `DeformConv2dPack` (DCNv1): a {@link DeformConv2d} that predicts its own offsets
 * with `conv_offset` (Conv2d, same kernel/stride/padding, no dilation, zero-initialised).
 */
export class DeformConv2dPack extends DeformConv2d {
  readonly conv_offset: Conv2d;

  constructor(inChannels: number, outChannels: number, kernelSize: Pair, options: DeformConv2dOptions = {}) {
    super(inChannels, outChannels, kernelSize, options);
    const [kh, kw] = this.kernelSize;
    // Porting note: as the official module, conv_offset takes kernel, stride and padding but not
    // the dilation; with dilation > 1 its output size differs and forward refuses the shapes.
    this.conv_offset = this.register('conv_offset', new Conv2d(inChannels, this.deformableGroups * 2 * kh * kw, this.kernelSize, { stride: this.stride, padding: this.padding }));
    assignInit(this.conv_offset.weight, zeros(this.conv_offset.weight.shape));
    assignInit(this.conv_offset.bias!, zeros(this.conv_offset.bias!.shape));
  }

  /** The offsets `conv_offset(x)`, `[B, Ho, Wo, 2·dg·kh·kw]` (channel 2k = dy, 2k+1 = dx). */
  offsets(x: tf.Tensor): tf.Tensor {
    return this.conv_offset.forward(x);
  }

  override forward(x: tf.Tensor): tf.Tensor {
    checkMap(this, x, this.inChannels);
    return tf.tidy(() => super.forward(x, this.offsets(x)));
  }
}
