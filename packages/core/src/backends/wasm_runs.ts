/**
 * A WebAssembly SIMD block copy on the tfjs wasm backend's memory: up to three nested loops of
 * strided runs, written out one after another,
 *   for i0 < n0, i1 < n1, i2 < n2:  dst ← L words at src + i0·s0 + i1·s1 + i2·s2   (bytes)
 * — what Transpose (when the last axis stays last), Slice and SplitV are. tfjs-backend-wasm does
 * these in JS, one `TypedArray.set` per run or one element at a time (measured on a [512, 50, 192]
 * SplitV: 14.5 ns per element; a 5-D Transpose: 91), where the copy itself needs ~0.2.
 * Words are 4 bytes (float32, int32); runs move 16 bytes at a time, then the leftover words.
 */

import { sizeOf } from './kernel_util.js';
import { Code, I32, I32_LT_U, V128_LOAD, V128_STORE, instantiate, mem, moduleBytes } from './wasm_asm.js';

const PARAMS = ['src', 'dst', 'L', 'n0', 's0', 'n1', 's1', 'n2', 's2'];

function body(): number[] {
  const c = new Code(PARAMS);
  c.declare(I32, 'i0', 'i1', 'i2', 'p0', 'p1', 'p', 'end', 'vec', 'tail');
  const lt = (x: string, y: string, op = 0x48) => (q: Code) => q.get(x).get(y).op(op);
  // vec = ⌊L/4⌋·16 bytes, tail = (L mod 4)·4 bytes
  c.get('L').i32(2).op(0x76).i32(4).op(0x74).set('vec');
  c.get('L').i32(3).op(0x71).i32(2).op(0x74).set('tail');
  c.i32(0).set('i0');
  c.while(lt('i0', 'n0'), (q) => {
    q.get('src').get('i0').get('s0').mul().add().set('p0');
    q.i32(0).set('i1');
    q.while(lt('i1', 'n1'), (q) => {
      q.get('p0').get('i1').get('s1').mul().add().set('p1');
      q.i32(0).set('i2');
      q.while(lt('i2', 'n2'), (q) => {
        q.get('p1').get('i2').get('s2').mul().add().set('p');
        q.get('p').get('vec').add().set('end');
        q.while(lt('p', 'end', I32_LT_U), (q) => {
          q.get('dst').get('p').simd(V128_LOAD, ...mem(0)).simd(V128_STORE, ...mem(0));
          q.inc('p', (t) => t.i32(16));
          q.inc('dst', (t) => t.i32(16));
        });
        q.get('p').get('tail').add().set('end');
        q.while(lt('p', 'end', I32_LT_U), (q) => {
          // i32.load / i32.store: words as bits (no float canonicalisation)
          q.get('dst').get('p').op(0x28, ...mem(2)).op(0x36, ...mem(2));
          q.inc('p', (t) => t.i32(4));
          q.inc('dst', (t) => t.i32(4));
        });
        q.inc('i2', (t) => t.i32(1));
      });
      q.inc('i1', (t) => t.i32(1));
    });
    q.inc('i0', (t) => t.i32(1));
  });
  return c.body();
}

export type CopyRunsFn = (src: number, dst: number, L: number, n0: number, s0: number, n1: number, s1: number, n2: number, s2: number) => void;

const instances = new WeakMap<WebAssembly.Memory, CopyRunsFn | null>();

export function copyRunsFor(memory: WebAssembly.Memory): CopyRunsFn | null {
  let fn = instances.get(memory);
  if (fn === undefined) {
    fn = instantiate<CopyRunsFn>((shared) => moduleBytes('runs', PARAMS, body(), shared), memory, 'runs');
    instances.set(memory, fn);
  }
  return fn;
}

/** One axis of a block copy: `n` steps of `stride` elements in the source. */
export interface Axis {
  n: number;
  stride: number;
}

/**
 * The copy `out[i…] = src[offset + Σ i_k·stride_k]` over `axes` (outermost first; the output is
 * dense in that order), reduced to as few loops as possible: axes of size 1 dropped, neighbours
 * merged where the outer one's stride is the inner one's span. Returns the run (innermost axis, if
 * its stride is 1) and the outer loops; null when the innermost stride is not 1 (the data moves
 * one element at a time, which this copy does not speed up).
 */
export function planRuns(axes: Axis[]): { run: number; outer: Axis[] } | null {
  const kept = axes.filter((a) => a.n !== 1);
  const merged: Axis[] = [];
  for (const a of kept) {
    const last = merged[merged.length - 1];
    if (last && last.stride === a.stride * a.n) merged[merged.length - 1] = { n: last.n * a.n, stride: a.stride };
    else merged.push({ ...a });
  }
  if (merged.length === 0) return { run: 1, outer: [] };
  const inner = merged[merged.length - 1]!;
  if (inner.stride !== 1) return null;
  return { run: inner.n, outer: merged.slice(0, -1) };
}

/**
 * Runs the planned copy between two byte offsets on the heap (4-byte elements): the innermost three
 * outer loops in wasm, any further ones here.
 */
export function copyPlanned(fn: CopyRunsFn, src: number, dst: number, plan: { run: number; outer: Axis[] }): void {
  const loops = [...plan.outer];
  while (loops.length < 3) loops.unshift({ n: 1, stride: 0 });
  const js = loops.slice(0, loops.length - 3);
  const [a, b, c] = loops.slice(-3) as [Axis, Axis, Axis];
  const block = a.n * b.n * c.n * plan.run * 4;
  const jsCount = sizeOf(js.map((l) => l.n));
  const idx = new Array<number>(js.length).fill(0);
  let out = dst;
  for (let k = 0; k < jsCount; k++) {
    let from = src;
    for (let d = 0; d < js.length; d++) from += idx[d]! * js[d]!.stride * 4;
    fn(from, out, plan.run, a.n, a.stride * 4, b.n, b.stride * 4, c.n, c.stride * 4);
    out += block;
    for (let d = js.length - 1; d >= 0; d--) {
      if (++idx[d]! < js[d]!.n) break;
      idx[d] = 0;
    }
  }
}
