import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { ConfigError, ShapeError, WeightLoadError, type WeightProblem } from '../errors.js';
import { Module } from '../nn/module.js';
import {
  DEFAULT_MIN_LOADED,
  WeightCoverageError,
  loadOurStateDict,
  fromPytorchLayout,
  loadAdaptedCheckpoint,
  loadPytorchStateDict, pytorchShape, replaceClassifier, stripModulePrefix, toPytorchLayout, toPytorchStateDict } from './convert.js';
import { checkTensorLeaks } from '../testing/leaks.js';

checkTensorLeaks();

/** A tensor whose value at each position is its row-major flat index (so positions can be traced). */
const indexed = (shape: number[]) => tf.tidy(() => tf.reshape(tf.range(0, shape.reduce((a, b) => a * b, 1), 1, 'float32'), shape));

let seed = 1;
const rand = (shape: number[]) => tf.randomNormal(shape, 0, 1, 'float32', seed++);

// ---- Tiny modules in our layouts (the real layers live in nn/; these keep the test independent) ----
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
class Conv extends Module {
  constructor(inC: number, outC: number, k: number) {
    super();
    this.addParameter('weight', rand([k, k, inC, outC]), { kind: 'conv2d' });
  }
  forward(x: tf.Tensor) {
    return x;
  }
}
class Depthwise extends Module {
  constructor(c: number, m: number, k: number) {
    super();
    this.addParameter('weight', rand([k, k, c, m]), { kind: 'depthwise' });
    this.addParameter('bias', rand([c * m]));
  }
  forward(x: tf.Tensor) {
    return x;
  }
}
class Conv1 extends Module {
  constructor(inC: number, outC: number, k: number) {
    super();
    this.addParameter('weight', rand([k, inC, outC]), { kind: 'conv1d' });
  }
  forward(x: tf.Tensor) {
    return x;
  }
}
class BN extends Module {
  constructor(c: number) {
    super();
    this.addParameter('weight', rand([c]));
    this.addParameter('bias', rand([c]));
    this.addBuffer('running_mean', rand([c]));
    this.addBuffer('running_var', tf.tidy(() => tf.abs(rand([c]))));
  }
  forward(x: tf.Tensor) {
    return x;
  }
}
class Toy extends Module {
  constructor() {
    super();
    this.addParameter('cls_token', rand([1, 1, 6]));
    this.register('stem', new Conv(3, 4, 3));
    this.register('bn', new BN(4));
    this.register('dw', new Depthwise(4, 2, 3));
    this.register('tok', new Conv1(8, 6, 2));
    // Registered twice, like RegionViT's Projection: both names are in the state dict.
    const proj = new Lin(6, 6);
    this.register('proj', proj);
    this.register('proj_cls', proj);
    this.register('head', new Lin(6, 3));
    this.addBuffer('index', tf.tensor([2, 0, 1], [3], 'int32'));
  }
  forward(x: tf.Tensor) {
    return x;
  }
}

/** The official state dict of a Toy: official keys and shapes, with a num_batches_tracked. */
function officialDict(): Record<string, tf.Tensor> {
  return {
    cls_token: rand([1, 1, 6]),
    'stem.weight': rand([4, 3, 3, 3]),
    'bn.weight': rand([4]),
    'bn.bias': rand([4]),
    'bn.running_mean': rand([4]),
    'bn.running_var': tf.tidy(() => tf.abs(rand([4]))),
    'bn.num_batches_tracked': tf.scalar(17, 'int32'),
    'dw.weight': rand([8, 1, 3, 3]),
    'dw.bias': rand([8]),
    'tok.weight': rand([6, 8, 2]),
    'proj.weight': rand([6, 6]),
    'proj.bias': rand([6]),
    'proj_cls.weight': rand([6, 6]),
    'proj_cls.bias': rand([6]),
    'head.weight': rand([3, 6]),
    'head.bias': rand([3]),
    index: tf.tensor([0, 2, 1], [3], 'int32'),
  };
}

const snapshot = (m: Module) => new Map([...m.stateEntries()].map(([k, e]) => [k, Array.from(e.variable.dataSync())]));
const values = (t: tf.Tensor) => Array.from(t.dataSync());

