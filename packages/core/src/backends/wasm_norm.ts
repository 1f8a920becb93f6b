/**
 * LayerNorm over the last axis, forward and backward, each in one WebAssembly SIMD kernel on the
 * tfjs wasm backend's memory (ops/norm.ts `layerNormLastAxis` runs them on wasm). The composed
 * forms are 9 kernels forward (Mean, Sub, Square, Mean, Add, Rsqrt, Sub, Mul, Mul, Add) and ~14
 * backward, each a pass over the activation.
 *
 * Bit-identical to the composed form: every element goes through the same float32 operations in
 * the same order. tfjs-backend-wasm's Mean over the last axis sums a row sequentially from 0 and
 * divides by the length; a row sum here does the same, four rows at a time (lane j of the
 * accumulator is row r + j, one column per step, so each lane adds in the row's own order).
 * Rsqrt is 1/sqrtf. The per-column sums of the backward (dγ = Σ dy·x̂, dβ = Σ dy over the rows)
 * add row after row, as our column-sum kernel (wasm_reduce.ts) that Sum over the leading axes runs.
 */

import * as tf from '@tensorflow/tfjs-core';
import { sizeOf, type Info } from './kernel_util.js';
import { heapOffset, wasmMalloc, wasmMemory, type WasmBackend } from './matmul_wasm.js';
import { ELEMENTWISE_PARALLEL_MIN, kernelThreads, shareOut } from './wasm_pool.js';
import {
  Code,
  F32,
  F32_ADD,
  F32_LOAD,
  F32_MUL,
  F32_STORE,
  F32_SUB,
  F32X4_ADD,
  F32X4_DIV,
  F32X4_EXTRACT_LANE,
  F32X4_MUL,
  F32X4_SPLAT,
  F32X4_SQRT,
  F32X4_SUB,
  I32,
  I32_LT_U,
  V128,
  V128_CONST,
  V128_LOAD,
  V128_LOAD32_LANE,
  V128_LOAD32_SPLAT,
  V128_STORE,
  instantiate,
  mem,
  moduleBytes,
  splat,
  f32Bytes,
} from './wasm_asm.js';

const LANES = [0, 1, 2, 3] as const;
const I32_SHL = 0x74;
const I32_GE_U = 0x4f;
const SELECT = 0x1b;
const F32_CONST = 0x43;
const F32_DIV = 0x95;
const F32_SQRT = 0x91;
const F32_REINTERPRET_I32 = 0xbe;
const F32_CONVERT_I32_U = 0xb3;

/**
 * The arithmetic of one formula over 4 columns (f32x4) or one (f32, a row's tail when C % 4 ≠ 0):
 * kernels write each formula once and emit it with both. Locals named `v` hold vectors; their
 * scalar twins are `v_s` (declared by `declareTwins`).
 */
interface Arith {
  load(q: Code): Code;
  store(q: Code): Code;
  add(q: Code): Code;
  sub(q: Code): Code;
  mul(q: Code): Code;
  div(q: Code): Code;
  sqrt(q: Code): Code;
  /** Pushes the constant v (splatted for vectors). */
  num(q: Code, v: number): Code;
  /** Pushes the float32 whose bits are in i32 local `name` (splatted for vectors). */
  bits(q: Code, name: string): Code;
  /** The local for the vector local `name` in this arithmetic. */
  l(name: string): string;
}

/** An {@link Arith} from its opcodes: `emit` writes one (SIMD-prefixed or plain). */
function arith(
  emit: (q: Code, op: number, ...imm: number[]) => Code,
  ops: Record<'load' | 'store' | 'add' | 'sub' | 'mul' | 'div' | 'sqrt', number>,
  rest: Pick<Arith, 'num' | 'bits' | 'l'>,
): Arith {
  return {
    load: (q) => emit(q, ops.load, ...mem(2)),
    store: (q) => emit(q, ops.store, ...mem(2)),
    add: (q) => emit(q, ops.add),
    sub: (q) => emit(q, ops.sub),
    mul: (q) => emit(q, ops.mul),
    div: (q) => emit(q, ops.div),
    sqrt: (q) => emit(q, ops.sqrt),
    ...rest,
  };
}

