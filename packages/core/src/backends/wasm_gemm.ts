/**
 * A small WebAssembly SIMD matrix-multiply kernel that runs on the tfjs wasm backend's own memory,
 * for the products XNNPACK (through tfjs-backend-wasm) does badly: batched and transposed ones,
 * and those with a short inner dimension (attention's q·kᵀ has k = head dim = 32, where XNNPACK's
 * fully-connected operator manages ~12 GFLOP/s and needs one operator, with its weight packing,
 * per batch).
 *
 * The module is assembled at run time (wasm_asm.ts). One exported function computes, for one
 * batch, C[i, j] (+)= Σ_k A[i, k] · B[k, j] with arbitrary element strides for A and B (so
 * transposed operands need no copy): it packs B into panels of 8 columns and A into blocks of 4
 * rows (k-major, zero-padded; contiguous runs copied as vectors), then runs a 4×8 register-tile
 * microkernel: eight f32x4 accumulators, one A element broadcast per row and step, multiply and add
 * fused where relaxed SIMD is available (`relaxedSimd`). Partial tiles
 * store lane by lane; `acc` adds into C so a long K runs in cache-sized chunks. Measured against
 * XNNPACK on one [196,32]·[32,196] product whose packed weights XNNPACK had cached: 33 vs 22
 * GFLOP/s; a 2-unrolled k loop was slower (V8 register pressure).
 */

import {
  I32_LT_U,
  Code,
  F32,
  F32X4_ADD,
  F32X4_EXTRACT_LANE,
  F32X4_MUL,
  F32X4_RELAXED_MADD,
  I32,
  V128,
  V128_CONST,
  V128_LOAD,
  V128_LOAD32_SPLAT,
  V128_STORE,
  instantiate,
  mem,
  moduleBytes,
  relaxedSimd,
} from './wasm_asm.js';

const PARAMS = ['a', 'b', 'c', 'scratch', 'M', 'N', 'K', 'sam', 'sak', 'sbk', 'sbn', 'ldc', 'pack', 'acc', 'bias'];

