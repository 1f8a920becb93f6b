import { describe, expect, it } from 'vitest';
import { cropImage, resizeImage, type FloatImage } from './image.js';
import { Rng } from './rng.js';
import {
  CenterCrop,
  ColorJitter,
  Compose,
  Normalize,
  RandomCrop,
  RandomErasing,
  RandomHorizontalFlip,
  RandomResizedCrop,
  RandomRotation,
  RepeatChannels,
  Resize,
  type Transform,
} from './transforms.js';

function ramp(h: number, w: number, c = 1): FloatImage {
  const data = new Float32Array(h * w * c);
  for (let i = 0; i < data.length; i++) data[i] = (i % 97) / 97;
  return { data, height: h, width: w, channels: c };
}

/** An Rng whose draws are fixed: uniform → its upper end, permutation → identity. */
function fixedRng(u = 1): Rng {
  const r = new Rng(0);
  r.uniform = (lo = 0, hi = 1) => lo + (hi - lo) * u;
  r.permutation = (n: number) => Int32Array.from({ length: n }, (_, i) => i);
  return r;
}

function sameForSeed(t: Transform, img: FloatImage): void {
  const a = t.apply(img, new Rng(11));
  const b = t.apply(img, new Rng(11));
  expect(Array.from(a.data)).toEqual(Array.from(b.data));
  const differs = [12, 13, 14, 15].some((s) => {
    const c = t.apply(img, new Rng(s));
    return c.data.length !== a.data.length || c.data.some((v, i) => v !== a.data[i]);
  });
  expect(differs).toBe(true);
}