describe('layout conversion', () => {
  it('gives the official shape of each kind', () => {
    expect(pytorchShape('linear', [5, 7])).toEqual([7, 5]);
    expect(pytorchShape('conv2d', [3, 2, 4, 8])).toEqual([8, 4, 3, 2]);
    expect(pytorchShape('depthwise', [3, 5, 4, 2])).toEqual([8, 1, 3, 5]);
    expect(pytorchShape('conv1d', [3, 4, 8])).toEqual([8, 4, 3]);
    expect(pytorchShape('plain', [1, 2, 3])).toEqual([1, 2, 3]);
    expect(pytorchShape('plain', [])).toEqual([]);
    expect(() => pytorchShape('linear', [2, 3, 4])).toThrow(ShapeError);
    expect(() => pytorchShape('conv2d', [3, 3])).toThrow(/rank 4/);
  });

  it('linear: ours[i][o] = W[o][i]', () => {
    const w = indexed([3, 5]); // [out, in]
    const ours = fromPytorchLayout('linear', w);
    expect(ours.shape).toEqual([5, 3]);
    const a = ours.arraySync() as number[][];
    for (let i = 0; i < 5; i++) for (let o = 0; o < 3; o++) expect(a[i]![o]).toBe(o * 5 + i);
    tf.dispose([w, ours]);
  });

  it('conv2d (grouped shape): ours[a][b][i][o] = W[o][i][a][b]', () => {
    const [O, I, KH, KW] = [6, 2, 3, 2]; // e.g. groups 2 with 4 input channels
    const w = indexed([O, I, KH, KW]);
    const ours = fromPytorchLayout('conv2d', w);
    expect(ours.shape).toEqual([KH, KW, I, O]);
    const a = ours.arraySync() as number[][][][];
    for (let o = 0; o < O; o++)
      for (let i = 0; i < I; i++)
        for (let y = 0; y < KH; y++) for (let x = 0; x < KW; x++) expect(a[y]![x]![i]![o]).toBe(((o * I + i) * KH + y) * KW + x);
    tf.dispose([w, ours]);
  });

  it('depthwise with multiplier 2: ours[a][b][c][j] = W[c·2 + j][0][a][b]', () => {
    const [C, M, KH, KW] = [3, 2, 2, 3];
    const w = indexed([C * M, 1, KH, KW]);
    const ours = fromPytorchLayout('depthwise', w, [KH, KW, C, M]);
    expect(ours.shape).toEqual([KH, KW, C, M]);
    const a = ours.arraySync() as number[][][][];
    for (let c = 0; c < C; c++)
      for (let j = 0; j < M; j++)
        for (let y = 0; y < KH; y++) for (let x = 0; x < KW; x++) expect(a[y]![x]![c]![j]).toBe((c * M + j) * KH * KW + y * KW + x);
    // Without our shape the multiplier is taken as 1.
    const m1 = fromPytorchLayout('depthwise', w);
    expect(m1.shape).toEqual([KH, KW, C * M, 1]);
    expect(() => fromPytorchLayout('depthwise', w, [KH, KW, 4, 2])).toThrow(ShapeError);
    tf.dispose([w, ours, m1]);
  });

  it('conv1d: ours[k][i][o] = W[o][i][k]', () => {
    const [O, I, K] = [4, 3, 2];
    const w = indexed([O, I, K]);
    const ours = fromPytorchLayout('conv1d', w);
    expect(ours.shape).toEqual([K, I, O]);
    const a = ours.arraySync() as number[][][];
    for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) for (let k = 0; k < K; k++) expect(a[k]![i]![o]).toBe((o * I + i) * K + k);
    tf.dispose([w, ours]);
  });

  it('plain is unchanged but a new tensor', () => {
    const w = indexed([2, 3]);
    const ours = fromPytorchLayout('plain', w);
    expect(ours).not.toBe(w);
    expect(values(ours)).toEqual(values(w));
    w.dispose();
    expect(values(ours)).toEqual([0, 1, 2, 3, 4, 5]);
    ours.dispose();
  });

  it('toPytorchLayout inverts fromPytorchLayout for every kind', () => {
    const cases: Array<['linear' | 'conv2d' | 'depthwise' | 'conv1d' | 'plain', number[]]> = [
      ['linear', [5, 3]],
      ['conv2d', [3, 2, 4, 6]],
      ['depthwise', [3, 3, 4, 2]],
      ['conv1d', [2, 3, 4]],
      ['plain', [2, 2, 2]],
    ];
    for (const [kind, ourShape] of cases) {
      const ours = indexed(ourShape);
      const pt = toPytorchLayout(kind, ours);
      expect(pt.shape, kind).toEqual(pytorchShape(kind, ourShape));
      const back = fromPytorchLayout(kind, pt, ourShape);
      expect(back.shape, kind).toEqual(ourShape);
      expect(values(back), kind).toEqual(values(ours));
      tf.dispose([ours, pt, back]);
    }
    const bad = tf.zeros([2, 2]);
    expect(() => fromPytorchLayout('conv2d', bad)).toThrow(ShapeError);
    expect(() => toPytorchLayout('conv1d', bad)).toThrow(ShapeError);
    bad.dispose();
  });
});

