import { describe, expect, it } from 'vitest';
import { jet, renderHeatmap } from './heatmap.js';

describe('jet', () => {
  it('runs dark blue → cyan → green-yellow → dark red, clamped outside [0, 1]', () => {
    expect(jet(0)).toEqual([0, 0, 128]);
    expect(jet(0.5)).toEqual([128, 255, 128]);
    expect(jet(1)).toEqual([128, 0, 0]);
    expect(jet(-3)).toEqual(jet(0));
    expect(jet(7)).toEqual(jet(1));
    expect(jet(Number.NaN)).toEqual(jet(0));
    // Blue falls and red rises along the scale.
    expect(jet(0.25)[2]).toBeGreaterThan(jet(0.75)[2]);
    expect(jet(0.75)[0]).toBeGreaterThan(jet(0.25)[0]);
  });
});

describe('renderHeatmap', () => {
  const grey = { data: Uint8Array.from({ length: 12 }, (_, i) => i * 20), width: 4, height: 3, channels: 1 };

  it('returns RGBA of the image size: alpha 0 is the image, alpha 1 the colours of the map stretched over it', () => {
    const map = { data: [0, 1], width: 2, height: 1 };
    const plain = renderHeatmap(grey, map, { alpha: 0 });
    expect(plain.length).toBe(4 * 3 * 4);
    for (let p = 0; p < 12; p++) expect([...plain.subarray(p * 4, p * 4 + 4)]).toEqual([p * 20, p * 20, p * 20, 255]);
    const heat = renderHeatmap(grey, map, { alpha: 1 });
    // Columns sample the 2-cell map at x = (c + .5)·2/4 − .5 → 0 (clamped), .25, .75, 1.
    const col = (c: number) => [...heat.subarray(c * 4, c * 4 + 3)];
    expect(col(0)).toEqual(jet(0));
    expect(col(1)).toEqual(jet(0.25));
    expect(col(2)).toEqual(jet(0.75));
    expect(col(3)).toEqual(jet(1));
    // Every row the same (the map has one row).
    expect([...heat.subarray(32, 48)]).toEqual([...heat.subarray(0, 16)]);
    // Half and half.
    const half = renderHeatmap(grey, map, { alpha: 0.5 });
    expect([...half.subarray(4 * 5, 4 * 5 + 4)]).toEqual([...jet(0.25).map((c) => Math.round(0.5 * 100 + 0.5 * c)), 255]);
  });

  it('covers only the box; RGB and RGBA images keep their colours and alpha outside it', () => {
    const rgba = { data: Uint8Array.from({ length: 4 * 3 * 4 }, (_, i) => (i % 4 === 3 ? 77 : i)), width: 4, height: 3, channels: 4 };
    const out = renderHeatmap(rgba, { data: [1], width: 1, height: 1 }, { alpha: 1, box: { left: 1, top: 0, width: 2, height: 3 } });
    for (let y = 0; y < 3; y++) {
      for (let x = 0; x < 4; x++) {
        const o = (y * 4 + x) * 4;
        const inside = x === 1 || x === 2;
        expect([...out.subarray(o, o + 3)]).toEqual(inside ? jet(1) : [o, o + 1, o + 2]);
        expect(out[o + 3]).toBe(77);
      }
    }
  });

  it('refuses mismatched sizes and bad options', () => {
    expect(() => renderHeatmap({ ...grey, channels: 3 }, { data: [0], width: 1, height: 1 })).toThrow(/image of 4x3x3 needs 36 values, got 12/);
    expect(() => renderHeatmap({ ...grey, channels: 2 }, { data: [0], width: 1, height: 1 })).toThrow(/1, 3 or 4 channels, got 2/);
    expect(() => renderHeatmap(grey, { data: [0, 1, 2], width: 2, height: 1 })).toThrow(/map of 2x1x1 needs 2 values, got 3/);
    expect(() => renderHeatmap(grey, { data: [0], width: 1, height: 1 }, { alpha: 2 })).toThrow(/alpha must be in \[0, 1\]/);
    expect(() => renderHeatmap(grey, { data: [0], width: 1, height: 1 }, { box: { left: 0, top: 0, width: 0, height: 1 } })).toThrow(/box must have a positive width/);
  });
});
