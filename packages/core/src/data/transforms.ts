import { ConfigError } from '../errors.js';
import {
  createImage,
  cropImage,
  flipHorizontal,
  grayscaleOf,
  normalizeImage,
  repeatChannels,
  resizeImage,
  rotateImage,
  type FloatImage,
  type Interpolation,
} from './image.js';
import type { Rng } from './rng.js';

/**
 * A per-sample transform on an HWC float image. Random transforms draw only from `rng`, which the
 * loader seeds per (seed, epoch, position), so a sample is augmented identically on every rerun.
 * Transforms never modify their input.
 */
export interface Transform {
  apply(img: FloatImage, rng: Rng): FloatImage;
}

export type Size = number | readonly [number, number];

function sizeHW(size: Size, what: string): [number, number] {
  const [h, w] = typeof size === 'number' ? [size, size] : size;
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) {
    throw new ConfigError(`${what}: size must be a positive integer or [height, width], got ${JSON.stringify(size)}`);
  }
  return [h, w];
}

function checkRange(range: readonly [number, number], what: string, min = -Infinity): void {
  if (!(range[0] <= range[1]) || range[0] < min) {
    throw new ConfigError(`${what} must be [lo, hi] with ${min === -Infinity ? '' : `${min} ≤ `}lo ≤ hi, got [${range.join(', ')}]`);
  }
}

/** Python's `random.randint(lo, hi)` (both ends inclusive). */
function randint(rng: Rng, lo: number, hi: number): number {
  return lo + rng.int(hi - lo + 1);
}

/** Applies transforms in order. */
export class Compose implements Transform {
  readonly transforms: readonly Transform[];
  constructor(transforms: readonly Transform[]) {
    this.transforms = transforms;
  }
  apply(img: FloatImage, rng: Rng): FloatImage {
    for (const t of this.transforms) img = t.apply(img, rng);
    return img;
  }
}

/**
 * torchvision `Resize`: a number resizes the shorter side to it keeping the aspect ratio;
 * `[h, w]` resizes to exactly that.
 */
export class Resize implements Transform {
  private readonly size: Size;
  constructor(
    size: Size,
    private readonly interpolation: Interpolation = 'bilinear',
  ) {
    sizeHW(size, 'Resize');
    this.size = size;
  }
  apply(img: FloatImage): FloatImage {
    const [h, w] = shorterSide(img, this.size);
    return resizeImage(img, h, w, this.interpolation);
  }
}

function shorterSide(img: FloatImage, size: Size): [number, number] {
  if (typeof size !== 'number') return [size[0], size[1]];
  const { height: H, width: W } = img;
  if (H <= W) return [size, Math.trunc((size * W) / H)];
  return [Math.trunc((size * H) / W), size];
}

/**
 * Evaluation crop. Without `cropPct`, torchvision `CenterCrop(size)`. With `cropPct`, timm's eval
 * transform: resize the shorter side to ⌊size / cropPct⌋, then centre-crop `size`.
 */
export class CenterCrop implements Transform {
  private readonly hw: [number, number];
  private readonly cropPct: number | undefined;
  private readonly interpolation: Interpolation;
  constructor(size: Size, options: { cropPct?: number; interpolation?: Interpolation } = {}) {
    this.hw = sizeHW(size, 'CenterCrop');
    this.cropPct = options.cropPct;
    this.interpolation = options.interpolation ?? 'bilinear';
    if (this.cropPct !== undefined && !(this.cropPct > 0 && this.cropPct <= 1)) {
      throw new ConfigError(`CenterCrop: cropPct must be in (0, 1], got ${this.cropPct}`);
    }
  }
  apply(img: FloatImage): FloatImage {
    const [h, w] = this.hw;
    if (this.cropPct !== undefined) {
      // timm: a square target resizes the shorter side, a non-square one resizes to exactly that.
      const scaled: Size = h === w ? Math.floor(h / this.cropPct) : [Math.floor(h / this.cropPct), Math.floor(w / this.cropPct)];
      const [rh, rw] = shorterSide(img, scaled);
      img = resizeImage(img, rh, rw, this.interpolation);
    }
    // torchvision rounds the offsets: int(round((H - h) / 2)).
    const top = Math.round((img.height - h) / 2);
    const left = Math.round((img.width - w) / 2);
    return cropImage(img, top, left, h, w);
  }
}