describe('geometric transforms', () => {
  it('Resize scales the shorter side or to an exact size', () => {
    expect(new Resize(5).apply(ramp(10, 21))).toMatchObject({ height: 5, width: 10 });
    expect(new Resize(5).apply(ramp(21, 10))).toMatchObject({ height: 10, width: 5 });
    const exact = new Resize([3, 4], 'bicubic').apply(ramp(10, 21, 3));
    expect(exact).toMatchObject({ height: 3, width: 4, channels: 3 });
    expect(Array.from(exact.data)).toEqual(Array.from(resizeImage(ramp(10, 21, 3), 3, 4, 'bicubic').data));
    expect(() => new Resize(0)).toThrow(/positive integer/);
  });

  it('CenterCrop crops the middle, and with cropPct resizes to size/cropPct first (timm eval)', () => {
    const src = ramp(7, 9);
    expect(Array.from(new CenterCrop(3).apply(src).data)).toEqual(Array.from(cropImage(src, 2, 3, 3, 3).data));
    // 16x12, size 4, cropPct 0.5: shorter side 12 → 8, longer 16 → trunc(8·16/12) = 10; crop at (3, 2).
    const big = ramp(16, 12, 3);
    const out = new CenterCrop(4, { cropPct: 0.5, interpolation: 'bicubic' }).apply(big);
    const expected = cropImage(resizeImage(big, 10, 8, 'bicubic'), 3, 2, 4, 4);
    expect(out).toMatchObject({ height: 4, width: 4, channels: 3 });
    expect(Array.from(out.data)).toEqual(Array.from(expected.data));
    // 224 at the ImageNet default 0.875 resizes the shorter side to exactly 256.
    expect(new CenterCrop(224, { cropPct: 0.875 }).apply(ramp(300, 256)).height).toBe(224);
    expect(() => new CenterCrop(4, { cropPct: 1.5 })).toThrow(/cropPct/);
  });

  it('RandomCrop with padding takes every offset in [−p, p] and only those', () => {
    const src = ramp(6, 6);
    const t = new RandomCrop(6, { padding: 2 });
    const seen = new Set<string>();
    for (let s = 0; s < 400; s++) {
      const out = t.apply(src, new Rng(s));
      // Find the offset that reproduces the output.
      let found = '';
      for (let dy = -2; dy <= 2 && !found; dy++) {
        for (let dx = -2; dx <= 2 && !found; dx++) {
          const c = cropImage(src, dy, dx, 6, 6);
          if (c.data.every((v, i) => v === out.data[i])) found = `${dy},${dx}`;
        }
      }
      expect(found).not.toBe('');
      seen.add(found);
    }
    expect(seen.size).toBe(25);
    sameForSeed(t, src);
    expect(() => new RandomCrop(11, { padding: 2 }).apply(src, new Rng(0))).toThrow(/larger than the padded image/);
  });

  it('RandomResizedCrop draws boxes within timm scale/ratio defaults and falls back to a centre crop', () => {
    const t = new RandomResizedCrop(8);
    expect(t.scale).toEqual([0.08, 1]);
    expect(t.ratio[0]).toBeCloseTo(0.75);
    const rng = new Rng(3);
    for (let k = 0; k < 300; k++) {
      const [top, left, h, w] = t.params(100, 120, rng);
      expect(top).toBeGreaterThanOrEqual(0);
      expect(left).toBeGreaterThanOrEqual(0);
      expect(top + h).toBeLessThanOrEqual(100);
      expect(left + w).toBeLessThanOrEqual(120);
      // Rounding h and w moves area and ratio slightly past the bounds.
      expect((h * w) / 12000).toBeGreaterThan(0.07);
      expect(w / h).toBeGreaterThan(0.7);
      expect(w / h).toBeLessThan(1.4);
    }
    // An impossible scale makes every draw fail: centre crop with the ratio clamped to 4/3.
    const fallback = new RandomResizedCrop(8, { scale: [2, 3] });
    expect(fallback.params(10, 40, new Rng(0))).toEqual([0, 13, 10, 13]);
    const out = t.apply(ramp(20, 30, 3), new Rng(5));
    expect(out).toMatchObject({ height: 8, width: 8, channels: 3 });
    sameForSeed(t, ramp(20, 30, 3));
  });

  it('RandomHorizontalFlip flips with probability p', () => {
    const src = ramp(2, 3);
    const flipped = [2, 1, 0, 5, 4, 3].map((i) => src.data[i]);
    expect(Array.from(new RandomHorizontalFlip(1).apply(src, new Rng(0)).data)).toEqual(flipped);
    expect(new RandomHorizontalFlip(0).apply(src, new Rng(0))).toBe(src);
    const t = new RandomHorizontalFlip();
    let n = 0;
    const rng = new Rng(9);
    for (let i = 0; i < 2000; i++) if (t.apply(src, rng) !== src) n++;
    expect(n / 2000).toBeGreaterThan(0.45);
    expect(n / 2000).toBeLessThan(0.55);
  });

  it('RandomRotation rotates by an angle within ±degrees', () => {
    const sq: FloatImage = { data: Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]), height: 3, width: 3, channels: 1 };
    // uniform → its upper end: +90° exactly.
    expect(Array.from(new RandomRotation(90).apply(sq, fixedRng(1)).data)).toEqual([3, 6, 9, 2, 5, 8, 1, 4, 7]);
    expect(Array.from(new RandomRotation(90).apply(sq, fixedRng(0)).data)).toEqual([7, 4, 1, 8, 5, 2, 9, 6, 3]);
    expect(Array.from(new RandomRotation(0).apply(sq, new Rng(1)).data)).toEqual(Array.from(sq.data));
    sameForSeed(new RandomRotation(30, { interpolation: 'bilinear' }), ramp(9, 9));
  });
});

