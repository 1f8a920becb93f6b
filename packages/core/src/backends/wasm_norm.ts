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
import { heapOffset, wasmMemory, type WasmBackend } from './matmul_wasm.js';
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

const zero = (c: Code, v: string) => c.simd(V128_CONST, ...new Array<number>(16).fill(0)).set(v);

/** q{j} = base + min(r + j, R − 1)·rowBytes for the four lanes (rows past the end repeat the last). */
function lanePointers(c: Code, base: string, prefix: string): void {
  for (const j of LANES) {
    c.get(base);
    // select(R − 1, r + j, r + j ≥ R)
    c.get('R').i32(1).sub();
    c.get('r').i32(j).add();
    c.get('r').i32(j).add().get('R').op(I32_GE_U);
    c.op(SELECT);
    c.get('rowBytes').mul().add().set(`${prefix}${j}`);
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

/**
 * for each valid lane j (row r + j < R): `row(j)`, with `rowOff` = (r + j)·rowBytes and the vector
 * part (`vec`: 4 columns at a time, offset o) and the scalar tail (`tail`: one column) of the row.
 */
function rowsOfBlock(c: Code, prepare: (q: Code, j: number) => void, vec: (q: Code) => void, tail: (q: Code) => void): void {
  for (const j of LANES) {
    c.if(
      (q) => q.get('r').i32(j).add().get('R').op(I32_LT_U),
      (q) => {
        q.get('r').i32(j).add().get('rowBytes').mul().set('rowOff');
        prepare(q, j);
        alongRow(q, vec, tail);
      },
    );
  }
}

/** One row (at rowOff): `vec` 4 columns at a time (byte offset o in the row), then `tail` one column at a time. */
function alongRow(c: Code, vec: (q: Code) => void, tail: (q: Code) => void): void {
  c.i32(0).set('o');
  c.while(
    (t) => t.get('o').get('vecBytes').op(I32_LT_U),
    (t) => {
      vec(t);
      t.inc('o', (u) => u.i32(16));
    },
  );
  c.while(
    (t) => t.get('o').get('rowBytes').op(I32_LT_U),
    (t) => {
      tail(t);
      t.inc('o', (u) => u.i32(4));
    },
  );
}

/** for (r = 0, rowOff = 0; r < R; r++, rowOff += rowBytes) alongRow(vec, tail). */
function everyRow(c: Code, vec: (q: Code) => void, tail: (q: Code) => void): void {
  c.i32(0).set('r');
  c.i32(0).set('rowOff');
  c.while(
    (q) => q.get('r').get('R').op(I32_LT_U),
    (q) => {
      alongRow(q, vec, tail);
      q.inc('r', (t) => t.i32(1));
      q.inc('rowOff', (t) => t.get('rowBytes'));
    },
  );
}

/** rowBytes = C·4, vecBytes = (C & ~3)·4, cvec = splat(float(C)); r = 0. */
function prologue(c: Code): void {
  c.get('C').i32(2).op(I32_SHL).set('rowBytes');
  c.get('C').i32(-4).op(0x71).i32(2).op(I32_SHL).set('vecBytes');
  c.get('C').op(0xb3).simd(F32X4_SPLAT).set('cvec'); // f32.convert_i32_u
  c.i32(0).set('r');
}

/** Address of element o of the row at rowOff in tensor `t`. */
const at = (q: Code, t: string) => q.get(t).get('rowOff').add().get('o').add();
/** Address of element o of the [C] vector `t`. */
const col = (q: Code, t: string) => q.get(t).get('o').add();

const FWD_PARAMS = ['x', 'g', 'b', 'y', 'mean', 'rstd', 'R', 'C', 'epsBits'];

function forwardBody(hasGamma: boolean, hasBeta: boolean): number[] {
  const c = new Code(FWD_PARAMS);
  c.declare(I32, 'r', 'o', 'rowBytes', 'vecBytes', 'rowOff', 'q0', 'q1', 'q2', 'q3');
  c.declare(V128, 'acc', 'mu', 'rs', 'cvec', 'tmp', 'ms', 'rss', 't');
  c.declare(F32, 'mf', 'rf', 'tf');
  prologue(c);
  c.while(
    (q) => q.get('r').get('R').op(I32_LT_U),
    (q) => {
      lanePointers(q, 'x', 'q');
      // μ = (Σ x)/C, lane j = row r + j
      zero(q, 'acc');
      columns(q, (t) => {
        t.get('acc');
        gather(t, 'q');
        t.simd(F32X4_ADD).set('acc');
      });
      q.get('acc').get('cvec').simd(F32X4_DIV).set('mu');
      // σ² = (Σ (x − μ)²)/C; 1/σ = 1/sqrt(σ² + eps)
      zero(q, 'acc');
      columns(q, (t) => {
        gather(t, 'q');
        t.get('mu').simd(F32X4_SUB).set('t');
        t.get('acc').get('t').get('t').simd(F32X4_MUL).simd(F32X4_ADD).set('acc');
      });
      splat(q, 1);
      q.get('acc').get('cvec').simd(F32X4_DIV);
      q.get('epsBits').op(0xbe).simd(F32X4_SPLAT); // f32.reinterpret_i32
      q.simd(F32X4_ADD).simd(F32X4_SQRT).simd(F32X4_DIV).set('rs');
      // y = (x − μ)·(1/σ) [·γ] [+β], row by row, 4 columns at a time.
      rowsOfBlock(
        q,
        (t, j) => {
          t.get('mu').simd(F32X4_EXTRACT_LANE, j).set('mf');
          t.get('rs').simd(F32X4_EXTRACT_LANE, j).set('rf');
          t.get('mean')
            .get('r')
            .i32(j)
            .add()
            .i32(2)
            .op(I32_SHL)
            .add()
            .get('mf')
            .op(F32_STORE, ...mem(2));
          t.get('rstd')
            .get('r')
            .i32(j)
            .add()
            .i32(2)
            .op(I32_SHL)
            .add()
            .get('rf')
            .op(F32_STORE, ...mem(2));
          t.get('mf').simd(F32X4_SPLAT).set('ms');
          t.get('rf').simd(F32X4_SPLAT).set('rss');
        },
        (t) => {
          at(t, 'y');
          at(t, 'x').simd(V128_LOAD, ...mem(2));
          t.get('ms').simd(F32X4_SUB).get('rss').simd(F32X4_MUL);
          if (hasGamma)
            col(t, 'g')
              .simd(V128_LOAD, ...mem(2))
              .simd(F32X4_MUL);
          if (hasBeta)
            col(t, 'b')
              .simd(V128_LOAD, ...mem(2))
              .simd(F32X4_ADD);
          t.simd(V128_STORE, ...mem(2));
        },
        (t) => {
          at(t, 'y');
          at(t, 'x').op(F32_LOAD, ...mem(2));
          t.get('mf').op(F32_SUB).get('rf').op(F32_MUL);
          if (hasGamma)
            col(t, 'g')
              .op(F32_LOAD, ...mem(2))
              .op(F32_MUL);
          if (hasBeta)
            col(t, 'b')
              .op(F32_LOAD, ...mem(2))
              .op(F32_ADD);
          t.op(F32_STORE, ...mem(2));
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
  c.declare(V128, 'mu', 'rs', 'cvec', 'tmp', 's1', 's2', 'xh', 'gh', 'dyv', 'g1', 'g2', 'ms', 'rss', 'a1', 'a2');
  c.declare(F32, 'mf', 'rf', 'af1', 'af2', 'xf', 'gf', 'dyf');
  prologue(c);
  // dγ, dβ = 0 (they accumulate row after row).
  if (hasGamma || hasBeta) {
    columns(c, (t) => {
      if (hasGamma)
        col(t, 'dg')
          .op(0x43, 0, 0, 0, 0)
          .op(F32_STORE, ...mem(2));
      if (hasBeta)
        col(t, 'db')
          .op(0x43, 0, 0, 0, 0)
          .op(F32_STORE, ...mem(2));
    });
  }
  c.while(
    (q) => q.get('r').get('R').op(I32_LT_U),
    (q) => {
      lanePointers(q, 'x', 'q');
      lanePointers(q, 'dy', 'p');
      // μ and 1/σ of the four rows: one gathered column of the [R, 1] statistics.
      q.i32(0).set('o');
      for (const [stat, v] of [
        ['mean', 'mu'],
        ['rstd', 'rs'],
      ] as const) {
        for (const j of LANES) {
          // m_j = stat + min(r + j, R − 1)·4
          q.get(stat);
          q.get('R').i32(1).sub();
          q.get('r').i32(j).add();
          q.get('r').i32(j).add().get('R').op(I32_GE_U);
          q.op(SELECT);
          q.i32(2).op(I32_SHL).add().set(`m${j}`);
        }
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
          col(t, 'g')
            .simd(V128_LOAD32_SPLAT, ...mem(2))
            .simd(F32X4_MUL);
        t.set('gh');
        t.get('s1').get('gh').simd(F32X4_ADD).set('s1');
        t.get('s2').get('gh').get('xh').simd(F32X4_MUL).simd(F32X4_ADD).set('s2');
      });
      q.get('s1').get('cvec').simd(F32X4_DIV).set('g1');
      q.get('s2').get('cvec').simd(F32X4_DIV).set('g2');
      // dx = ((ĝ − mean ĝ) − x̂·mean(ĝ·x̂))·(1/σ); dγ += dy·x̂; dβ += dy.
      rowsOfBlock(
        q,
        (t, j) => {
          t.get('mu').simd(F32X4_EXTRACT_LANE, j).set('mf');
          t.get('rs').simd(F32X4_EXTRACT_LANE, j).set('rf');
          t.get('g1').simd(F32X4_EXTRACT_LANE, j).set('af1');
          t.get('g2').simd(F32X4_EXTRACT_LANE, j).set('af2');
          t.get('mf').simd(F32X4_SPLAT).set('ms');
          t.get('rf').simd(F32X4_SPLAT).set('rss');
          t.get('af1').simd(F32X4_SPLAT).set('a1');
          t.get('af2').simd(F32X4_SPLAT).set('a2');
        },
        (t) => {
          at(t, 'x').simd(V128_LOAD, ...mem(2));
          t.get('ms').simd(F32X4_SUB).get('rss').simd(F32X4_MUL).set('xh');
          at(t, 'dy')
            .simd(V128_LOAD, ...mem(2))
            .set('dyv');
          t.get('dyv');
          if (hasGamma)
            col(t, 'g')
              .simd(V128_LOAD, ...mem(2))
              .simd(F32X4_MUL);
          t.set('gh');
          at(t, 'dx');
          t.get('gh').get('a1').simd(F32X4_SUB);
          t.get('xh').get('a2').simd(F32X4_MUL).simd(F32X4_SUB);
          t.get('rss')
            .simd(F32X4_MUL)
            .simd(V128_STORE, ...mem(2));
          if (hasGamma) {
            col(t, 'dg');
            col(t, 'dg').simd(V128_LOAD, ...mem(2));
            t.get('dyv')
              .get('xh')
              .simd(F32X4_MUL)
              .simd(F32X4_ADD)
              .simd(V128_STORE, ...mem(2));
          }
          if (hasBeta) {
            col(t, 'db');
            col(t, 'db').simd(V128_LOAD, ...mem(2));
            t.get('dyv')
              .simd(F32X4_ADD)
              .simd(V128_STORE, ...mem(2));
          }
        },
        (t) => {
          at(t, 'x').op(F32_LOAD, ...mem(2));
          t.get('mf').op(F32_SUB).get('rf').op(F32_MUL).set('xf');
          at(t, 'dy')
            .op(F32_LOAD, ...mem(2))
            .set('dyf');
          t.get('dyf');
          if (hasGamma)
            col(t, 'g')
              .op(F32_LOAD, ...mem(2))
              .op(F32_MUL);
          t.set('gf');
          at(t, 'dx');
          t.get('gf').get('af1').op(F32_SUB);
          t.get('xf').get('af2').op(F32_MUL).op(F32_SUB);
          t.get('rf')
            .op(F32_MUL)
            .op(F32_STORE, ...mem(2));
          if (hasGamma) {
            col(t, 'dg');
            col(t, 'dg').op(F32_LOAD, ...mem(2));
            t.get('dyf')
              .get('xf')
              .op(F32_MUL)
              .op(F32_ADD)
              .op(F32_STORE, ...mem(2));
          }
          if (hasBeta) {
            col(t, 'db');
            col(t, 'db').op(F32_LOAD, ...mem(2));
            t.get('dyf')
              .op(F32_ADD)
              .op(F32_STORE, ...mem(2));
          }
        },
      );
      q.inc('r', (t) => t.i32(4));
    },
  );
  return c.body();
}

/*
 * BatchNorm in training mode over an NHWC map seen as [R = N·H·W, C]: statistics per column.
 * The composed form's Mean and Sum over the leading axes are our column sum (wasm_reduce.ts), which
 * adds row after row per column from 0, then divides by R; here the sums accumulate row after row
 * into [C] buffers (the outputs μ and σ², or the gradients dβ and dγ), streaming each row once.
 */

const BN_FWD_PARAMS = ['x', 'g', 'b', 'y', 'mean', 'var', 'rstd', 'R', 'C', 'epsBits'];

/** Sets column vectors of the [C] buffers `names` to zero. */
function zeroColumns(c: Code, names: string[]): void {
  alongRow(
    c,
    (t) => {
      for (const n of names)
        col(t, n)
          .simd(V128_CONST, ...new Array<number>(16).fill(0))
          .simd(V128_STORE, ...mem(2));
    },
    (t) => {
      for (const n of names)
        col(t, n)
          .op(0x43, 0, 0, 0, 0)
          .op(F32_STORE, ...mem(2));
    },
  );
}

/** buf[c] = buf[c] op value (value pushed by `v`), vector or scalar. */
function accumulate(c: Code, buf: string, v: (q: Code) => void, scalar: boolean): void {
  col(c, buf);
  (scalar ? sload : vload)(col(c, buf));
  v(c);
  if (scalar) c.op(F32_ADD).op(F32_STORE, ...mem(2));
  else c.simd(F32X4_ADD).simd(V128_STORE, ...mem(2));
}

const vload = (q: Code) => q.simd(V128_LOAD, ...mem(2));
const sload = (q: Code) => q.op(F32_LOAD, ...mem(2));

function batchNormForwardBody(): number[] {
  const c = new Code(BN_FWD_PARAMS);
  c.declare(I32, 'r', 'o', 'rowBytes', 'vecBytes', 'rowOff');
  c.declare(V128, 'cvec', 't');
  c.declare(F32, 'tf');
  prologue(c);
  c.get('R').op(0xb3).simd(F32X4_SPLAT).set('cvec'); // here: float(R), the count per column
  zeroColumns(c, ['mean', 'var']);
  // μ = (Σ_r x)/R
  everyRow(
    c,
    (q) => accumulate(q, 'mean', (t) => vload(at(t, 'x')), false),
    (q) => accumulate(q, 'mean', (t) => sload(at(t, 'x')), true),
  );
  const divide = (buf: string) =>
    alongRow(
      c,
      (q) => {
        col(q, buf);
        vload(col(q, buf))
          .get('cvec')
          .simd(F32X4_DIV)
          .simd(V128_STORE, ...mem(2));
      },
      (q) => {
        col(q, buf);
        sload(col(q, buf))
          .get('cvec')
          .simd(F32X4_EXTRACT_LANE, 0)
          .op(0x95)
          .op(F32_STORE, ...mem(2)); // f32.div
      },
    );
  divide('mean');
  // σ² = (Σ_r (x − μ)²)/R
  everyRow(
    c,
    (q) =>
      accumulate(
        q,
        'var',
        (t) => {
          vload(at(t, 'x'));
          vload(col(t, 'mean')).simd(F32X4_SUB).set('t');
          t.get('t').get('t').simd(F32X4_MUL);
        },
        false,
      ),
    (q) =>
      accumulate(
        q,
        'var',
        (t) => {
          sload(at(t, 'x'));
          sload(col(t, 'mean')).op(F32_SUB).set('tf');
          t.get('tf').get('tf').op(F32_MUL);
        },
        true,
      ),
  );
  divide('var');
  // 1/σ = 1/sqrt(σ² + eps)
  alongRow(
    c,
    (q) => {
      col(q, 'rstd');
      splat(q, 1);
      vload(col(q, 'var'));
      q.get('epsBits')
        .op(0xbe)
        .simd(F32X4_SPLAT)
        .simd(F32X4_ADD)
        .simd(F32X4_SQRT)
        .simd(F32X4_DIV)
        .simd(V128_STORE, ...mem(2));
    },
    (q) => {
      col(q, 'rstd');
      q.op(0x43, ...f32Bytes(1));
      sload(col(q, 'var'));
      q.get('epsBits')
        .op(0xbe)
        .op(F32_ADD)
        .op(0x91)
        .op(0x95)
        .op(F32_STORE, ...mem(2)); // f32.sqrt, f32.div
    },
  );
  // y = (x − μ)·(1/σ·γ) + β
  everyRow(
    c,
    (q) => {
      at(q, 'y');
      vload(at(q, 'x'));
      vload(col(q, 'mean')).simd(F32X4_SUB);
      vload(col(q, 'rstd'));
      vload(col(q, 'g')).simd(F32X4_MUL).simd(F32X4_MUL);
      vload(col(q, 'b'))
        .simd(F32X4_ADD)
        .simd(V128_STORE, ...mem(2));
    },
    (q) => {
      at(q, 'y');
      sload(at(q, 'x'));
      sload(col(q, 'mean')).op(F32_SUB);
      sload(col(q, 'rstd'));
      sload(col(q, 'g')).op(F32_MUL).op(F32_MUL);
      sload(col(q, 'b'))
        .op(F32_ADD)
        .op(F32_STORE, ...mem(2));
    },
  );
  return c.body();
}

const BN_BWD_PARAMS = ['x', 'mean', 'rstd', 'g', 'dy', 'dx', 'dg', 'db', 'scratch', 'R', 'C'];

function batchNormBackwardBody(): number[] {
  const c = new Code(BN_BWD_PARAMS);
  c.declare(I32, 'r', 'o', 'rowBytes', 'vecBytes', 'rowOff', 'ka', 'kb', 'kk');
  c.declare(V128, 'cvec', 't');
  c.declare(F32, 'tf');
  prologue(c);
  c.get('R').op(0xb3).simd(F32X4_SPLAT).set('cvec');
  // scratch: dβ/R, dγ/R, 1/σ·γ ([C] each)
  c.get('scratch').set('ka');
  c.get('scratch').get('rowBytes').add().set('kb');
  c.get('kb').get('rowBytes').add().set('kk');
  zeroColumns(c, ['dg', 'db']);
  // dβ = Σ_r dy, dγ = Σ_r dy·x̂, x̂ = (x − μ)·(1/σ)
  everyRow(
    c,
    (q) => {
      accumulate(q, 'db', (t) => vload(at(t, 'dy')), false);
      accumulate(
        q,
        'dg',
        (t) => {
          vload(at(t, 'dy'));
          vload(at(t, 'x'));
          vload(col(t, 'mean')).simd(F32X4_SUB);
          vload(col(t, 'rstd')).simd(F32X4_MUL).simd(F32X4_MUL);
        },
        false,
      );
    },
    (q) => {
      accumulate(q, 'db', (t) => sload(at(t, 'dy')), true);
      accumulate(
        q,
        'dg',
        (t) => {
          sload(at(t, 'dy'));
          sload(at(t, 'x'));
          sload(col(t, 'mean')).op(F32_SUB);
          sload(col(t, 'rstd')).op(F32_MUL).op(F32_MUL);
        },
        true,
      );
    },
  );
  alongRow(
    c,
    (q) => {
      col(q, 'ka');
      vload(col(q, 'db'))
        .get('cvec')
        .simd(F32X4_DIV)
        .simd(V128_STORE, ...mem(2));
      col(q, 'kb');
      vload(col(q, 'dg'))
        .get('cvec')
        .simd(F32X4_DIV)
        .simd(V128_STORE, ...mem(2));
      col(q, 'kk');
      vload(col(q, 'rstd'));
      vload(col(q, 'g'))
        .simd(F32X4_MUL)
        .simd(V128_STORE, ...mem(2));
    },
    (q) => {
      q.get('cvec').simd(F32X4_EXTRACT_LANE, 0).set('tf');
      col(q, 'ka');
      sload(col(q, 'db'))
        .get('tf')
        .op(0x95)
        .op(F32_STORE, ...mem(2));
      col(q, 'kb');
      sload(col(q, 'dg'))
        .get('tf')
        .op(0x95)
        .op(F32_STORE, ...mem(2));
      col(q, 'kk');
      sload(col(q, 'rstd'));
      sload(col(q, 'g'))
        .op(F32_MUL)
        .op(F32_STORE, ...mem(2));
    },
  );
  // dx = ((dy − dβ/R) − x̂·dγ/R)·(1/σ·γ)
  everyRow(
    c,
    (q) => {
      at(q, 'dx');
      vload(at(q, 'dy'));
      vload(col(q, 'ka')).simd(F32X4_SUB);
      vload(at(q, 'x'));
      vload(col(q, 'mean')).simd(F32X4_SUB);
      vload(col(q, 'rstd')).simd(F32X4_MUL);
      vload(col(q, 'kb')).simd(F32X4_MUL).simd(F32X4_SUB);
      vload(col(q, 'kk'))
        .simd(F32X4_MUL)
        .simd(V128_STORE, ...mem(2));
    },
    (q) => {
      at(q, 'dx');
      sload(at(q, 'dy'));
      sload(col(q, 'ka')).op(F32_SUB);
      sload(at(q, 'x'));
      sload(col(q, 'mean')).op(F32_SUB);
      sload(col(q, 'rstd')).op(F32_MUL);
      sload(col(q, 'kb')).op(F32_MUL).op(F32_SUB);
      sload(col(q, 'kk'))
        .op(F32_MUL)
        .op(F32_STORE, ...mem(2));
    },
  );
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
  fn(off(x), off(gamma), off(beta), off(y), off(mean), off(rstd), rows, c, f32AsI32(eps));
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
  const scratch = backend.wasm._malloc(3 * c * 4);
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
