import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { GELU } from './activation.js';
import { Sequential } from './containers.js';
import { Conv2d, toPair, type Pair } from './conv.js';
import { Module } from './module.js';
import { BatchNorm2d } from './norm.js';

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

/** The patch grid of an h×w input. */
function patchGrid(h: number, w: number, [ph, pw]: [number, number]): [number, number] {
  return [Math.floor(h / ph), Math.floor(w / pw)];
}

/** Checks an NHWC input of a patch embedding (channels, divisibility by the patch); returns [B, H, W]. */
function checkPatchInput(what: string, x: tf.Tensor, inChans: number, [ph, pw]: [number, number]): [number, number, number] {
  if (x.rank !== 4 || x.shape[3] !== inChans) {
    throw new ShapeError(`${what} expected NHWC input with ${inChans} channels, got shape [${x.shape.join(',')}]`);
  }
  const [b, h, w] = x.shape as [number, number, number, number];
  if (h % ph !== 0 || w % pw !== 0) {
    throw new ShapeError(`${what}: input height ${h} and width ${w} must be divisible by the patch size ${ph}x${pw}`);
  }
  return [b, h, w];
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
    this.gridSize = this.imgSize ? patchGrid(this.imgSize[0], this.imgSize[1], this.patchSize) : null;
    this.numPatches = this.gridSize ? this.gridSize[0] * this.gridSize[1] : null;
    this.proj = this.register('proj', new Conv2d(this.inChans, this.embedDim, this.patchSize, { stride: this.patchSize, bias: options.bias ?? true }));
    this.norm = options.norm ? this.register('norm', options.norm(this.embedDim)) : null;
  }

  /** The patch grid for an h×w input. */
  outputSize(h: number, w: number): [number, number] {
    return patchGrid(h, w, this.patchSize);
  }

  override forward(x: tf.Tensor): tf.Tensor {
    const [b, h, w] = checkPatchInput(this.typeName, x, this.inChans, this.patchSize);
    const [ph, pw] = this.patchSize;
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

/**
 * A convolutional stem in place of the patchify conv (Xiao et al., "Early Convolutions Help
 * Transformers See Better", NeurIPS 2021): log2(patch) stride-2 3×3 convolutions, each but the
 * last followed by BatchNorm and GELU, widths doubling up to `embedDim` (`stem.0`, `stem.1`, … then
 * `proj`). Same contract as {@link PatchEmbed} (NHWC in, `[B, N, C]` tokens or an NHWC map out), so
 * a ViT that takes a patch-embedding factory can use it; small models trained briefly learn much
 * faster with it than with a linear patchify.
 */
export class ConvStemPatchEmbed extends Module {
  readonly stem: Sequential;
  readonly proj: Conv2d;
  readonly patchSize: [number, number];
  readonly inChans: number;
  readonly embedDim: number;
  readonly flatten: boolean;

  constructor(options: Omit<PatchEmbedOptions, 'norm' | 'bias' | 'strictImgSize'>) {
    super();
    this.patchSize = toPair(options.patchSize, 'ConvStemPatchEmbed patchSize');
    this.inChans = options.inChans ?? 3;
    this.embedDim = options.embedDim;
    const widths = ConvStemPatchEmbed.stemWidths(this.patchSize, this.embedDim);
    this.flatten = options.flatten ?? true;
    this.stem = this.register('stem', new Sequential());
    let c = this.inChans;
    for (const out of widths) {
      this.stem.append(new Conv2d(c, out, 3, { stride: 2, padding: 1, bias: false }));
      this.stem.append(new BatchNorm2d(out));
      this.stem.append(new GELU());
      c = out;
    }
    this.proj = this.register('proj', new Conv2d(c, this.embedDim, 3, { stride: 2, padding: 1 }));
  }

  /**
   * Output widths of the stem's stride-2 convs (before `proj`): one per halving but the last,
   * doubling up to `embedDim` (patch 16, dim 192: 24, 48, 96). Checks the patch size and width.
   */
  static stemWidths(patchSize: number | readonly [number, number], embedDim: number): number[] {
    const [p, q] = toPair(patchSize, 'ConvStemPatchEmbed patchSize');
    const stages = Math.log2(p);
    if (p !== q || p < 2 || !Number.isInteger(stages)) {
      throw new ConfigError(`ConvStemPatchEmbed needs a square power-of-two patch size ≥ 2 (one stride-2 conv per halving), got ${p}x${q}`);
    }
    if (embedDim % 2 ** (stages - 1) !== 0) {
      throw new ConfigError(`ConvStemPatchEmbed embedDim ${embedDim} must be divisible by ${2 ** (stages - 1)} (the stem halves it per stage)`);
    }
    return Array.from({ length: stages - 1 }, (_, i) => embedDim / 2 ** (stages - 1 - i));
  }

  /** Parameters of a ConvStemPatchEmbed without building it (BatchNorm's weight and bias included, its running stats not). */
  static numParams(options: { inChans?: number; embedDim: number; patchSize: number | readonly [number, number] }): number {
    let total = 0;
    let cin = options.inChans ?? 3;
    for (const out of ConvStemPatchEmbed.stemWidths(options.patchSize, options.embedDim)) {
      total += 9 * cin * out + 2 * out;
      cin = out;
    }
    return total + 9 * cin * options.embedDim + options.embedDim;
  }

  /** The token grid for an h×w input. */
  outputSize(h: number, w: number): [number, number] {
    return patchGrid(h, w, this.patchSize);
  }

  override forward(x: tf.Tensor): tf.Tensor {
    const [b, h, w] = checkPatchInput(this.typeName, x, this.inChans, this.patchSize);
    const [ph, pw] = this.patchSize;
    return tf.tidy(() => {
      const y = this.proj.forward(this.stem.forward(x));
      return this.flatten ? tf.reshape(y, [b, (h / ph) * (w / pw), this.embedDim]) : y;
    });
  }
}
