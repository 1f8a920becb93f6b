import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FormatError } from '../errors.js';
import { setTestBackend } from '../testing/backend.js';
import { readSafetensorsFile } from './io.js';
import { PyDict, PyObject } from './pickle.js';
import { PthTensor, findStateDict, loadPth, loadPthFile, looksLikePth, readPth, type LoadedPth } from './pth.js';
import { serializePth } from './pth_write.js';
import { crc32, ZipArchive } from './zip.js';

const FIX = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));
const PTH = `${FIX}pth/`;
const CANARY = '/tmp/pwned_by_pth';

/** Same bits: F32 compared as uint32 words, I64 (narrowed to int32 by both readers) as int32. */
function bits(a: ArrayLike<number>): Uint32Array | Int32Array {
  if (a instanceof Float32Array) return new Uint32Array(a.buffer, a.byteOffset, a.length);
  return Int32Array.from(a);
}

function disposeAll(l: LoadedPth): void {
  for (const t of l.tensors.values()) t.dispose();
}

let baseline = 0;
beforeAll(async () => {
  await setTestBackend();
  rmSync(CANARY, { force: true });
  baseline = tf.memory().numTensors;
});
afterAll(() => {
  expect(tf.memory().numTensors).toBe(baseline);
});

describe('loadPthFile: the shared torch 1.13 fixtures equal their safetensors goldens bit for bit', () => {
  const cases: Array<{ file: string; golden: string; key: string | null; prefix: string | null; format: 'zip' | 'legacy'; extra?: Record<string, unknown> }> = [
    { file: 'cait_p8_d2.pth', golden: 'cait_p8_d2', key: null, prefix: null, format: 'zip' },
    { file: 'cait_p8_d2_views.pth', golden: 'cait_p8_d2', key: null, prefix: null, format: 'zip' },
    { file: 'cait_p8_d2_proto4.pth', golden: 'cait_p8_d2', key: null, prefix: null, format: 'zip' },
    { file: 'cait_p8_d2_cuda.pth', golden: 'cait_p8_d2', key: null, prefix: null, format: 'zip' },
    { file: 'cait_p8_d2_wrapped_module.pth', golden: 'cait_p8_d2', key: 'model', prefix: 'module.', format: 'zip' },
    { file: 'conv2former_k11_d16_legacy.pth', golden: 'conv2former_k11_d16', key: null, prefix: null, format: 'legacy' },
    {
      file: 'conv2former_k11_d16_wrapped.pth',
      golden: 'conv2former_k11_d16',
      key: 'model',
      prefix: null,
      format: 'zip',
      extra: { epoch: 7, args: { lr: 0.001, name: 'x' } },
    },
  ];
  it.each(cases)('$file', async (c) => {
    const golden = await readSafetensorsFile(`${FIX}${c.golden}.safetensors`);
    const order = JSON.parse(golden.metadata.state_dict_order!) as string[];
    const loaded = await loadPthFile(`${PTH}${c.file}`);
    try {
      expect(loaded.format).toBe(c.format);
      expect(loaded.stateDictKey).toBe(c.key);
      expect(loaded.strippedPrefix).toBe(c.prefix);
      expect(loaded.skippedKeys).toEqual([]);
      expect(loaded.extra).toEqual(c.extra ?? {});
      // Exactly the golden's keys, in the official state_dict order.
      expect([...loaded.tensors.keys()]).toEqual(order);
      for (const key of order) {
        const ref = golden.tensors.get(key)!;
        const t = loaded.tensors.get(key)!;
        expect(loaded.dtypes.get(key), key).toBe(ref.dtype);
        expect(t.shape, key).toEqual(ref.shape);
        expect(bits(t.dataSync() as Float32Array | Int32Array), key).toEqual(bits(ref.data));
      }
    } finally {
      disposeAll(loaded);
    }
  });

  it('cait_p8_d2_views.pth: views share storages, with offsets and strides', () => {
    const { root } = readPth(readFileSync(`${PTH}cait_p8_d2_views.pth`));
    const sd = root as PyDict;
    const t = (k: string) => sd.get(k) as PthTensor;
    expect(t('blocks.0.attn.qkv.weight').stride).toEqual([1, 96]);
    expect(t('norm.weight').storage).toBe(t('norm.bias').storage);
    expect([t('norm.weight').storageOffset, t('norm.bias').storageOffset]).toEqual([0, 1]);
    expect(t('blocks.0.gamma_1').storage).toBe(t('blocks.0.attn.qkv.bias').storage);
    expect(t('blocks.0.gamma_2').storageOffset).toBe(160);
    // The OrderedDict's BUILD state (`_metadata`) is kept as attributes.
    expect(sd.attributes).toBeInstanceOf(PyDict);
    expect((sd.attributes as PyDict).has('_metadata')).toBe(true);
  });
});

