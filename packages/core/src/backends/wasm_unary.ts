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
 * - sign: exact, as Math.sign (±0 and NaN pass through); the stock kernel is a scalar loop at
 *   ~9 ns per element, and autodiff's ReLU backward (dy·sign(y)) runs it on every activation.
 *
 * `unary(x, y, n)` handles ⌊n/4⌋·4 elements; the caller does the rest.
 */

import {
  Code,
  F32X4_ABS,
  F32X4_ADD,
  F32X4_DIV,
  F32X4_GT,
  F32X4_LT,
  F32X4_MUL,
  F32X4_NEAREST,
  F32X4_NE,
  F32X4_NEG,
  F32X4_PMAX,
  F32X4_PMIN,
  F32X4_SUB,
  I32,
  I32_LT_U,
  I32X4_ADD,
  I32X4_SHL,
  I32X4_SPLAT,
  V128,
  V128_AND,
  V128_BITSELECT,
  V128_LOAD,
  V128_OR,
  V128_STORE,
  instantiate,
  mem,
  moduleBytes,
  splat,
} from './wasm_asm.js';

const PARAMS = ['x', 'y', 'n'];

/** exp of the vector in local `v`, left on the stack; uses locals t, r, z, m. */
function emitExp(c: Code, v: string): void {
  // Clamped input for the polynomial; the specials (NaN too) are fixed at the end. pmin/pmax
  // (one minps/maxps each) instead of min/max, whose NaN and ±0 rules cost V8 a 7-instruction
  // sequence with a long dependency chain (measured: 0.7 ns per element per op, 10× pmin).
  c.get(v);
  splat(c, 88.3762626647949);
  c.simd(F32X4_PMIN);
  splat(c, -87.3365447505531);
  c.simd(F32X4_PMAX).set('t');
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
  // · 2^m: ((int(m) + 127) << 23) reinterpreted as float. int(m) by the magic number 1.5·2^23:
  // m is integral and |m| ≤ 128, so bits(m + 1.5·2^23) = 0x4B400000 + m exactly (i32x4.trunc_sat
  // costs V8 an 8-instruction sequence).
  c.get('m');
  splat(c, 12582912);
  c.simd(F32X4_ADD);
  c.i32(127 - 0x4b400000).simd(I32X4_SPLAT).simd(I32X4_ADD);
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
  c.get(v).get('t').get(v).get(v).simd(F32X4_NE); // NaN lanes
  c.simd(V128_BITSELECT);
}

