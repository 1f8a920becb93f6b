import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cropImage, flipHorizontal, normalizeImage, repeatChannels, resizeImage, rotateImage, toFloatImage, type FloatImage, type Interpolation } from './image.js';

interface RefCase {
  input: number[];
  shape: [number, number, number];
  size: [number, number];
  interpolation: Interpolation;
  torch: number[];
  pil?: number[];
}
const ref = JSON.parse(readFileSync(new URL('../../test/fixtures/data/resize-reference.json', import.meta.url), 'utf8')) as { cases: RefCase[] };

function img(values: number[], h: number, w: number, c = 1): FloatImage {
  return { data: Float32Array.from(values), height: h, width: w, channels: c };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('resizeImage', () => {
  it.each(ref.cases.map((c) => [`${c.shape.join('x')} → ${c.size.join('x')} ${c.interpolation}`, c] as const))(
    'matches torch antialiased interpolate and PIL: %s',
    (_name, c) => {
      const out = resizeImage(img(c.input, ...c.shape), c.size[0], c.size[1], c.interpolation);
      expect([out.height, out.width, out.channels]).toEqual([...c.size, c.shape[2]]);
      expect(maxAbsDiff(out.data, c.torch)).toBeLessThan(2e-6);
      if (c.pil) expect(maxAbsDiff(out.data, c.pil)).toBeLessThan(2e-6);
    },
  );

  it('averages 2x2 blocks when halving bilinearly (hand-derived)', () => {
    // Halving widens the triangle filter to support 2: output 0 (centre 1.0 in input coordinates)
    // weighs input pixel centres 0.5, 1.5, 2.5 by 1 − |d|/2 = 0.75, 0.75, 0.25, then normalises.
    const row = img([0, 10, 20, 30], 1, 4);
    const out = resizeImage(row, 1, 2, 'bilinear');
    expect(out.data[0]).toBeCloseTo((0.75 * 0 + 0.75 * 10 + 0.25 * 20) / 1.75, 5);
    expect(out.data[1]).toBeCloseTo((0.25 * 10 + 0.75 * 20 + 0.75 * 30) / 1.75, 5);
  });

  it('keeps a constant image constant and nearest picks source pixels', () => {
    const flat = img(new Array(5 * 7 * 3).fill(0.25), 5, 7, 3);
    for (const mode of ['bilinear', 'bicubic', 'nearest'] as const) {
      const out = resizeImage(flat, 11, 3, mode);
      expect(maxAbsDiff(out.data, new Array(11 * 3 * 3).fill(0.25))).toBeLessThan(1e-6);
    }
    const near = resizeImage(img([1, 2, 3, 4], 2, 2), 4, 4, 'nearest');
    expect(Array.from(near.data)).toEqual([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    expect(() => resizeImage(near, 0, 3)).toThrow(/positive integer/);
  });
});

describe('pixel ops', () => {
  const a = img([1, 2, 3, 4, 5, 6], 2, 3); // rows [1 2 3] [4 5 6]

  it('crops, padding outside the image with the fill', () => {
    expect(Array.from(cropImage(a, 0, 1, 2, 2).data)).toEqual([2, 3, 5, 6]);
    expect(Array.from(cropImage(a, -1, -1, 3, 3, 9).data)).toEqual([9, 9, 9, 9, 1, 2, 9, 4, 5]);
    expect(Array.from(cropImage(a, 5, 5, 1, 2).data)).toEqual([0, 0]);
  });

  it('flips left–right per channel', () => {
    const rgb = img([1, 2, 3, 4, 5, 6], 1, 2, 3);
    expect(Array.from(flipHorizontal(rgb).data)).toEqual([4, 5, 6, 1, 2, 3]);
    expect(Array.from(flipHorizontal(a).data)).toEqual([3, 2, 1, 6, 5, 4]);
  });

  it('rotates counter-clockwise about the centre', () => {
    const sq = img([1, 2, 3, 4, 5, 6, 7, 8, 9], 3, 3); // [1 2 3] [4 5 6] [7 8 9]
    // 90° counter-clockwise: the right column becomes the top row.
    expect(Array.from(rotateImage(sq, 90, 'nearest').data)).toEqual([3, 6, 9, 2, 5, 8, 1, 4, 7]);
    const bil = rotateImage(sq, 90, 'bilinear');
    expect(maxAbsDiff(bil.data, [3, 6, 9, 2, 5, 8, 1, 4, 7])).toBeLessThan(1e-5);
    expect(Array.from(rotateImage(sq, 180, 'nearest').data)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1]);
    // 45° on a 2x2: every output centre maps to a point outside the pixel grid's interior,
    // so bilinear mixes in the fill: check the centre-symmetric value of an all-ones image.
    const ones = rotateImage(img([1, 1, 1, 1], 2, 2), 45, 'bilinear', 0);
    const s = Math.SQRT1_2; // source offset of each output centre along an axis: 0.5·√2 ≈ 0.707
    const expected = 1 - (s - 0.5); // one neighbour in, the other (weight s − 0.5) outside
    for (const v of ones.data) expect(v).toBeCloseTo(expected, 5);
  });

  it('normalises per channel and repeats grayscale', () => {
    const rgb = img([0.5, 0.5, 0.5, 1, 0, 0.25], 1, 2, 3);
    const n = normalizeImage(rgb, [0.5, 0.25, 0], [0.5, 0.25, 0.5]);
    expect(Array.from(n.data)).toEqual([0, 1, 1, 1, -1, 0.5]);
    expect(() => normalizeImage(a, [0, 0, 0], [1, 1, 1])).toThrow(/3\/3 values but the image has 1 channels/);
    expect(Array.from(repeatChannels(img([0.1, 0.2], 1, 2), 3).data)).toEqual(Array.from(Float32Array.from([0.1, 0.1, 0.1, 0.2, 0.2, 0.2])));
    expect(() => repeatChannels(rgb, 4)).toThrow(/only 1 → N/);
  });

  it('converts uint8 to [0, 1] floats and copies float input', () => {
    const f = toFloatImage(Uint8Array.from([0, 51, 255]), [1, 3, 1]);
    expect(Array.from(f.data)).toEqual(Array.from(Float32Array.from([0, 0.2, 1])));
    const src = Float32Array.from([0.5, 0.25]);
    const g = toFloatImage(src, [1, 1, 2]);
    g.data[0] = 9;
    expect(src[0]).toBe(0.5);
    expect(() => toFloatImage(src, [2, 2, 1])).toThrow(/has 2 values; expected 2x2x1 = 4/);
  });
});
