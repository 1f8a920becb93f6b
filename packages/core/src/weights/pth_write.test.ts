import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FormatError } from '../errors.js';
import { setTestBackend } from '../testing/backend.js';
import { PyDict } from './pickle.js';
import { PthTensor, loadPth, readPth } from './pth.js';
import { serializePth } from './pth_write.js';
import type { RawTensorInput } from './safetensors.js';
import { ZipArchive } from './zip.js';

const EXTRA = fileURLToPath(new URL('../../test/fixtures/pth/extra/', import.meta.url));

let baseline = 0;
beforeAll(async () => {
  await setTestBackend();
  baseline = tf.memory().numTensors;
});
afterAll(() => {
  expect(tf.memory().numTensors).toBe(baseline);
});

describe('serializePth: torch.save state dicts', () => {
  const tensors = new Map<string, RawTensorInput>([
    ['f32', { dtype: 'F32', shape: [2, 3], data: [1.5, -2, 0, -0, 3.25, 1e-30] }],
    ['f16', { dtype: 'F16', shape: [3], data: [0.5, -65504, 6e-8] }],
    ['bf16', { dtype: 'BF16', shape: [2], data: [1, -3.5] }],
    ['f64', { dtype: 'F64', shape: [1], data: [0.1] }],
    ['layer.0.bn.num_batches_tracked', { dtype: 'I64', shape: [], data: [123456] }],
    ['i32', { dtype: 'I32', shape: [2], data: [-(2 ** 31), 2 ** 31 - 1] }],
    ['i16', { dtype: 'I16', shape: [1], data: [-300] }],
    ['i8', { dtype: 'I8', shape: [1], data: [-7] }],
    ['u8', { dtype: 'U8', shape: [1], data: [250] }],
    ['bool', { dtype: 'BOOL', shape: [2], data: [1, 0] }],
    ['empty', { dtype: 'F32', shape: [0, 4], data: [] }],
    // Sizes that need BININT2 and BININT in the pickle.
    ['long', { dtype: 'U8', shape: [1, 70000], data: new Uint8Array(70000).map((_, i) => i & 0xff) }],
    ['rank5', { dtype: 'F32', shape: [1, 1, 1, 2, 1], data: [7, 8] }],
  ]);

  it('our reader reads back every dtype, shape and key in order; records are stored and 64-byte aligned', () => {
    const bytes = serializePth(tensors);
    const zip = new ZipArchive(bytes);
    expect([...zip.entries.keys()].slice(0, 3)).toEqual(['archive/data.pkl', 'archive/byteorder', 'archive/data/0']);
    expect(new TextDecoder().decode(zip.read('archive/version'))).toBe('3\n');
    expect(new TextDecoder().decode(zip.read('archive/byteorder'))).toBe('little');
    for (const [name, e] of zip.entries) {
      expect(e.method, name).toBe(0);
      if (name.includes('/data/')) expect(zip.read(name).byteOffset % 64, name).toBe(0);
    }
    const { root, format } = readPth(bytes);
    expect(format).toBe('zip');
    expect(root).toBeInstanceOf(PyDict);
    const sd = root as PyDict;
    expect(sd.className).toBe('collections.OrderedDict');
    expect([...sd.keys()]).toEqual([...tensors.keys()]);
    for (const [k, want] of tensors) {
      const t = sd.get(k) as PthTensor;
      expect(t.dtype, k).toBe(want.dtype);
      expect(t.shape, k).toEqual(want.shape);
      expect(t.requiresGrad).toBe(false);
      const got = Array.from(t.toRaw(k).data);
      const expected = Array.from(want.data, (v) =>
        want.dtype === 'F16' ? (v === 6e-8 ? 2 ** -24 * 1 : v) : want.dtype === 'F64' || want.dtype === 'F32' ? Math.fround(v) : want.dtype === 'BOOL' ? (v ? 1 : 0) : v,
      );
      expect(got, k).toEqual(expected);
    }
    const loaded = loadPth(bytes);
    expect(loaded.dtypes.get('layer.0.bn.num_batches_tracked')).toBe('I64');
    expect(Array.from(loaded.tensors.get('layer.0.bn.num_batches_tracked')!.dataSync())).toEqual([123456]);
    for (const t of loaded.tensors.values()) t.dispose();
  });

  it("writes a torch-written state dict's storages back byte for byte (torch 2.13's dtypes.pth)", () => {
    const { root } = readPth(readFileSync(`${EXTRA}dtypes.pth`));
    const orig = new Map<string, PthTensor>();
    // Every tensor but float64 (decoded to float32, so it cannot come back bit for bit).
    for (const [k, v] of root as PyDict) if (typeof k === 'string' && v instanceof PthTensor && v.dtype !== 'F64') orig.set(k, v);
    expect(new Set([...orig.values()].map((t) => t.dtype)).size).toBeGreaterThanOrEqual(9);
    const raws = new Map([...orig].map(([k, t]) => [k, t.toRaw(k)]));
    const back = readPth(serializePth(raws)).root as PyDict;
    expect(back.size).toBe(orig.size);
    for (const [k, t] of orig) {
      const b = back.get(k) as PthTensor;
      expect(b.dtype, k).toBe(t.dtype);
      expect(b.shape, k).toEqual(t.shape);
      expect(Buffer.from(b.bytes()).equals(Buffer.from(t.bytes())), k).toBe(true);
    }
  });

  it('names only the globals a weights-only loader allows', () => {
    const seen = new Set<string>();
    const pkl = new ZipArchive(serializePth(tensors)).read('archive/data.pkl');
    const text = new TextDecoder('latin1').decode(pkl);
    for (const m of text.matchAll(/c(torch[\w.]*|collections)\n(\w+)\n/g)) seen.add(`${m[1]}.${m[2]}`);
    expect([...seen].sort()).toEqual(
      ['collections.OrderedDict', 'torch._utils._rebuild_tensor_v2', 'torch.BFloat16Storage', 'torch.BoolStorage', 'torch.ByteStorage', 'torch.CharStorage', 'torch.DoubleStorage', 'torch.FloatStorage', 'torch.HalfStorage', 'torch.IntStorage', 'torch.LongStorage', 'torch.ShortStorage'].sort(),
    );
  });

  it('an empty state dict, and refusals', () => {
    const empty = readPth(serializePth({})).root as PyDict;
    expect(empty.size).toBe(0);
    expect(() => serializePth({ x: { dtype: 'F32', shape: [2], data: [1] } })).toThrow(FormatError);
    expect(() => serializePth({ x: { dtype: 'U8', shape: [1], data: [256] } })).toThrow(/'x' as U8/);
    expect(() => serializePth({}, { archiveName: '../x' })).toThrow(/archive name/);
  });
});