describe('loadPthFile refuses the malicious and broken fixtures', () => {
  const bad: Array<[string, RegExp]> = [
    ['exec_reduce.pth', /refusing global 'os\.system'/],
    ['exec_stack_global.pth', /refusing global 'posix\.system'/],
    ['exec_legacy.pth', /refusing global 'os\.system'/],
    ['unknown_global.pth', /refusing global 'collections\.Counter'/],
    ['unknown_module.pth', /refusing global 'vit_fixture_payload\.Payload'/],
    ['namespace_args.pth', /refusing global 'argparse\.Namespace'.*lenient/],
    ['truncated.pth', /no end-of-central-directory record/],
    ['truncated_legacy.pth', /storage '\d+' needs bytes \[\d+, \d+\) but the file ends at 323531 \(truncated file\?\)/],
    ['not_a_zip.pth', /not a PyTorch checkpoint: neither a zip archive nor a torch\.save pickle/],
    ['bad_storage_size.pth', /storage '0' holds 1000 F32 elements \(4000 bytes\) but its record '[^']*data\/0' has 400 bytes/],
    ['bad_view_bounds.pth', /size \(10, 10\), stride \(10, 1\), offset 10 on storage '0' \(100 F32 elements\) reaches element 109, past the end/],
  ];
  it.each(bad)('%s', async (file, message) => {
    const before = tf.memory().numTensors;
    const path = `${PTH}bad/${file}`;
    const err = await loadPthFile(path).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FormatError);
    expect((err as Error).message.startsWith(`${path}: `)).toBe(true);
    expect((err as Error).message).toMatch(message);
    expect(tf.memory().numTensors).toBe(before);
    expect(existsSync(CANARY)).toBe(false);
  });

  it('lenient mode turns unknown objects into inert placeholders and still executes nothing', async () => {
    const ns = await loadPthFile(`${PTH}bad/namespace_args.pth`, { unknownGlobals: 'placeholder' });
    try {
      expect(ns.stateDictKey).toBe('model');
      expect(ns.tensors.size).toBeGreaterThan(0);
      expect(ns.placeholders).toEqual(['argparse.Namespace']);
      expect(ns.extra.epoch).toBe(7);
      expect(ns.extra.args).toMatchObject({ __placeholder__: 'argparse.Namespace', state: { lr: 0.001, name: 'x' } });
    } finally {
      disposeAll(ns);
    }
    for (const file of ['exec_reduce.pth', 'exec_stack_global.pth', 'exec_legacy.pth']) {
      const { root, placeholders } = readPth(readFileSync(`${PTH}bad/${file}`), { unknownGlobals: 'placeholder' });
      expect(placeholders[0]).toMatch(/^(os|posix)\.system$/);
      const x = (root as PyDict).get('x') ?? [...(root as PyDict).values()].find((v) => v instanceof PyObject);
      expect(x).toBeInstanceOf(PyObject);
      expect((x as PyObject).args).toEqual(['touch /tmp/pwned_by_pth']);
    }
    expect(existsSync(CANARY)).toBe(false);
  });
});

interface Expected {
  dtype: string;
  shape: number[];
  values: number[];
}
const EXTRA = `${PTH}extra/`;
const expectedAll = JSON.parse(readFileSync(`${EXTRA}expected.json`, 'utf8')) as Record<string, { entries?: Record<string, Expected>; model?: Record<string, Expected>; model_ema?: Record<string, Expected> }>;

function expectEntries(loaded: LoadedPth, entries: Record<string, Expected>): void {
  expect([...loaded.tensors.keys()]).toEqual(Object.keys(entries));
  for (const [key, e] of Object.entries(entries)) {
    const t = loaded.tensors.get(key)!;
    expect(loaded.dtypes.get(key), key).toBe(e.dtype);
    expect(t.shape, key).toEqual(e.shape);
    expect(t.dtype, key).toBe(e.dtype === 'BOOL' ? 'bool' : e.dtype.startsWith('F') || e.dtype === 'BF16' ? 'float32' : 'int32');
    // F64 is rounded to float32 (TF.js has no float64); every other value is exact.
    const want = e.dtype === 'F64' ? e.values.map(Math.fround) : e.values;
    expect(Array.from(t.dataSync()), key).toEqual(want);
  }
}

