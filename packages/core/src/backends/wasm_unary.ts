/**
 * WebAssembly SIMD exp and erf on the tfjs wasm backend's memory. The stock kernels call scalar
 * libm per element (exp ~9 ns, erf ~21 ns per element here); erf-GELU's forward is Erf and its
 * backward Exp, on every MLP activation of a transformer.
 *
 * - exp: Cephes' expf (range reduction by ln 2 in two parts, degree-6 polynomial, 2ⁿ built in the
 *   exponent bits); about 1 ulp. NaN and ±Inf as Math.exp; inputs are clamped to
 *   [−87.34, 88.38] inside (so results below 1.2e-38 are that, and 88.38–88.72 saturates at
 *   2.4e38), with +Inf above 88.72 and 0 below −103.97.
 * - erf: Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), the formula tfjs's cpu kernel uses.
 *
 * `unary(x, y, n)` handles ⌊n/4⌋·4 elements; the caller does the rest.
 */

import { Code, F32X4_ADD, F32X4_MUL, I32, I32_LT_U, V128, V128_LOAD, V128_STORE, instantiate, mem, moduleBytes } from './wasm_asm.js';

// More SIMD opcodes (after 0xfd).
const F32X4_SPLAT = 0x13;
const F32X4_SUB = 0xe5;
const F32X4_DIV = 0xe7;
const F32X4_MIN = 0xe8;
const F32X4_MAX = 0xe9;
const F32X4_ABS = 0xe0;
const F32X4_NEG = 0xe1;
const F32X4_NEAREST = 0x6a;
const F32X4_GT = 0x44;
const F32X4_LT = 0x43;
const I32X4_TRUNC_SAT_F32X4_S = 0xf8;
const I32X4_SHL = 0xab;
const I32X4_ADD = 0xae;
const V128_BITSELECT = 0x52;
const V128_AND = 0x4e;
const V128_OR = 0x50;
const I32X4_SPLAT = 0x11;

const PARAMS = ['x', 'y', 'n'];

const f32 = (v: number) => {
  const b = new Uint8Array(new Float32Array([v]).buffer);
  return [...b];
};

/** Pushes f32x4.splat(v). */
function splat(c: Code, v: number): Code {
  return c.op(0x43, ...f32(v)).simd(F32X4_SPLAT);
}

/** exp of the vector in local `v`, left on the stack; uses locals t, r, z, m. */
function emitExp(c: Code, v: string): void {
  // Clamped input for the polynomial; the specials are fixed at the end.
  c.get(v);
  splat(c, 88.3762626647949);
  c.simd(F32X4_MIN);
  splat(c, -87.3365447505531);
  c.simd(F32X4_MAX).set('t');
  // m = nearest(t·log2e)
  c.get('t');
  splat(c, Math.LOG2E);
  c.simd(F32X4_MUL).simd(F32X4_NEAREST).set('m');
  // r = t − m·C1 − m·C2 (C1 + C2 = ln 2, C1 exact in few bits)
  c.get('t').get('m');
  splat(c, 0.693359375);
  c.simd(F32X4_MUL).simd(F32X4_SUB);
  c.get('m');
  splat(c, -2.1219444e-4);
  c.simd(F32X4_MUL).simd(F32X4_SUB).set('r');
  // z = r²; p = ((((( c0 r + c1) r + c2) r + c3) r + c4) r + c5)·z + r + 1
  c.get('r').get('r').simd(F32X4_MUL).set('z');
  splat(c, 1.98756915e-4);
  for (const k of [1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1]) {
    c.get('r').simd(F32X4_MUL);
    splat(c, k);
    c.simd(F32X4_ADD);
  }
  c.get('z').simd(F32X4_MUL).get('r').simd(F32X4_ADD);
  splat(c, 1);
  c.simd(F32X4_ADD);
  // · 2^m: ((int(m) + 127) << 23) reinterpreted as float
  c.get('m').simd(I32X4_TRUNC_SAT_F32X4_S);
  c.i32(127).simd(I32X4_SPLAT).simd(I32X4_ADD);
  c.i32(23).simd(I32X4_SHL);
  c.simd(F32X4_MUL).set('t');
  // v > 88.72… → +Inf; v < −103.97… → 0 (below the smallest denormal); NaN stays NaN.
  splat(c, Infinity);
  c.get('t');
  c.get(v);
  splat(c, 88.72283935546875);
  c.simd(F32X4_GT);
  c.simd(V128_BITSELECT).set('t');
  c.get(v);
  splat(c, -103.97207708);
  c.simd(F32X4_LT);
  // t & ~mask: bitselect(0, t, mask)
  c.set('z');
  splat(c, 0);
  c.get('t').get('z').simd(V128_BITSELECT);
  // NaN in → NaN out: where v ≠ v, v.
  c.set('t');
  c.get(v).get('t').get(v).get(v).simd(0x42); // f32x4.ne: NaN lanes
  c.simd(V128_BITSELECT);
}