/**
 * torchvision `RandomCrop(size, padding)`: zero-pad each side by `padding`, then crop `size` at a
 * uniformly random position (the usual CIFAR / Fashion-MNIST augmentation).
 */
export class RandomCrop implements Transform {
  private readonly hw: [number, number];
  constructor(
    size: Size,
    private readonly options: { padding?: number; fill?: number } = {},
  ) {
    this.hw = sizeHW(size, 'RandomCrop');
  }
  apply(img: FloatImage, rng: Rng): FloatImage {
    const p = this.options.padding ?? 0;
    const [h, w] = this.hw;
    const H = img.height + 2 * p;
    const W = img.width + 2 * p;
    if (h > H || w > W) throw new ConfigError(`RandomCrop: crop ${h}x${w} is larger than the padded image ${H}x${W}`);
    const top = rng.int(H - h + 1) - p;
    const left = rng.int(W - w + 1) - p;
    return cropImage(img, top, left, h, w, this.options.fill ?? 0);
  }
}

/**
 * torchvision/timm `RandomResizedCrop`: a crop of random area (fraction `scale` of the image)
 * and aspect ratio (log-uniform in `ratio`), resized to `size`; after 10 failed draws, a centre
 * crop clamped to `ratio`.
 */
export class RandomResizedCrop implements Transform {
  private readonly hw: [number, number];
  readonly scale: readonly [number, number];
  readonly ratio: readonly [number, number];
  private readonly interpolation: Interpolation;
  constructor(
    size: Size,
    options: { scale?: readonly [number, number]; ratio?: readonly [number, number]; interpolation?: Interpolation } = {},
  ) {
    this.hw = sizeHW(size, 'RandomResizedCrop');
    this.scale = options.scale ?? [0.08, 1];
    this.ratio = options.ratio ?? [3 / 4, 4 / 3];
    this.interpolation = options.interpolation ?? 'bilinear';
    checkRange(this.scale, 'RandomResizedCrop scale', 0);
    checkRange(this.ratio, 'RandomResizedCrop ratio', 0);
  }
  /** The crop box `[top, left, height, width]` for an image of `H`×`W`. */
  params(H: number, W: number, rng: Rng): [number, number, number, number] {
    const area = H * W;
    const logLo = Math.log(this.ratio[0]);
    const logHi = Math.log(this.ratio[1]);
    for (let attempt = 0; attempt < 10; attempt++) {
      const target = area * rng.uniform(this.scale[0], this.scale[1]);
      const aspect = Math.exp(rng.uniform(logLo, logHi));
      const w = Math.round(Math.sqrt(target * aspect));
      const h = Math.round(Math.sqrt(target / aspect));
      if (w > 0 && w <= W && h > 0 && h <= H) {
        return [rng.int(H - h + 1), rng.int(W - w + 1), h, w];
      }
    }
    const inRatio = W / H;
    let w = W;
    let h = H;
    if (inRatio < this.ratio[0]) h = Math.round(w / this.ratio[0]);
    else if (inRatio > this.ratio[1]) w = Math.round(h * this.ratio[1]);
    return [Math.floor((H - h) / 2), Math.floor((W - w) / 2), h, w];
  }
  apply(img: FloatImage, rng: Rng): FloatImage {
    const [top, left, h, w] = this.params(img.height, img.width, rng);
    return resizeImage(cropImage(img, top, left, h, w), this.hw[0], this.hw[1], this.interpolation);
  }
}

/** Mirrors left–right with probability `p`. */
export class RandomHorizontalFlip implements Transform {
  constructor(private readonly p = 0.5) {}
  apply(img: FloatImage, rng: Rng): FloatImage {
    return rng.next() < this.p ? flipHorizontal(img) : img;
  }
}

