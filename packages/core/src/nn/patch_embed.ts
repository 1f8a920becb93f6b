import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { Conv2d, toPair, type Pair } from './conv.js';
import { Module } from './module.js';

export interface PatchEmbedOptions {
  /** Nominal input size; sets `gridSize`/`numPatches`, and with `strictImgSize` is enforced. */
  imgSize?: Pair;
  patchSize: Pair;
  inChans?: number;
  embedDim: number;
  /** Norm factory, called with embedDim (e.g. `(d) => new LayerNorm(d)`); registered as `norm`. */
  norm?: (dim: number) => Module;
  /** true: `[B, N, C]` tokens (row-major, PyTorch's flatten(2).transpose(1, 2)); false: NHWC map. */
  flatten?: boolean;
  bias?: boolean;
  /** Reject inputs whose size differs from imgSize (timm's strict_img_size). Default false. */
  strictImgSize?: boolean;
}

/** timm's `PatchEmbed`: a k = s = patch Conv2d (`proj`), optional flatten, optional `norm`. */
export class PatchEmbed extends Module {
  readonly proj: Conv2d;
  readonly norm: Module | null;
  readonly patchSize: [number, number];
  readonly imgSize: [number, number] | null;
  readonly gridSize: [number, number] | null;
  readonly numPatches: number | null;
  readonly inChans: number;
  readonly embedDim: number;
  readonly flatten: boolean;
  private readonly strict: boolean;

  constructor(options: PatchEmbedOptions) {
    super();
    this.patchSize = toPair(options.patchSize, 'PatchEmbed patchSize');
    if (this.patchSize.some((p) => p <= 0)) throw new ConfigError(`PatchEmbed patchSize must be positive, got ${this.patchSize}`);
    this.inChans = options.inChans ?? 3;
    this.embedDim = options.embedDim;
    this.flatten = options.flatten ?? true;
    this.strict = options.strictImgSize ?? false;
    this.imgSize = options.imgSize === undefined ? null : toPair(options.imgSize, 'PatchEmbed imgSize');
    this.gridSize = this.imgSize ? [Math.floor(this.imgSize[0] / this.patchSize[0]), Math.floor(this.imgSize[1] / this.patchSize[1])] : null;
    this.numPatches = this.gridSize ? this.gridSize[0] * this.gridSize[1] : null;
    this.proj = this.register('proj', new Conv2d(this.inChans, this.embedDim, this.patchSize, { stride: this.patchSize, bias: options.bias ?? true }));
    this.norm = options.norm ? this.register('norm', options.norm(this.embedDim)) : null;
  }

  /** The patch grid for an h×w input. */
  outputSize(h: number, w: number): [number, number] {
    return [Math.floor(h / this.patchSize[0]), Math.floor(w / this.patchSize[1])];
  }

  override forward(x: tf.Tensor): tf.Tensor {
    if (x.rank !== 4 || x.shape[3] !== this.inChans) {
      throw new ShapeError(`${this.typeName} expected NHWC input with ${this.inChans} channels, got shape [${x.shape.join(',')}]`);
    }
    const [b, h, w] = x.shape as [number, number, number, number];
    const [ph, pw] = this.patchSize;
    if (h % ph !== 0 || w % pw !== 0) {
      throw new ShapeError(`${this.typeName}: input height ${h} and width ${w} must be divisible by the patch size ${ph}x${pw}`);
    }
    if (this.strict && this.imgSize && (h !== this.imgSize[0] || w !== this.imgSize[1])) {
      throw new ShapeError(`${this.typeName} expected a ${this.imgSize[0]}x${this.imgSize[1]} input, got ${h}x${w}`);
    }
    return tf.tidy(() => {
      let y = this.proj.forward(x);
      if (this.flatten) y = tf.reshape(y, [b, (h / ph) * (w / pw), this.embedDim]);
      return this.norm ? this.norm.forward(y) : y;
    });
  }
}