/** PyTorch-semantics reference convolution (NCHW input, OIHW weight, stride 1, no padding, groups). */
function torchConv2d(x: number[][][], w: number[][][][], groups: number): number[][][] {
  const C = x.length;
  const H = x[0]!.length;
  const W = x[0]![0]!.length;
  const O = w.length;
  const Ig = w[0]!.length;
  const KH = w[0]![0]!.length;
  const KW = w[0]![0]![0]!.length;
  const og = O / groups;
  const out: number[][][] = [];
  for (let o = 0; o < O; o++) {
    const g = Math.floor(o / og);
    const plane: number[][] = [];
    for (let y = 0; y + KH <= H; y++) {
      const row: number[] = [];
      for (let xx = 0; xx + KW <= W; xx++) {
        let s = 0;
        for (let i = 0; i < Ig; i++)
          for (let a = 0; a < KH; a++) for (let b = 0; b < KW; b++) s += x[g * Ig + i]![y + a]![xx + b]! * w[o]![i]![a]![b]!;
        row.push(s);
      }
      plane.push(row);
    }
    out.push(plane);
  }
  expect(C).toBe(Ig * groups);
  return out;
}

describe('converted weights compute what PyTorch computes', () => {
  const close = (a: number[], b: number[]) => {
    expect(a.length).toBe(b.length);
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThan(1e-4);
  };

  it('conv2d and depthwise (multiplier 2) match a PyTorch-semantics reference', () => {
    const C = 3;
    const xChw = rand([C, 5, 6]);
    const xNhwc = tf.tidy(() => tf.expandDims(tf.transpose(xChw, [1, 2, 0]), 0));
    const xArr = xChw.arraySync() as number[][][];

    const wConv = rand([4, C, 3, 2]);
    const ref = torchConv2d(xArr, wConv.arraySync() as number[][][][], 1);
    const filt = fromPytorchLayout('conv2d', wConv);
    const y = tf.tidy(() => tf.transpose(tf.squeeze(tf.conv2d(xNhwc as tf.Tensor4D, filt as tf.Tensor4D, 1, 'valid'), [0]), [2, 0, 1]));
    close(values(y), ref.flat(2));

    const wDw = rand([C * 2, 1, 3, 3]);
    const refDw = torchConv2d(xArr, wDw.arraySync() as number[][][][], C);
    const dfilt = fromPytorchLayout('depthwise', wDw, [3, 3, C, 2]);
    const yDw = tf.tidy(() =>
      tf.transpose(tf.squeeze(tf.depthwiseConv2d(xNhwc as tf.Tensor4D, dfilt as tf.Tensor4D, 1, 'valid'), [0]), [2, 0, 1]),
    );
    close(values(yDw), refDw.flat(2));
    tf.dispose([xChw, xNhwc, wConv, filt, y, wDw, dfilt, yDw]);
  });

  it('linear and conv1d match y = x·Wᵀ and a PyTorch-semantics conv1d', () => {
    const x = rand([2, 5]);
    const w = rand([3, 5]);
    const ref = tf.tidy(() => {
      const xa = x.arraySync() as number[][];
      const wa = w.arraySync() as number[][];
      return tf.tensor(xa.map((r) => wa.map((wr) => wr.reduce((s, v, i) => s + v * r[i]!, 0))));
    });
    const ours = fromPytorchLayout('linear', w);
    const y = tf.matMul(x, ours);
    close(values(y), values(ref));

    const seq = rand([4, 6]); // [C, L]
    const w1 = rand([2, 4, 3]); // [O, I, k]
    const ref1 = torchConv2d(
      (seq.arraySync() as number[][]).map((r) => [r]),
      (w1.arraySync() as number[][][]).map((o) => o.map((i) => [i])),
      1,
    ).map((p) => p[0]!);
    const f1 = fromPytorchLayout('conv1d', w1);
    const y1 = tf.tidy(() => tf.transpose(tf.squeeze(tf.conv1d(tf.expandDims(tf.transpose(seq), 0) as tf.Tensor3D, f1 as tf.Tensor3D, 1, 'valid'), [0])));
    close(values(y1), ref1.flat());
    tf.dispose([x, w, ref, ours, y, seq, w1, f1, y1]);
  });
});

