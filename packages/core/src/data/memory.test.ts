import { describe, expect, it } from 'vitest';
import { ArrayDataset, balancedSubset, splitDataset, Subset } from './memory.js';
import { synthetic } from './synthetic.js';

/** 100 one-pixel images (pixel = index), labels skewed: 60 of class 0, 30 of 1, 10 of 2. */
function skewed(): ArrayDataset {
  const labels = Uint8Array.from({ length: 100 }, (_, i) => (i < 60 ? 0 : i < 90 ? 1 : 2));
  return new ArrayDataset(Uint8Array.from({ length: 100 }, (_, i) => i), labels, [1, 1, 1], ['a', 'b', 'c']);
}

describe('ArrayDataset', () => {
  it('serves views and checks sizes and labels', () => {
    const ds = skewed();
    expect(ds.get(42)).toEqual({ image: Uint8Array.from([42]), label: 0 });
    expect(ds.get(42).image.buffer).toBe(ds.images.buffer);
    expect(() => new ArrayDataset(new Uint8Array(5), new Uint8Array(2), [1, 2, 1], ['a'])).toThrow(/2 labels need 4 image bytes \(1x2x1 each\), got 5/);
    expect(() => new ArrayDataset(new Uint8Array(2), Uint8Array.from([0, 3]), [1, 1, 1], ['a', 'b'])).toThrow(/label 3 of example 1 is outside \[0, 2\)/);
  });
});

describe('splitDataset', () => {
  it('splits disjointly, stratified by class, seeded', async () => {
    const ds = skewed();
    const { train, val } = await splitDataset(ds, { valSize: 0.2, seed: 1 });
    expect(val.length).toBe(20);
    expect(train.length).toBe(80);
    const all = [...train.indices, ...val.indices].sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 100 }, (_, i) => i));
    const valLabels = Array.from(val.indices, (i) => ds.labels[i]);
    expect([0, 1, 2].map((c) => valLabels.filter((l) => l === c).length)).toEqual([12, 6, 2]);
    const again = await splitDataset(ds, { valSize: 20, seed: 1 });
    expect(Array.from(again.val.indices)).toEqual(Array.from(val.indices));
    const other = await splitDataset(ds, { valSize: 20, seed: 2 });
    expect(Array.from(other.val.indices)).not.toEqual(Array.from(val.indices));
    await expect(splitDataset(ds, { valSize: 100 })).rejects.toThrow(/valSize must be/);
  });

  it('works on any Dataset and Subset reads through', async () => {
    const ds = synthetic({ length: 30, numClasses: 3, imageShape: [2, 2, 1] });
    const { val } = await splitDataset(ds, { valSize: 6 });
    expect(val.length).toBe(6);
    const s = val.get(0) as { label: number };
    expect(s.label).toBe(val.indices[0]! % 3);
    expect(() => new Subset(ds, Int32Array.from([30]))).toThrow(/out of range/);
  });
});

describe('balancedSubset', () => {
  it('takes perClass of each class (all of a smaller class), in dataset order', async () => {
    const sub = await balancedSubset(skewed(), 15, 4);
    const labels = Array.from(sub.indices, (i) => (i < 60 ? 0 : i < 90 ? 1 : 2));
    expect([0, 1, 2].map((c) => labels.filter((l) => l === c).length)).toEqual([15, 15, 10]);
    expect(Array.from(sub.indices)).toEqual([...sub.indices].sort((a, b) => a - b));
  });
});
