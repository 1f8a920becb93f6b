import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { FormatError, VitError, WeightLoadError } from '../errors.js';
import { Module } from '../nn/module.js';
import { toPytorchStateDict } from './convert.js';
import { loadPthFile } from './pth.js';
import {
  BATCH_COUNTERS_METADATA,
  OUR_LAYOUT,
  loadModelWeights,
  loadSafetensorsFile,
  readSafetensorsFile,
  saveModelWeights,
  saveSafetensorsFile,
  writeFileAtomic,
} from './io.js';
import { parseSafetensors } from './safetensors.js';
import { setTestBackend } from '../testing/backend.js';

const fixture = (name: string) => fileURLToPath(new URL(`../../test/fixtures/${name}`, import.meta.url));

let dir = '';
let before = 0;
beforeAll(async () => {
  await setTestBackend();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vit-weights-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  before = tf.memory().numTensors;
});
afterEach(() => {
  vi.restoreAllMocks();
  expect(tf.memory().numTensors).toBe(before);
});

let seed = 100;
const rand = (shape: number[]) => tf.randomNormal(shape, 0, 1, 'float32', seed++);

class Lin extends Module {
  constructor(inF: number, outF: number) {
    super();
    this.addParameter('weight', rand([inF, outF]), { kind: 'linear' });
    this.addParameter('bias', rand([outF]));
  }
  forward(x: tf.Tensor) {
    return x;
  }
}
class Net extends Module {
  constructor() {
    super();
    const conv = new (class Conv extends Module {
      constructor() {
        super();
        this.addParameter('weight', rand([3, 3, 2, 4]), { kind: 'conv2d' });
      }
      forward(x: tf.Tensor) {
        return x;
      }
    })();
    this.register('conv', conv);
    const bn = new (class BN extends Module {
      constructor() {
        super();
        this.addParameter('weight', rand([4]));
        this.addParameter('bias', rand([4]));
        this.addBuffer('running_mean', rand([4]));
        this.addBuffer('running_var', tf.tidy(() => tf.abs(rand([4]))));
      }
      forward(x: tf.Tensor) {
        return x;
      }
    })();
    this.register('bn', bn);
    const proj = new Lin(4, 4);
    this.register('proj', proj);
    this.register('proj_cls', proj);
    this.register('head', new Lin(4, 2));
  }
  forward(x: tf.Tensor) {
    return x;
  }
}

const snapshot = (m: Module) => new Map([...m.stateEntries()].map(([k, e]) => [k, Array.from(e.variable.dataSync())]));
const tmpFiles = () => fs.readdirSync(dir).filter((f) => f.includes('.tmp-'));
let n = 0;
const fresh = (name: string) => path.join(dir, `${n++}-${name}`);

describe('safetensors files', () => {
  it('saves and loads tensors with metadata; int32 is written as I64', async () => {
    const file = fresh('a.safetensors');
    const a = tf.tensor([[1.5, -2], [3, 4]]);
    const b = tf.tensor([7, -1], [2], 'int32');
    const c = tf.tensor([true, false], [2], 'bool');
    await saveSafetensorsFile(file, { a, b, c }, { note: 'hi' });
    const raw = await readSafetensorsFile(file);
    expect(raw.tensors.get('b')!.dtype).toBe('I64');
    expect(raw.tensors.get('c')!.dtype).toBe('BOOL');
    const { tensors, metadata, dtypes } = await loadSafetensorsFile(file);
    expect(metadata).toEqual({ note: 'hi' });
    expect(dtypes.get('a')).toBe('F32');
    expect(tensors.get('a')!.arraySync()).toEqual([[1.5, -2], [3, 4]]);
    expect(tensors.get('b')!.dtype).toBe('int32');
    expect(Array.from(tensors.get('b')!.dataSync())).toEqual([7, -1]);
    expect(tensors.get('c')!.dtype).toBe('bool');
    tf.dispose([a, b, c, ...tensors.values()]);
    expect(tmpFiles()).toEqual([]);
  });

  it('writes chosen dtypes (per key, or F16/BF16 for every float tensor)', async () => {
    const file = fresh('half.safetensors');
    const a = tf.tensor([0.1, 1 / 3]);
    const b = tf.tensor([0.1]);
    const i = tf.tensor([3], [1], 'int32');
    await saveSafetensorsFile(file, new Map([['a', a], ['b', b], ['i', i]]), undefined, { floatDtype: 'F16', dtypes: { b: 'BF16', i: 'I32' } });
    const { tensors } = await readSafetensorsFile(file);
    expect(tensors.get('a')).toEqual({ dtype: 'F16', shape: [2], data: new Float32Array([0.0999755859375, 0.333251953125]) });
    expect(tensors.get('b')!.dtype).toBe('BF16');
    expect(tensors.get('i')!.dtype).toBe('I32');
    expect(fs.statSync(file).size).toBeLessThan(8 + 256);
    tf.dispose([a, b, i]);
  });

  it('names the file in format errors, and reports a missing file as an I/O error', async () => {
    const file = fresh('bad.safetensors');
    fs.writeFileSync(file, Buffer.from([1, 2, 3]));
    await expect(readSafetensorsFile(file)).rejects.toThrow(FormatError);
    await expect(readSafetensorsFile(file)).rejects.toThrow(file);
    const missing = path.join(dir, 'nope.safetensors');
    await expect(readSafetensorsFile(missing)).rejects.toMatchObject({ code: 'VIT_IO' });
    await expect(readSafetensorsFile(missing)).rejects.toBeInstanceOf(VitError);
  });

  it('reads the golden files from disk', async () => {
    const { tensors, metadata, dtypes } = await loadSafetensorsFile(fixture('conv2former_k11_d16.safetensors'));
    expect(metadata.arch).toBe('conv2former');
    expect(dtypes.get('downsample_layers.0.2.num_batches_tracked')).toBe('I64');
    expect(tensors.get('downsample_layers.0.2.num_batches_tracked')!.dtype).toBe('int32');
    expect(tensors.get('golden.input')!.shape).toEqual([2, 3, 96, 96]);
    tf.dispose([...tensors.values()]);
  });
});