describe('photometric transforms', () => {
  const rgb: FloatImage = { data: Float32Array.from([0.2, 0.4, 0.6, 0.8, 0.1, 0.3]), height: 1, width: 2, channels: 3 };

  it('ColorJitter brightness and contrast match torchvision formulas (fixed factors)', () => {
    // brightness 0.5 at the top of its range: factor 1.5, clamped to 1.
    const b = new ColorJitter({ brightness: 0.5 }).apply(rgb, fixedRng(1));
    [0.3, 0.6, 0.9, 1, 0.15, 0.45].forEach((v, i) => expect(b.data[i]).toBeCloseTo(v, 6));
    // contrast factor 0.5 blends with the mean grayscale (0.299R + 0.587G + 0.114B over pixels).
    const gray = [0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6, 0.299 * 0.8 + 0.587 * 0.1 + 0.114 * 0.3];
    const m = (gray[0]! + gray[1]!) / 2;
    const c = new ColorJitter({ contrast: 0.5 }).apply(rgb, fixedRng(0));
    Array.from(rgb.data).forEach((v, i) => expect(c.data[i]).toBeCloseTo(0.5 * v + 0.5 * m, 6));
    // saturation factor 0: every pixel becomes its grayscale value.
    const s = new ColorJitter({ saturation: 1 }).apply(rgb, fixedRng(0));
    [gray[0], gray[0], gray[0], gray[1], gray[1], gray[1]].forEach((v, i) => expect(s.data[i]).toBeCloseTo(v!, 6));
  });

  it('ColorJitter hue rotates the colour wheel and leaves grayscale alone', () => {
    const red: FloatImage = { data: Float32Array.from([1, 0, 0, 0, 0.5, 0]), height: 1, width: 2, channels: 3 };
    // shift +0.5 (half the wheel): red → cyan, green → magenta.
    const out = new ColorJitter({ hue: 0.5 }).apply(red, fixedRng(1));
    [0, 1, 1, 0.5, 0, 0.5].forEach((v, i) => expect(out.data[i]).toBeCloseTo(v, 6));
    // shift +1/3: red → green.
    const third = new ColorJitter({ hue: 1 / 3 }).apply(red, fixedRng(1));
    [0, 1, 0].forEach((v, i) => expect(third.data[i]).toBeCloseTo(v, 6));
    const g = ramp(3, 3, 1);
    expect(Array.from(new ColorJitter({ hue: 0.3, saturation: 0.9 }).apply(g, new Rng(2)).data)).toEqual(Array.from(g.data));
    expect(() => new ColorJitter({ hue: 0.7 })).toThrow(/hue/);
    sameForSeed(new ColorJitter({ brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 }), ramp(4, 4, 3));
  });

  it('RandomErasing replaces one box within the area range', () => {
    const src: FloatImage = { data: new Float32Array(20 * 20).fill(7), height: 20, width: 20, channels: 1 };
    const t = new RandomErasing({ p: 1, mode: 'const' });
    for (let s = 0; s < 50; s++) {
      const out = t.apply(src, new Rng(s));
      const zeros: Array<[number, number]> = [];
      out.data.forEach((v, i) => v === 0 && zeros.push([Math.floor(i / 20), i % 20]));
      expect(zeros.length).toBeGreaterThan(0);
      // The zeros form one full rectangle.
      const ys = zeros.map((z) => z[0]);
      const xs = zeros.map((z) => z[1]);
      const h = Math.max(...ys) - Math.min(...ys) + 1;
      const w = Math.max(...xs) - Math.min(...xs) + 1;
      expect(zeros.length).toBe(h * w);
      expect(h * w).toBeLessThanOrEqual(Math.ceil(400 / 3) + 20);
      expect(src.data[0]).toBe(7);
    }
    expect(new RandomErasing({ p: 0 }).apply(src, new Rng(0))).toBe(src);
    const pixel = new RandomErasing({ p: 1 }).apply(src, new Rng(4));
    expect(new Set(Array.from(pixel.data).filter((v) => v !== 7)).size).toBeGreaterThan(3);
  });

  it('Normalize, RepeatChannels and Compose apply in order', () => {
    const gray: FloatImage = { data: Float32Array.from([0.5, 1]), height: 1, width: 2, channels: 1 };
    const t = new Compose([new RepeatChannels(3), new Normalize([0.5, 0.5, 0], [0.5, 0.25, 1])]);
    expect(Array.from(t.apply(gray, new Rng(0)).data)).toEqual([0, 0, 0.5, 1, 2, 1]);
    expect(() => new Normalize([0], [0])).toThrow(/positive/);
  });
});