/** torchvision `RandomRotation(degrees)`: an angle uniform in [−d, d] (or the given range). */
export class RandomRotation implements Transform {
  private readonly range: readonly [number, number];
  constructor(
    degrees: number | readonly [number, number],
    private readonly options: { interpolation?: 'nearest' | 'bilinear'; fill?: number } = {},
  ) {
    this.range = typeof degrees === 'number' ? [-Math.abs(degrees), Math.abs(degrees)] : degrees;
    checkRange(this.range, 'RandomRotation degrees');
  }
  apply(img: FloatImage, rng: Rng): FloatImage {
    const angle = rng.uniform(this.range[0], this.range[1]);
    return rotateImage(img, angle, this.options.interpolation ?? 'nearest', this.options.fill ?? 0);
  }
}

export interface ColorJitterOptions {
  /** Factor drawn from [max(0, 1 − b), 1 + b]. */
  brightness?: number;
  contrast?: number;
  saturation?: number;
  /** Hue shift drawn from [−h, h], h ≤ 0.5. */
  hue?: number;
}

function blend(a: Float32Array, b: Float32Array | number, ratio: number, channels: number, bPerPixel = false): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const bv = typeof b === 'number' ? b : bPerPixel ? b[Math.floor(i / channels)]! : b[i]!;
    const v = ratio * a[i]! + (1 - ratio) * bv;
    out[i] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
  return out;
}

function shiftHue(img: FloatImage, shift: number): FloatImage {
  const out = createImage(img.height, img.width, img.channels);
  const d = img.data;
  for (let i = 0; i < d.length; i += 3) {
    const r = d[i]!;
    const g = d[i + 1]!;
    const b = d[i + 2]!;
    const max = Math.max(r, g, b);
    const min = Math.min(r, g, b);
    const delta = max - min;
    let h = 0;
    if (delta > 0) {
      if (max === r) h = ((g - b) / delta) % 6;
      else if (max === g) h = (b - r) / delta + 2;
      else h = (r - g) / delta + 4;
      h /= 6;
    }
    h = (((h + shift) % 1) + 1) % 1;
    const s = max === 0 ? 0 : delta / max;
    const v = max;
    const h6 = h * 6;
    const k = Math.floor(h6) % 6;
    const f = h6 - Math.floor(h6);
    const p = v * (1 - s);
    const q = v * (1 - s * f);
    const t = v * (1 - s * (1 - f));
    const rgb = [
      [v, t, p],
      [q, v, p],
      [p, v, t],
      [p, q, v],
      [t, p, v],
      [v, p, q],
    ][k]!;
    out.data[i] = rgb[0]!;
    out.data[i + 1] = rgb[1]!;
    out.data[i + 2] = rgb[2]!;
  }
  return out;
}

/**
 * torchvision `ColorJitter`: brightness, contrast, saturation and hue adjustments in a random
 * order, each with a random factor, results clamped to [0, 1]. Saturation and hue leave
 * single-channel images unchanged. Expects un-normalised [0, 1] pixels.
 */
export class ColorJitter implements Transform {
  private readonly ranges: ReadonlyArray<readonly [number, number] | undefined>;
  constructor(options: ColorJitterOptions = {}) {
    const around1 = (v: number | undefined, what: string): readonly [number, number] | undefined => {
      if (v === undefined || v === 0) return undefined;
      if (v < 0) throw new ConfigError(`ColorJitter ${what} must be ≥ 0, got ${v}`);
      return [Math.max(0, 1 - v), 1 + v];
    };
    const hue = options.hue;
    if (hue !== undefined && (hue < 0 || hue > 0.5)) throw new ConfigError(`ColorJitter hue must be in [0, 0.5], got ${hue}`);
    this.ranges = [
      around1(options.brightness, 'brightness'),
      around1(options.contrast, 'contrast'),
      around1(options.saturation, 'saturation'),
      hue ? [-hue, hue] : undefined,
    ];
  }
  apply(img: FloatImage, rng: Rng): FloatImage {
    const order = rng.permutation(4);
    const factors = this.ranges.map((r) => (r ? rng.uniform(r[0], r[1]) : undefined));
    for (const fn of order) {
      const f = factors[fn];
      if (f === undefined) continue;
      const C = img.channels;
      if (fn === 0) {
        img = { ...img, data: blend(img.data, 0, f, C) };
      } else if (fn === 1) {
        const g = grayscaleOf(img);
        let mean = 0;
        for (let i = 0; i < g.length; i++) mean += g[i]!;
        img = { ...img, data: blend(img.data, mean / g.length, f, C) };
      } else if (C === 3) {
        img = fn === 2 ? { ...img, data: blend(img.data, grayscaleOf(img), f, C, true) } : shiftHue(img, f);
      }
    }
    return img;
  }
}

