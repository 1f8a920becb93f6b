import { ConfigError, ShapeError } from '../errors.js';
import type { Rng } from './rng.js';

/** A batch as the loader assembles it before it becomes tensors. */
export interface BatchArrays {
  /** NHWC float32 images (normalised). */
  images: Float32Array;
  shape: readonly [number, number, number, number];
  labels: Int32Array;
  numClasses: number;
}

/** What a batch transform returns: new images and soft targets `[B, numClasses]` (row-major). */
export interface MixedBatch {
  images: Float32Array;
  targets: Float32Array;
}

/** A transform over a whole batch (MixUp, CutMix), seeded per (seed, epoch, batch) by the loader. */
export interface BatchTransform {
  apply(batch: BatchArrays, rng: Rng): MixedBatch;
}

/**
 * One-hot targets with label smoothing as timm writes them: `smoothing / K` off the label and
 * `1 − smoothing + smoothing / K` on it (each row sums to 1).
 */
export function oneHot(labels: Int32Array, numClasses: number, smoothing = 0): Float32Array {
  const off = smoothing / numClasses;
  const on = 1 - smoothing + off;
  const out = new Float32Array(labels.length * numClasses).fill(off);
  labels.forEach((l, i) => {
    if (!(l >= 0 && l < numClasses)) throw new ShapeError(`Label ${l} at ${i} is outside [0, ${numClasses})`);
    out[i * numClasses + l] = on;
  });
  return out;
}

/** timm's `rand_bbox`: a box of area ≈ (1 − λ)·H·W around a uniform centre, clipped to the image. */
export function cutmixBox(H: number, W: number, lam: number, rng: Rng): [number, number, number, number] {
  const ratio = Math.sqrt(1 - lam);
  const cutH = Math.trunc(H * ratio);
  const cutW = Math.trunc(W * ratio);
  const cy = rng.int(H);
  const cx = rng.int(W);
  const clip = (v: number, hi: number) => Math.min(Math.max(v, 0), hi);
  const y0 = clip(cy - Math.floor(cutH / 2), H);
  const y1 = clip(cy + Math.floor(cutH / 2), H);
  const x0 = clip(cx - Math.floor(cutW / 2), W);
  const x1 = clip(cx + Math.floor(cutW / 2), W);
  return [y0, y1, x0, x1];
}

export interface MixOptions {
  /** MixUp Beta(α, α); 0 disables MixUp. */
  mixupAlpha?: number;
  /** CutMix Beta(α, α); 0 disables CutMix. */
  cutmixAlpha?: number;
  /** Probability of mixing a batch (or an element in 'elem' mode). */
  prob?: number;
  /** When both are enabled, probability of CutMix instead of MixUp. */
  switchProb?: number;
  /** Label smoothing applied to both one-hot targets before mixing. */
  labelSmoothing?: number;
  /** 'batch': one λ and one choice per batch (timm's default); 'elem': per element. */
  mode?: 'batch' | 'elem';
}

/**
 * timm's `Mixup` (MixUp and/or CutMix). Element `i` is mixed with element `B − 1 − i` (the batch
 * flipped), targets are `λ·onehot(y) + (1 − λ)·onehot(flip(y))`, and CutMix's λ is corrected to
 * the clipped box's actual area. Targets are produced even when a batch is not mixed (λ = 1), so
 * the loss always sees the same kind of target.
 */
export class Mixup implements BatchTransform {
  readonly mixupAlpha: number;
  readonly cutmixAlpha: number;
  readonly prob: number;
  readonly switchProb: number;
  readonly labelSmoothing: number;
  readonly mode: 'batch' | 'elem';