const VEC = arith(
  (q, op, ...imm) => q.simd(op, ...imm),
  { load: V128_LOAD, store: V128_STORE, add: F32X4_ADD, sub: F32X4_SUB, mul: F32X4_MUL, div: F32X4_DIV, sqrt: F32X4_SQRT },
  {
    num: (q, v) => splat(q, v),
    bits: (q, name) => q.get(name).op(F32_REINTERPRET_I32).simd(F32X4_SPLAT),
    l: (name) => name,
  },
);

const SCALAR = arith(
  (q, op, ...imm) => q.op(op, ...imm),
  { load: F32_LOAD, store: F32_STORE, add: F32_ADD, sub: F32_SUB, mul: F32_MUL, div: F32_DIV, sqrt: F32_SQRT },
  {
    num: (q, v) => q.op(F32_CONST, ...f32Bytes(v)),
    bits: (q, name) => q.get(name).op(F32_REINTERPRET_I32),
    l: (name) => `${name}_s`,
  },
);

/** Declares vector locals and their scalar twins. */
function declareTwins(c: Code, ...names: string[]): void {
  c.declare(V128, ...names);
  c.declare(F32, ...names.map(SCALAR.l));
}

const zero = (c: Code, v: string) => c.simd(V128_CONST, ...new Array<number>(16).fill(0)).set(v);

/** q{j} = base + min(r + j, R − 1)·stride for the four lanes (rows past the end repeat the last). */
function lanePointers(c: Code, base: string, prefix: string, stride: (q: Code) => Code): void {
  for (const j of LANES) {
    c.get(base);
    // select(R − 1, r + j, r + j ≥ R)
    c.get('R').i32(1).sub();
    c.get('r').i32(j).add();
    c.get('r').i32(j).add().get('R').op(I32_GE_U);
    c.op(SELECT);
    stride(c).add().set(`${prefix}${j}`);
  }
}

/** Pushes the vector (q0[o], q1[o], q2[o], q3[o]): column o/4 of four rows. */
function gather(c: Code, prefix: string): void {
  c.get(`${prefix}0`)
    .get('o')
    .add()
    .simd(V128_LOAD32_SPLAT, ...mem(2));
  for (const j of [1, 2, 3]) {
    c.set('tmp');
    c.get(`${prefix}${j}`)
      .get('o')
      .add()
      .get('tmp')
      .simd(V128_LOAD32_LANE, ...mem(2), j);
  }
}

/** for (o = 0; o < rowBytes; o += 4) body — a column loop over four gathered rows. */
function columns(c: Code, body: (q: Code) => void): void {
  c.i32(0).set('o');
  c.while(
    (q) => q.get('o').get('rowBytes').op(I32_LT_U),
    (q) => {
      body(q);
      q.inc('o', (t) => t.i32(4));
    },
  );
}

/** One row (at rowOff): `body` with vectors 4 columns at a time (byte offset o in the row), then with scalars for the tail. */
function alongRow(c: Code, body: (q: Code, a: Arith) => void): void {
  c.i32(0).set('o');
  for (const [a, end, step] of [
    [VEC, 'vecBytes', 16],
    [SCALAR, 'rowBytes', 4],
  ] as const) {
    c.while(
      (t) => t.get('o').get(end).op(I32_LT_U),
      (t) => {
        body(t, a);
        t.inc('o', (u) => u.i32(step));
      },
    );
  }
}

/** for each valid lane j (row r + j < R): `prepare(j)` with rowOff = (r + j)·rowBytes, then `body` along the row. */
function rowsOfBlock(c: Code, prepare: (q: Code, j: number) => void, body: (q: Code, a: Arith) => void): void {
  for (const j of LANES) {
    c.if(
      (q) => q.get('r').i32(j).add().get('R').op(I32_LT_U),
      (q) => {
        q.get('r').i32(j).add().get('rowBytes').mul().set('rowOff');
        prepare(q, j);
        alongRow(q, body);
      },
    );
  }
}