export interface RandomErasingOptions {
  /** Probability of erasing (timm default 0.5). */
  p?: number;
  /** Erased area as a fraction of the image. */
  area?: readonly [number, number];
  /** Aspect ratio range of the box (drawn log-uniformly). */
  aspect?: readonly [number, number];
  /** 'const': zeros; 'rand': one normal value per channel; 'pixel': a normal value per pixel (timm's default for `--reprob`). */
  mode?: 'const' | 'rand' | 'pixel';
  /** Boxes to erase. */
  count?: number;
}

/**
 * timm `RandomErasing`. Run it after `Normalize`, as timm does: the erased box gets standard
 * normal noise (or zeros), i.e. the dataset's statistics.
 */
export class RandomErasing implements Transform {
  private readonly p: number;
  private readonly area: readonly [number, number];
  private readonly aspect: readonly [number, number];
  private readonly mode: 'const' | 'rand' | 'pixel';
  private readonly count: number;
  constructor(options: RandomErasingOptions = {}) {
    this.p = options.p ?? 0.5;
    this.area = options.area ?? [0.02, 1 / 3];
    this.aspect = options.aspect ?? [0.3, 1 / 0.3];
    this.mode = options.mode ?? 'pixel';
    this.count = options.count ?? 1;
    checkRange(this.area, 'RandomErasing area', 0);
    checkRange(this.aspect, 'RandomErasing aspect', 0);
  }
  apply(img: FloatImage, rng: Rng): FloatImage {
    if (rng.next() >= this.p) return img;
    const { height: H, width: W, channels: C } = img;
    const out = { ...img, data: img.data.slice() };
    const area = H * W;
    const logLo = Math.log(this.aspect[0]);
    const logHi = Math.log(this.aspect[1]);
    for (let n = 0; n < this.count; n++) {
      for (let attempt = 0; attempt < 10; attempt++) {
        const target = rng.uniform(this.area[0], this.area[1]) * area;
        const aspect = Math.exp(rng.uniform(logLo, logHi));
        const h = Math.round(Math.sqrt(target * aspect));
        const w = Math.round(Math.sqrt(target / aspect));
        if (w < W && h < H) {
          const top = randint(rng, 0, H - h);
          const left = randint(rng, 0, W - w);
          const perChannel = this.mode === 'rand' ? Array.from({ length: C }, () => rng.normal()) : undefined;
          for (let y = top; y < top + h; y++) {
            for (let x = left; x < left + w; x++) {
              const i = (y * W + x) * C;
              for (let c = 0; c < C; c++) {
                out.data[i + c] = this.mode === 'const' ? 0 : perChannel ? perChannel[c]! : rng.normal();
              }
            }
          }
          break;
        }
      }
    }
    return out;
  }
}

/** Per-channel `(x − mean) / std` (model-card mean/std are for [0, 1] pixels). */
export class Normalize implements Transform {
  constructor(
    readonly mean: readonly number[],
    readonly std: readonly number[],
  ) {
    if (std.some((s) => !(s > 0))) throw new ConfigError(`Normalize: std must be positive, got [${std.join(', ')}]`);
  }
  apply(img: FloatImage): FloatImage {
    return normalizeImage(img, this.mean, this.std);
  }
}

/** Repeats a grayscale channel (Fashion-MNIST into a 3-channel model). */
export class RepeatChannels implements Transform {
  constructor(private readonly channels = 3) {}
  apply(img: FloatImage): FloatImage {
    return repeatChannels(img, this.channels);
  }
}
