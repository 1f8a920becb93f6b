/**
 * safetensors reading and writing (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length, a JSON header, then raw little-endian data. Pure: no file system,
 * so it works in browsers too (`io.ts` adds the Node file functions).
 */
import * as tf from '@tensorflow/tfjs-core';
import { FormatError } from '../errors.js';

/** The dtypes we read. Others (F8, U16, U32, U64) are rejected by name. */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const SAFETENSORS_DTYPES: readonly SafetensorsDtype[] = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'];

/** Decoded element containers: floats widen/narrow to Float32Array, I64 narrows to Int32Array, BOOL is 0/1 bytes. */
export type RawData = Float32Array | Int32Array | Int16Array | Int8Array | Uint8Array;

/**
 * One tensor as stored in a file: `dtype` is the file's dtype (kept so callers know the source
 * precision), `data` the decoded values in row-major order.
 */
export interface RawTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: RawData;
}

/** What `serializeSafetensors` accepts: any numeric array-like, encoded into `dtype`. */
export interface RawTensorInput {
  dtype: SafetensorsDtype;
  shape: readonly number[];
  data: ArrayLike<number>;
}

export interface ParsedSafetensors {
  /** In file order (by data offset). */
  tensors: Map<string, RawTensor>;
  metadata: Record<string, string>;
}

const ITEM_SIZE: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/**
 * The reference writer's dtype order (Rust `Dtype` declaration order); it lays data out by
 * descending rank so that larger items come first and stay aligned.
 */
const DTYPE_RANK: Record<SafetensorsDtype, number> = {
  BOOL: 0,
  U8: 1,
  I8: 2,
  I16: 5,
  F16: 7,
  BF16: 8,
  I32: 9,
  F32: 11,
  F64: 12,
  I64: 13,
};

/** The reference reader's limit; a larger header is certainly corrupt. */
const MAX_HEADER_BYTES = 100_000_000;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function isSafetensorsDtype(d: unknown): d is SafetensorsDtype {
  return typeof d === 'string' && (SAFETENSORS_DTYPES as readonly string[]).includes(d);
}

export function dtypeItemSize(dtype: SafetensorsDtype): number {
  return ITEM_SIZE[dtype];
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

// ---------------------------------------------------------------------------------------------
// Half-precision conversions

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE binary16 bits → number (exact). */
export function f16BitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1024 + frac) * 2 ** (exp - 25);
}

/** float32 → IEEE binary16 bits, round to nearest even (as numpy/PyTorch `.half()`); NaN stays NaN. */
export function floatToF16Bits(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  // Unbiased exponent; binary16 normals cover [-14, 15].
  const e = exp - 127;
  if (e > 15) return sign | 0x7c00;
  if (e >= -14) {
    // Normal: keep 10 mantissa bits, round on the 13 dropped ones. A carry into the exponent is
    // correct (it may produce Infinity, as it should).
    let h = ((e + 15) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h += 1;
    return sign | h;
  }
  if (e < -25) return sign; // below half the smallest subnormal: rounds to zero
  // Subnormal: value = m · 2^-24 with m = full significand >> shift.
  const full = mant | 0x800000;
  const shift = -e - 1; // 14..24 bits dropped from the 24-bit significand
  let h = full >>> shift;
  const rest = full & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && h & 1)) h += 1;
  return sign | h;
}

/** bfloat16 bits → number (exact). */
export function bf16BitsToFloat(b: number): number {
  u32Scratch[0] = (b & 0xffff) << 16;
  return f32Scratch[0]!;
}