/** for (r = 0, rowOff = 0; r < R; r++, rowOff += rowBytes) alongRow(body). */
function everyRow(c: Code, body: (q: Code, a: Arith) => void): void {
  c.i32(0).set('r');
  c.i32(0).set('rowOff');
  c.while(
    (q) => q.get('r').get('R').op(I32_LT_U),
    (q) => {
      alongRow(q, body);
      q.inc('r', (t) => t.i32(1));
      q.inc('rowOff', (t) => t.get('rowBytes'));
    },
  );
}

/** rowBytes = C·4, vecBytes = (C & ~3)·4, count = splat(float(n)) (n = C for row statistics, R for column ones); r = 0. */
function prologue(c: Code, n: 'R' | 'C'): void {
  c.get('C').i32(2).op(I32_SHL).set('rowBytes');
  c.get('C').i32(-4).op(0x71).i32(2).op(I32_SHL).set('vecBytes');
  c.get(n).op(F32_CONVERT_I32_U).set('count_s');
  c.get('count_s').simd(F32X4_SPLAT).set('count');
  c.i32(0).set('r');
}

/** Address of element o of the row at rowOff in tensor `t`. */
const at = (q: Code, t: string) => q.get(t).get('rowOff').add().get('o').add();
/** Address of element o of the [C] vector `t`. */
const col = (q: Code, t: string) => q.get(t).get('o').add();
/** Pushes element(s) o of the row at rowOff in `t`. */
const row = (q: Code, a: Arith, t: string) => a.load(at(q, t));
/** Pushes element(s) o of the [C] vector `t`. */
const chan = (q: Code, a: Arith, t: string) => a.load(col(q, t));
/** Pushes local `v` (or its scalar twin). */
const loc = (q: Code, a: Arith, v: string) => q.get(a.l(v));

/** buf[o] = buf[o] + value (pushed by `v`). */
function accumulate(q: Code, a: Arith, buf: string, v: () => void): void {
  col(q, buf);
  chan(q, a, buf);
  v();
  a.store(a.add(q));
}

// ---------------------------------------------------------------------------------------------
// LayerNorm over the last axis: [R, C], statistics per row

const FWD_PARAMS = ['x', 'g', 'b', 'y', 'mean', 'rstd', 'R', 'C', 'epsBits'];

function forwardBody(hasGamma: boolean, hasBeta: boolean): number[] {
  const c = new Code(FWD_PARAMS);
  c.declare(I32, 'r', 'o', 'rowBytes', 'vecBytes', 'rowOff', 'q0', 'q1', 'q2', 'q3');
  c.declare(V128, 'acc', 'mu', 'rs', 'tmp', 't');
  declareTwins(c, 'm', 'k', 'count');
  prologue(c, 'C');
  c.while(
    (q) => q.get('r').get('R').op(I32_LT_U),
    (q) => {
      lanePointers(q, 'x', 'q', (t) => t.get('rowBytes').mul());
      // μ = (Σ x)/C, lane j = row r + j
      zero(q, 'acc');
      columns(q, (t) => {
        t.get('acc');
        gather(t, 'q');
        t.simd(F32X4_ADD).set('acc');
      });
      q.get('acc').get('count').simd(F32X4_DIV).set('mu');
      // σ² = (Σ (x − μ)²)/C; 1/σ = 1/sqrt(σ² + eps)
      zero(q, 'acc');
      columns(q, (t) => {
        gather(t, 'q');
        t.get('mu').simd(F32X4_SUB).set('t');
        t.get('acc').get('t').get('t').simd(F32X4_MUL).simd(F32X4_ADD).set('acc');
      });
      VEC.num(q, 1);
      q.get('acc').get('count').simd(F32X4_DIV);
      VEC.bits(q, 'epsBits');
      q.simd(F32X4_ADD).simd(F32X4_SQRT).simd(F32X4_DIV).set('rs');
      // y = (x − μ)·(1/σ) [·γ] [+β], row by row.
      rowsOfBlock(
        q,
        (t, j) => {
          for (const [v, stat, local] of [
            ['mu', 'mean', 'm'],
            ['rs', 'rstd', 'k'],
          ] as const) {
            t.get(v).simd(F32X4_EXTRACT_LANE, j).set(`${local}_s`);
            t.get(stat)
              .get('r')
              .i32(j)
              .add()
              .i32(2)
              .op(I32_SHL)
              .add()
              .get(`${local}_s`)
              .op(F32_STORE, ...mem(2));
            t.get(`${local}_s`).simd(F32X4_SPLAT).set(local);
          }
        },
        (t, a) => {
          at(t, 'y');
          row(t, a, 'x');
          a.mul(a.sub(loc(t, a, 'm')).get(a.l('k')));
          if (hasGamma) a.mul(chan(t, a, 'g'));
          if (hasBeta) a.add(chan(t, a, 'b'));
          a.store(t);
        },
      );
      q.inc('r', (t) => t.i32(4));
    },
  );
  return c.body();
}

