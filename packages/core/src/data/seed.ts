/**
 * Mixes integers into one 32-bit seed (murmur3-style finaliser per word), so independent streams
 * (shuffle of epoch e, augmentation of sample i of epoch e…) come from one user seed.
 */
export function deriveSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    let k = p >>> 0;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
    // Seeds beyond 32 bits (e.g. Date.now()) keep their high word too.
    const hi = Math.floor(p / 4294967296) >>> 0;
    if (hi) h = (Math.imul(h ^ hi, 0x85ebca6b) + 0x2d) >>> 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