describe('loadPytorchStateDict', () => {
  it('loads an official state dict, converting each kind and skipping num_batches_tracked', () => {
    const model = new Toy();
    const sd = officialDict();
    const r = loadPytorchStateDict(model, sd);
    expect(r).toEqual({ missingKeys: [], unexpectedKeys: [], ignoredKeys: ['bn.num_batches_tracked'], batchCounters: { 'bn.num_batches_tracked': 17 } });
    const state = model.stateDict();
    const expectConverted = (key: string, kind: Parameters<typeof fromPytorchLayout>[0], ourShape?: number[]) => {
      const c = fromPytorchLayout(kind, sd[key]!, ourShape);
      expect(state[key]!.shape, key).toEqual(c.shape);
      expect(values(state[key]!), key).toEqual(values(c));
      c.dispose();
    };
    expectConverted('stem.weight', 'conv2d');
    expectConverted('dw.weight', 'depthwise', [3, 3, 4, 2]);
    expectConverted('tok.weight', 'conv1d');
    expectConverted('head.weight', 'linear');
    expectConverted('proj.weight', 'linear');
    for (const k of ['cls_token', 'bn.weight', 'bn.running_var', 'dw.bias', 'head.bias']) expectConverted(k, 'plain');
    expect(state.index!.dtype).toBe('int32');
    expect(values(state.index!)).toEqual([0, 2, 1]);
    // The inputs are still the caller's.
    expect(sd['stem.weight']!.isDisposed).toBe(false);
    tf.dispose(Object.values(sd));
    model.dispose();
  });

  it('reports missing, unexpected and mis-shaped keys together in one error and changes nothing', () => {
    const model = new Toy();
    const beforeState = snapshot(model);
    const sd = officialDict();
    sd['head.weight']!.dispose();
    delete sd['head.weight']; // missing
    sd['extra.weight'] = tf.zeros([2, 2]); // unexpected
    sd['stem.weight']!.dispose();
    sd['stem.weight'] = tf.zeros([3, 3, 3, 4]); // our layout instead of the official one: mis-shaped
    let err: WeightLoadError | undefined;
    try {
      loadPytorchStateDict(model, sd);
    } catch (e) {
      err = e as WeightLoadError;
    }
    expect(err).toBeInstanceOf(WeightLoadError);
    const byKey = new Map<string, WeightProblem>(err!.problems.map((p) => [p.key, p]));
    expect(byKey.get('head.weight')).toMatchObject({ problem: 'missing', expected: '[3, 6]' });
    expect(byKey.get('extra.weight')).toMatchObject({ problem: 'unexpected' });
    expect(byKey.get('stem.weight')).toMatchObject({ problem: 'shape', expected: '[4, 3, 3, 3]', got: '[3, 3, 3, 4]' });
    expect(err!.problems).toHaveLength(3);
    expect(err!.message).toMatch(/1 missing, 1 unexpected, 1 shape/);
    expect(err!.message).toContain('no parameter was changed');
    expect(snapshot(model)).toEqual(beforeState);
    tf.dispose(Object.values(sd));
    model.dispose();
  });

  it('non-strict: tolerates missing and unexpected keys, but never a wrong shape', () => {
    const model = new Toy();
    const sd = officialDict();
    sd['head.weight']!.dispose();
    delete sd['head.weight'];
    sd['extra'] = tf.zeros([1]);
    const r = loadPytorchStateDict(model, sd, { strict: false });
    expect(r.missingKeys).toEqual(['head.weight']);
    expect(r.unexpectedKeys).toEqual(['extra']);
    sd['dw.bias']!.dispose();
    sd['dw.bias'] = tf.zeros([4]);
    const beforeState = snapshot(model);
    expect(() => loadPytorchStateDict(model, sd, { strict: false })).toThrow(/dw\.bias: expected \[8\], got \[4\]/);
    expect(snapshot(model)).toEqual(beforeState);
    tf.dispose(Object.values(sd));
    model.dispose();
  });

  it('accepts either name of a variable registered twice; with both, the first name wins', () => {
    const model = new Toy();
    const sd = officialDict();
    const projW = sd['proj.weight']!;
    const clsW = sd['proj_cls.weight']!;
    loadPytorchStateDict(model, sd);
    const expected = fromPytorchLayout('linear', projW);
    expect(values(model.stateDict()['proj_cls.weight']!)).toEqual(values(expected));
    expected.dispose();

    // Only the alias present: still complete.
    const only = new Map(Object.entries(sd).filter(([k]) => k !== 'proj.weight' && k !== 'proj.bias'));
    const r = loadPytorchStateDict(model, only);
    expect(r.missingKeys).toEqual([]);
    const fromCls = fromPytorchLayout('linear', clsW);
    expect(values(model.stateDict()['proj.weight']!)).toEqual(values(fromCls));
    fromCls.dispose();
    tf.dispose(Object.values(sd));
    model.dispose();
  });

  it("strips a DataParallel 'module.' prefix automatically, and any prefix on request", () => {
    const model = new Toy();
    const sd = officialDict();
    const wrapped = new Map(Object.entries(sd).map(([k, t]) => [`module.${k}`, t]));
    const r = loadPytorchStateDict(model, wrapped);
    expect(r.missingKeys).toEqual([]);
    expect(r.ignoredKeys).toEqual(['bn.num_batches_tracked']);

    const other = Object.fromEntries(Object.entries(sd).map(([k, t]) => [`model.${k}`, t]));
    expect(() => loadPytorchStateDict(model, other)).toThrow(WeightLoadError);
    expect(loadPytorchStateDict(model, other, { stripPrefix: 'model.' }).unexpectedKeys).toEqual([]);

    // Not every key has the prefix: nothing is stripped automatically.
    const mixed = { ...Object.fromEntries(wrapped), cls_token: sd.cls_token! };
    expect(() => loadPytorchStateDict(model, mixed)).toThrow(/unexpected key: module\.stem\.weight/);
    tf.dispose(Object.values(sd));
    model.dispose();
  });

  it('does not strip module. from a model that has a child named module', () => {
    class Wrapper extends Module {
      constructor() {
        super();
        this.register('module', new Lin(2, 2));
      }
      forward(x: tf.Tensor) {
        return x;
      }
    }
    const model = new Wrapper();
    const sd = { 'module.weight': rand([2, 2]), 'module.bias': rand([2]) };
    expect(loadPytorchStateDict(model, sd).missingKeys).toEqual([]);
    tf.dispose(Object.values(sd));
    model.dispose();
  });

  it('skips keys the ignore option names', () => {
    const model = new Toy();
    const sd = officialDict();
    sd['golden.logits'] = tf.zeros([2, 3]);
    expect(() => loadPytorchStateDict(model, sd)).toThrow(/unexpected key: golden\.logits/);
    const r = loadPytorchStateDict(model, sd, { ignore: (k) => k.startsWith('golden.') });
    expect(r.ignoredKeys.sort()).toEqual(['bn.num_batches_tracked', 'golden.logits']);
    tf.dispose(Object.values(sd));
    model.dispose();
  });
});

