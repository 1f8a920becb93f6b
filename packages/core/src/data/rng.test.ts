import { describe, expect, it } from 'vitest';
import { Rng } from './rng.js';

describe('Rng', () => {
  it('repeats exactly for a seed and differs across seeds', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const xa = Array.from({ length: 5 }, () => a.nextUint32());
    expect(Array.from({ length: 5 }, () => b.nextUint32())).toEqual(xa);
    expect(Array.from({ length: 5 }, () => c.nextUint32())).not.toEqual(xa);
  });

  it('restores its state', () => {
    const a = new Rng(7);
    a.next();
    const s = a.getState();
    const x = a.next();
    const b = new Rng(999);
    b.setState(s);
    expect(b.next()).toBe(x);
    expect(() => b.setState([1, 2])).toThrow(/4 words/);
  });

  it('has roughly the right moments', () => {
    const r = new Rng(1);
    const n = 20000;
    let s = 0;
    let s2 = 0;
    let beta = 0;
    for (let i = 0; i < n; i++) {
      const u = r.next();
      expect(u).toBeGreaterThanOrEqual(0);
      expect(u).toBeLessThan(1);
      const z = r.normal();
      s += z;
      s2 += z * z;
      beta += r.beta(0.8);
    }
    expect(Math.abs(s / n)).toBeLessThan(0.03);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.05);
    expect(Math.abs(beta / n - 0.5)).toBeLessThan(0.02);
  });

  it('permutes', () => {
    const p = Array.from(new Rng(3).permutation(100));
    expect([...p].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(p).not.toEqual(Array.from({ length: 100 }, (_, i) => i));
  });
});