const BWD_PARAMS = ['x', 'mean', 'rstd', 'g', 'dy', 'dx', 'dg', 'db', 'R', 'C'];

function backwardBody(hasGamma: boolean, hasBeta: boolean): number[] {
  const c = new Code(BWD_PARAMS);
  c.declare(I32, 'r', 'o', 'rowBytes', 'vecBytes', 'rowOff', 'q0', 'q1', 'q2', 'q3', 'p0', 'p1', 'p2', 'p3', 'm0', 'm1', 'm2', 'm3');
  c.declare(V128, 'mu', 'rs', 'tmp', 's1', 's2', 'g1', 'g2');
  declareTwins(c, 'm', 'k', 'a1', 'a2', 'xh', 'gh', 'd', 'count');
  prologue(c, 'C');
  // dγ, dβ = 0 (they accumulate row after row).
  alongRow(c, (t, a) => {
    for (const [on, buf] of [
      [hasGamma, 'dg'],
      [hasBeta, 'db'],
    ] as const) {
      if (on) a.store(a.num(col(t, buf), 0));
    }
  });
  c.while(
    (q) => q.get('r').get('R').op(I32_LT_U),
    (q) => {
      lanePointers(q, 'x', 'q', (t) => t.get('rowBytes').mul());
      lanePointers(q, 'dy', 'p', (t) => t.get('rowBytes').mul());
      // μ and 1/σ of the four rows: one gathered column of the [R, 1] statistics.
      q.i32(0).set('o');
      for (const [stat, v] of [
        ['mean', 'mu'],
        ['rstd', 'rs'],
      ] as const) {
        lanePointers(q, stat, 'm', (t) => t.i32(2).op(I32_SHL));
        gather(q, 'm');
        q.set(v);
      }
      // Row means of ĝ = dy·γ and of ĝ·x̂, x̂ = (x − μ)·(1/σ).
      zero(q, 's1');
      zero(q, 's2');
      columns(q, (t) => {
        gather(t, 'q');
        t.get('mu').simd(F32X4_SUB).get('rs').simd(F32X4_MUL).set('xh');
        gather(t, 'p');
        if (hasGamma)
          t.get('g')
            .get('o')
            .add()
            .simd(V128_LOAD32_SPLAT, ...mem(2))
            .simd(F32X4_MUL);
        t.set('gh');
        t.get('s1').get('gh').simd(F32X4_ADD).set('s1');
        t.get('s2').get('gh').get('xh').simd(F32X4_MUL).simd(F32X4_ADD).set('s2');
      });
      q.get('s1').get('count').simd(F32X4_DIV).set('g1');
      q.get('s2').get('count').simd(F32X4_DIV).set('g2');
      // dx = ((ĝ − mean ĝ) − x̂·mean(ĝ·x̂))·(1/σ); dγ += dy·x̂; dβ += dy.
      rowsOfBlock(
        q,
        (t, j) => {
          for (const [v, local] of [
            ['mu', 'm'],
            ['rs', 'k'],
            ['g1', 'a1'],
            ['g2', 'a2'],
          ] as const) {
            t.get(v).simd(F32X4_EXTRACT_LANE, j).set(`${local}_s`);
            t.get(`${local}_s`).simd(F32X4_SPLAT).set(local);
          }
        },
        (t, a) => {
          row(t, a, 'x');
          a.mul(a.sub(loc(t, a, 'm')).get(a.l('k'))).set(a.l('xh'));
          row(t, a, 'dy').set(a.l('d'));
          loc(t, a, 'd');
          if (hasGamma) a.mul(chan(t, a, 'g'));
          t.set(a.l('gh'));
          at(t, 'dx');
          a.sub(loc(t, a, 'gh').get(a.l('a1')));
          a.sub(a.mul(loc(t, a, 'xh').get(a.l('a2'))));
          a.store(a.mul(loc(t, a, 'k')));
          if (hasGamma) accumulate(t, a, 'dg', () => a.mul(loc(t, a, 'd').get(a.l('xh'))));
          if (hasBeta) accumulate(t, a, 'db', () => loc(t, a, 'd'));
        },
      );
      q.inc('r', (t) => t.i32(4));
    },
  );
  return c.body();
}