describe('toPytorchStateDict', () => {
  it('gives every alias name in official layouts, with num_batches_tracked beside BatchNorm stats', () => {
    const model = new Toy();
    const sd = toPytorchStateDict(model);
    const official = officialDict();
    expect(Object.keys(sd).sort()).toEqual(Object.keys(official).sort());
    for (const [k, t] of Object.entries(official)) expect(sd[k]!.shape, k).toEqual(t.shape);
    const nbt = sd['bn.num_batches_tracked']!;
    expect(nbt.dtype).toBe('int32');
    expect(nbt.shape).toEqual([]);
    expect(values(nbt)).toEqual([0]);
    // New tensors: disposing them leaves the model intact.
    tf.dispose(Object.values(sd));
    expect(model.parameters().every((p) => !p.isDisposed)).toBe(true);
    tf.dispose(Object.values(official));
    model.dispose();
  });

  it('round-trips through loadPytorchStateDict to identical state', () => {
    const a = new Toy();
    const b = new Toy();
    expect(snapshot(b)).not.toEqual(snapshot(a));
    const sd = toPytorchStateDict(a);
    const r = loadPytorchStateDict(b, sd);
    expect(r).toEqual({ missingKeys: [], unexpectedKeys: [], ignoredKeys: ['bn.num_batches_tracked'], batchCounters: { 'bn.num_batches_tracked': 0 } });
    expect(snapshot(b)).toEqual(snapshot(a));
    tf.dispose(Object.values(sd));
    a.dispose();
    b.dispose();
  });
});

