import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ShapeError } from '../errors.js';
import { expectClose, noLeak, seq } from './__fixtures__/helpers.js';
import { ReLU, gelu } from './activation.js';
import { Mlp } from './mlp.js';
import { LayerNorm } from './norm.js';
import { PatchEmbed } from './patch_embed.js';
import { setTestBackend } from '../testing/backend.js';

beforeAll(async () => {
  await setTestBackend();
});

describe('Mlp', () => {
  it('has timm names and computes fc2(act(fc1(x)))', () => {
    const mlp = new Mlp(4, { hiddenFeatures: 8, outFeatures: 3 });
    expect(Object.keys(mlp.stateDict())).toEqual(['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
    expect([...mlp.namedChildren()].map(([n]) => n)).toEqual(['fc1', 'act', 'drop', 'fc2']);
    noLeak(() => {
      const x = seq([2, 5, 4]);
      const y = mlp.forward(x);
      expect(y.shape).toEqual([2, 5, 3]);
      const byHand = mlp.fc2.forward(gelu(mlp.fc1.forward(x)));
      expectClose(y, Array.from(byHand.dataSync()), 1e-7);
    });
    const relu = new Mlp(4, { actLayer: () => new ReLU(), bias: false });
    expect(relu.act).toBeInstanceOf(ReLU);
    expect(Object.keys(relu.stateDict())).toEqual(['fc1.weight', 'fc2.weight']);
    expect(relu.fc2.outFeatures).toBe(4);
    mlp.dispose();
    relu.dispose();
  });
});

describe('PatchEmbed', () => {
  it('flattens row-major to [B, N, C] like flatten(2).transpose(1, 2)', () => {
    const pe = new PatchEmbed({ imgSize: 8, patchSize: 4, inChans: 3, embedDim: 5, norm: (d) => new LayerNorm(d) });
    expect(Object.keys(pe.stateDict())).toEqual(['proj.weight', 'proj.bias', 'norm.weight', 'norm.bias']);
    expect(pe.numPatches).toBe(4);
    expect(pe.proj.stride).toEqual([4, 4]);
    noLeak(() => {
      const x = seq([2, 8, 12, 3]);
      const tokens = pe.forward(x);
      expect(tokens.shape).toEqual([2, 6, 5]);
      // Token r·3 + c is the patch at grid row r, column c.
      const map = pe.proj.forward(x);
      const normed = pe.norm!.forward(tf.slice(map, [1, 1, 2, 0], [1, 1, 1, 5]));
      expectClose(tf.slice(tokens, [1, 5, 0], [1, 1, 5]), Array.from(normed.dataSync()), 1e-7);
    });
    pe.dispose();
  });

  it('can keep the NHWC map and checks divisibility', () => {
    const pe = new PatchEmbed({ patchSize: [2, 4], embedDim: 6, flatten: false });
    noLeak(() => {
      expect(pe.forward(tf.zeros([1, 4, 8, 3])).shape).toEqual([1, 2, 2, 6]);
    });
    expect(() => pe.forward(tf.zeros([1, 5, 8, 3]))).toThrow(ShapeError);
    expect(() => pe.forward(tf.zeros([1, 5, 8, 3]))).toThrow('input height 5 and width 8 must be divisible by the patch size 2x4');
    expect(() => pe.forward(tf.zeros([1, 4, 8, 1]))).toThrow('expected NHWC input with 3 channels');
    const strict = new PatchEmbed({ imgSize: 8, patchSize: 4, embedDim: 2, strictImgSize: true });
    expect(() => strict.forward(tf.zeros([1, 12, 12, 3]))).toThrow(/expected a 8x8 input, got 12x12/);
    pe.dispose();
    strict.dispose();
  });
});