// ---------------------------------------------------------------------------------------------
// BatchNorm in training mode over an NHWC map seen as [R = N·H·W, C]: statistics per column.
// The composed form's Mean and Sum over the leading axes are our column sum (wasm_reduce.ts), which
// adds row after row per column from 0, then divides by R; here the sums accumulate row after row
// into [C] buffers (the outputs μ and σ², or the gradients dβ and dγ), streaming each row once.

const BN_FWD_PARAMS = ['x', 'g', 'b', 'y', 'mean', 'var', 'rstd', 'R', 'C', 'epsBits'];

/** buf[o] = buf[o]/R for every column. */
function divideByCount(c: Code, buf: string, into = buf): void {
  alongRow(c, (q, a) => {
    col(q, into);
    a.store(a.div(chan(q, a, buf).get(a.l('count'))));
  });
}

function batchNormForwardBody(): number[] {
  const c = new Code(BN_FWD_PARAMS);
  c.declare(I32, 'r', 'o', 'rowBytes', 'vecBytes', 'rowOff');
  declareTwins(c, 'count', 't');
  prologue(c, 'R');
  alongRow(c, (t, a) => {
    for (const buf of ['mean', 'var']) a.store(a.num(col(t, buf), 0));
  });
  // μ = (Σ_r x)/R
  everyRow(c, (q, a) => accumulate(q, a, 'mean', () => row(q, a, 'x')));
  divideByCount(c, 'mean');
  // σ² = (Σ_r (x − μ)²)/R
  everyRow(c, (q, a) =>
    accumulate(q, a, 'var', () => {
      a.sub(chan(row(q, a, 'x'), a, 'mean')).set(a.l('t'));
      a.mul(loc(q, a, 't').get(a.l('t')));
    }),
  );
  divideByCount(c, 'var');
  // 1/σ = 1/sqrt(σ² + eps)
  alongRow(c, (q, a) => {
    col(q, 'rstd');
    a.num(q, 1);
    a.add(a.bits(chan(q, a, 'var'), 'epsBits'));
    a.store(a.div(a.sqrt(q)));
  });
  // y = (x − μ)·(1/σ·γ) + β
  everyRow(c, (q, a) => {
    at(q, 'y');
    a.sub(chan(row(q, a, 'x'), a, 'mean'));
    a.mul(a.mul(chan(chan(q, a, 'rstd'), a, 'g')));
    a.store(a.add(chan(q, a, 'b')));
  });
  return c.body();
}

const BN_BWD_PARAMS = ['x', 'mean', 'rstd', 'g', 'dy', 'dx', 'dg', 'db', 'scratch', 'R', 'C'];