describe('checkpoint adaptation helpers', () => {
  it('stripModulePrefix removes module. only when every key has it', () => {
    const a = tf.scalar(1);
    const b = tf.scalar(2);
    try {
      expect([...stripModulePrefix({ 'module.x': a, 'module.y.z': b }).keys()]).toEqual(['x', 'y.z']);
      expect([...stripModulePrefix(new Map([['module.x', a], ['y', b]])).keys()]).toEqual(['module.x', 'y']);
      expect(stripModulePrefix({}).size).toBe(0);
    } finally {
      tf.dispose([a, b]);
    }
  });

  it('replaceClassifier swaps in the model\'s fresh head (official layout) and loadAdaptedCheckpoint loads all the rest', () => {
    const model = new Toy();
    const sd = officialDict();
    const before = tf.memory().numTensors;
    const tensors = new Map(Object.entries(sd));
    const other = rand([10, 6]);
    tensors.set('head.weight', other);
    const swap = replaceClassifier(model, tensors, 'head');
    expect(swap.dropped).toEqual([{ key: 'head.weight', shape: [10, 6] }, { key: 'head.bias', shape: [3] }]);
    expect(swap.created).toHaveLength(2);
    // The stand-in is the model's own head in the official [out, in] layout.
    const ownHead = tf.tidy(() => toPytorchLayout('linear', model.stateDict()['head.weight']!));
    expect(values(tensors.get('head.weight')!)).toEqual(values(ownHead));
    ownHead.dispose();
    const res = loadAdaptedCheckpoint(model, { tensors, created: swap.created, dropped: swap.dropped.map((d) => d.key), notes: ['n'] });
    expect(res.ignoredKeys).toEqual(expect.arrayContaining(['head.weight', 'head.bias']));
    expect(res.notes).toEqual(['n']);
    expect(swap.created.every((t) => t.isDisposed)).toBe(true);
    const stem = tf.tidy(() => fromPytorchLayout('conv2d', sd['stem.weight']!));
    expect(values(model.stateDict()['stem.weight']!)).toEqual(values(stem));
    stem.dispose();
    other.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(Object.values(sd));
    model.dispose();
  });
});

