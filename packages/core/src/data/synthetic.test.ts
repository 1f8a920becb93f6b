import { describe, expect, it } from 'vitest';
import { synthetic } from './synthetic.js';

describe('SyntheticDataset', () => {
  it('is deterministic per seed, balanced, and uint8 of the declared shape', () => {
    const a = synthetic({ length: 40, numClasses: 4, imageShape: [8, 6, 3], seed: 1 });
    const b = synthetic({ length: 40, numClasses: 4, imageShape: [8, 6, 3], seed: 1 });
    const c = synthetic({ length: 40, numClasses: 4, imageShape: [8, 6, 3], seed: 2 });
    const s = a.get(13);
    expect(s.image).toBeInstanceOf(Uint8Array);
    expect(s.image.length).toBe(8 * 6 * 3);
    expect(s.label).toBe(1);
    expect(Array.from(b.get(13).image)).toEqual(Array.from(s.image));
    expect(Array.from(c.get(13).image)).not.toEqual(Array.from(s.image));
    expect(a.classNames).toEqual(['class_0', 'class_1', 'class_2', 'class_3']);
    expect(() => a.get(40)).toThrow(/out of range/);
    expect(() => synthetic({ numClasses: 1 })).toThrow(/numClasses/);
  });

  it('is learnable: nearest class mean classifies held-out examples', () => {
    const ds = synthetic({ length: 600, numClasses: 10, imageShape: [16, 16, 3], seed: 3 });
    const D = 16 * 16 * 3;
    const means = Array.from({ length: 10 }, () => new Float64Array(D));
    for (let i = 0; i < 300; i++) {
      const { image, label } = ds.get(i);
      for (let k = 0; k < D; k++) means[label]![k]! += image[k]! / 30;
    }
    let correct = 0;
    for (let i = 300; i < 600; i++) {
      const { image, label } = ds.get(i);
      let best = -1;
      let bestD = Infinity;
      means.forEach((m, c) => {
        let d = 0;
        for (let k = 0; k < D; k++) d += (image[k]! - m[k]!) ** 2;
        if (d < bestD) [bestD, best] = [d, c];
      });
      if (best === label) correct++;
    }
    expect(correct / 300).toBeGreaterThan(0.95);
  });
});