function batchNormBackwardBody(): number[] {
  const c = new Code(BN_BWD_PARAMS);
  c.declare(I32, 'r', 'o', 'rowBytes', 'vecBytes', 'rowOff', 'ka', 'kb', 'kk');
  declareTwins(c, 'count');
  prologue(c, 'R');
  // scratch: dβ/R, dγ/R, 1/σ·γ ([C] each)
  c.get('scratch').set('ka');
  c.get('scratch').get('rowBytes').add().set('kb');
  c.get('kb').get('rowBytes').add().set('kk');
  alongRow(c, (t, a) => {
    for (const buf of ['dg', 'db']) a.store(a.num(col(t, buf), 0));
  });
  // x̂ = (x − μ)·(1/σ)
  const xhat = (q: Code, a: Arith) => a.mul(chan(a.sub(chan(row(q, a, 'x'), a, 'mean')), a, 'rstd'));
  // dβ = Σ_r dy, dγ = Σ_r dy·x̂
  everyRow(c, (q, a) => {
    accumulate(q, a, 'db', () => row(q, a, 'dy'));
    accumulate(q, a, 'dg', () => {
      row(q, a, 'dy');
      a.mul(xhat(q, a));
    });
  });
  divideByCount(c, 'db', 'ka');
  divideByCount(c, 'dg', 'kb');
  alongRow(c, (q, a) => {
    col(q, 'kk');
    a.store(a.mul(chan(chan(q, a, 'rstd'), a, 'g')));
  });
  // dx = ((dy − dβ/R) − x̂·dγ/R)·(1/σ·γ)
  everyRow(c, (q, a) => {
    at(q, 'dx');
    a.sub(chan(row(q, a, 'dy'), a, 'ka'));
    a.sub(a.mul(chan(xhat(q, a), a, 'kb')));
    a.store(a.mul(chan(q, a, 'kk')));
  });
  return c.body();
}

export type BatchNormFn = (
  x: number,
  g: number,
  b: number,
  y: number,
  mean: number,
  variance: number,
  rstd: number,
  rows: number,
  cols: number,
  epsBits: number,
) => void;
export type BatchNormGradFn = (
  x: number,
  mean: number,
  rstd: number,
  g: number,
  dy: number,
  dx: number,
  dg: number,
  db: number,
  scratch: number,
  rows: number,
  cols: number,
) => void;

export function batchNormFor(memory: WebAssembly.Memory): BatchNormFn | null {
  return cached<BatchNormFn>(memory, 'bn_fwd', BN_FWD_PARAMS, batchNormForwardBody);
}

export function batchNormGradFor(memory: WebAssembly.Memory): BatchNormGradFn | null {
  return cached<BatchNormGradFn>(memory, 'bn_bwd', BN_BWD_PARAMS, batchNormBackwardBody);
}

export type LayerNormFn = (x: number, g: number, b: number, y: number, mean: number, rstd: number, rows: number, cols: number, epsBits: number) => void;
export type LayerNormGradFn = (
  x: number,
  mean: number,
  rstd: number,
  g: number,
  dy: number,
  dx: number,
  dg: number,
  db: number,
  rows: number,
  cols: number,
) => void;

const cache = new WeakMap<WebAssembly.Memory, Map<string, unknown>>();

function cached<T>(memory: WebAssembly.Memory, key: string, params: string[], body: () => number[]): T | null {
  let m = cache.get(memory);
  if (!m) cache.set(memory, (m = new Map()));
  if (!m.has(key))
    m.set(
      key,
      instantiate<T>((shared) => moduleBytes('ln', params, body(), shared), memory, 'ln'),
    );
  return m.get(key) as T | null;
}

/** The forward kernel for this memory (a module per γ/β combination); null without SIMD. */
export function layerNormFor(memory: WebAssembly.Memory, hasGamma: boolean, hasBeta: boolean): LayerNormFn | null {
  return cached<LayerNormFn>(memory, `ln_fwd_${+hasGamma}${+hasBeta}`, FWD_PARAMS, () => forwardBody(hasGamma, hasBeta));
}

