import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { ConfigError, WeightLoadError } from '../errors.js';
import { Module } from './module.js';
import { checkTensorLeaks } from '../testing/leaks.js';

class Leaf extends Module {
  weight: tf.Variable;
  bias: tf.Variable;
  constructor(i: number, o: number) {
    super();
    this.weight = this.addParameter('weight', tf.fill([i, o], 0.5), { kind: 'linear' });
    this.bias = this.addParameter('bias', tf.zeros([o]), { noWeightDecay: true });
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.add(tf.matMul(x as tf.Tensor2D, this.weight as tf.Tensor2D), this.bias);
  }
}

class Stats extends Module {
  constructor(c: number) {
    super();
    this.addBuffer('running_mean', tf.zeros([c]));
    this.addBuffer('scratch', tf.zeros([c]), { persistent: false });
  }
  forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
}

class Net extends Module {
  fc1: Leaf;
  stats: Stats;
  blocks: Module[];
  constructor() {
    super();
    this.fc1 = this.register('fc1', new Leaf(3, 4));
    this.stats = this.register('stats', new Stats(4));
    const holder = this.register('blocks', new Holder());
    this.blocks = [holder.register('0', new Leaf(4, 4)), holder.register('1', new Leaf(4, 2))];
    this.register('unused', null);
  }
  forward(x: tf.Tensor): tf.Tensor {
    return this.blocks.reduce((h, b) => b.forward(h), this.stats.forward(this.fc1.forward(x)));
  }
}
class Holder extends Module {
  forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
}

/** One child under two names, as RegionViT's proj/proj_cls. */
class Shared extends Module {
  constructor() {
    super();
    const p = new Leaf(2, 2);
    this.register('proj', p);
    this.register('proj_cls', p);
  }
  forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
}