describe('atomic writes', () => {
  it('leaves an existing file intact and no temp file when a tensor cannot be written', async () => {
    const file = fresh('keep.safetensors');
    const old = tf.tensor([1, 2, 3]);
    await saveSafetensorsFile(file, { old });
    const oldBytes = fs.readFileSync(file);
    const gone = tf.tensor([4]);
    gone.dispose();
    await expect(saveSafetensorsFile(file, { old, gone })).rejects.toThrow(/Cannot write 'gone'.*disposed/);
    const s = tf.tensor(['x']);
    await expect(saveSafetensorsFile(file, { s })).rejects.toThrow(/'s'.*string/);
    await expect(saveSafetensorsFile(file, { old }, { bad: 3 as unknown as string })).rejects.toThrow(FormatError);
    expect(fs.readFileSync(file).equals(oldBytes)).toBe(true);
    expect(tmpFiles()).toEqual([]);
    tf.dispose([old, s]);
  });

  it('leaves an existing file intact and removes the temp file when the write fails midway', async () => {
    const file = fresh('midway.safetensors');
    fs.writeFileSync(file, 'old contents');
    const rename = vi.spyOn(fs.promises, 'rename').mockRejectedValueOnce(Object.assign(new Error('EIO: simulated failure'), { code: 'EIO' }));
    const t = tf.tensor([1, 2]);
    await expect(saveSafetensorsFile(file, { t })).rejects.toThrow(/Cannot write .*midway\.safetensors.*simulated failure/);
    expect(rename).toHaveBeenCalledTimes(1);
    // The temp file existed (it was being renamed) and was removed.
    expect(String(rename.mock.calls[0]![0])).toMatch(/midway\.safetensors\.tmp-\d+-[a-z0-9]+$/);
    expect(fs.readFileSync(file, 'utf8')).toBe('old contents');
    expect(tmpFiles()).toEqual([]);
    // And the next save goes through.
    await saveSafetensorsFile(file, { t });
    expect(parseSafetensors(fs.readFileSync(file)).tensors.get('t')!.data).toEqual(new Float32Array([1, 2]));
    t.dispose();
  });

  it('fails cleanly when a directory is in the way', async () => {
    const target = fresh('occupied');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'inside.txt'), 'x');
    const t = tf.tensor([1]);
    await expect(saveSafetensorsFile(target, { t })).rejects.toMatchObject({ code: 'VIT_IO' });
    expect(fs.statSync(target).isDirectory()).toBe(true);
    expect(fs.readFileSync(path.join(target, 'inside.txt'), 'utf8')).toBe('x');
    expect(tmpFiles()).toEqual([]);
    // A missing parent folder fails before anything is written.
    await expect(writeFileAtomic(path.join(dir, 'no', 'such', 'dir.bin'), 'x')).rejects.toMatchObject({ code: 'VIT_IO' });
    t.dispose();
  });

  it('replaces an existing file in one step', async () => {
    const file = fresh('replace.txt');
    await writeFileAtomic(file, 'first');
    await writeFileAtomic(file, new TextEncoder().encode('second'));
    expect(fs.readFileSync(file, 'utf8')).toBe('second');
    expect(tmpFiles()).toEqual([]);
  });
});