function gemmBody(fused = false): number[] {
  const c = new Code(PARAMS);
  c.declare(
    I32,
    'i',
    'j',
    'k',
    'p',
    'panels',
    'npad',
    'mpad',
    'ncols',
    'rows',
    'bp',
    'ap',
    'aptr',
    'aend',
    'bptr',
    'cptr',
    'bpp',
    'j0',
    'sp',
    'sq',
    'dp',
    'dend',
  );
  c.declare(V128, 'x0', 'x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'x7', 'b0', 'b1', 'av');
  const lt = (x: string, y: string) => (q: Code) => q.get(x).get(y).op(0x48); // i32.lt_s

  // npad = (N + 7) & ~7, panels = npad / 8, mpad = (M + 3) & ~3
  c.get('N').i32(7).add().i32(-8).op(0x71).set('npad');
  c.get('npad').i32(3).op(0x75).set('panels');
  c.get('M').i32(3).add().i32(-4).op(0x71).set('mpad');
  // Scratch: B panels (npad·K floats), then A row blocks (mpad·K floats).
  c.get('scratch').set('bp');
  c.get('scratch').get('npad').get('K').mul().i32(2).op(0x74).add().set('ap');

  /**
   * Packs src (K × lim, byte strides sk per k and si per index) into blocks of w indices, k-major:
   * dst[((idx / w)·K + k)·w + idx % w], zero past lim. Full blocks copy with pointer strides (a
   * vector copy when the w values are contiguous); the partial block goes element by element.
   */
  const pack = (dst: string, lim: string, w: 4 | 8, src: string, sk: string, si: string) => {
    const sh = w === 8 ? 3 : 2;
    const blockBytes = (q: Code) =>
      q
        .get('K')
        .i32(sh + 2)
        .op(0x74); // K·w·4
    c.get(lim).i32(sh).op(0x75).set('j'); // full blocks
    c.i32(0).set('p');
    c.while(lt('p', 'j'), (q) => {
      q.get(src).get('p').i32(sh).op(0x74).get(si).mul().add().set('sp');
      q.get(dst).get('p').mul2(blockBytes).add().set('dp');
      q.get('dp');
      blockBytes(q);
      q.add().set('dend');
      q.if(
        (t) => t.get(si).i32(4).op(0x46),
        (t) => {
          // Contiguous: w/4 vector copies per k.
          t.op(0x03, 0x40);
          for (let v = 0; v < w / 4; v++)
            t.get('dp')
              .get('sp')
              .simd(V128_LOAD, ...mem(2, 16 * v))
              .simd(V128_STORE, ...mem(2, 16 * v));
          t.inc('sp', (u) => u.get(sk));
          t.inc('dp', (u) => u.i32(4 * w));
          t.get('dp').get('dend').op(I32_LT_U).op(0x0d, 0).op(0x0b);
        },
        (t) => {
          t.op(0x03, 0x40);
          t.get('sp').set('sq');
          for (let v = 0; v < w; v++) {
            t.get('dp')
              .get('sq')
              .op(0x2a, ...mem(2))
              .op(0x38, ...mem(2, 4 * v));
            if (v < w - 1) t.inc('sq', (u) => u.get(si));
          }
          t.inc('sp', (u) => u.get(sk));
          t.inc('dp', (u) => u.i32(4 * w));
          t.get('dp').get('dend').op(I32_LT_U).op(0x0d, 0).op(0x0b);
        },
      );
      q.inc('p', (t) => t.i32(1));
    });
    // The partial block (lim % w indices), padded with zeros.
    c.if(
      (q) =>
        q
          .get(lim)
          .i32(w - 1)
          .op(0x71),
      (q) => {
        q.i32(0).set('k');
        q.while(lt('k', 'K'), (q) => {
          q.i32(0).set('i');
          q.while(
            (t) => t.get('i').i32(w).op(0x48),
            (q) => {
              // dst + ((j·K + k)·w + i)·4, j = the block index
              q.get(dst).get('j').get('K').mul().get('k').add().i32(sh).op(0x74).get('i').add().i32(2).op(0x74).add();
              q.get('j').i32(sh).op(0x74).get('i').add().get(lim).op(0x48);
              q.op(0x04, F32);
              q.get(src)
                .get('k')
                .get(sk)
                .mul()
                .add()
                .get('j')
                .i32(sh)
                .op(0x74)
                .get('i')
                .add()
                .get(si)
                .mul()
                .add()
                .op(0x2a, ...mem(2));
              q.op(0x05).op(0x43, 0, 0, 0, 0).op(0x0b);
              q.op(0x38, ...mem(2));
              q.inc('i', (r) => r.i32(1));
            },
          );
          q.inc('k', (r) => r.i32(1));
        });
      },
    );
  };
  // B (K × N, byte strides sbk/sbn) into 8-column panels; A (M × K) into 4-row blocks, k-major.
  c.if(
    (q) => q.get('pack'),
    () => pack('bp', 'N', 8, 'b', 'sbk', 'sbn'),
  );
  pack('ap', 'M', 4, 'a', 'sak', 'sam');
  const zero = (x: string) => c.simd(V128_CONST, ...new Array<number>(16).fill(0)).set(x);
  // acc += av·b: one relaxed madd where allowed, else a multiply and an add.
  const fma = (acc: string, b: string) =>
    fused ? c.get('av').get(b).get(acc).simd(F32X4_RELAXED_MADD).set(acc) : c.get(acc).get('av').get(b).simd(F32X4_MUL).simd(F32X4_ADD).set(acc);
  /** Stores accumulators x(2r), x(2r+1) at cptr (adding what is there when `add`), only `ncols` lanes unless `full`. */
  const storeRow = (r: number, full: boolean, add: boolean) => {
    const lo = `x${2 * r}`;
    const hi = `x${2 * r + 1}`;
    if (full) {
      for (const [x, off] of [
        [lo, 0],
        [hi, 16],
      ] as const) {
        c.get('cptr').get(x);
        if (add)
          c.get('cptr')
            .simd(V128_LOAD, ...mem(2, off))
            .simd(F32X4_ADD);
        c.simd(V128_STORE, ...mem(2, off));
      }
    } else {
      for (let l = 0; l < 8; l++) {
        c.if(
          (s) => s.get('ncols').i32(l).op(0x4a), // i32.gt_s
          (s) => {
            s.get('cptr')
              .get(l < 4 ? lo : hi)
              .simd(F32X4_EXTRACT_LANE, l & 3);
            if (add)
              s.get('cptr')
                .op(0x2a, ...mem(2, 4 * l))
                .op(0x92); // f32.load, f32.add
            s.op(0x38, ...mem(2, 4 * l));
          },
        );
      }
    }
  };
  const storeTile = (add: boolean) =>
    c.if(
      (s) => s.get('ncols').i32(8).op(0x46).get('rows').i32(4).op(0x4e).op(0x71), // ncols == 8 && rows >= 4
      () => {
        for (let r = 0; r < 4; r++) {
          storeRow(r, true, add);
          if (r < 3) c.inc('cptr', (s) => s.get('ldc'));
        }
      },
      () => {
        for (let r = 0; r < 4; r++) {
          c.if(
            (s) => s.get('rows').i32(r).op(0x4a),
            () => storeRow(r, false, add),
          );
          if (r < 3) c.inc('cptr', (s) => s.get('ldc'));
        }
      },
    );

  c.i32(0).set('p');
  c.while(lt('p', 'panels'), (q) => {
    q.get('p').i32(3).op(0x74).set('j0');
    q.get('N').get('j0').sub().set('ncols');
    q.if(
      (s) => s.get('ncols').i32(8).op(0x4a),
      (s) => s.i32(8).set('ncols'),
    );
    q.get('bp').get('p').get('K').mul().i32(5).op(0x74).add().set('bpp');
    q.i32(0).set('i');
    q.while(lt('i', 'M'), () => {
      // The accumulators start at zero, or at bias[j0 … j0 + 7] (every row) when a bias is given
      // and C is not accumulated into: the bias add costs no pass over C.
      c.if(
        (s) => s.get('bias').op(0x45).op(0x45).get('acc').op(0x45).op(0x71), // bias != 0 && acc == 0
        (s) => {
          for (let r = 0; r < 4; r++) {
            s.get('bias').get('j0').i32(2).op(0x74).add().simd(V128_LOAD, ...mem(2)).set(`x${2 * r}`);
            s.get('bias').get('j0').i32(2).op(0x74).add().simd(V128_LOAD, ...mem(2, 16)).set(`x${2 * r + 1}`);
          }
        },
        () => {
          for (let r = 0; r < 8; r++) zero(`x${r}`);
        },
      );
      // aptr = ap + (i/4)·K·16 (i is a multiple of 4), aend = aptr + K·16
      c.get('ap').get('i').get('K').mul().i32(2).op(0x74).add().set('aptr');
      c.get('aptr').get('K').i32(4).op(0x74).add().set('aend');
      c.get('bpp').set('bptr');
      c.op(0x03, 0x40); // loop (do … while aptr < aend)
      c.get('bptr')
        .simd(V128_LOAD, ...mem(2))
        .set('b0');
      c.get('bptr')
        .simd(V128_LOAD, ...mem(2, 16))
        .set('b1');
      for (let r = 0; r < 4; r++) {
        c.get('aptr')
          .simd(V128_LOAD32_SPLAT, ...mem(2, 4 * r))
          .set('av');
        fma(`x${2 * r}`, 'b0');
        fma(`x${2 * r + 1}`, 'b1');
      }
      c.inc('aptr', (s) => s.i32(16));
      c.inc('bptr', (s) => s.i32(32));
      c.get('aptr').get('aend').op(I32_LT_U).op(0x0d, 0).op(0x0b); // br_if 0, end loop
      // Store the valid rows (min(4, M − i)) and columns.
      c.get('M').get('i').sub().set('rows');
      c.get('c').get('i').get('ldc').mul().add().get('j0').i32(2).op(0x74).add().set('cptr');
      c.if(
        (s) => s.get('acc'),
        () => storeTile(true),
        () => storeTile(false),
      );
      c.inc('i', (s) => s.i32(4));
    });
    q.inc('p', (s) => s.i32(1));
  });
  return c.body();
}

/** `fused`: accumulate with relaxed SIMD's FMA (see `relaxedSimd`). */
function gemmModule(shared = false, fused = relaxedSimd()): Uint8Array<ArrayBuffer> {
  return moduleBytes('gemm', PARAMS, gemmBody(fused), shared);
}

/**
 * `gemm(a, b, c, scratch, M, N, K, sam, sak, sbk, sbn, ldc, pack, acc)`: byte addresses and byte
 * strides in the shared memory; `scratch` holds (⌈N/8⌉·8 + ⌈M/4⌉·4)·K floats; `pack = 0` reuses
 * the B panels packed by the previous call (same B); `acc = 1` adds to C instead of overwriting
 * it (for splitting a long K into cache-sized chunks); `bias` (a byte address, or 0 for none),
 * where `acc = 0`, is added to every row: ⌈N/8⌉·8 floats are read, so pad it where N is not a
 * multiple of 8.
 */
export type GemmFn = (
  a: number,
  b: number,
  c: number,
  scratch: number,
  m: number,
  n: number,
  k: number,
  sam: number,
  sak: number,
  sbk: number,
  sbn: number,
  ldc: number,
  pack: number,
  acc: number,
  bias: number,
) => void;

const instances = new WeakMap<WebAssembly.Memory, GemmFn | null>();

/** The kernel bound to `memory` (shared or not), or null where it cannot be built (no SIMD…). */
export function gemmFor(memory: WebAssembly.Memory): GemmFn | null {
  let fn = instances.get(memory);
  if (fn === undefined) {
    fn = instantiate<GemmFn>(gemmModule, memory, 'gemm');
    instances.set(memory, fn);
  }
  return fn;
}

export const gemmModuleBytes = gemmModule;
