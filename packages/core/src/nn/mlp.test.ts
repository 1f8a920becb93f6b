import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ShapeError } from '../errors.js';
import { expectClose, noLeak, seq } from './__fixtures__/helpers.js';
import { ReLU, gelu } from './activation.js';
import { Mlp } from './mlp.js';
import { LayerNorm } from './norm.js';
import { ConvStemPatchEmbed, PatchEmbed } from './patch_embed.js';
import { ConfigError } from '../errors.js';
import { Conv2d } from './conv.js';
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

describe('ConvStemPatchEmbed', () => {
  it('is log2(patch) stride-2 3×3 convs (BN + GELU between, widths doubling to embedDim) with the PatchEmbed contract', () => {
    const pe = new ConvStemPatchEmbed({ patchSize: 8, inChans: 3, embedDim: 16 });
    expect(Object.keys(pe.stateDict())).toEqual([
      'stem.0.weight',
      'stem.1.weight',
      'stem.1.bias',
      'stem.1.running_mean',
      'stem.1.running_var',
      'stem.3.weight',
      'stem.4.weight',
      'stem.4.bias',
      'stem.4.running_mean',
      'stem.4.running_var',
      'proj.weight',
      'proj.bias',
    ]);
    expect(pe.stateDict()['stem.0.weight']!.shape).toEqual([3, 3, 3, 4]);
    expect(pe.stateDict()['stem.3.weight']!.shape).toEqual([3, 3, 4, 8]);
    expect(pe.stateDict()['proj.weight']!.shape).toEqual([3, 3, 8, 16]);
    expect(pe.outputSize(32, 16)).toEqual([4, 2]);
    pe.eval();
    noLeak(() => {
      const x = seq([2, 32, 16, 3]);
      const tokens = pe.forward(x);
      expect(tokens.shape).toEqual([2, 8, 16]);
      // Row-major tokens of the stem's NHWC map.
      const map = pe.proj.forward(pe.stem.forward(x));
      expect(map.shape).toEqual([2, 4, 2, 16]);
      expectClose(tf.slice(tokens, [1, 3, 0], [1, 1, 16]), Array.from(tf.slice(map, [1, 1, 1, 0], [1, 1, 1, 16]).dataSync()), 1e-6);
    });
    expect(() => pe.forward(tf.zeros([1, 12, 16, 3]))).toThrow('input height 12 and width 16 must be divisible by the patch size 8x8');
    expect(() => pe.forward(tf.zeros([1, 16, 16, 1]))).toThrow(ShapeError);
    pe.dispose();
    const two = new ConvStemPatchEmbed({ patchSize: 2, embedDim: 6, flatten: false });
    expect(Object.keys(two.stateDict())).toEqual(['proj.weight', 'proj.bias']);
    noLeak(() => expect(two.forward(tf.zeros([1, 4, 6, 3])).shape).toEqual([1, 2, 3, 6]));
    two.dispose();
  });

  it('refuses patch sizes that are not a square power of two, and widths the stem cannot halve', () => {
    expect(() => new ConvStemPatchEmbed({ patchSize: 6, embedDim: 8 })).toThrow(/square power-of-two patch size ≥ 2.*got 6x6/);
    expect(() => new ConvStemPatchEmbed({ patchSize: [4, 8], embedDim: 8 })).toThrow(ConfigError);
    expect(() => new ConvStemPatchEmbed({ patchSize: 1, embedDim: 8 })).toThrow(ConfigError);
    expect(() => new ConvStemPatchEmbed({ patchSize: 8, embedDim: 6 })).toThrow(/embedDim 6 must be divisible by 4/);
    expect(() => ConvStemPatchEmbed.numParams({ patchSize: 8, embedDim: 6 })).toThrow(/embedDim 6 must be divisible by 4/);
  });

  it('states its widths and parameter count without being built', () => {
    expect(ConvStemPatchEmbed.stemWidths(16, 192)).toEqual([24, 48, 96]);
    expect(ConvStemPatchEmbed.stemWidths(2, 6)).toEqual([]);
    for (const o of [
      { patchSize: 16, inChans: 3, embedDim: 192 },
      { patchSize: 8, inChans: 1, embedDim: 16 },
      { patchSize: 4, embedDim: 10 },
      { patchSize: 2, inChans: 5, embedDim: 6 },
    ]) {
      const pe = new ConvStemPatchEmbed(o);
      expect(ConvStemPatchEmbed.numParams(o)).toBe(pe.numParams());
      expect(pe.stem.children().filter((m) => m instanceof Conv2d).map((m) => (m as Conv2d).outChannels)).toEqual(ConvStemPatchEmbed.stemWidths(o.patchSize, o.embedDim));
      pe.dispose();
    }
  });
});

