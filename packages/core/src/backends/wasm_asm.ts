import { nodeBuiltins } from '../platform/index.js';

/**
 * Just enough of a WebAssembly binary writer to assemble our SIMD kernels at run time (there is
 * no toolchain at run time, and a prebuilt blob would be unreviewable). Kernels import the tfjs
 * wasm backend's memory, so they work on its tensors in place.
 */

export const I32 = 0x7f;
/**
 * i32.lt_u. Pointers into the heap must be compared unsigned: past 2 GiB they are negative as
 * signed i32, and a loop over a buffer that straddles 2^31 with i32.lt_s stopped after one pass
 * (a 100 MB tensor left mostly unwritten: wrong gradients only at large batches).
 */
export const I32_LT_U = 0x49;
export const F32 = 0x7d;
export const V128 = 0x7b;

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

const str = (s: string) => [...uleb(s.length), ...[...s].map((c) => c.charCodeAt(0))];
const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];

/** Emits instructions; `local(name)` maps names to indices (params first). */
export class Code {
  readonly bytes: number[] = [];
  private readonly index = new Map<string, number>();
  private readonly extra: number[] = [];

  constructor(params: string[]) {
    params.forEach((p, i) => this.index.set(p, i));
  }

  declare(type: number, ...names: string[]): void {
    for (const n of names) {
      this.index.set(n, this.index.size);
      this.extra.push(type);
    }
  }

  private idx(name: string): number {
    const i = this.index.get(name);
    if (i === undefined) throw new Error(`wasm_gemm: unknown local ${name}`);
    return i;
  }

  op(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  get(n: string): this {
    return this.op(0x20, ...uleb(this.idx(n)));
  }
  set(n: string): this {
    return this.op(0x21, ...uleb(this.idx(n)));
  }
  i32(v: number): this {
    return this.op(0x41, ...sleb(v));
  }
  add(): this {
    return this.op(0x6a);
  }
  sub(): this {
    return this.op(0x6b);
  }
  mul(): this {
    return this.op(0x6c);
  }
  /** top · (value pushed by f) */
  mul2(f: (c: this) => void): this {
    f(this);
    return this.mul();
  }
  simd(code: number, ...imm: number[]): this {
    return this.op(0xfd, ...uleb(code), ...imm);
  }
  /** name = name + value-of(f) */
  inc(n: string, f: (c: this) => void): this {
    this.get(n);
    f(this);
    return this.add().set(n);
  }
  /** for (; cond; ) { body } — `cond` pushes an i32 that is non-zero to keep going. */
  while(cond: (c: this) => void, body: (c: this) => void): this {
    this.op(0x02, 0x40, 0x03, 0x40); // block, loop
    cond(this);
    this.op(0x45, 0x0d, 1); // i32.eqz, br_if 1 (exit)
    body(this);
    return this.op(0x0c, 0, 0x0b, 0x0b); // br 0, end loop, end block
  }
  /** do { body } while (cond) — for loops known to run at least once; `cond` pushes an i32. */
  doWhile(body: (c: this) => void, cond: (c: this) => void): this {
    this.op(0x03, 0x40); // loop
    body(this);
    cond(this);
    return this.op(0x0d, 0, 0x0b); // br_if 0, end loop
  }
  if(cond: (c: this) => void, then: (c: this) => void, otherwise?: (c: this) => void): this {
    cond(this);
    this.op(0x04, 0x40);
    then(this);
    if (otherwise) {
      this.op(0x05);
      otherwise(this);
    }
    return this.op(0x0b);
  }

  body(): number[] {
    const groups: number[][] = [];
    for (const t of this.extra) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]!++;
      else groups.push([1, t]);
    }
    const code = [...vec(groups.map(([n, t]) => [...uleb(n!), t!])), ...this.bytes, 0x0b];
    return [...uleb(code.length), ...code];
  }
}

// SIMD opcodes (after the 0xfd prefix).
export const V128_LOAD = 0x00;
export const V128_LOAD32_SPLAT = 0x09;
export const V128_STORE = 0x0b;
export const V128_CONST = 0x0c;
export const F32X4_EXTRACT_LANE = 0x1f;
export const F32X4_ADD = 0xe4;
export const F32X4_MUL = 0xe6;
export const V128_LOAD32_LANE = 0x56;
export const F32X4_SPLAT = 0x13;
export const F32X4_REPLACE_LANE = 0x20;
export const F32X4_LT = 0x43;
export const F32X4_GT = 0x44;
export const F32X4_NE = 0x42;
export const V128_AND = 0x4e;
export const V128_OR = 0x50;
export const V128_BITSELECT = 0x52;
export const F32X4_NEAREST = 0x6a;
export const I32X4_SPLAT = 0x11;
export const I32X4_SHL = 0xab;
export const I32X4_ADD = 0xae;
export const F32X4_ABS = 0xe0;
export const F32X4_NEG = 0xe1;
export const F32X4_SQRT = 0xe3;
export const F32X4_SUB = 0xe5;
export const F32X4_DIV = 0xe7;
export const F32X4_PMIN = 0xea;
export const F32X4_PMAX = 0xeb;
/** Relaxed SIMD's fused multiply-add a·b + c (one rounding where the CPU has FMA, two where not). */
export const F32X4_RELAXED_MADD = 0x105;
// Scalar float32 opcodes (no prefix).
export const F32_LOAD = 0x2a;
export const F32_STORE = 0x38;
export const F32_ADD = 0x92;
export const F32_SUB = 0x93;
export const F32_MUL = 0x94;

