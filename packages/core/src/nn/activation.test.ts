import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { REF } from './__fixtures__/reference.js';
import { expectClose, noLeak, seq } from './__fixtures__/helpers.js';
import { GELU, ReLU, SiLU, Sigmoid, Softmax, Tanh, gelu } from './activation.js';
import { setTestBackend } from '../testing/backend.js';

beforeAll(async () => {
  await setTestBackend();
});

describe('activations', () => {
  it('GELU is the exact erf form by default; tanh is opt-in and differs by ~1e-3', () => {
    noLeak(() => {
      const x = tf.tensor(REF.gelu_x as unknown as number[]);
      // tfjs's erf is a 1.5e-7-accurate polynomial.
      expectClose(new GELU().forward(x), REF.gelu, 1e-6);
      expectClose(gelu(x), REF.gelu, 1e-6);
      expectClose(new GELU({ approximate: 'tanh' }).forward(x), REF.gelu_tanh, 1e-6);
      const diff = tf.max(tf.abs(tf.sub(gelu(x), gelu(x, 'tanh')))).dataSync()[0]!;
      expect(diff).toBeGreaterThan(1e-4);
    });
    expect(() => new GELU({ approximate: 'fast' as 'tanh' })).toThrow(ConfigError);
  });

  it('ReLU, Sigmoid, Tanh, SiLU', () => {
    noLeak(() => {
      const x = tf.tensor([-2, -0.5, 0, 1.5]);
      expectClose(new ReLU().forward(x), [0, 0, 0, 1.5]);
      expectClose(new Sigmoid().forward(x), [-2, -0.5, 0, 1.5].map((v) => 1 / (1 + Math.exp(-v))));
      expectClose(new Tanh().forward(x), [-2, -0.5, 0, 1.5].map(Math.tanh));
      expectClose(new SiLU().forward(x), [-2, -0.5, 0, 1.5].map((v) => v / (1 + Math.exp(-v))));
    });
  });

  it('Softmax works along any axis', () => {
    noLeak(() => {
      const x = seq([2, 3, 4]);
      const last = new Softmax().forward(x);
      expectClose(tf.sum(last, -1), [1, 1, 1, 1, 1, 1]);
      const mid = new Softmax(1).forward(x);
      expectClose(tf.sum(mid, 1), Array(8).fill(1));
      // Same as transposing by hand.
      const byHand = tf.transpose(tf.softmax(tf.transpose(x, [0, 2, 1])), [0, 2, 1]);
      expectClose(mid, Array.from(byHand.dataSync()), 1e-7);
    });
    expect(() => new Softmax(3).forward(tf.zeros([2, 2]))).toThrow(ConfigError);
  });
});
