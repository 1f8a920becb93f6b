import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FormatError } from '../errors.js';
import {
  SAFETENSORS_DTYPES,
  bf16BitsToFloat,
  f16BitsToFloat,
  floatToBf16Bits,
  floatToF16Bits,
  parseSafetensors,
  rawToTensor,
  serializeSafetensors,
  tensorToRaw,
  tensorToRawAsync,
  type RawTensorInput,
  type SafetensorsDtype,
} from './safetensors.js';
import { checkTensorLeaks } from '../testing/leaks.js';

const fixture = (name: string) => new Uint8Array(readFileSync(fileURLToPath(new URL(`../../test/fixtures/${name}`, import.meta.url))));

checkTensorLeaks();

const f32 = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0]!;

/** Builds a file by hand (for corrupt cases): header JSON as given, then `data`. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), headerLen?: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function expectFormatError(fn: () => unknown, ...fragments: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(FormatError);
  for (const f of fragments) expect((caught as Error).message).toContain(f);
}

describe('half-precision conversions', () => {
  // [float32 bits, float16 bits (numpy astype(float16)), bfloat16 bits (torch .to(bfloat16))]:
  // ties to even, subnormals, overflow to infinity, signed zeros.
  const table: Array<[number, number, number]> = [
    [0x00000000, 0x0000, 0x0000], // 0.0
    [0x80000000, 0x8000, 0x8000], // -0.0
    [0x3f800000, 0x3c00, 0x3f80], // 1.0
    [0xc0200000, 0xc100, 0xc020], // -2.5
    [0x477fe000, 0x7bff, 0x4780], // 65504 (largest half)
    [0x477feffd, 0x7bff, 0x4780], // 65519.99
    [0x477ff000, 0x7c00, 0x4780], // 65520 → inf in half
    [0x49742400, 0x7c00, 0x4974], // 1e6
    [0xc9742400, 0xfc00, 0xc974], // -1e6
    [0x3f801000, 0x3c00, 0x3f80], // 1 + 2^-11: half tie → even (down)
    [0x3f803000, 0x3c02, 0x3f80], // 1 + 3·2^-11: half tie → even (up)
    [0x3f801008, 0x3c01, 0x3f80], // just above a half tie
    [0x38800000, 0x0400, 0x3880], // 2^-14, smallest normal half
    [0x33800000, 0x0001, 0x3380], // 2^-24, smallest subnormal half
    [0x33000000, 0x0000, 0x3300], // 2^-25: tie → 0
    [0x33c00000, 0x0002, 0x33c0], // 3·2^-25: tie → 2 (even)
    [0x33000100, 0x0001, 0x3300], // just above 2^-25
    [0x32800000, 0x0000, 0x3280], // 2^-26
    [0x387fda40, 0x03ff, 0x3880], // 6.1e-5: subnormal rounding to the largest subnormal
    [0x322bcc77, 0x0000, 0x322c], // 1e-8
    [0x3dcccccd, 0x2e66, 0x3dcd], // 0.1
    [0x3eaaaaab, 0x3555, 0x3eab], // 1/3
    [0x40490fdb, 0x4248, 0x4049], // pi
    [0x7f800000, 0x7c00, 0x7f80], // inf
    [0xff800000, 0xfc00, 0xff80], // -inf
    [0x3f808000, 0x3c04, 0x3f80], // 1 + 2^-8: bfloat16 tie → even (down)
    [0x3f818000, 0x3c0c, 0x3f82], // 1 + 3·2^-8: bfloat16 tie → even (up)
    [0x3f808008, 0x3c04, 0x3f81], // just above a bfloat16 tie
    [0x7f7fffff, 0x7c00, 0x7f80], // float32 max → inf in both
    [0x000116c2, 0x0000, 0x0001], // float32 subnormal 1e-40
    [0x80000001, 0x8000, 0x8000], // -1e-45
  ];

  it('rounds float32 to F16 and BF16 exactly as numpy/PyTorch do', () => {
    for (const [bits, half, bf] of table) {
      const v = f32(bits);
      expect(floatToF16Bits(v), `f16 of 0x${bits.toString(16)}`).toBe(half);
      expect(floatToBf16Bits(v), `bf16 of 0x${bits.toString(16)}`).toBe(bf);
    }
  });

  it('keeps NaN as NaN', () => {
    expect(Number.isNaN(f16BitsToFloat(floatToF16Bits(NaN)))).toBe(true);
    expect(Number.isNaN(bf16BitsToFloat(floatToBf16Bits(NaN)))).toBe(true);
  });

  it('decodes every half and bfloat16 bit pattern to a value that encodes back to itself', () => {
    const bad: string[] = [];
    for (let h = 0; h < 0x10000; h++) {
      const v = f16BitsToFloat(h);
      if (!Number.isNaN(v) && floatToF16Bits(v) !== h) bad.push(`f16 0x${h.toString(16)}`);
      const b = bf16BitsToFloat(h);
      if (!Number.isNaN(b) && floatToBf16Bits(b) !== h) bad.push(`bf16 0x${h.toString(16)}`);
    }
    expect(bad).toEqual([]);
    expect(f16BitsToFloat(0x3c00)).toBe(1);
    expect(f16BitsToFloat(0x0001)).toBe(2 ** -24);
    expect(f16BitsToFloat(0x7bff)).toBe(65504);
    expect(bf16BitsToFloat(0x3f80)).toBe(1);
  });
});

describe('serializeSafetensors / parseSafetensors', () => {
  const samples: Record<SafetensorsDtype, number[]> = {
    F64: [0.5, -1e10, 2 ** -30, 3],
    F32: [1.5, -0, 3.4028234663852886e38, -7.25],
    F16: [0.0999755859375, -2.5, 65504, 2 ** -24],
    BF16: [0.10009765625, -3, 1.0002555517425873e30, 0],
    I64: [-5, 0, 2 ** 31 - 1, -(2 ** 31)],
    I32: [7, -8, 2 ** 31 - 1, -(2 ** 31)],
    I16: [-32768, 32767, 1, 0],
    I8: [-128, 127, 0, 1],
    U8: [0, 255, 17, 1],
    BOOL: [1, 0, 1, 1],
  };

  it('round-trips every supported dtype', () => {
    const input: Record<string, RawTensorInput> = {};
    for (const d of SAFETENSORS_DTYPES) input[`t.${d}`] = { dtype: d, shape: [2, 2], data: samples[d] };
    input.scalar = { dtype: 'I64', shape: [], data: [42] };
    input.empty = { dtype: 'F32', shape: [0, 3], data: [] };
    const bytes = serializeSafetensors(input, { hello: 'world', json: '{"a": [1, 2]}' });
    const { tensors, metadata } = parseSafetensors(bytes);
    expect(metadata).toEqual({ hello: 'world', json: '{"a": [1, 2]}' });
    expect(tensors.size).toBe(SAFETENSORS_DTYPES.length + 2);
    for (const d of SAFETENSORS_DTYPES) {
      const t = tensors.get(`t.${d}`)!;
      expect(t.dtype).toBe(d);
      expect(t.shape).toEqual([2, 2]);
      expect([...t.data]).toEqual(samples[d]);
    }
    expect(tensors.get('t.F16')!.data).toBeInstanceOf(Float32Array);
    expect(tensors.get('t.BF16')!.data).toBeInstanceOf(Float32Array);
    expect(tensors.get('t.F64')!.data).toBeInstanceOf(Float32Array);
    expect(tensors.get('t.I64')!.data).toBeInstanceOf(Int32Array);
    expect(tensors.get('t.BOOL')!.data).toBeInstanceOf(Uint8Array);
    expect(tensors.get('scalar')).toEqual({ dtype: 'I64', shape: [], data: new Int32Array([42]) });
    expect(tensors.get('empty')).toEqual({ dtype: 'F32', shape: [0, 3], data: new Float32Array(0) });
  });

  it('rounds when writing F16/BF16 and narrows F64 to float32 on reading', () => {
    const v = [0.1, 1 / 3, 65520, 1 + 2 ** -11];
    const { tensors } = parseSafetensors(
      serializeSafetensors({
        h: { dtype: 'F16', shape: [4], data: v },
        b: { dtype: 'BF16', shape: [4], data: v },
        d: { dtype: 'F64', shape: [4], data: v },
      }),
    );
    expect([...tensors.get('h')!.data]).toEqual([0x2e66, 0x3555, 0x7c00, 0x3c00].map(f16BitsToFloat));
    expect([...tensors.get('b')!.data]).toEqual(v.map((x) => bf16BitsToFloat(floatToBf16Bits(x))));
    expect([...tensors.get('d')!.data]).toEqual([...Float32Array.from(v)]);
  });

  it('lays the file out like the reference writer: padded header, sorted keys, contiguous data by dtype then name', () => {
    // The reference writer's own test vector for an empty file, with and without metadata.
    expect([...serializeSafetensors({})]).toEqual([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    const withMeta = serializeSafetensors({}, { framework: 'pt' });
    expect(withMeta.length).toBe(48);
    expect(new TextDecoder().decode(withMeta.subarray(8))).toBe('{"__metadata__":{"framework":"pt"}}     ');

    const bytes = serializeSafetensors({
      b: { dtype: 'F32', shape: [1], data: [1] },
      a: { dtype: 'U8', shape: [3], data: [1, 2, 3] },
      c: { dtype: 'I64', shape: [], data: [0] },
      aa: { dtype: 'F32', shape: [2], data: [1, 2] },
    });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    expect(text.trimEnd()).toBe(
      '{"a":{"data_offsets":[20,23],"dtype":"U8","shape":[3]},' +
        '"aa":{"data_offsets":[8,16],"dtype":"F32","shape":[2]},' +
        '"b":{"data_offsets":[16,20],"dtype":"F32","shape":[1]},' +
        '"c":{"data_offsets":[0,8],"dtype":"I64","shape":[]}}',
    );
    expect(text.slice(text.trimEnd().length)).toMatch(/^ *$/);
    expect(bytes.length).toBe(8 + n + 23);
  });

  it('reads a file written by the reference Python writer (safetensors 0.8) with every dtype', () => {
    const { tensors, metadata } = parseSafetensors(fixture('dtypes_reference.safetensors'));
    expect(metadata).toEqual({ writer: 'safetensors 0.8 (python)', note: 'every dtype' });
    const expected: Record<string, [SafetensorsDtype, number[], number[]]> = {
      f64: ['F64', [2, 2], [...Float32Array.from([0.1, -10000000000.0, 9.313225746154785e-10, 3.0])]],
      f32: ['F32', [3], [1.5, -0, 3.4028234663852886e38]],
      f16: ['F16', [4], [0.0999755859375, -2.5, 65504.0, 5.960464477539063e-8]],
      bf16: ['BF16', [3], [0.10009765625, -3.0, 1.0002555517425873e30]],
      i64: ['I64', [4], [-5, 0, 2147483647, -2147483648]],
      i32: ['I32', [1, 2], [7, -8]],
      i16: ['I16', [3], [-32768, 32767, 1]],
      i8: ['I8', [3], [-128, 127, 0]],
      u8: ['U8', [3], [0, 255, 17]],
      bool: ['BOOL', [3], [1, 0, 1]],
      scalar: ['I64', [], [42]],
      empty: ['F32', [0, 3], []],
    };
    expect([...tensors.keys()].sort()).toEqual(Object.keys(expected).sort());
    for (const [k, [dtype, shape, values]] of Object.entries(expected)) {
      const t = tensors.get(k)!;
      expect(t.dtype, k).toBe(dtype);
      expect(t.shape, k).toEqual(shape);
      expect([...t.data], k).toEqual(values);
    }
  });

  it('writes the same data bytes as the reference Python writer', () => {
    const ref = fixture('dtypes_reference.safetensors');
    const { tensors, metadata } = parseSafetensors(ref);
    // F64 was narrowed on reading; give the writer the original doubles.
    const input = new Map<string, RawTensorInput>(tensors);
    input.set('f64', { dtype: 'F64', shape: [2, 2], data: [0.1, -10000000000.0, 9.313225746154785e-10, 3.0] });
    const ours = serializeSafetensors(input, metadata);
    const dataStart = (b: Uint8Array) => 8 + Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
    expect(Buffer.from(ours.subarray(dataStart(ours))).equals(Buffer.from(ref.subarray(dataStart(ref))))).toBe(true);
    const header = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b.subarray(8, dataStart(b))));
    expect(header(ours)).toEqual(header(ref));
  });

  it('reads entries at unaligned offsets and from an unaligned view', () => {
    const bytes = serializeSafetensors({
      a: { dtype: 'U8', shape: [1], data: [9] },
      b: { dtype: 'F32', shape: [2], data: [1.25, -2] },
    });
    // Rewrite the header so the F32 entry starts at byte 1 of the data section.
    const data = new Uint8Array(9);
    data[0] = 9;
    new DataView(data.buffer).setFloat32(1, 1.25, true);
    new DataView(data.buffer).setFloat32(5, -2, true);
    const file = rawFile(
      { a: { dtype: 'U8', shape: [1], data_offsets: [0, 1] }, b: { dtype: 'F32', shape: [2], data_offsets: [1, 9] }, c: { dtype: 'I64', shape: [0], data_offsets: [9, 9] } },
      data,
    );
    const parsed = parseSafetensors(file);
    expect([...parsed.tensors.get('b')!.data]).toEqual([1.25, -2]);
    expect(parsed.tensors.get('c')!.data).toEqual(new Int32Array(0));
    // The whole file at an odd byte offset inside a bigger buffer.
    const big = new Uint8Array(bytes.length + 3);
    big.set(bytes, 3);
    const view = big.subarray(3);
    expect([...parseSafetensors(view).tensors.get('b')!.data]).toEqual([1.25, -2]);
    // A Node Buffer (small ones share a pooled ArrayBuffer, and Buffer#slice does not copy).
    const pooled = Buffer.from(bytes);
    expect(pooled.byteLength).toBeLessThan(pooled.buffer.byteLength);
    const fromBuffer = parseSafetensors(pooled).tensors;
    expect(fromBuffer.get('b')!.data).toEqual(new Float32Array([1.25, -2]));
    expect(fromBuffer.get('b')!.data.buffer.byteLength).toBe(8);
    expect(fromBuffer.get('a')!.data).toEqual(new Uint8Array([9]));
    // Decoded data is a copy: changing the file afterwards changes nothing.
    const t = parseSafetensors(view).tensors.get('b')!;
    big.fill(0);
    expect([...t.data]).toEqual([1.25, -2]);
  });

  it('validates what it writes', () => {
    expectFormatError(() => serializeSafetensors({ x: { dtype: 'F32', shape: [2, 2], data: [1, 2, 3] } }), "'x'", '4 elements', 'data has 3');
    expectFormatError(() => serializeSafetensors({ x: { dtype: 'I32', shape: [1], data: [1.5] } }), "'x'", 'I32', '1.5');
    expectFormatError(() => serializeSafetensors({ x: { dtype: 'U8', shape: [1], data: [256] } }), 'U8', '256');
    expectFormatError(() => serializeSafetensors({ x: { dtype: 'I8', shape: [1], data: [-129] } }), 'I8', '-129');
    expectFormatError(() => serializeSafetensors({ x: { dtype: 'F8_E4M3' as SafetensorsDtype, shape: [1], data: [1] } }), 'F8_E4M3', 'supported');
    expectFormatError(() => serializeSafetensors({ __metadata__: { dtype: 'F32', shape: [1], data: [1] } }), '__metadata__');
    expectFormatError(() => serializeSafetensors({}, { n: 1 as unknown as string }), "'n'", 'number');
    expectFormatError(() => serializeSafetensors({ x: { dtype: 'F32', shape: [-1], data: [] } }), 'invalid shape');
  });
});

describe('corrupt files', () => {
  const good = () =>
    serializeSafetensors(
      { 'layer.weight': { dtype: 'F32', shape: [2, 3], data: [1, 2, 3, 4, 5, 6] }, 'layer.bias': { dtype: 'F32', shape: [3], data: [7, 8, 9] } },
      { k: 'v' },
    );

  it('rejects a file shorter than the length field', () => {
    expectFormatError(() => parseSafetensors(new Uint8Array(5)), '5 bytes', 'at least 8');
  });

  it('rejects a header length larger than the file, naming both numbers', () => {
    const f = rawFile({}, new Uint8Array(0), 1000);
    expectFormatError(() => parseSafetensors(f), 'header length 1000', `${f.length - 8} bytes`, `file is ${f.length} bytes`);
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 2n ** 63n, true);
    expectFormatError(() => parseSafetensors(huge), `header length ${2n ** 63n}`, '8 bytes');
  });

  it('rejects truncated data, naming the entry', () => {
    const f = good();
    expectFormatError(() => parseSafetensors(f.subarray(0, f.length - 4)), "'layer.weight'", 'data section has only 32 bytes', 'truncated');
  });

  it('rejects bad JSON, a non-object header and invalid UTF-8', () => {
    expectFormatError(() => parseSafetensors(rawFile('{"a": {"dtype": "F32",')), 'not valid JSON');
    expectFormatError(() => parseSafetensors(rawFile('[1, 2]')), 'JSON object');
    const bad = rawFile('{"a":1}');
    bad[9] = 0xff;
    expectFormatError(() => parseSafetensors(bad), 'UTF-8');
  });

  it('rejects an unknown dtype, naming it and the supported ones', () => {
    const f = rawFile({ x: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1));
    expectFormatError(() => parseSafetensors(f), "'F8_E4M3'", "'x'", 'F32, F16, BF16', 'BOOL');
    expectFormatError(() => parseSafetensors(rawFile({ x: { shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4))), "'x'", 'no dtype');
  });

  it('rejects overlapping offsets, naming both keys', () => {
    const f = rawFile(
      { first: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, second: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
      new Uint8Array(12),
    );
    expectFormatError(() => parseSafetensors(f), "'first'", "'second'", 'overlap');
    // An entry nested inside a longer one is an overlap too.
    const g = rawFile(
      { outer: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, inner: { dtype: 'U8', shape: [2], data_offsets: [12, 14] } },
      new Uint8Array(16),
    );
    expectFormatError(() => parseSafetensors(g), "'outer'", "'inner'");
  });

  it('rejects offsets that do not match the shape, and malformed shapes or offsets', () => {
    const f = rawFile({ w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, new Uint8Array(16));
    expectFormatError(() => parseSafetensors(f), "'w'", '12 bytes', 'F32 [2, 2] needs 16');
    expectFormatError(() => parseSafetensors(rawFile({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } })), "'w'", 'shape');
    expectFormatError(() => parseSafetensors(rawFile({ w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 0] } })), "'w'", 'shape');
    expectFormatError(() => parseSafetensors(rawFile({ w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, new Uint8Array(4))), 'data_offsets');
    expectFormatError(() => parseSafetensors(rawFile({ w: { dtype: 'F32', shape: [1] } }, new Uint8Array(4))), 'data_offsets');
    expectFormatError(() => parseSafetensors(rawFile({ w: 3 })), "'w'", 'object');
  });

  it('rejects trailing bytes after the data section, and gaps between entries, as the reference reader does', () => {
    const f = good();
    expect(parseSafetensors(f).tensors.size).toBe(2);
    const longer = new Uint8Array(f.length + 3);
    longer.set(f);
    expectFormatError(() => parseSafetensors(longer), '3 trailing bytes after the data section', 'data byte 36 of 39');
    // The header says nothing about the data at all.
    expectFormatError(() => parseSafetensors(rawFile({}, new Uint8Array(8))), '8 trailing bytes');
    const gap = rawFile({ a: { dtype: 'U8', shape: [1], data_offsets: [0, 1] }, b: { dtype: 'U8', shape: [1], data_offsets: [2, 3] } }, new Uint8Array(3));
    expectFormatError(() => parseSafetensors(gap), "data bytes [1, 2) before entry 'b' belong to no entry");
  });

  it('names a PyTorch checkpoint passed as safetensors (by its magic bytes), and a header that is not a JSON object', () => {
    const zip = new Uint8Array([0x50, 0x4b, 0x03, 0x04, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expectFormatError(() => parseSafetensors(zip), 'a PyTorch checkpoint (zip), not safetensors', 'vit convert', 'loadPthFile');
    const pickle = new Uint8Array([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
    expectFormatError(() => parseSafetensors(pickle), 'a PyTorch checkpoint (legacy pickle), not safetensors');
    expectFormatError(() => parseSafetensors(new Uint8Array([0x50, 0x4b, 0x03, 0x04])), 'PyTorch checkpoint (zip)');
    expectFormatError(() => parseSafetensors(rawFile(' {}')), "must be a JSON object starting with '{', found ' '");
  });

  it('rejects non-string metadata', () => {
    expectFormatError(() => parseSafetensors(rawFile({ __metadata__: { epoch: 3 } })), "'epoch'", 'number', 'strings');
    expectFormatError(() => parseSafetensors(rawFile({ __metadata__: { x: null } })), "'x'", 'null');
    expectFormatError(() => parseSafetensors(rawFile({ __metadata__: ['a'] })), '__metadata__');
  });

  it('rejects I64 values outside int32, naming the key', () => {
    const data = new Uint8Array(16);
    new DataView(data.buffer).setBigInt64(8, 2n ** 31n, true);
    const f = rawFile({ idx: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, data);
    expectFormatError(() => parseSafetensors(f), "'idx'", '2147483648', 'index 1', 'int32');
    new DataView(data.buffer).setBigInt64(8, -(2n ** 31n) - 1n, true);
    expectFormatError(() => parseSafetensors(rawFile({ idx: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, data)), '-2147483649');
  });
});

describe('reference golden files', () => {
  it('reads the CaiT golden: shapes, values and metadata strings', () => {
    const bytes = fixture('cait_p8_d2.safetensors');
    const { tensors, metadata } = parseSafetensors(bytes);
    const qkv = tensors.get('blocks.0.attn.qkv.weight')!;
    expect(qkv.dtype).toBe('F32');
    expect(qkv.shape).toEqual([96, 32]);
    expect(qkv.data[0]).toBe(Math.fround(-0.013675498776137829));
    expect(qkv.data[qkv.data.length - 1]).toBe(Math.fround(-0.10351988673210144));
    expect(tensors.get('golden.input')!.shape).toEqual([2, 3, 32, 32]);
    expect(tensors.get('golden.logits')!.shape).toEqual([2, 10]);
    expect(tensors.get('cls_token')!.shape).toEqual([1, 1, 32]);
    expect(tensors.get('pos_embed')!.shape).toEqual([1, 16, 32]);
    expect(metadata.arch).toBe('cait');
    expect(metadata.case).toBe('p8_d2');
    const config = JSON.parse(metadata.config!);
    expect(config).toMatchObject({ img_size: 32, patch_size: 8, embed_dim: 32, depth: 2, num_heads: 4 });
    expect(Array.isArray(JSON.parse(metadata.state_dict_order!))).toBe(true);
  });

  it('reads the I64 num_batches_tracked of the Conv2Former golden', () => {
    const { tensors, metadata } = parseSafetensors(fixture('conv2former_k11_d16.safetensors'));
    const nbt = tensors.get('downsample_layers.0.2.num_batches_tracked')!;
    expect(nbt).toEqual({ dtype: 'I64', shape: [], data: new Int32Array([640]) });
    expect(tensors.get('downsample_layers.0.5.num_batches_tracked')!.data).toEqual(new Int32Array([585]));
    expect(tensors.get('stages.0.0.attn.att.2.weight')!.shape).toEqual([16, 1, 11, 11]);
    expect(tensors.get('downsample_layers.0.0.weight')!.shape).toEqual([8, 3, 3, 3]);
    expect(tensors.get('pred.weight')!.shape).toEqual([10, 1280]);
    expect(JSON.parse(metadata.config!).kernel_size).toBe(11);
    const t = rawToTensor(nbt);
    expect(t.dtype).toBe('int32');
    expect(t.shape).toEqual([]);
    expect(t.dataSync()[0]).toBe(640);
    t.dispose();
  });

  it('re-serialises the golden files byte for byte', () => {
    for (const name of ['cait_p8_d2.safetensors', 'conv2former_k11_d16.safetensors']) {
      const bytes = fixture(name);
      const { tensors, metadata } = parseSafetensors(bytes);
      const again = serializeSafetensors(tensors, metadata);
      expect(Buffer.from(again).equals(Buffer.from(bytes)), name).toBe(true);
    }
  });
});

describe('rawToTensor / tensorToRaw', () => {
  it('maps file dtypes to float32, int32 and bool tensors', () => {
    const cases: Array<[SafetensorsDtype, number[], tf.DataType]> = [
      ['F32', [1.5, -2], 'float32'],
      ['F16', [0.5, 2], 'float32'],
      ['BF16', [0.5, 2], 'float32'],
      ['F64', [0.25, 8], 'float32'],
      ['I64', [-3, 4], 'int32'],
      ['I32', [-3, 4], 'int32'],
      ['I16', [-3, 4], 'int32'],
      ['I8', [-3, 4], 'int32'],
      ['U8', [3, 250], 'int32'],
      ['BOOL', [1, 0], 'bool'],
    ];
    for (const [dtype, values, tfDtype] of cases) {
      const parsed = parseSafetensors(serializeSafetensors({ x: { dtype, shape: [2, 1], data: values } })).tensors.get('x')!;
      const t = rawToTensor(parsed);
      expect(t.dtype, dtype).toBe(tfDtype);
      expect(t.shape).toEqual([2, 1]);
      expect([...t.dataSync()], dtype).toEqual(values);
      t.dispose();
    }
  });

  it('reads tensors back out, by default float32 → F32, int32 → I64, bool → BOOL', async () => {
    const a = tf.tensor([[1.5, 2]]);
    const b = tf.tensor([3, -4], [2], 'int32');
    const c = tf.tensor([true, false], [2], 'bool');
    expect(tensorToRaw(a)).toEqual({ dtype: 'F32', shape: [1, 2], data: new Float32Array([1.5, 2]) });
    expect(tensorToRaw(b).dtype).toBe('I64');
    expect(tensorToRaw(c)).toEqual({ dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) });
    expect((await tensorToRawAsync(a, 'F16')).dtype).toBe('F16');
    const { tensors } = parseSafetensors(serializeSafetensors({ a: tensorToRaw(a, 'BF16'), b: await tensorToRawAsync(b), c: tensorToRaw(c) }));
    expect(tensors.get('a')).toEqual({ dtype: 'BF16', shape: [1, 2], data: new Float32Array([1.5, 2]) });
    expect(tensors.get('b')).toEqual({ dtype: 'I64', shape: [2], data: new Int32Array([3, -4]) });
    tf.dispose([a, b, c]);
    expect(() => tensorToRaw(a)).toThrow(FormatError);
    const s = tf.tensor(['x']);
    expect(() => tensorToRaw(s)).toThrow(/string/);
    s.dispose();
  });
});