/** float32 → bfloat16 bits, round to nearest even (as PyTorch `.bfloat16()`); NaN stays a quiet NaN. */
export function floatToBf16Bits(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

// ---------------------------------------------------------------------------------------------
// Parsing

/**
 * Parses a whole safetensors file. Every entry is validated (dtype, shape, offsets inside the data
 * section, size equal to numel·itemsize, no overlap) and decoded into its own buffer, so the input
 * may be unaligned and may be reused afterwards.
 */
export function parseSafetensors(bytes: Uint8Array): ParsedSafetensors {
  if (bytes.byteLength < 8) {
    const other = otherWeightFormat(bytes);
    if (other) throw new FormatError(notSafetensorsMessage(other));
    throw new FormatError(`Not a safetensors file: ${bytes.byteLength} bytes, need at least 8 for the header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getBigUint64(0, true);
  const available = BigInt(bytes.byteLength - 8);
  // A PyTorch checkpoint read as safetensors would otherwise be reported as a corrupt header.
  const other = otherWeightFormat(bytes);
  if (other && (headerLen > available || headerLen > BigInt(MAX_HEADER_BYTES) || bytes[8] !== 0x7b)) {
    throw new FormatError(notSafetensorsMessage(other));
  }
  if (headerLen > available) {
    throw new FormatError(
      `Corrupt safetensors file: header length ${headerLen} bytes is larger than the ${available} bytes after the ` +
        `length field (file is ${bytes.byteLength} bytes; truncated or not a safetensors file)`,
    );
  }
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw new FormatError(`Corrupt safetensors file: header length ${headerLen} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const n = Number(headerLen);
  // As the reference reader (InvalidHeaderStart): the header is a JSON object, first byte '{'.
  if (n > 0 && bytes[8] !== 0x7b) {
    const c = bytes[8]!;
    const shown = c >= 0x20 && c < 0x7f ? `'${String.fromCharCode(c)}'` : `byte 0x${c.toString(16).padStart(2, '0')}`;
    throw new FormatError(`Not a safetensors file: the header must be a JSON object starting with '{', found ${shown}`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    throw new FormatError('Corrupt safetensors file: the header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    const snippet = text.length > 60 ? `${text.slice(0, 60)}…` : text;
    throw new FormatError(`Corrupt safetensors file: the header is not valid JSON (${(e as Error).message}); it starts ${JSON.stringify(snippet)}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new FormatError('Corrupt safetensors file: the header must be a JSON object');
  }

  const metadata: Record<string, string> = {};
  const raw = header as Record<string, unknown>;
  if ('__metadata__' in raw) {
    const m = raw.__metadata__;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) {
      throw new FormatError('Corrupt safetensors file: __metadata__ must be an object of strings');
    }
    for (const [k, v] of Object.entries(m)) {
      if (typeof v !== 'string') {
        throw new FormatError(`Corrupt safetensors file: __metadata__ values must be strings, but '${k}' is ${v === null ? 'null' : typeof v}`);
      }
      metadata[k] = v;
    }
  }

  const dataStart = 8 + n;
  const dataLen = bytes.byteLength - dataStart;
  interface Entry {
    key: string;
    dtype: SafetensorsDtype;
    shape: number[];
    begin: number;
    end: number;
  }
  const entries: Entry[] = [];
  for (const [key, info] of Object.entries(raw)) {
    if (key === '__metadata__') continue;
    entries.push(validateEntry(key, info, dataLen));
  }

  // Zero-sized entries occupy no bytes and cannot overlap anything.
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let last: Entry | undefined;
  for (const e of byOffset) {
    if (e.begin === e.end) continue;
    if (last && e.begin < last.end) {
      throw new FormatError(
        `Corrupt safetensors file: entries '${last.key}' [${last.begin}, ${last.end}) and '${e.key}' [${e.begin}, ${e.end}) overlap`,
      );
    }
    if (!last || e.end > last.end) last = e;
  }
  // As the reference reader (InvalidOffset, MetadataIncompleteBuffer): the entries tile the data
  // section exactly, with no gap and nothing after the last one.
  let covered = 0;
  for (const e of byOffset) {
    if (e.begin === e.end) continue;
    if (e.begin > covered) {
      throw new FormatError(`Corrupt safetensors file: data bytes [${covered}, ${e.begin}) before entry '${e.key}' belong to no entry (the entries must be contiguous)`);
    }
    covered = e.end;
  }
  if (covered !== dataLen) {
    throw new FormatError(
      `Corrupt safetensors file: ${dataLen - covered} trailing bytes after the data section (the entries end at data byte ${covered} of ${dataLen}); ` +
        'the file was appended to or is not what its header describes',
    );
  }

  const tensors = new Map<string, RawTensor>();
  for (const e of byOffset) {
    const data = decode(e.key, e.dtype, bytes.subarray(dataStart + e.begin, dataStart + e.end));
    tensors.set(e.key, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}

/** Formats a safetensors reader may be handed by mistake: PyTorch checkpoints. */
export type OtherWeightFormat = 'pth-zip' | 'pth-legacy';

/**
 * What the first bytes say when they are a PyTorch checkpoint rather than safetensors: a zip
 * archive (`PK\x03\x04`, torch.save since 1.6) or a pickle (protocol byte 0x80, then 2–5: the
 * legacy torch.save format). Undefined otherwise.
 */
export function otherWeightFormat(bytes: Uint8Array): OtherWeightFormat | undefined {
  if (bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04) return 'pth-zip';
  if (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1]! >= 2 && bytes[1]! <= 5) return 'pth-legacy';
  return undefined;
}

function notSafetensorsMessage(format: OtherWeightFormat): string {
  const what = format === 'pth-zip' ? 'a PyTorch checkpoint (zip)' : 'a PyTorch checkpoint (legacy pickle)';
  return `${what}, not safetensors: convert it with \`vit convert\`, or read it with loadPthFile and load it with loadPytorchStateDict`;
}

function validateEntry(
  key: string,
  info: unknown,
  dataLen: number,
): { key: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number } {
  const where = `Corrupt safetensors file: entry '${key}'`;
  if (typeof info !== 'object' || info === null || Array.isArray(info)) throw new FormatError(`${where} must be an object`);
  const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
  if (typeof dtype !== 'string') throw new FormatError(`${where} has no dtype`);
  if (!isSafetensorsDtype(dtype)) {
    throw new FormatError(`Unsupported safetensors dtype '${dtype}' for entry '${key}'; supported: ${SAFETENSORS_DTYPES.join(', ')}`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new FormatError(`${where} has an invalid shape ${JSON.stringify(shape)} (need a list of non-negative integers)`);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) {
    throw new FormatError(`${where} has invalid data_offsets ${JSON.stringify(offsets)} (need [begin, end] with 0 <= begin <= end)`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataLen) {
    throw new FormatError(
      `${where} needs data bytes [${begin}, ${end}) but the data section has only ${dataLen} bytes (file truncated?)`,
    );
  }
  const expected = numel(shape) * ITEM_SIZE[dtype];
  if (end - begin !== expected) {
    throw new FormatError(
      `${where}: data_offsets [${begin}, ${end}) span ${end - begin} bytes but ${dtype} ${fmtShape(shape)} needs ${expected}`,
    );
  }
  return { key, dtype, shape: shape.slice(), begin, end };
}

function decode(key: string, dtype: SafetensorsDtype, src: Uint8Array): RawData {
  // Copy into a fresh, aligned ArrayBuffer of exactly this entry: the file's offsets need not be
  // aligned. Not `src.slice()`: on a Node Buffer that is a view into the shared pool, not a copy.
  const copy = () => new Uint8Array(src).buffer;
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const count = src.byteLength / ITEM_SIZE[dtype];
  switch (dtype) {
    case 'F32': {
      if (LITTLE_ENDIAN) return new Float32Array(copy());
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getFloat32(4 * i, true);
      return out;
    }
    case 'F64': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getFloat64(8 * i, true);
      return out;
    }
    case 'F16': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = f16BitsToFloat(dv.getUint16(2 * i, true));
      return out;
    }
    case 'BF16': {
      const bits = new Uint32Array(count);
      for (let i = 0; i < count; i++) bits[i] = dv.getUint16(2 * i, true) << 16;
      return new Float32Array(bits.buffer);
    }
    case 'I64': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const lo = dv.getUint32(8 * i, true);
        const hi = dv.getInt32(8 * i + 4, true);
        // In int32 range exactly when the high word is the sign extension of the low word.
        if (hi !== (lo & 0x80000000 ? -1 : 0)) {
          throw new FormatError(
            `Entry '${key}' (I64) holds ${dv.getBigInt64(8 * i, true)} at index ${i}, outside the int32 range TF.js tensors can hold`,
          );
        }
        out[i] = lo | 0;
      }
      return out;
    }
    case 'I32': {
      if (LITTLE_ENDIAN) return new Int32Array(copy());
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getInt32(4 * i, true);
      return out;
    }
    case 'I16': {
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getInt16(2 * i, true);
      return out;
    }
    case 'I8':
      return new Int8Array(copy());
    case 'U8':
      return new Uint8Array(copy());
    case 'BOOL': {
      const out = new Uint8Array(count);
      for (let i = 0; i < count; i++) out[i] = src[i] ? 1 : 0;
      return out;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

const INT_RANGE: Partial<Record<SafetensorsDtype, [number, number]>> = {
  I64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  I32: [-(2 ** 31), 2 ** 31 - 1],
  I16: [-(2 ** 15), 2 ** 15 - 1],
  I8: [-128, 127],
  U8: [0, 255],
};

/**
 * Writes a safetensors file the way the reference writer does: header keys sorted (`__metadata__`
 * first), compact JSON padded with spaces to a multiple of 8, data laid out contiguously by
 * descending dtype size rank then by name. Floats are rounded to nearest even for F16/BF16;
 * integer dtypes require integer values in range; BOOL writes nonzero as 1.
 */
export function serializeSafetensors(
  tensors: Record<string, RawTensorInput> | Map<string, RawTensorInput>,
  metadata?: Record<string, string>,
): Uint8Array {
  const items = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  for (const [key, t] of items) {
    if (key === '__metadata__') throw new FormatError("A tensor cannot be named '__metadata__' (reserved by safetensors)");
    if (!isSafetensorsDtype(t.dtype)) {
      throw new FormatError(`Cannot write '${key}' as dtype '${String(t.dtype)}'; supported: ${SAFETENSORS_DTYPES.join(', ')}`);
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new FormatError(`Cannot write '${key}': invalid shape ${JSON.stringify(t.shape)}`);
    }
    if (t.data.length !== numel(t.shape)) {
      throw new FormatError(`Cannot write '${key}': shape ${fmtShape(t.shape)} has ${numel(t.shape)} elements but data has ${t.data.length}`);
    }
  }
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new FormatError(`Metadata values must be strings, but '${k}' is ${v === null ? 'null' : typeof v}`);
    }
  }

  // Byte-wise (code unit) comparison, like Rust's `String` ordering for ASCII keys.
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const layout = [...items].sort(([ka, a], [kb, b]) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || cmp(ka, kb));
  const offsets = new Map<string, [number, number]>();
  let offset = 0;
  for (const [key, t] of layout) {
    const size = numel(t.shape) * ITEM_SIZE[t.dtype];
    offsets.set(key, [offset, offset + size]);
    offset += size;
  }

  // Object keys sorted at every level, field order data_offsets/dtype/shape, as the reference files.
  const parts: string[] = [];
  if (metadata && Object.keys(metadata).length) {
    const m = Object.keys(metadata)
      .sort(cmp)
      .map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`);
    parts.push(`"__metadata__":{${m.join(',')}}`);
  }
  for (const [key, t] of [...items].sort(([a], [b]) => cmp(a, b))) {
    const [b, e] = offsets.get(key)!;
    parts.push(`${JSON.stringify(key)}:{"data_offsets":[${b},${e}],"dtype":"${t.dtype}","shape":[${t.shape.join(',')}]}`);
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const headerLen = Math.ceil(json.byteLength / 8) * 8;

  const out = new Uint8Array(8 + headerLen + offset);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(headerLen), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + headerLen);
  const dataStart = 8 + headerLen;
  for (const [key, t] of layout) encode(key, t, dv, dataStart + offsets.get(key)![0]);
  return out;
}

/**
 * One tensor's elements as little-endian bytes of `t.dtype`, with the same checks and rounding as
 * `serializeSafetensors` (the `.pth` writer stores its storages this way).
 */
export function encodeTensorBytes(key: string, t: RawTensorInput): Uint8Array {
  if (!isSafetensorsDtype(t.dtype)) throw new FormatError(`Cannot write '${key}' as dtype '${String(t.dtype)}'; supported: ${SAFETENSORS_DTYPES.join(', ')}`);
  if (t.data.length !== numel(t.shape)) {
    throw new FormatError(`Cannot write '${key}': shape ${fmtShape(t.shape)} has ${numel(t.shape)} elements but data has ${t.data.length}`);
  }
  const out = new Uint8Array(t.data.length * ITEM_SIZE[t.dtype]);
  encode(key, t, new DataView(out.buffer), 0);
  return out;
}

function encode(key: string, t: RawTensorInput, dv: DataView, at: number): void {
  const { data, dtype } = t;
  const n = data.length;
  const range = INT_RANGE[dtype];
  if (range) {
    for (let i = 0; i < n; i++) {
      const v = data[i]!;
      if (!Number.isInteger(v) || v < range[0] || v > range[1]) {
        throw new FormatError(`Cannot write '${key}' as ${dtype}: value ${v} at index ${i} is not an integer in [${range[0]}, ${range[1]}]`);
      }
    }
  }
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) dv.setFloat32(at + 4 * i, data[i]!, true);
      return;
    case 'F64':
      for (let i = 0; i < n; i++) dv.setFloat64(at + 8 * i, data[i]!, true);
      return;
    case 'F16':
      for (let i = 0; i < n; i++) dv.setUint16(at + 2 * i, floatToF16Bits(data[i]!), true);
      return;
    case 'BF16':
      for (let i = 0; i < n; i++) dv.setUint16(at + 2 * i, floatToBf16Bits(data[i]!), true);
      return;
    case 'I64':
      for (let i = 0; i < n; i++) dv.setBigInt64(at + 8 * i, BigInt(data[i]!), true);
      return;
    case 'I32':
      for (let i = 0; i < n; i++) dv.setInt32(at + 4 * i, data[i]!, true);
      return;
    case 'I16':
      for (let i = 0; i < n; i++) dv.setInt16(at + 2 * i, data[i]!, true);
      return;
    case 'I8':
      for (let i = 0; i < n; i++) dv.setInt8(at + i, data[i]!);
      return;
    case 'U8':
      for (let i = 0; i < n; i++) dv.setUint8(at + i, data[i]!);
      return;
    case 'BOOL':
      for (let i = 0; i < n; i++) dv.setUint8(at + i, data[i] ? 1 : 0);
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Tensors

const FLOAT_DTYPES = new Set<SafetensorsDtype>(['F64', 'F32', 'F16', 'BF16']);

/** A new tensor from a decoded entry: float dtypes → float32, integers → int32, BOOL → bool. */
export function rawToTensor(raw: RawTensor): tf.Tensor {
  if (raw.dtype === 'BOOL') return tf.tensor(Uint8Array.from(raw.data), raw.shape, 'bool');
  if (FLOAT_DTYPES.has(raw.dtype)) {
    return tf.tensor(raw.data instanceof Float32Array ? raw.data : Float32Array.from(raw.data), raw.shape, 'float32');
  }
  return tf.tensor(raw.data instanceof Int32Array ? raw.data : Int32Array.from(raw.data), raw.shape, 'int32');
}

export interface LoadedSafetensors {
  /** New tensors (float32, int32 or bool) the caller disposes, in file order. */
  tensors: Map<string, tf.Tensor>;
  metadata: Record<string, string>;
  /** The dtype each entry had in the file. */
  dtypes: Map<string, SafetensorsDtype>;
}

/** Parsed entries as TF.js tensors on the current backend: all of them, or none (a failure disposes those made). */
export function safetensorsToTensors(parsed: ParsedSafetensors): LoadedSafetensors {
  const tensors = new Map<string, tf.Tensor>();
  const dtypes = new Map<string, SafetensorsDtype>();
  try {
    for (const [key, raw] of parsed.tensors) {
      tensors.set(key, rawToTensor(raw));
      dtypes.set(key, raw.dtype);
    }
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  }
  return { tensors, metadata: parsed.metadata, dtypes };
}

/** Safetensors bytes as TF.js tensors: `loadSafetensorsFile` for bytes from anywhere (a browser's `fetch`). */
export function loadSafetensors(bytes: Uint8Array): LoadedSafetensors {
  return safetensorsToTensors(parseSafetensors(bytes));
}

/** The file dtype a TF.js dtype is written as by default (int32 as I64, PyTorch's integer type). */
export function defaultSafetensorsDtype(dtype: tf.DataType): SafetensorsDtype {
  switch (dtype) {
    case 'float32':
      return 'F32';
    case 'int32':
      return 'I64';
    case 'bool':
      return 'BOOL';
    default:
      throw new FormatError(`Cannot write a ${dtype} tensor to safetensors`);
  }
}

function checkWritable(t: tf.Tensor): void {
  if (t.isDisposed) throw new FormatError('Cannot write a disposed tensor');
  defaultSafetensorsDtype(t.dtype);
}

/** Reads a tensor's values synchronously (`dataSync`) for `serializeSafetensors`. */
export function tensorToRaw(t: tf.Tensor, dtype?: SafetensorsDtype): RawTensorInput {
  checkWritable(t);
  return { dtype: dtype ?? defaultSafetensorsDtype(t.dtype), shape: t.shape.slice(), data: t.dataSync() as RawData };
}

/** As `tensorToRaw`, but reads with `data()` so GPU backends do not block. */
export async function tensorToRawAsync(t: tf.Tensor, dtype?: SafetensorsDtype): Promise<RawTensorInput> {
  checkWritable(t);
  return { dtype: dtype ?? defaultSafetensorsDtype(t.dtype), shape: t.shape.slice(), data: (await t.data()) as RawData };
}
