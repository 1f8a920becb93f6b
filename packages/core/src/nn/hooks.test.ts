import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { setTestBackend } from '../testing/backend.js';
import { Sequential } from './containers.js';
import { getSubmodule, withForwardHooks } from './hooks.js';
import { Linear } from './linear.js';
import { Module } from './module.js';

class Net extends Module {
  readonly body = this.register('body', new Sequential(new Linear(2, 3, { seed: 1 }), new Linear(3, 2, { seed: 2 })));
  constructor() {
    super();
    // The same module under a second name (as RegionViT's proj/proj_cls).
    this.register('alias', this.body);
  }
  forward(x: tf.Tensor): tf.Tensor {
    return this.body.forward(x) as tf.Tensor;
  }
}

describe('forward hooks', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it('getSubmodule follows dotted paths and every alias; an unknown path names the nearest ones', () => {
    const net = new Net();
    try {
      expect(getSubmodule(net, '')).toBe(net);
      expect(getSubmodule(net, 'body.1')).toBe((net.body as Sequential).at(1));
      expect(getSubmodule(net, 'alias.1')).toBe(getSubmodule(net, 'body.1'));
      expect(() => getSubmodule(net, 'body.2')).toThrow(ConfigError);
      expect(() => getSubmodule(net, 'bdy.1')).toThrow(/Net has no module 'bdy\.1'\. Did you mean: body\.1/);
    } finally {
      net.dispose();
    }
  });

  it('a hook sees arguments and output, may replace the output, and is removed afterwards (also after a throw)', () => {
    const net = new Net();
    const x = tf.ones([1, 2]);
    try {
      const seen: number[][] = [];
      const y = withForwardHooks(net, { 'body.0': (_m, args, out) => void seen.push((args[0] as tf.Tensor).shape, (out as tf.Tensor).shape) }, () => tf.tidy(() => net.forward(x)));
      expect(seen).toEqual([[1, 2], [1, 3]]);
      const zero = withForwardHooks(net, { 'body.0': (_m, _a, out) => tf.zerosLike(out as tf.Tensor) }, () => tf.tidy(() => net.forward(x)));
      // The second Linear of zeros is its bias.
      const bias = (net.body as Sequential).at(1) as Linear;
      expect(Array.from(zero.dataSync())).toEqual(Array.from(bias.bias!.dataSync()));
      expect(() => withForwardHooks(net, { 'body.1': () => { throw new Error('boom'); } }, () => net.forward(x))).toThrow('boom');
      expect(() => withForwardHooks(net, { 'body.0': () => undefined, nope: () => undefined }, () => net.forward(x))).toThrow(/no module 'nope'/);
      for (const m of [net, ...(net.body as Sequential).children()]) expect(Object.prototype.hasOwnProperty.call(m, 'forward')).toBe(false);
      const again = tf.tidy(() => net.forward(x));
      expect(Array.from(again.dataSync())).toEqual(Array.from(y.dataSync()));
      tf.dispose([y, zero, again]);
    } finally {
      x.dispose();
      net.dispose();
    }
  });

  it("an own forward (summary's, checkpointing's wrapper) is put back as it was", () => {
    const net = new Net();
    const lin = (net.body as Sequential).at(0) as Linear;
    const own = (x: tf.Tensor) => Linear.prototype.forward.call(lin, x);
    (lin as { forward: unknown }).forward = own;
    try {
      withForwardHooks(net, { 'body.0': () => undefined }, () => tf.dispose(tf.tidy(() => net.forward(tf.ones([1, 2])))));
      expect(lin.forward).toBe(own);
    } finally {
      net.dispose();
    }
  });
});
