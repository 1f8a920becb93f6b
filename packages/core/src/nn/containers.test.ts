import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { noLeak, seq } from './__fixtures__/helpers.js';
import { ReLU } from './activation.js';
import { Identity, ModuleList, Sequential } from './containers.js';
import { Conv2d } from './conv.js';
import { Linear } from './linear.js';
import { BatchNorm2d } from './norm.js';
import { setTestBackend } from '../testing/backend.js';

beforeAll(async () => {
  await setTestBackend();
});

describe('containers', () => {
  it("Sequential names children '0', '1', … and chains forward", () => {
    const seqm = new Sequential(new Conv2d(3, 4, 3, { padding: 1, bias: false }), new ReLU(), new BatchNorm2d(4));
    expect(Object.keys(seqm.stateDict())).toEqual(['0.weight', '2.weight', '2.bias', '2.running_mean', '2.running_var']);
    expect(seqm.length).toBe(3);
    expect(seqm.at(-1)).toBeInstanceOf(BatchNorm2d);
    expect([...seqm].length).toBe(3);
    seqm.append(new Identity());
    expect(seqm.namedChildren().next().value![0]).toBe('0');
    expect([...seqm.namedChildren()].map(([n]) => n)).toEqual(['0', '1', '2', '3']);
    seqm.eval();
    expect(seqm.at(2).training).toBe(false);
    noLeak(() => {
      const x = seq([1, 4, 4, 3]);
      const byHand = seqm.at(2).forward(tf.relu(seqm.at(0).forward(x)));
      const y = seqm.forward(x);
      expect(y.shape).toEqual([1, 4, 4, 4]);
      expect(Array.from(y.dataSync())).toEqual(Array.from(byHand.dataSync()));
    });
    expect(() => seqm.at(4)).toThrow(ConfigError);
    const summary = seqm.summary([1, 4, 4, 3]);
    expect(summary.rows.map((r) => r.name)).toEqual(['0', '1', '2', '3']);
    expect(summary.totalParams).toBe(3 * 3 * 3 * 4 + 8);
    seqm.dispose();
  });

  it('ModuleList holds typed modules, is iterable, has no forward', () => {
    const list = new ModuleList([new Linear(2, 2), new Linear(2, 2)]);
    list.append(new Linear(2, 3));
    expect(list.length).toBe(3);
    expect(list.at(2).outFeatures).toBe(3);
    expect(Object.keys(list.stateDict())).toContain('2.bias');
    expect([...list].map((l) => l.inFeatures)).toEqual([2, 2, 2]);
    expect(() => list.forward(tf.zeros([1, 2]))).toThrow(/ModuleList has no forward/);
    list.dispose();
  });

  it('Identity returns its input and has no state', () => {
    const id = new Identity();
    const x = tf.ones([2]);
    expect(id.forward(x)).toBe(x);
    expect(Object.keys(id.stateDict())).toEqual([]);
    x.dispose();
  });
});
