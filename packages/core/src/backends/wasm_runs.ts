/**
 * WebAssembly SIMD block copies on the tfjs wasm backend's memory: up to three nested loops of
 * strided runs, source and destination each with their own strides,
 *   for i0 < n0, i1 < n1, i2 < n2:  dst + i0·d0 + i1·d1 + i2·d2 ← L words at src + i0·s0 + i1·s1 + i2·s2
 * (bytes), as a copy or as a float32 accumulation. The copy is what Transpose (when the last axis
 * stays last), Slice, SplitV and a convolution's im2col are; tfjs-backend-wasm does the first three
 * in JS, one `TypedArray.set` per run or one element at a time (measured on a [512, 50, 192]
 * SplitV: 14.5 ns per element; a 5-D Transpose: 91), where the copy itself needs ~0.2. The
 * accumulation is a col2im (a convolution's input gradient from its columns).
 * Words are 4 bytes (float32, int32); runs move 16 bytes at a time, then the leftover words.
 */

import { sizeOf } from './kernel_util.js';
import { Code, F32_ADD, F32_LOAD, F32_STORE, F32X4_ADD, I32, I32_LT_U, V128_LOAD, V128_STORE, instantiate, mem, moduleBytes } from './wasm_asm.js';

const I32_LOAD = 0x28;
const I32_STORE = 0x36;

const PARAMS = ['src', 'dst', 'L', 'n0', 's0', 'd0', 'n1', 's1', 'd1', 'n2', 's2', 'd2'];

/**
 * for i0 < n0, i1 < n1, i2 < n2: dst[i0·d0 + i1·d1 + i2·d2 + l] (+)= src[i0·s0 + i1·s1 + i2·s2 + l]
 * for l < L words (strides in bytes). `add`: float32 sums (a col2im's taps); else a copy of the
 * words' bits (i32 loads and stores for the leftover words: no float canonicalisation).
 */
function body(add: boolean): number[] {
  const c = new Code(PARAMS);
  c.declare(I32, 'i0', 'i1', 'i2', 'p0', 'q0', 'p1', 'q1', 'p', 'q', 'end', 'vec', 'tail');
  const lt = (x: string, y: string, op = 0x48) => (q: Code) => q.get(x).get(y).op(op);
  // vec = ⌊L/4⌋·16 bytes, tail = (L mod 4)·4 bytes
  c.get('L').i32(2).op(0x76).i32(4).op(0x74).set('vec');
  c.get('L').i32(3).op(0x71).i32(2).op(0x74).set('tail');
  c.i32(0).set('i0');
  c.while(lt('i0', 'n0'), (q) => {
    q.get('src').get('i0').get('s0').mul().add().set('p0');
    q.get('dst').get('i0').get('d0').mul().add().set('q0');
    q.i32(0).set('i1');
    q.while(lt('i1', 'n1'), (q) => {
      q.get('p0').get('i1').get('s1').mul().add().set('p1');
      q.get('q0').get('i1').get('d1').mul().add().set('q1');
      q.i32(0).set('i2');
      q.while(lt('i2', 'n2'), (q) => {
        q.get('p1').get('i2').get('s2').mul().add().set('p');
        q.get('q1').get('i2').get('d2').mul().add().set('q');
        q.get('p').get('vec').add().set('end');
        q.while(lt('p', 'end', I32_LT_U), (q) => {
          q.get('q');
          if (add) q.get('q').simd(V128_LOAD, ...mem(0));
          q.get('p').simd(V128_LOAD, ...mem(0));
          if (add) q.simd(F32X4_ADD);
          q.simd(V128_STORE, ...mem(0));
          q.inc('p', (t) => t.i32(16));
          q.inc('q', (t) => t.i32(16));
        });
        q.get('p').get('tail').add().set('end');
        q.while(lt('p', 'end', I32_LT_U), (q) => {
          if (add) q.get('q').get('q').op(F32_LOAD, ...mem(2)).get('p').op(F32_LOAD, ...mem(2)).op(F32_ADD).op(F32_STORE, ...mem(2));
          else q.get('q').get('p').op(I32_LOAD, ...mem(2)).op(I32_STORE, ...mem(2));
          q.inc('p', (t) => t.i32(4));
          q.inc('q', (t) => t.i32(4));
        });
        q.inc('i2', (t) => t.i32(1));
      });
      q.inc('i1', (t) => t.i32(1));
    });
    q.inc('i0', (t) => t.i32(1));
  });
  return c.body();
}

/** (src, dst, L, n0, s0, d0, n1, s1, d1, n2, s2, d2): see `body`. */
export type RunsFn = (src: number, dst: number, L: number, n0: number, s0: number, d0: number, n1: number, s1: number, d1: number, n2: number, s2: number, d2: number) => void;

const instances = { copy: new WeakMap<WebAssembly.Memory, RunsFn | null>(), add: new WeakMap<WebAssembly.Memory, RunsFn | null>() };

function runsFor(memory: WebAssembly.Memory, add: boolean): RunsFn | null {
  const cache = instances[add ? 'add' : 'copy'];
  let fn = cache.get(memory);
  if (fn === undefined) {
    fn = instantiate<RunsFn>((shared) => moduleBytes('runs', PARAMS, body(add), shared), memory, 'runs');
    cache.set(memory, fn);
  }
  return fn;
}

/** The strided copy of `body` on this memory, or null (no SIMD…). */
export const copyRunsFor = (memory: WebAssembly.Memory) => runsFor(memory, false);
/** The strided float32 accumulation of `body` on this memory, or null. */
export const addRunsFor = (memory: WebAssembly.Memory) => runsFor(memory, true);

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
export function copyPlanned(fn: RunsFn, src: number, dst: number, plan: { run: number; outer: Axis[] }): void {
  const loops = [...plan.outer];
  while (loops.length < 3) loops.unshift({ n: 1, stride: 0 });
  const js = loops.slice(0, loops.length - 3);
  const [a, b, c] = loops.slice(-3) as [Axis, Axis, Axis];
  const run = plan.run * 4;
  const block = a.n * b.n * c.n * run;
  const jsCount = sizeOf(js.map((l) => l.n));
  const idx = new Array<number>(js.length).fill(0);
  let out = dst;
  for (let k = 0; k < jsCount; k++) {
    let from = src;
    for (let d = 0; d < js.length; d++) from += idx[d]! * js[d]!.stride * 4;
    fn(from, out, plan.run, a.n, a.stride * 4, b.n * c.n * run, b.n, b.stride * 4, c.n * run, c.n, c.stride * 4, run);
    out += block;
    for (let d = js.length - 1; d >= 0; d--) {
      if (++idx[d]! < js[d]!.n) break;
      idx[d] = 0;
    }
  }
}