/** The backward kernel (dx, and dγ/dβ when present). */
export function layerNormGradFor(memory: WebAssembly.Memory, hasGamma: boolean, hasBeta: boolean): LayerNormGradFn | null {
  return cached<LayerNormGradFn>(memory, `ln_bwd_${+hasGamma}${+hasBeta}`, BWD_PARAMS, () => backwardBody(hasGamma, hasBeta));
}

/** float32 `v` as the i32 of its bits (our modules take only i32 parameters). */
export function f32AsI32(v: number): number {
  return new Int32Array(new Float32Array([v]).buffer)[0]!;
}

// ---------------------------------------------------------------------------------------------
// Kernels

type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Kernel names of the fused LayerNorm (ops/norm.ts `layerNormLastAxis` runs them where registered). */
export const LAYER_NORM = 'VitLayerNorm';
export const LAYER_NORM_GRAD = 'VitLayerNormGrad';

/**
 * inputs x [..., C], gamma? [C], beta? [C]; attrs eps → [y, mean, rstd] (mean and 1/σ shaped
 * [..., 1], as `tf.mean(x, -1, true)`).
 */
export function layerNormWasm(args: KernelArgs): Info[] {
  const { x, gamma, beta } = args.inputs as {
    x: Info;
    gamma?: Info;
    beta?: Info;
  };
  const { eps } = args.attrs as unknown as { eps: number };
  const backend = args.backend as WasmBackend;
  const memory = wasmMemory(backend);
  const fn = memory ? layerNormFor(memory, !!gamma, !!beta) : null;
  if (!fn || [x, gamma, beta].some((t) => t && t.dtype !== 'float32')) throw new Error(`${LAYER_NORM}: needs float32 inputs on the wasm backend with SIMD`);
  const c = x.shape[x.shape.length - 1]!;
  const rows = sizeOf(x.shape) / c;
  const statShape = [...x.shape.slice(0, -1), 1];
  const y = backend.makeOutput([...x.shape], 'float32');
  const mean = backend.makeOutput(statShape, 'float32');
  const rstd = backend.makeOutput(statShape, 'float32');
  // Offsets after every allocation (one may have moved nothing, but grown the heap).
  const off = (t: Info | undefined) => (t ? heapOffset(backend, t) : 0);
  const { threads, pool } = kernelThreads(memory, rows * c >= ELEMENTWISE_PARALLEL_MIN);
  if (pool && threads > 1 && rows >= threads) {
    // Rows shared out over the pool's threads (each row's arithmetic unchanged).
    const key = `ln_fwd:${+!!gamma}${+!!beta}` as const;
    pool.register(key, (shared) => moduleBytes('ln', FWD_PARAMS, forwardBody(!!gamma, !!beta), shared), 'ln');
    shareOut(pool, threads, rows, 1, (r0, count) => [key, off(x) + r0 * c * 4, off(gamma), off(beta), off(y) + r0 * c * 4, off(mean) + r0 * 4, off(rstd) + r0 * 4, count, c, f32AsI32(eps)]);
  } else fn(off(x), off(gamma), off(beta), off(y), off(mean), off(rstd), rows, c, f32AsI32(eps));
  return [y, mean, rstd];
}

/** inputs x, mean, rstd, gamma?, dy; attrs hasBeta → [dx, dgamma (with gamma), dbeta (with hasBeta)]. */
export function layerNormGradWasm(args: KernelArgs): Info[] {
  const { x, mean, rstd, gamma, dy } = args.inputs as {
    x: Info;
    mean: Info;
    rstd: Info;
    gamma?: Info;
    dy: Info;
  };
  const { hasBeta } = args.attrs as unknown as { hasBeta: boolean };
  const backend = args.backend as WasmBackend;
  const memory = wasmMemory(backend);
  const fn = memory ? layerNormGradFor(memory, !!gamma, hasBeta) : null;
  if (!fn || [x, mean, rstd, gamma, dy].some((t) => t && t.dtype !== 'float32'))
    throw new Error(`${LAYER_NORM_GRAD}: needs float32 inputs on the wasm backend with SIMD`);
  const c = x.shape[x.shape.length - 1]!;
  const rows = sizeOf(x.shape) / c;
  const dx = backend.makeOutput([...x.shape], 'float32');
  const dgamma = gamma ? backend.makeOutput([c], 'float32') : undefined;
  const dbeta = hasBeta ? backend.makeOutput([c], 'float32') : undefined;
  const off = (t: Info | undefined) => (t ? heapOffset(backend, t) : 0);
  fn(off(x), off(mean), off(rstd), off(gamma), off(dy), off(dx), off(dgamma), off(dbeta), rows, c);
  return [dx, ...(dgamma ? [dgamma] : []), ...(dbeta ? [dbeta] : [])];
}