/** The little-endian bytes of float32 `v`. */
export const f32Bytes = (v: number) => [...new Uint8Array(new Float32Array([v]).buffer)];

/** Pushes f32x4.splat(v). */
export function splat(c: Code, v: number): Code {
  return c.op(0x43, ...f32Bytes(v)).simd(F32X4_SPLAT);
}

/** memarg: alignment exponent, byte offset. */
export const mem = (align: number, offset = 0) => [align, ...uleb(offset)];

/** The most pages a 32-bit memory can have (4 GiB); the threaded tfjs build declares this maximum. */
const MAX_PAGES = 65536;

/** Whether `memory` is shared (the threaded tfjs build's heap is a SharedArrayBuffer). */
export function isShared(memory: WebAssembly.Memory): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
}

/**
 * A module importing `env.memory` and exporting one function `name` of i32 parameters, no result.
 * An import must match the memory's sharedness, and a shared one must state a maximum: the
 * threaded build's heap imports as `shared, 0..65536 pages` (any size it has grown to fits), the
 * single-threaded one as `0..` (no maximum).
 */
export function moduleBytes(name: string, params: string[], body: number[], shared = false): Uint8Array<ArrayBuffer> {
  const type = [0x60, ...vec(params.map(() => [I32])), ...vec([])];
  const limits = shared ? [0x03, ...uleb(0), ...uleb(MAX_PAGES)] : [0x00, ...uleb(0)];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([type])),
    ...section(2, vec([[...str('env'), ...str('memory'), 0x02, ...limits]])),
    ...section(3, vec([uleb(0)])),
    ...section(7, vec([[...str(name), 0x00, ...uleb(0)]])),
    ...section(10, vec([body])),
  ]);
}

/**
 * Instantiates the module `build(shared)` makes on `memory`, with the import matching the memory's
 * sharedness; null where that fails (no SIMD…).
 */
export function instantiate<T>(build: (shared: boolean) => Uint8Array<ArrayBuffer>, memory: WebAssembly.Memory, name: string): T | null {
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(build(isShared(memory))), { env: { memory } });
    return instance.exports[name] as T;
  } catch {
    return null;
  }
}

let relaxed: boolean | undefined;

/** A module of one function that runs f32x4.relaxed_madd on three constants. */
function relaxedProbe(): Uint8Array<ArrayBuffer> {
  const c = new Code([]);
  for (let i = 0; i < 3; i++) c.simd(V128_CONST, ...new Array<number>(16).fill(0));
  c.simd(F32X4_RELAXED_MADD).op(0x1a); // drop
  const type = [0x60, ...vec([]), ...vec([])];
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...section(1, vec([type])), ...section(3, vec([uleb(0)])), ...section(10, vec([c.body()]))]);
}

/**
 * Whether our kernels may use relaxed SIMD's fused multiply-add. A 4-lane FMA does a GEMM's
 * multiply and add in one instruction: our GEMM ran 1.3× faster with it (33 → 45 GFLOP/s on one
 * thread here, a [3136, 96]·[96, 384] product). Chrome ships relaxed SIMD; Node 20's V8 (11.3)
 * has it behind --experimental-wasm-relaxed-simd, which we turn on at run time (a wasm feature
 * flag: it changes nothing for code that does not use the new instructions, and modules compiled
 * after it see it). `VIT_WASM_FMA=0` keeps the separate multiply and add (results then equal the
 * cpu backend's bit for bit where the summation order does).
 */
export function relaxedSimd(): boolean {
  if (relaxed !== undefined) return relaxed;
  const env = typeof process !== 'undefined' ? process.env?.VIT_WASM_FMA : undefined;
  if (env === '0') return (relaxed = false);
  const probe = relaxedProbe();
  const valid = () => {
    try {
      return WebAssembly.validate(probe);
    } catch {
      return false;
    }
  };
  if (!valid()) {
    try {
      nodeBuiltins()?.v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    } catch {
      // not Node, or a V8 that no longer has the flag (then relaxed SIMD is on by default)
    }
  }
  return (relaxed = valid());
}