/** erf of the vector in local `src` (not one of the temporaries), left on the stack; uses v, t, r, z, m, a, s. */
function emitErf(q: Code, src: string): void {
  // s = sign bits of src; a = |src|; r = 1/(1 + p·a)
  q.get(src);
  q.i32(-0x80000000).simd(I32X4_SPLAT);
  q.simd(V128_AND).set('s');
  q.get(src).simd(F32X4_ABS).set('a');
  splat(q, 1);
  splat(q, 1);
  q.get('a');
  splat(q, 0.3275911);
  q.simd(F32X4_MUL).simd(F32X4_ADD).simd(F32X4_DIV).set('r');
  // poly = ((((a5 r + a4) r + a3) r + a2) r + a1) r
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

/** sign of the vector in local `v` (±1; ±0 and NaN kept, as Math.sign), left on the stack; uses t. */
function emitSign(c: Code, v: string): void {
  splat(c, 1);
  c.get(v).get(v);
  splat(c, 0);
  c.simd(F32X4_GT).simd(V128_BITSELECT).set('t');
  splat(c, -1);
  c.get('t').get(v);
  splat(c, 0);
  c.simd(F32X4_LT).simd(V128_BITSELECT);
}

export type UnaryOp = 'exp' | 'erf' | 'sign';

function body(op: UnaryOp): number[] {
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
      if (op === 'exp') emitExp(q, 'v');
      else if (op === 'sign') emitSign(q, 'v');
      else emitErf(q, 'v');
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

const cache = new WeakMap<WebAssembly.Memory, Map<string, ((...args: number[]) => void) | null>>();

/** The module of `unaryFor(…, op)`, exporting `unary` (for other threads' instances). */
export const unaryModuleBytes = (op: UnaryOp, shared: boolean) => moduleBytes('unary', PARAMS, body(op), shared);

export function unaryFor(memory: WebAssembly.Memory, op: UnaryOp): UnaryFn | null {
  let m = cache.get(memory);
  if (!m) cache.set(memory, (m = new Map()));
  if (!m.has(op)) m.set(op, instantiate<UnaryFn>((shared) => unaryModuleBytes(op, shared), memory, 'unary'));
  return m.get(op) as UnaryFn | null;
}

/** The same formulas in JS, for the n % 4 leftover elements (and as the reference in tests). */
export function erfScalar(x: number): number {
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a);
  return x < 0 ? -y : y;
}

/*
 * Exact GELU, y = 0.5·x·(1 + erf(x/√2)), and its backward, dx = dy·(Φ(x) + x·φ(x)), each in one
 * SIMD pass. Every element goes through the same float32 operations in the same order as the
 * composed form (nn/activation.ts: Mul, Mul, Erf, Add, Mul forward; eleven kernels backward), with
 * the erf and exp above, so the results are bit-identical to it; only the memory traffic of the
 * 5 and 11 intermediate tensors and their kernel launches are gone.
 */
const SQRT1_2 = Math.fround(Math.SQRT1_2);
const INV_SQRT_2PI = Math.fround(1 / Math.sqrt(2 * Math.PI));

function geluBody(grad: boolean): number[] {
  const params = grad ? ['x', 'g', 'y', 'n'] : ['x', 'y', 'n'];
  const c = new Code(params);
  c.declare(I32, 'p', 'off', 'end');
  c.declare(V128, 'x0', 'u', 'h', 'v', 't', 'r', 'z', 'm', 'a', 's');
  c.get('x').get('n').i32(-4).op(0x71).i32(2).op(0x74).add().set('end');
  c.get('x').set('p');
  c.while(
    (q) => q.get('p').get('end').op(I32_LT_U),
    (q) => {
      q.get('p').get('x').sub().set('off');
      q.get('p')
        .simd(V128_LOAD, ...mem(2))
        .set('x0');
      q.get('x0');
      splat(q, SQRT1_2);
      q.simd(F32X4_MUL).set('u');
      if (!grad) {
        // h = 0.5·x; y = h·(1 + erf(u))
        q.get('x0');
        splat(q, 0.5);
        q.simd(F32X4_MUL).set('h');
        emitErf(q, 'u');
        splat(q, 1);
        q.simd(F32X4_ADD).get('h').simd(F32X4_MUL).set('t');
      } else {
        // cdf = 0.5·(1 + erf(u)) into h
        emitErf(q, 'u');
        splat(q, 1);
        q.simd(F32X4_ADD);
        splat(q, 0.5);
        q.simd(F32X4_MUL).set('h');
        // xpdf = x·(INV·exp(−0.5·x²)); slope = cdf + xpdf; dx = dy·slope
        q.get('x0').get('x0').simd(F32X4_MUL);
        splat(q, -0.5);
        q.simd(F32X4_MUL).set('u');
        emitExp(q, 'u');
        splat(q, INV_SQRT_2PI);
        q.simd(F32X4_MUL).get('x0').simd(F32X4_MUL);
        q.get('h').simd(F32X4_ADD).set('h');
        q.get('g')
          .get('off')
          .add()
          .simd(V128_LOAD, ...mem(2));
        q.get('h').simd(F32X4_MUL).set('t');
      }
      q.get('y')
        .get('off')
        .add()
        .get('t')
        .simd(V128_STORE, ...mem(2));
      q.inc('p', (r) => r.i32(16));
    },
  );
  return c.body();
}

export type GeluFn = (x: number, y: number, n: number) => void;
export type GeluGradFn = (x: number, dy: number, dx: number, n: number) => void;

/** The module of `geluFor(…, grad)`, exporting `gelu` / `gelu_grad` (for other threads' instances). */
export const geluModuleBytes = (grad: boolean, shared: boolean) => moduleBytes(grad ? 'gelu_grad' : 'gelu', grad ? ['x', 'g', 'y', 'n'] : ['x', 'y', 'n'], geluBody(grad), shared);

export function geluFor(memory: WebAssembly.Memory, grad: false): GeluFn | null;
export function geluFor(memory: WebAssembly.Memory, grad: true): GeluGradFn | null;
export function geluFor(memory: WebAssembly.Memory, grad: boolean): GeluFn | GeluGradFn | null {
  let m = cache.get(memory);
  if (!m) cache.set(memory, (m = new Map()));
  const key = grad ? 'gelu_grad' : 'gelu';
  if (!m.has(key)) m.set(key, instantiate<(...args: number[]) => void>((shared) => geluModuleBytes(grad, shared), memory, key));
  return m.get(key) as GeluFn | GeluGradFn | null;
}

/** The kernels' arithmetic for one element, in float32 steps (the n % 4 leftovers). */
export function geluScalar(x: number): number {
  const f = Math.fround;
  const h = f(0.5 * x);
  const e = f(erfScalar(f(x * SQRT1_2)));
  return f(f(1 + e) * h);
}

export function geluGradScalar(x: number, dy: number): number {
  const f = Math.fround;
  const cdf = f(f(1 + f(erfScalar(f(x * SQRT1_2)))) * 0.5);
  const ex = f(Math.exp(f(f(x * x) * -0.5)));
  const slope = f(cdf + f(f(ex * INV_SQRT_2PI) * x));
  return f(dy * slope);
}
