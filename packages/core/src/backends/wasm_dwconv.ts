/**
 * WebAssembly SIMD depthwise-convolution kernels (channel multiplier 1, NHWC, channels a multiple
 * of 4) on the tfjs wasm backend's memory. XNNPACK's depthwise microkernels are built for 3×3 and
 * 5×5; at 7×7 and 11×11 (ConvNeXt, Conv2Former) it runs ~1–2 GFLOP/s, and tfjs has no backward
 * kernels for it at all.
 *
 * Each module is assembled for one channel count C (and, for the filter gradient, one dilation),
 * so the distances between neighbouring pixels are constant memory offsets. Vectors run over
 * four channels; each tap's weight vector is loaded once for four neighbouring outputs (forward)
 * or each dy vector once for four neighbouring taps (filter gradient).
 *
 * - `dwconv(x, w, y, N, H, W, KH, KW, OH, OW, dil)`: y[n,i,j,c] = Σ_ab x[n, i + a·dil, j + b·dil, c]·w[a,b,c]
 *   over an already padded x (stride 1, 'valid'): the forward conv and, with the filter flipped,
 *   the input gradient.
 * - `dwfilter(x, dy, dw, N, H, W, KH, KW, OH, OW, stride)`: dw[a,b,c] += Σ_nij x[n, i·s + a·d, j·s + b·d, c]·dy[n,i,j,c]
 *   over the padded input (d fixed per module; dw accumulates, the caller zeroes it).
 */

import { Code, F32X4_ADD, F32X4_MUL, I32, V128, V128_CONST, V128_LOAD, V128_STORE, instantiate, mem, moduleBytes } from './wasm_asm.js';
import { kernelThreads, shareOut } from './wasm_pool.js';

const lt = (x: string, y: string) => (q: Code) => q.get(x).get(y).op(0x48); // i32.lt_s
const le = (q: Code) => q.op(0x4c); // i32.le_s

/** acc_k += load(ptr + k·stride) · vec for k < width (four neighbouring outputs or taps share vec). */
function fmaVectors(q: Code, acc: string, ptr: string, stride: number, vec: string, width: number): void {
  for (let k = 0; k < width; k++)
    q.get(`${acc}${k}`)
      .get(ptr)
      .simd(V128_LOAD, ...mem(2, k * stride))
      .get(vec)
      .simd(F32X4_MUL)
      .simd(F32X4_ADD)
      .set(`${acc}${k}`);
}

/** store(ptr + k·stride) = acc_k for k < width. */
function storeVectors(q: Code, ptr: string, acc: string, stride: number, width: number): void {
  for (let k = 0; k < width; k++)
    q.get(ptr)
      .get(`${acc}${k}`)
      .simd(V128_STORE, ...mem(2, k * stride));
}

const CONV_PARAMS = ['x', 'w', 'y', 'N', 'H', 'W', 'KH', 'KW', 'OH', 'OW', 'dil'];

