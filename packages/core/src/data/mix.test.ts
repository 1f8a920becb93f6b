import { describe, expect, it } from 'vitest';
import { CutMix, cutmixBox, MixUp, Mixup, oneHot, type BatchArrays } from './mix.js';
import { Rng } from './rng.js';

/** Batch of B constant images (image i is all i + 1) with labels i, so mixing is readable. */
function batch(B: number, H = 8, W = 8, C = 2, K = B): BatchArrays {
  const per = H * W * C;
  const images = new Float32Array(B * per);
  for (let i = 0; i < B; i++) images.fill(i + 1, i * per, (i + 1) * per);
  return { images, shape: [B, H, W, C], labels: Int32Array.from({ length: B }, (_, i) => i), numClasses: K };
}

function rowSums(t: Float32Array, K: number): number[] {
  return Array.from({ length: t.length / K }, (_, i) => t.subarray(i * K, (i + 1) * K).reduce((a, b) => a + b, 0));
}

describe('oneHot', () => {
  it('writes timm smoothing values', () => {
    const t = oneHot(Int32Array.from([2, 0]), 4, 0.1);
    expect(Array.from(t)).toEqual(Array.from(Float32Array.from([0.025, 0.025, 0.925, 0.025, 0.925, 0.025, 0.025, 0.025])));
    expect(() => oneHot(Int32Array.from([4]), 4)).toThrow(/outside \[0, 4\)/);
  });
});

describe('MixUp', () => {
  it('mixes each image with the flipped batch and targets match λ', () => {
    const b = batch(4);
    const { images, targets } = new MixUp(0.4).apply(b, new Rng(1));
    const per = 8 * 8 * 2;
    rowSums(targets, 4).forEach((s) => expect(s).toBeCloseTo(1, 6));
    for (let i = 0; i < 4; i++) {
      const j = 3 - i;
      const lam = targets[i * 4 + i]!;
      expect(targets[i * 4 + j]).toBeCloseTo(1 - lam, 6);
      expect(images[i * per]).toBeCloseTo(lam * (i + 1) + (1 - lam) * (j + 1), 5);
      expect(images[i * per + per - 1]).toBeCloseTo(images[i * per]!, 6);
    }
    // Batch mode: one λ for all.
    expect(targets[0]).toBeCloseTo(targets[5]!, 6);
    expect(b.images[0]).toBe(1);
  });

  it('is deterministic for a seed and smooths labels', () => {
    const a = new MixUp(1, { labelSmoothing: 0.1 }).apply(batch(6), new Rng(5));
    const b = new MixUp(1, { labelSmoothing: 0.1 }).apply(batch(6), new Rng(5));
    expect(Array.from(a.targets)).toEqual(Array.from(b.targets));
    expect(Array.from(a.images)).toEqual(Array.from(b.images));
    rowSums(a.targets, 6).forEach((s) => expect(s).toBeCloseTo(1, 6));
    // Off-target entries hold the smoothing mass 0.1/6.
    expect(a.targets[1]).toBeCloseTo(0.1 / 6, 6);
    const none = new MixUp(1, { prob: 0, labelSmoothing: 0.2 }).apply(batch(3), new Rng(0));
    expect(Array.from(none.images)).toEqual(Array.from(batch(3).images));
    expect(Array.from(none.targets)).toEqual(Array.from(oneHot(Int32Array.from([0, 1, 2]), 3, 0.2)));
  });

  it('elem mode draws λ per element', () => {
    const { targets } = new Mixup({ mixupAlpha: 1, mode: 'elem' }).apply(batch(8), new Rng(2));
    const lams = Array.from({ length: 8 }, (_, i) => targets[i * 8 + i]!);
    expect(new Set(lams.map((l) => l.toFixed(5))).size).toBeGreaterThan(4);
  });
});

describe('CutMix', () => {
  it('pastes one box from the flipped batch and λ equals the kept area', () => {
    const B = 4;
    const per = 16 * 16;
    for (let s = 0; s < 20; s++) {
      const { images, targets } = new CutMix(1).apply(batch(B, 16, 16, 1), new Rng(s));
      rowSums(targets, B).forEach((v) => expect(v).toBeCloseTo(1, 6));
      for (let i = 0; i < B; i++) {
        const j = B - 1 - i;
        if (i === j) continue;
        let pasted = 0;
        let other = 0;
        for (let k = 0; k < per; k++) {
          const v = images[i * per + k]!;
          if (v === j + 1) pasted++;
          else if (v !== i + 1) other++;
        }
        expect(other).toBe(0);
        expect(targets[i * B + j]).toBeCloseTo(pasted / per, 6);
        expect(targets[i * B + i]).toBeCloseTo(1 - pasted / per, 6);
      }
    }
  });

  it('rand_bbox clips the box around its centre (hand-derived)', () => {
    const r = new Rng(0);
    r.int = () => 0; // centre (0, 0)
    // λ = 0.75 on 10x10: cut side trunc(10·√0.25) = 5, half 2 → rows/cols [0, 2).
    expect(cutmixBox(10, 10, 0.75, r)).toEqual([0, 2, 0, 2]);
    r.int = (n: number) => n - 1; // centre (9, 9)
    expect(cutmixBox(10, 10, 0.75, r)).toEqual([7, 10, 7, 10]);
  });

  it('switches between MixUp and CutMix', () => {
    const t = new Mixup({ mixupAlpha: 1, cutmixAlpha: 1, switchProb: 0.5 });
    let cut = 0;
    let mix = 0;
    for (let s = 0; s < 60; s++) {
      const { images } = t.apply(batch(2, 8, 8, 1), new Rng(s));
      const distinct = new Set(Array.from(images.subarray(0, 64)));
      if (distinct.size === 2) cut++;
      else if (distinct.size === 1 && images[0] !== 1) mix++;
    }
    expect(cut).toBeGreaterThan(10);
    expect(mix).toBeGreaterThan(10);
    expect(() => new Mixup({ labelSmoothing: 1 })).toThrow(/labelSmoothing/);
  });
});
