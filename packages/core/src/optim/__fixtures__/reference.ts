// Test helpers for the losses/optim/train tests (not part of the package's public API): the
// PyTorch reference numbers written by tools/fixtures/optim_reference.py, and error measures.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function readOptimFixture<T = any>(name: 'optimizers' | 'schedules' | 'losses'): T {
  const file = fileURLToPath(new URL(`../../../test/fixtures/optim/${name}.json`, import.meta.url));
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/**
 * Largest |got − ref| relative to the reference's own scale (max |ref| over the array, at least
 * 1e-12), so near-zero elements of a tensor are judged against the tensor, not against themselves.
 */
export function maxRelErr(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) throw new Error(`length ${got.length} vs reference ${ref.length}`);
  let scale = 1e-12;
  for (let i = 0; i < ref.length; i++) scale = Math.max(scale, Math.abs(ref[i]!));
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i]! - ref[i]!) / scale;
    if (!(e <= worst)) worst = e; // NaN propagates as a failure
  }
  return worst;
}