function convBody(channels: number): number[] {
  const c4 = channels * 4;
  const c = new Code(CONV_PARAMS);
  c.declare(I32, 'n', 'i', 'j', 'cg', 'a', 'b', 'p', 'wp', 'op', 'step', 'rowc');
  c.declare(V128, 'y0', 'y1', 'y2', 'y3', 'wv');
  const zero = (v: string) => c.simd(V128_CONST, ...new Array<number>(16).fill(0)).set(v);
  // step = dil·C·4 (bytes between taps along a row)
  c.get('dil').i32(c4).mul().set('step');
  const tile = (width: 1 | 4) => {
    c.i32(0).set('cg');
    c.while(
      (q) => q.get('cg').i32(c4).op(0x48),
      (q) => {
        for (let k = 0; k < width; k++) zero(`y${k}`);
        q.i32(0).set('a');
        q.while(lt('a', 'KH'), (q) => {
          // p = x + ((n·H + i + a·dil)·W + j)·C4 + cg; wp = w + a·KW·C4 + cg
          q.get('x')
            .get('n')
            .get('H')
            .mul()
            .get('i')
            .add()
            .get('a')
            .get('dil')
            .mul()
            .add()
            .get('W')
            .mul()
            .get('j')
            .add()
            .i32(c4)
            .mul()
            .add()
            .get('cg')
            .add()
            .set('p');
          q.get('w').get('a').get('KW').mul().i32(c4).mul().add().get('cg').add().set('wp');
          q.i32(0).set('b');
          q.doWhile((q) => {
            q.get('wp')
              .simd(V128_LOAD, ...mem(2))
              .set('wv');
            fmaVectors(q, 'y', 'p', c4, 'wv', width);
            q.inc('p', (r) => r.get('step'));
            q.inc('wp', (r) => r.i32(c4));
            q.inc('b', (r) => r.i32(1));
          }, lt('b', 'KW'));
          q.inc('a', (r) => r.i32(1));
        });
        // op = y + ((n·OH + i)·OW + j)·C4 + cg
        q.get('rowc').get('j').i32(c4).mul().add().get('cg').add().set('op');
        storeVectors(q, 'op', 'y', c4, width);
        q.inc('cg', (r) => r.i32(16));
      },
    );
  };
  c.i32(0).set('n');
  c.while(lt('n', 'N'), (q) => {
    q.i32(0).set('i');
    q.while(lt('i', 'OH'), (q) => {
      // rowc = y + (n·OH + i)·OW·C4
      q.get('y').get('n').get('OH').mul().get('i').add().get('OW').mul().i32(c4).mul().add().set('rowc');
      q.i32(0).set('j');
      q.while(
        (r) => {
          r.get('j').i32(4).add().get('OW');
          le(r);
        },
        (q) => {
          tile(4);
          q.inc('j', (r) => r.i32(4));
        },
      );
      q.while(lt('j', 'OW'), (q) => {
        tile(1);
        q.inc('j', (r) => r.i32(1));
      });
      q.inc('i', (r) => r.i32(1));
    });
    q.inc('n', (r) => r.i32(1));
  });
  return c.body();
}

const FILTER_PARAMS = ['x', 'dy', 'dw', 'N', 'H', 'W', 'KH', 'KW', 'OH', 'OW', 'stride'];

function filterBody(channels: number, dil: number): number[] {
  const c4 = channels * 4;
  const tap = dil * c4; // bytes between neighbouring taps
  const c = new Code(FILTER_PARAMS);
  c.declare(I32, 'n', 'i', 'a', 'b', 'cg', 'j', 'rowx', 'rowd', 'px', 'pd', 'wp', 'sx');
  c.declare(V128, 'g0', 'g1', 'g2', 'g3', 'dv');
  c.get('stride').i32(c4).mul().set('sx');
  const taps = (width: 1 | 4) => {
    c.i32(0).set('cg');
    c.while(
      (q) => q.get('cg').i32(c4).op(0x48),
      (q) => {
        // wp = dw + (a·KW + b)·C4 + cg: the accumulators live in dw between rows.
        q.get('dw').get('a').get('KW').mul().get('b').add().i32(c4).mul().add().get('cg').add().set('wp');
        for (let k = 0; k < width; k++)
          q.get('wp')
            .simd(V128_LOAD, ...mem(2, k * c4))
            .set(`g${k}`);
        q.get('rowx').get('b').i32(tap).mul().add().get('cg').add().set('px');
        q.get('rowd').get('cg').add().set('pd');
        q.i32(0).set('j');
        q.doWhile((q) => {
          q.get('pd')
            .simd(V128_LOAD, ...mem(2))
            .set('dv');
          fmaVectors(q, 'g', 'px', tap, 'dv', width);
          q.inc('px', (r) => r.get('sx'));
          q.inc('pd', (r) => r.i32(c4));
          q.inc('j', (r) => r.i32(1));
        }, lt('j', 'OW'));
        storeVectors(q, 'wp', 'g', c4, width);
        q.inc('cg', (r) => r.i32(16));
      },
    );
  };
  c.i32(0).set('n');
  c.while(lt('n', 'N'), (q) => {
    q.i32(0).set('i');
    q.while(lt('i', 'OH'), (q) => {
      // rowd = dy + (n·OH + i)·OW·C4
      q.get('dy').get('n').get('OH').mul().get('i').add().get('OW').mul().i32(c4).mul().add().set('rowd');
      q.i32(0).set('a');
      q.while(lt('a', 'KH'), (q) => {
        // rowx = x + (n·H + i·stride + a·dil)·W·C4
        q.get('x').get('n').get('H').mul().get('i').get('stride').mul().add().get('a').i32(dil).mul().add().get('W').mul().i32(c4).mul().add().set('rowx');
        q.i32(0).set('b');
        q.while(
          (r) => {
            r.get('b').i32(4).add().get('KW');
            le(r);
          },
          (q) => {
            taps(4);
            q.inc('b', (r) => r.i32(4));
          },
        );
        q.while(lt('b', 'KW'), (q) => {
          taps(1);
          q.inc('b', (r) => r.i32(1));
        });
        q.inc('a', (r) => r.i32(1));
      });
      q.inc('i', (r) => r.i32(1));
    });
    q.inc('n', (r) => r.i32(1));
  });
  return c.body();
}