  constructor(options: MixOptions = {}) {
    this.mixupAlpha = options.mixupAlpha ?? 1;
    this.cutmixAlpha = options.cutmixAlpha ?? 0;
    this.prob = options.prob ?? 1;
    this.switchProb = options.switchProb ?? 0.5;
    this.labelSmoothing = options.labelSmoothing ?? 0;
    this.mode = options.mode ?? 'batch';
    if (this.mixupAlpha < 0 || this.cutmixAlpha < 0) throw new ConfigError('Mixup: alphas must be ≥ 0');
    if (!(this.prob >= 0 && this.prob <= 1) || !(this.switchProb >= 0 && this.switchProb <= 1)) {
      throw new ConfigError('Mixup: prob and switchProb must be in [0, 1]');
    }
    if (!(this.labelSmoothing >= 0 && this.labelSmoothing < 1)) {
      throw new ConfigError(`Mixup: labelSmoothing must be in [0, 1), got ${this.labelSmoothing}`);
    }
    if (this.mode !== 'batch' && this.mode !== 'elem') throw new ConfigError(`Mixup: unknown mode '${String(this.mode)}'`);
  }

  /** λ and whether to cut, drawn as timm's `_params_per_batch`. */
  private draw(rng: Rng): { lam: number; cut: boolean } {
    if (rng.next() >= this.prob) return { lam: 1, cut: false };
    if (this.mixupAlpha > 0 && this.cutmixAlpha > 0) {
      const cut = rng.next() < this.switchProb;
      return { lam: rng.beta(cut ? this.cutmixAlpha : this.mixupAlpha), cut };
    }
    if (this.mixupAlpha > 0) return { lam: rng.beta(this.mixupAlpha), cut: false };
    if (this.cutmixAlpha > 0) return { lam: rng.beta(this.cutmixAlpha), cut: true };
    return { lam: 1, cut: false };
  }

  apply(batch: BatchArrays, rng: Rng): MixedBatch {
    const [B, H, W, C] = batch.shape;
    const K = batch.numClasses;
    const src = batch.images;
    const images = src.slice();
    const per = H * W * C;
    const lams = new Float64Array(B);
    const batchDraw = this.mode === 'batch' ? this.draw(rng) : undefined;
    // In batch mode the CutMix box is shared by every element, as in timm.
    const batchBox = batchDraw?.cut && batchDraw.lam < 1 ? cutmixBox(H, W, batchDraw.lam, rng) : undefined;
    for (let i = 0; i < B; i++) {
      const j = B - 1 - i;
      const { lam, cut } = batchDraw ?? this.draw(rng);
      if (lam >= 1) {
        lams[i] = 1;
        continue;
      }
      if (!cut) {
        const a = src.subarray(i * per, (i + 1) * per);
        const b = src.subarray(j * per, (j + 1) * per);
        const out = images.subarray(i * per, (i + 1) * per);
        const mu = 1 - lam;
        for (let k = 0; k < per; k++) out[k] = a[k]! * lam + b[k]! * mu;
        lams[i] = lam;
        continue;
      }
      const [y0, y1, x0, x1] = batchBox ?? cutmixBox(H, W, lam, rng);
      for (let y = y0; y < y1; y++) {
        const off = (y * W + x0) * C;
        images.set(src.subarray(j * per + off, j * per + off + (x1 - x0) * C), i * per + off);
      }
      lams[i] = 1 - ((y1 - y0) * (x1 - x0)) / (H * W);
    }
    const y1h = oneHot(batch.labels, K, this.labelSmoothing);
    const targets = new Float32Array(B * K);
    for (let i = 0; i < B; i++) {
      const j = B - 1 - i;
      const lam = lams[i]!;
      for (let k = 0; k < K; k++) targets[i * K + k] = lam * y1h[i * K + k]! + (1 - lam) * y1h[j * K + k]!;
    }
    return { images, targets };
  }
}

/** MixUp alone: `new MixUp(alpha)` = timm `Mixup(mixup_alpha=alpha, cutmix_alpha=0)`. */
export class MixUp extends Mixup {
  constructor(alpha = 0.8, options: Omit<MixOptions, 'mixupAlpha' | 'cutmixAlpha' | 'switchProb'> = {}) {
    super({ ...options, mixupAlpha: alpha, cutmixAlpha: 0 });
  }
}

/** CutMix alone: `new CutMix(alpha)` = timm `Mixup(mixup_alpha=0, cutmix_alpha=alpha)`. */
export class CutMix extends Mixup {
  constructor(alpha = 1, options: Omit<MixOptions, 'mixupAlpha' | 'cutmixAlpha' | 'switchProb'> = {}) {
    super({ ...options, mixupAlpha: 0, cutmixAlpha: alpha });
  }
}
