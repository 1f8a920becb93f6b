/**
 * A WebAssembly SIMD column sum on the tfjs wasm backend's memory:
 *   y[b, j] = Σ_r x[b, r, j]   for x [B, R, P] (float32)
 * — Sum and Mean over a block of axes that is not the last (bias and BatchNorm gradients, global
 * pooling). Sixteen columns at a time stay in four f32x4 registers while the rows stream past, so
 * every element is loaded once; leftover columns go one at a time.
 */

import { Code, F32X4_ADD, F32X4_EXTRACT_LANE, I32, V128, V128_CONST, V128_LOAD, V128_STORE, instantiate, mem, moduleBytes } from './wasm_asm.js';

const PARAMS = ['x', 'y', 'B', 'R', 'P'];

function body(): number[] {
  const c = new Code(PARAMS);
  c.declare(I32, 'b', 'j', 'r', 'p', 'row', 'yb', 'xb');
  c.declare(V128, 's0', 's1', 's2', 's3');
  const lt = (x: string, y: string) => (q: Code) => q.get(x).get(y).op(0x48);
  const zero = (v: string) => c.simd(V128_CONST, ...new Array<number>(16).fill(0)).set(v);
  // row = P·4 (bytes per row)
  c.get('P').i32(2).op(0x74).set('row');
  c.i32(0).set('b');
  c.while(lt('b', 'B'), (q) => {
    // xb = x + b·R·P·4, yb = y + b·P·4
    q.get('x').get('b').get('R').mul().get('row').mul().add().set('xb');
    q.get('y').get('b').get('row').mul().add().set('yb');
    q.i32(0).set('j');
    // Blocks of 16 columns in registers.
    q.while(
      (r) => r.get('j').i32(16).add().get('P').op(0x4c),
      (q) => {
        for (let k = 0; k < 4; k++) zero(`s${k}`);
        q.get('xb').get('j').i32(2).op(0x74).add().set('p');
        q.i32(0).set('r');
        q.while(lt('r', 'R'), (q) => {
          for (let k = 0; k < 4; k++)
            q.get(`s${k}`)
              .get('p')
              .simd(V128_LOAD, ...mem(2, 16 * k))
              .simd(F32X4_ADD)
              .set(`s${k}`);
          q.inc('p', (t) => t.get('row'));
          q.inc('r', (t) => t.i32(1));
        });
        q.get('yb').get('j').i32(2).op(0x74).add().set('p');
        for (let k = 0; k < 4; k++)
          q.get('p')
            .get(`s${k}`)
            .simd(V128_STORE, ...mem(2, 16 * k));
        q.inc('j', (t) => t.i32(16));
      },
    );
    // Leftover columns, one at a time (lane 0 of a vector accumulator).
    q.while(lt('j', 'P'), (q) => {
      zero('s0');
      q.get('xb').get('j').i32(2).op(0x74).add().set('p');
      q.i32(0).set('r');
      q.while(lt('r', 'R'), (q) => {
        // s0 += x (a scalar load widened by splat; lane 0 is what counts)
        q.get('s0')
          .get('p')
          .simd(0x09, ...mem(2))
          .simd(F32X4_ADD)
          .set('s0');
        q.inc('p', (t) => t.get('row'));
        q.inc('r', (t) => t.i32(1));
      });
      q.get('yb')
        .get('j')
        .i32(2)
        .op(0x74)
        .add()
        .get('s0')
        .simd(F32X4_EXTRACT_LANE, 0)
        .op(0x38, ...mem(2));
      q.inc('j', (t) => t.i32(1));
    });
    q.inc('b', (t) => t.i32(1));
  });
  return c.body();
}

export type ColSumFn = (x: number, y: number, b: number, r: number, p: number) => void;

const instances = new WeakMap<WebAssembly.Memory, ColSumFn | null>();

export function colSumFor(memory: WebAssembly.Memory): ColSumFn | null {
  let fn = instances.get(memory);
  if (fn === undefined) {
    fn = instantiate<ColSumFn>((shared) => moduleBytes('colsum', PARAMS, body(), shared), memory, 'colsum');
    instances.set(memory, fn);
  }
  return fn;
}