describe('loadPth: every dtype, container variant and pickle protocol (fixtures made by torch 2.13, see extra/make_extra.py)', () => {
  const files = ['dtypes.pth', 'dtypes_legacy.pth', 'dtypes_proto1.pth', 'dtypes_proto5.pth', 'dtypes_deflated.pth', 'dtypes_zip64.pth', 'dtypes_bigendian.pth', 'parameters.pth'];
  it.each(files)('%s', async (file) => {
    const loaded = await loadPthFile(`${EXTRA}${file}`);
    try {
      expect(loaded.format).toBe(file.includes('legacy') ? 'legacy' : 'zip');
      expectEntries(loaded, expectedAll[file]!.entries!);
    } finally {
      disposeAll(loaded);
    }
  });

  it('reads the byte order and shares storages between views', () => {
    expect(readPth(readFileSync(`${EXTRA}dtypes_bigendian.pth`)).byteOrder).toBe('big');
    const { root, byteOrder } = readPth(readFileSync(`${EXTRA}dtypes.pth`));
    expect(byteOrder).toBe('little');
    const sd = root as PyDict;
    const a = sd.get('shared_a') as PthTensor;
    const b = sd.get('shared_b') as PthTensor;
    expect(a.storage).toBe(b.storage);
    expect(b.storageOffset).toBe(2);
    expect((sd.get('expanded') as PthTensor).stride).toEqual([1, 0]);
    expect((sd.get('count') as PthTensor).shape).toEqual([]);
  });

  it('marks nn.Parameter entries (keep_vars=True state dicts)', () => {
    const sd = readPth(readFileSync(`${EXTRA}parameters.pth`)).root as PyDict;
    expect((sd.get('weight') as PthTensor).requiresGrad).toBe(true);
  });

  it('inflating needs a function outside Node; loadPth takes one', () => {
    const bytes = readFileSync(`${EXTRA}dtypes_deflated.pth`);
    expect(() => readPth(bytes)).toThrow(/deflated and no inflate function/);
    const loaded = loadPth(bytes, { inflate: (d, max) => inflateRawSync(d, { maxOutputLength: Math.max(1, max) }) });
    expect(loaded.tensors.size).toBe(Object.keys(expectedAll['dtypes_deflated.pth']!.entries!).length);
    disposeAll(loaded);
  });

  it('finds the state dict of a training checkpoint as timm does, and describes the rest', async () => {
    const file = `${EXTRA}train_checkpoint.pth`;
    const exp = expectedAll['train_checkpoint.pth']!;
    const ema = await loadPthFile(file);
    try {
      expect(ema.stateDictKey).toBe('model_ema');
      expectEntries(ema, exp.model_ema!);
      expect(ema.extra).toMatchObject({
        epoch: 3,
        best_acc1: 0.5,
        args: { lr: 0.001, sched: 'cosine' },
        shape: [2, 3],
        tag: '<bytes 2>',
        optimizer: { state: { '0': { step: '<tensor F32 []>', exp_avg: '<tensor F32 [2, 3]>' } }, param_groups: [{ lr: 0.001, params: [0, 1] }] },
      });
      expect(Object.keys(ema.extra)).toContain('model');
    } finally {
      disposeAll(ema);
    }
    const model = await loadPthFile(file, { useEma: false });
    try {
      expect(model.stateDictKey).toBe('model');
      expectEntries(model, exp.model!);
    } finally {
      disposeAll(model);
    }
    await expect(loadPthFile(file, { key: 'nope' })).rejects.toThrow(/has no entry 'nope'; top-level entries: model, model_ema, optimizer, epoch/);
    await expect(loadPthFile(file, { key: 'args' })).rejects.toThrow(
      /entry 'args' is not a state dict of tensors \(it holds: dict of 2 entries\); top-level entries: model \(collections\.OrderedDict of 2 tensors\), model_ema/,
    );
    await expect(loadPthFile(file, { key: 'epoch' })).rejects.toThrow(/entry 'epoch' is not a state dict of tensors \(it holds: int\)/);
  });

  it('stripPrefix: false keeps the module. prefix; a given prefix is removed', async () => {
    const kept = await loadPthFile(`${PTH}cait_p8_d2_wrapped_module.pth`, { stripPrefix: false });
    try {
      expect(kept.strippedPrefix).toBeNull();
      expect([...kept.tensors.keys()].every((k) => k.startsWith('module.'))).toBe(true);
    } finally {
      disposeAll(kept);
    }
    const sd = findStateDict(readPth(readFileSync(`${EXTRA}train_checkpoint.pth`)).root, { useEma: false });
    expect(sd.key).toBe('model');
    expect([...sd.dict.keys()]).toEqual(['w', 'b']);
  });

  it('a tensor outside int32 is an error naming it, and nothing stays allocated', () => {
    // dtypes.pth's i64 holds int32 extremes; patch one stored int64 to 2^31 (CRC off: the patch breaks it).
    const bytes = new Uint8Array(readFileSync(`${EXTRA}dtypes.pth`));
    const zip = new ZipArchive(bytes);
    const rec = zip.read('dtypes/data/4');
    const at = rec.byteOffset + 16; // element 2 = 2^31 - 1
    new DataView(bytes.buffer).setBigInt64(at, 2n ** 31n, true);
    const before = tf.memory().numTensors;
    expect(() => loadPth(bytes, { verifyCrc: false })).toThrow(/tensor 'i64': 'i64' \(int64\) holds 2147483648 at index 2, outside the int32 range/);
    expect(() => loadPth(bytes)).toThrow(/'dtypes\/data\/4' fails its CRC-32 check/);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('robustness', () => {
  it('crc32 matches the standard check value', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });

  it('sniffs torch.save files', () => {
    expect(looksLikePth(readFileSync(`${PTH}cait_p8_d2.pth`))).toBe(true);
    expect(looksLikePth(readFileSync(`${EXTRA}dtypes_legacy.pth`))).toBe(true);
    expect(looksLikePth(readFileSync(`${FIX}cait_p8_d2.safetensors`))).toBe(false);
  });

  it('a state dict with a non-string key is refused naming the key type, not loaded as an empty dict', () => {
    // serializePth writes a string key; patch its BINUNICODE 'AAAA' (9 bytes) into BININT 7 + two
    // BINPUTs (9 bytes), so the pickle's dict maps the int 7 to the tensor (CRC off: the patch breaks it).
    const bytes = serializePth({ AAAA: { dtype: 'F32', shape: [2], data: [1, 2] } });
    const find = [0x58, 4, 0, 0, 0, 0x41, 0x41, 0x41, 0x41];
    const at = bytes.findIndex((_, i) => find.every((b, j) => bytes[i + j] === b));
    expect(at).toBeGreaterThan(0);
    bytes.set([0x4a, 7, 0, 0, 0, 0x71, 0, 0x71, 0], at);
    const before = tf.memory().numTensors;
    const root = readPth(bytes, { verifyCrc: false }).root as PyDict;
    expect([...root.keys()]).toEqual([7]);
    expect(() => loadPth(bytes, { verifyCrc: false })).toThrow(/the state dict has a key of type int 7; state dict keys must be strings/);
    expect(() => loadPth(bytes, { verifyCrc: false })).toThrow(FormatError);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a safetensors file is refused as not a checkpoint', () => {
    expect(() => readPth(readFileSync(`${FIX}cait_p8_d2.safetensors`))).toThrow(/not a PyTorch checkpoint/);
  });

  /** Seeded LCG so failures reproduce. */
  function rng(seed: number) {
    let s = seed >>> 0;
    return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  }

  it.each(['dtypes.pth', 'dtypes_legacy.pth', 'dtypes_zip64.pth'])('random corruptions of %s give FormatErrors or a load, never a crash', (file) => {
    const good = new Uint8Array(readFileSync(`${EXTRA}${file}`));
    const rand = rng(1234);
    const before = tf.memory().numTensors;
    const outcomes = { loaded: 0, refused: 0 };
    for (let i = 0; i < 400; i++) {
      let bytes = good.slice();
      if (i % 10 === 0) bytes = bytes.slice(0, Math.floor(rand() * bytes.length));
      const flips = 1 + Math.floor(rand() * 4);
      for (let f = 0; f < flips && bytes.length; f++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
      try {
        disposeAll(loadPth(bytes, { verifyCrc: false }));
        outcomes.loaded++;
      } catch (e) {
        if (!(e instanceof FormatError)) throw new Error(`iteration ${i}: ${(e as Error).stack}`);
        outcomes.refused++;
      }
    }
    // Both outcomes occur: the mutations reach past the first check (data bytes flip and still load).
    expect(outcomes.refused).toBeGreaterThan(0);
    expect(outcomes.loaded).toBeGreaterThan(0);
    expect(tf.memory().numTensors).toBe(before);
  });
});