describe('Module', () => {
  checkTensorLeaks();

  it('names parameters with PyTorch-style dotted paths in registration order', () => {
    const n = new Net();
    expect(n.namedParameters().map(([k]) => k)).toEqual([
      'fc1.weight',
      'fc1.bias',
      'blocks.0.weight',
      'blocks.0.bias',
      'blocks.1.weight',
      'blocks.1.bias',
    ]);
    expect(Object.keys(n.stateDict())).toEqual([
      'fc1.weight',
      'fc1.bias',
      'stats.running_mean',
      'blocks.0.weight',
      'blocks.0.bias',
      'blocks.1.weight',
      'blocks.1.bias',
    ]);
    expect(n.namedBuffers().map(([k]) => k)).toEqual(['stats.running_mean', 'stats.scratch']);
    expect(n.numParams()).toBe(3 * 4 + 4 + 16 + 4 + 8 + 2);
    expect(n.noWeightDecayNames()).toEqual(['fc1.bias', 'blocks.0.bias', 'blocks.1.bias']);
    expect(n.namedModules().map(([k]) => k)).toEqual(['', 'fc1', 'stats', 'blocks', 'blocks.0', 'blocks.1']);
    n.dispose();
  });

  it('gives every TF.js variable a unique name', () => {
    const a = new Net();
    const b = new Net();
    const names = [...a.parameters(), ...b.parameters()].map((v) => v.name);
    expect(new Set(names).size).toBe(names.length);
    a.dispose();
    b.dispose();
  });

  it('propagates train/eval to every descendant', () => {
    const n = new Net();
    n.eval();
    expect(n.namedModules().every(([, m]) => !m.training)).toBe(true);
    n.train();
    expect(n.namedModules().every(([, m]) => m.training)).toBe(true);
    n.dispose();
  });

  it('round-trips a state dict into a fresh model with identical outputs', () => {
    const a = new Net();
    tf.tidy(() => a.fc1.weight.assign(tf.randomNormal([3, 4], 0, 1, 'float32', 3)));
    const b = new Net();
    b.loadStateDict(a.stateDict());
    const d = tf.tidy(() => {
      const x = tf.randomNormal([2, 3], 0, 1, 'float32', 4);
      return tf.max(tf.abs(tf.sub(a.forward(x), b.forward(x)))).dataSync()[0];
    });
    expect(d).toBe(0);
    a.dispose();
    b.dispose();
  });

  it('refuses a bad state dict listing every problem and changes nothing', () => {
    const n = new Net();
    const before = n.fc1.weight.arraySync();
    const sd = tf.tidy(() => {
      const s: Record<string, tf.Tensor> = {};
      for (const [k, v] of Object.entries(n.stateDict())) s[k] = tf.keep(tf.add(v, 1));
      return s;
    });
    sd['blocks.1.bias']!.dispose();
    delete sd['blocks.1.bias'];
    sd['blocks.0.weight']!.dispose();
    sd['blocks.0.weight'] = tf.zeros([5, 4]);
    sd['extra.weight'] = tf.zeros([1]);
    let err: unknown;
    try {
      n.loadStateDict(sd);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WeightLoadError);
    const msg = (err as Error).message;
    expect(msg).toContain('missing key: blocks.1.bias');
    expect(msg).toContain('unexpected key: extra.weight');
    expect(msg).toContain('shape mismatch for blocks.0.weight: expected [4, 4], got [5, 4]');
    expect((err as WeightLoadError).problems).toHaveLength(3);
    expect(n.fc1.weight.arraySync()).toEqual(before);
    // strict: false loads what fits and reports the rest
    sd['blocks.0.weight']!.dispose();
    delete sd['blocks.0.weight'];
    const res = n.loadStateDict(sd, { strict: false });
    expect(res.missingKeys).toEqual(['blocks.0.weight', 'blocks.1.bias']);
    expect(res.unexpectedKeys).toEqual(['extra.weight']);
    expect((n.fc1.weight as tf.Tensor2D).arraySync()[0]![0]).toBe(1.5);
    for (const t of Object.values(sd)) t.dispose();
    n.dispose();
  });

  it('handles a module registered under two names as PyTorch does', () => {
    const s = new Shared();
    expect(Object.keys(s.stateDict())).toEqual(['proj.weight', 'proj.bias', 'proj_cls.weight', 'proj_cls.bias']);
    expect(s.namedParameters().map(([k]) => k)).toEqual(['proj.weight', 'proj.bias']);
    expect(s.numParams()).toBe(6);
    // either alias satisfies the shared variable
    const w = tf.ones([2, 2]);
    const b = tf.ones([2]);
    s.loadStateDict({ 'proj_cls.weight': w, 'proj.bias': b });
    expect((s.stateDict()['proj.weight'] as tf.Tensor2D).arraySync()).toEqual([
      [1, 1],
      [1, 1],
    ]);
    tf.dispose([w, b]);
    s.dispose();
  });

  it('rejects duplicate and dotted member names', () => {
    const n = new Holder();
    n.addParameter('w', tf.zeros([1]));
    expect(() => n.addParameter('w', tf.zeros([1]))).toThrow(ConfigError);
    expect(() => n.register('a.b', new Holder())).toThrow(/contain no '.'/);
    expect(() => n.register('w', new Holder())).toThrow(ConfigError);
    n.dispose();
  });

  it('freezes parameters with requiresGrad(false)', () => {
    const n = new Net();
    n.fc1.requiresGrad(false);
    expect(n.numParams({ trainableOnly: true })).toBe(n.numParams() - 16);
    n.dispose();
  });

  it('prints a paddle.summary-style table with output shapes and totals', () => {
    const n = new Net();
    const s = n.summary([2, 3]);
    expect(s.rows.map((r) => [r.name, r.type, r.outputShape, r.params])).toEqual([
      ['fc1', 'Leaf', [[2, 4]], 16],
      ['stats', 'Stats', [[2, 4]], 0],
      ['blocks.0', 'Leaf', [[2, 4]], 20],
      ['blocks.1', 'Leaf', [[2, 2]], 10],
    ]);
    expect(s.totalParams).toBe(46);
    expect(s.outputShape).toEqual([[2, 2]]);
    expect(s.text).toContain('Total params: 46');
    expect(s.text).toMatch(/blocks\.1 \(Leaf\)\s+\[2, 2\]\s+10/);
    // forward methods are restored
    expect(Object.prototype.hasOwnProperty.call(n.fc1, 'forward')).toBe(false);
    n.dispose();
  });

  it('dispose releases every variable', () => {
    const before = tf.memory().numTensors;
    const n = new Shared();
    expect(tf.memory().numTensors).toBe(before + 2);
    n.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