function body(op: 'exp' | 'erf'): number[] {
  const c = new Code(PARAMS);
  c.declare(I32, 'p', 'end');
  c.declare(V128, 'v', 't', 'r', 'z', 'm', 'a', 's');
  // end = x + (n & ~3)·4
  c.get('x').get('n').i32(-4).op(0x71).i32(2).op(0x74).add().set('end');
  c.get('x').set('p');
  c.while(
    (q) => q.get('p').get('end').op(I32_LT_U),
    (q) => {
      q.get('p')
        .simd(V128_LOAD, ...mem(2))
        .set('v');
      if (op === 'exp') {
        emitExp(q, 'v');
      } else {
        // s = sign bits of v; a = |v|; t = 1/(1 + p·a)
        q.get('v');
        q.i32(-0x80000000).simd(I32X4_SPLAT);
        q.simd(V128_AND).set('s');
        q.get('v').simd(F32X4_ABS).set('a');
        splat(q, 1);
        splat(q, 1);
        q.get('a');
        splat(q, 0.3275911);
        q.simd(F32X4_MUL).simd(F32X4_ADD).simd(F32X4_DIV).set('r');
        // poly = ((((a5 t + a4) t + a3) t + a2) t + a1) t
        splat(q, 1.061405429);
        for (const k of [-1.453152027, 1.421413741, -0.284496736, 0.254829592]) {
          q.get('r').simd(F32X4_MUL);
          splat(q, k);
          q.simd(F32X4_ADD);
        }
        q.get('r').simd(F32X4_MUL).set('m');
        // e = exp(−a²) (into local v for emitExp), y = 1 − poly·e, then the sign back.
        q.get('a').get('a').simd(F32X4_MUL).simd(F32X4_NEG).set('v');
        q.get('m');
        emitExp(q, 'v');
        q.simd(F32X4_MUL).set('m');
        splat(q, 1);
        q.get('m').simd(F32X4_SUB).get('s').simd(V128_OR);
      }
      q.set('t');
      // y + (p − x)
      q.get('y')
        .get('p')
        .add()
        .get('x')
        .sub()
        .get('t')
        .simd(V128_STORE, ...mem(2));
      q.inc('p', (r) => r.i32(16));
    },
  );
  return c.body();
}

export type UnaryFn = (x: number, y: number, n: number) => void;

const cache = new WeakMap<WebAssembly.Memory, Map<string, UnaryFn | null>>();

export function unaryFor(memory: WebAssembly.Memory, op: 'exp' | 'erf'): UnaryFn | null {
  let m = cache.get(memory);
  if (!m) cache.set(memory, (m = new Map()));
  if (!m.has(op)) m.set(op, instantiate<UnaryFn>((shared) => moduleBytes('unary', PARAMS, body(op), shared), memory, 'unary'));
  return m.get(op)!;
}

/** The same formulas in JS, for the n % 4 leftover elements (and as the reference in tests). */
export function erfScalar(x: number): number {
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a);
  return x < 0 ? -y : y;
}