export type DwConvFn = (x: number, w: number, y: number, n: number, h: number, wd: number, kh: number, kw: number, oh: number, ow: number, dil: number) => void;
export type DwFilterFn = (
  x: number,
  dy: number,
  dw: number,
  n: number,
  h: number,
  wd: number,
  kh: number,
  kw: number,
  oh: number,
  ow: number,
  stride: number,
) => void;

const cache = new WeakMap<WebAssembly.Memory, Map<string, unknown>>();

function cached<T>(memory: WebAssembly.Memory, key: string, build: (shared: boolean) => Uint8Array<ArrayBuffer>, name: string): T | null {
  let m = cache.get(memory);
  if (!m) cache.set(memory, (m = new Map()));
  if (!m.has(key)) m.set(key, instantiate<T>(build, memory, name));
  return m.get(key) as T | null;
}

const dwConvModule = (channels: number) => (shared: boolean) => moduleBytes('dwconv', CONV_PARAMS, convBody(channels), shared);

/** The forward kernel for `channels` (a multiple of 4), or null. */
export function dwConvFor(memory: WebAssembly.Memory, channels: number): DwConvFn | null {
  if (channels % 4 !== 0 || channels <= 0) return null;
  return cached<DwConvFn>(memory, `conv${channels}`, dwConvModule(channels), 'dwconv');
}

/** Convolutions below this many multiply-adds stay on one thread. */
const DW_PARALLEL_MIN_MACS = 1 << 20;

/**
 * `fn(x, w, y, n, h, wd, kh, kw, oh, ow, dil)` (a kernel of `dwConvFor(memory, channels)`), with the
 * images shared out over the kernel pool's threads where there are several and enough work.
 */
export function runDwConv(memory: WebAssembly.Memory, channels: number, fn: DwConvFn, ...a: Parameters<DwConvFn>): void {
  const [x, w, y, n, h, wd, kh, kw, oh, ow, dil] = a;
  const { threads, pool } = kernelThreads(memory, n >= 2 && n * oh * ow * channels * kh * kw >= DW_PARALLEL_MIN_MACS);
  if (!pool || threads < 2) return fn(...a);
  const key = `dwconv:${channels}` as const;
  pool.register(key, dwConvModule(channels), 'dwconv');
  shareOut(pool, threads, n, 1, (n0, count) => [key, x + n0 * h * wd * channels * 4, w, y + n0 * oh * ow * channels * 4, count, h, wd, kh, kw, oh, ow, dil]);
}

/** The filter-gradient kernel for `channels` (a multiple of 4) and dilation `dil`, or null. */
export function dwFilterFor(memory: WebAssembly.Memory, channels: number, dil: number): DwFilterFn | null {
  if (channels % 4 !== 0 || channels <= 0) return null;
  return cached<DwFilterFn>(memory, `filter${channels}x${dil}`, (shared) => moduleBytes('dwfilter', FILTER_PARAMS, filterBody(channels, dil), shared), 'dwfilter');
}