/** Whether the fused LayerNorm kernels can run on this backend (wasm with SIMD). */
export function layerNormWasmAvailable(backend: unknown): boolean {
  const memory = wasmMemory(backend);
  return !!memory && [false, true].every((g) => [false, true].every((b) => !!layerNormFor(memory, g, b) && !!layerNormGradFor(memory, g, b)));
}

/** Kernel names of the fused training BatchNorm (ops/norm.ts `batchNormTrain` runs them where registered). */
export const BATCH_NORM = 'VitBatchNormTrain';
export const BATCH_NORM_GRAD = 'VitBatchNormTrainGrad';

/** inputs x [N, H, W, C], gamma [C], beta [C]; attrs eps → [y, mean, variance, rstd] (statistics [C]). */
export function batchNormWasm(args: KernelArgs): Info[] {
  const { x, gamma, beta } = args.inputs as { x: Info; gamma: Info; beta: Info };
  const { eps } = args.attrs as unknown as { eps: number };
  const backend = args.backend as WasmBackend;
  const memory = wasmMemory(backend);
  const fn = memory ? batchNormFor(memory) : null;
  if (!fn || [x, gamma, beta].some((t) => t.dtype !== 'float32')) throw new Error(`${BATCH_NORM}: needs float32 inputs on the wasm backend with SIMD`);
  const c = x.shape[x.shape.length - 1]!;
  const y = backend.makeOutput([...x.shape], 'float32');
  const [mean, variance, rstd] = [0, 1, 2].map(() => backend.makeOutput([c], 'float32'));
  const off = (t: Info) => heapOffset(backend, t);
  fn(off(x), off(gamma), off(beta), off(y), off(mean!), off(variance!), off(rstd!), sizeOf(x.shape) / c, c, f32AsI32(eps));
  return [y, mean!, variance!, rstd!];
}

/** inputs x, mean [C], rstd [C], gamma [C], dy → [dx, dgamma, dbeta]. */
export function batchNormGradWasm(args: KernelArgs): Info[] {
  const { x, mean, rstd, gamma, dy } = args.inputs as { x: Info; mean: Info; rstd: Info; gamma: Info; dy: Info };
  const backend = args.backend as WasmBackend;
  const memory = wasmMemory(backend);
  const fn = memory ? batchNormGradFor(memory) : null;
  if (!fn || [x, mean, rstd, gamma, dy].some((t) => t.dtype !== 'float32'))
    throw new Error(`${BATCH_NORM_GRAD}: needs float32 inputs on the wasm backend with SIMD`);
  const c = x.shape[x.shape.length - 1]!;
  const dx = backend.makeOutput([...x.shape], 'float32');
  const dgamma = backend.makeOutput([c], 'float32');
  const dbeta = backend.makeOutput([c], 'float32');
  const scratch = wasmMalloc(backend, 3 * c * 4);
  try {
    const off = (t: Info) => heapOffset(backend, t);
    fn(off(x), off(mean), off(rstd), off(gamma), off(dy), off(dx), off(dgamma), off(dbeta), scratch, sizeOf(x.shape) / c, c);
  } finally {
    backend.wasm._free(scratch);
  }
  return [dx, dgamma, dbeta];
}

/** Whether the fused BatchNorm kernels can run on this backend (wasm with SIMD). */
export function batchNormWasmAvailable(backend: unknown): boolean {
  const memory = wasmMemory(backend);
  return !!memory && !!batchNormFor(memory) && !!batchNormGradFor(memory);
}