describe('non-strict loads refuse a mostly empty result (minLoaded)', () => {
  /** The official dict with only the listed keys. */
  const only = (keys: string[]) => {
    const all = officialDict();
    const out: Record<string, tf.Tensor> = {};
    for (const [k, t] of Object.entries(all)) {
      if (keys.includes(k)) out[k] = t;
      else t.dispose();
    }
    return out;
  };

  it('refuses, saying how much would load, and changes nothing; minLoaded lowers the bar deliberately', () => {
    expect(DEFAULT_MIN_LOADED).toBe(0.5);
    const model = new Toy();
    const untouched = snapshot(model);
    // cls_token (6) + head (18 + 3) = 27 of the Toy's 361 parameter elements; 3 of its 14 distinct tensors.
    const sd = only(['cls_token', 'head.weight', 'head.bias']);
    let caught: unknown;
    try {
      loadPytorchStateDict(model, sd, { strict: false });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(WeightCoverageError);
    expect(caught).toBeInstanceOf(WeightLoadError);
    const err = caught as WeightCoverageError;
    expect(err.message).toMatch(/loaded 3 of 14 tensors, 7\.5% of the parameters \(27 of 361 elements\), less than the minimum of 50\.0% \(minLoaded\)/);
    expect(err.message).toMatch(/not in the checkpoint \(13\): index, stem\.weight/);
    expect(err.coverage).toMatchObject({ loadedTensors: 3, totalTensors: 14, loadedElements: 27, totalElements: 361 });
    expect(snapshot(model)).toEqual(untouched);
    // A key that matches nothing at all: 0% loaded.
    const stray = { 'blocks.0.weight': tf.zeros([2]) };
    expect(() => loadPytorchStateDict(model, stray, { strict: false })).toThrow(/loaded 0 of 14 tensors, 0\.0% of the parameters[\s\S]*not in the model \(1\): blocks\.0\.weight/);
    expect(snapshot(model)).toEqual(untouched);
    // Deliberately lower: loads what matches.
    const r = loadPytorchStateDict(model, sd, { strict: false, minLoaded: 0.05 });
    expect(r.missingKeys).toContain('stem.weight');
    expect(snapshot(model).get('cls_token')).toEqual(values(sd.cls_token!));
    expect(() => loadPytorchStateDict(model, sd, { strict: false, minLoaded: 1.5 })).toThrow(ConfigError);
    // Strict loads are unaffected (they fill everything or list what is missing).
    expect(() => loadPytorchStateDict(model, sd)).toThrow(/13 missing/);
    tf.dispose([...Object.values(sd), ...Object.values(stray)]);
    model.dispose();
  });

  it('accepts a non-strict load above the minimum (everything but the head)', () => {
    const model = new Toy();
    const sd = officialDict();
    const head = [sd['head.weight']!, sd['head.bias']!];
    delete sd['head.weight'];
    delete sd['head.bias'];
    const r = loadPytorchStateDict(model, sd, { strict: false });
    expect(r.missingKeys).toEqual(['head.weight', 'head.bias']);
    tf.dispose([...Object.values(sd), ...head]);
    model.dispose();
  });

  it('guards loads in our layout too, after reporting mis-shaped keys', () => {
    const model = new Toy();
    const untouched = snapshot(model);
    const cls = tf.zeros([1, 1, 6]);
    expect(() => loadOurStateDict(model, { cls_token: cls }, { strict: false })).toThrow(/loaded 1 of 14 tensors, 1\.7% of the parameters/);
    const bad = tf.zeros([6]);
    expect(() => loadOurStateDict(model, { cls_token: bad }, { strict: false })).toThrow(/shape mismatch for cls_token/);
    expect(snapshot(model)).toEqual(untouched);
    loadOurStateDict(model, { cls_token: cls }, { strict: false, minLoaded: 0 });
    expect(snapshot(model).get('cls_token')).toEqual(new Array(6).fill(0));
    tf.dispose([cls, bad]);
    model.dispose();
  });
});

describe('BatchNorm counters survive a round trip', () => {
  it('loadPytorchStateDict reports them, toPytorchStateDict writes them back (0 where none is given)', () => {
    const model = new Toy();
    const sd = officialDict();
    const r = loadPytorchStateDict(model, sd);
    expect(r.batchCounters).toEqual({ 'bn.num_batches_tracked': 17 });
    const back = toPytorchStateDict(model, { batchCounters: r.batchCounters });
    expect(back['bn.num_batches_tracked']!.dtype).toBe('int32');
    expect(values(back['bn.num_batches_tracked']!)).toEqual([17]);
    const fresh = toPytorchStateDict(model);
    expect(values(fresh['bn.num_batches_tracked']!)).toEqual([0]);
    expect(() => toPytorchStateDict(model, { batchCounters: { 'bn.num_batches_tracked': -1 } })).toThrow(ConfigError);
    tf.dispose([...Object.values(sd), ...Object.values(back), ...Object.values(fresh)]);
    model.dispose();
  });
});