describe('model weights', () => {
  it("round-trips in our layout (metadata layout 'nhwc-vit')", async () => {
    const file = fresh('ours.safetensors');
    const a = new Net();
    const b = new Net();
    await saveModelWeights(a, file, { metadata: { model: 'net' } });
    const raw = await readSafetensorsFile(file);
    expect(raw.metadata).toEqual({ model: 'net', layout: OUR_LAYOUT });
    expect(raw.tensors.get('conv.weight')!.shape).toEqual([3, 3, 2, 4]);
    expect(raw.tensors.has('proj_cls.weight')).toBe(true);
    const r = await loadModelWeights(b, file);
    expect(r.layout).toBe('ours');
    expect(r.missingKeys).toEqual([]);
    expect(snapshot(b)).toEqual(snapshot(a));
    a.dispose();
    b.dispose();
  });

  it('round-trips in the official PyTorch layout, with I64 num_batches_tracked', async () => {
    const file = fresh('pt.safetensors');
    const a = new Net();
    const b = new Net();
    await saveModelWeights(a, file, { format: 'pytorch' });
    const raw = await readSafetensorsFile(file);
    expect(raw.metadata.layout).toBe('pytorch');
    expect(raw.metadata.format).toBe('pt');
    expect(raw.tensors.get('conv.weight')!.shape).toEqual([4, 2, 3, 3]);
    expect(raw.tensors.get('head.weight')!.shape).toEqual([2, 4]);
    expect(raw.tensors.get('bn.num_batches_tracked')).toEqual({ dtype: 'I64', shape: [], data: new Int32Array([0]) });
    const r = await loadModelWeights(b, file);
    expect(r).toMatchObject({ layout: 'pytorch', missingKeys: [], unexpectedKeys: [], ignoredKeys: ['bn.num_batches_tracked'] });
    expect(snapshot(b)).toEqual(snapshot(a));
    // A file in official layout without our marker is read as PyTorch too (as the goldens are).
    const sd = toPytorchStateDict(a);
    const plain = fresh('plain.safetensors');
    await saveSafetensorsFile(plain, sd);
    expect((await loadModelWeights(b, plain)).layout).toBe('pytorch');
    tf.dispose(Object.values(sd));
    a.dispose();
    b.dispose();
  });

  it('keeps BatchNorm counters through ours and back to the official layout (safetensors and .pth)', async () => {
    const a = new Net();
    const b = new Net();
    const c = new Net();
    // An official file with a counter of 1234 (as a PyTorch-trained model has).
    const sd = toPytorchStateDict(a, { batchCounters: { 'bn.num_batches_tracked': 1234 } });
    const official = fresh('official.safetensors');
    await saveSafetensorsFile(official, sd);
    const r1 = await loadModelWeights(b, official);
    expect(r1.batchCounters).toEqual({ 'bn.num_batches_tracked': 1234 });
    // Ours: the counters ride in the metadata; the tensors are exactly the model's state dict.
    const ours = fresh('ours.safetensors');
    await saveModelWeights(b, ours, { batchCounters: r1.batchCounters });
    const raw = await readSafetensorsFile(ours);
    expect(raw.metadata[BATCH_COUNTERS_METADATA]).toBe('{"bn.num_batches_tracked":1234}');
    expect([...raw.tensors.keys()].sort()).toEqual(Object.keys(b.stateDict()).sort());
    const r2 = await loadModelWeights(c, ours);
    expect(r2.batchCounters).toEqual({ 'bn.num_batches_tracked': 1234 });
    // Back to the official layout: the counter as read, I64.
    for (const container of ['safetensors', 'pth'] as const) {
      const back = fresh(`back.${container}`);
      await saveModelWeights(c, back, { format: 'pytorch', container, batchCounters: r2.batchCounters });
      const loaded = container === 'pth' ? await loadPthFile(back) : await loadSafetensorsFile(back);
      try {
        expect(loaded.dtypes.get('bn.num_batches_tracked'), container).toBe('I64');
        expect([...loaded.tensors.keys()].sort()).toEqual(Object.keys(sd).sort());
        for (const [k, t] of Object.entries(sd)) expect(Array.from(loaded.tensors.get(k)!.dataSync()), `${container} ${k}`).toEqual(Array.from(t.dataSync()));
      } finally {
        for (const t of loaded.tensors.values()) t.dispose();
      }
    }
    await expect(saveModelWeights(c, fresh('x.pth'), { container: 'pth' })).rejects.toThrow(/official PyTorch layout/);
    const badMeta = fresh('bad-meta.safetensors');
    await saveSafetensorsFile(badMeta, c.stateDict(), { layout: OUR_LAYOUT, [BATCH_COUNTERS_METADATA]: '{"bn.num_batches_tracked": -1}' });
    await expect(loadModelWeights(c, badMeta)).rejects.toThrow(FormatError);
    tf.dispose(Object.values(sd));
    a.dispose();
    b.dispose();
    c.dispose();
  });

  it('names a PyTorch checkpoint given where safetensors is expected (by its magic bytes)', async () => {
    const net = new Net();
    const pth = fresh('actually-a-checkpoint.safetensors');
    await saveModelWeights(net, pth, { format: 'pytorch', container: 'pth' });
    await expect(loadModelWeights(net, pth)).rejects.toThrow(/actually-a-checkpoint\.safetensors: a PyTorch checkpoint \(zip\), not safetensors: convert it with `vit convert`, or read it with loadPthFile/);
    const legacy = fresh('legacy.safetensors');
    fs.copyFileSync(fixture('pth/conv2former_k11_d16_legacy.pth'), legacy);
    await expect(loadModelWeights(net, legacy)).rejects.toThrow(/legacy\.safetensors: a PyTorch checkpoint \(legacy pickle\), not safetensors/);
    net.dispose();
  });

  it('a non-strict load of a file that fills less than minLoaded is refused, naming the file, in either layout', async () => {
    const a = new Net();
    for (const layout of ['ours', 'pytorch'] as const) {
      const b = new Net();
      const untouched = snapshot(b);
      const file = fresh(`head-only-${layout}.safetensors`);
      const official = toPytorchStateDict(a);
      const head = { 'head.weight': layout === 'ours' ? a.stateDict()['head.weight']! : official['head.weight']! };
      await saveSafetensorsFile(file, head, layout === 'ours' ? { layout: OUR_LAYOUT } : {});
      tf.dispose(Object.values(official));
      await expect(loadModelWeights(b, file, { strict: false })).rejects.toThrow(new RegExp(`head-only-${layout}\\.safetensors' \\(${layout} layout\\): it would have loaded 1 of 9 tensors, 7\\.3% of the parameters`));
      expect(snapshot(b)).toEqual(untouched);
      await loadModelWeights(b, file, { strict: false, minLoaded: 0.05 });
      expect(snapshot(b).get('head.weight')).toEqual(snapshot(a).get('head.weight'));
      b.dispose();
    }
    a.dispose();
  });

  it('treats golden.* entries as unexpected unless asked to ignore them', async () => {
    const file = fresh('golden.safetensors');
    const a = new Net();
    const sd = toPytorchStateDict(a);
    sd['golden.input'] = tf.zeros([2, 3, 4, 4]);
    sd['golden.logits'] = tf.zeros([2, 2]);
    await saveSafetensorsFile(file, sd, { arch: 'net' });
    tf.dispose(Object.values(sd));

    const b = new Net();
    const untouched = snapshot(b);
    let err: unknown;
    try {
      await loadModelWeights(b, file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WeightLoadError);
    expect((err as WeightLoadError).message).toContain(file);
    expect((err as WeightLoadError).problems.map((p) => p.key).sort()).toEqual(['golden.input', 'golden.logits']);
    expect(snapshot(b)).toEqual(untouched);

    const r = await loadModelWeights(b, file, { ignoreGolden: true });
    expect(r.ignoredKeys.sort()).toEqual(['bn.num_batches_tracked', 'golden.input', 'golden.logits']);
    expect(r.metadata.arch).toBe('net');
    expect(snapshot(b)).toEqual(snapshot(a));
    a.dispose();
    b.dispose();
  });

  it('reports every problem of an our-layout file at once, naming the file, and changes nothing', async () => {
    const file = fresh('wrong.safetensors');
    const w = tf.zeros([2, 4]); // head.weight is [4, 2] in our layout: this is the official shape
    const extra = tf.zeros([1]);
    await saveSafetensorsFile(file, { 'head.weight': w, extra }, { layout: OUR_LAYOUT });
    const b = new Net();
    const untouched = snapshot(b);
    await expect(loadModelWeights(b, file)).rejects.toThrow(/wrong\.safetensors.*ours layout[\s\S]*unexpected key: extra[\s\S]*missing key: conv\.weight/);
    await expect(loadModelWeights(b, file)).rejects.toThrow(/shape mismatch for head\.weight: expected \[4, 2\], got \[2, 4\]/);
    expect(snapshot(b)).toEqual(untouched);
    await expect(loadModelWeights(b, file, { strict: false })).rejects.toThrow(/head\.weight/);
    tf.dispose([w, extra]);
    b.dispose();
  });
});
