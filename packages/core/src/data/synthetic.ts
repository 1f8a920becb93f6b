import { ConfigError } from '../errors.js';
import { checkIndex } from './memory.js';
import { Rng } from './rng.js';
import { deriveSeed } from './seed.js';
import type { Dataset, Sample } from './types.js';

export interface SyntheticOptions {
  /** Number of examples. Default 512. */
  length?: number;
  numClasses?: number;
  /** `[height, width, channels]`. Default [32, 32, 3]. */
  imageShape?: readonly [number, number, number];
  seed?: number;
  /** Standard deviation of the per-pixel noise, as a fraction of the 0–255 range. Default 0.15. */
  noise?: number;
}

/**
 * A seeded, learnable stand-in for real data: class k is an oriented sinusoidal grating with its
 * own angle, frequency, phase and colour; every example is its class's grating plus Gaussian
 * noise. Example i (label i mod numClasses) is the same for a seed on every call, so tests can
 * train on it and expect high accuracy.
 */
export class SyntheticDataset implements Dataset {
  readonly length: number;
  readonly imageShape: readonly [number, number, number];
  readonly numClasses: number;
  readonly classNames: readonly string[];
  readonly seed: number;
  readonly noise: number;
  private readonly prototypes: Float32Array[];

  constructor(options: SyntheticOptions = {}) {
    this.length = options.length ?? 512;
    this.numClasses = options.numClasses ?? 10;
    this.imageShape = options.imageShape ?? [32, 32, 3];
    this.seed = options.seed ?? 0;
    this.noise = options.noise ?? 0.15;
    const [H, W, C] = this.imageShape;
    if (!Number.isInteger(this.length) || this.length < 1) throw new ConfigError(`synthetic: length must be a positive integer, got ${this.length}`);
    if (!Number.isInteger(this.numClasses) || this.numClasses < 2) throw new ConfigError(`synthetic: numClasses must be ≥ 2, got ${this.numClasses}`);
    if (![H, W, C].every((d) => Number.isInteger(d) && d >= 1)) throw new ConfigError(`synthetic: bad imageShape [${this.imageShape.join(', ')}]`);
    this.classNames = Array.from({ length: this.numClasses }, (_, k) => `class_${k}`);
    const rng = new Rng(deriveSeed(this.seed, 0x5eed));
    this.prototypes = Array.from({ length: this.numClasses }, (_, k) => {
      // Angles spread evenly (jittered) so classes stay distinguishable whatever their number.
      const angle = ((k + rng.uniform(0.1, 0.9)) / this.numClasses) * Math.PI;
      const freq = rng.uniform(1.5, 3.5) / Math.max(H, W);
      const phase = rng.uniform(0, 2 * Math.PI);
      const tint = Array.from({ length: C }, () => rng.uniform(0.4, 1));
      const fx = Math.cos(angle) * freq * 2 * Math.PI;
      const fy = Math.sin(angle) * freq * 2 * Math.PI;
      const p = new Float32Array(H * W * C);
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const v = 0.5 + 0.4 * Math.sin(fx * x + fy * y + phase);
          for (let c = 0; c < C; c++) p[(y * W + x) * C + c] = v * tint[c]!;
        }
      }
      return p;
    });
  }

  get(index: number): Sample {
    checkIndex(index, this.length);
    const label = index % this.numClasses;
    const proto = this.prototypes[label]!;
    const rng = new Rng(deriveSeed(this.seed, index));
    const image = new Uint8Array(proto.length);
    for (let i = 0; i < proto.length; i++) {
      const v = (proto[i]! + this.noise * rng.normal()) * 255;
      image[i] = v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
    }
    return { image, label };
  }

  labelOf(index: number): number {
    return index % this.numClasses;
  }
}

/** `new SyntheticDataset(options)`. */
export function synthetic(options: SyntheticOptions = {}): SyntheticDataset {
  return new SyntheticDataset(options);
}
