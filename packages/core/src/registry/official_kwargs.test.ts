import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { checkKnownKwargs, kwargReader, parseTorchLayerNorm } from './official_kwargs.js';

describe('official kwargs', () => {
  const kw = kwargReader({ a: 2, f: 0.5, b: 0, p: [3, 4], s: 7, l: [1, 2], n: null, bad: 'x' }, 'Toy official');

  it('reads typed values, with defaults for absent keys and for None on scalars', () => {
    expect([kw.num('f'), kw.int('a'), kw.num('zz', 1.5), kw.int('n', 9)]).toEqual([0.5, 2, 1.5, 9]);
    expect([kw.bool('b', true), kw.bool('a', false), kw.bool('zz', true)]).toEqual([false, true, true]);
    expect([kw.pair('s', 1), kw.pair('p', 1), kw.size('s', 1), kw.size('p', 1)]).toEqual([[7, 7], [3, 4], 7, [3, 4]]);
    expect([kw.list('l', []), kw.intList('zz', [5])]).toEqual([[1, 2], [5]]);
  });

  it('names the label, the key, what was expected and what came', () => {
    expect(() => kw.num('bad')).toThrow(new ConfigError('Toy official kwarg bad must be a number, got "x"'));
    expect(() => kw.int('f')).toThrow(/Toy official kwarg f must be an integer, got 0\.5/);
    expect(() => kw.bool('bad', true)).toThrow(/must be a boolean, got "x"/);
    expect(() => kwargReader({ l: [1, 2, 3] }, 'Toy').pair('l', 1)).toThrow(/must be an int or a pair of ints, got \[1,2,3\]/);
    expect(() => kw.intList('p', null)).not.toThrow();
    expect(() => kw.intList('bad', null)).toThrow(/must be a list, got "x"/);
    expect(() => kwargReader({ l: [1.5] }, 'Toy').intList('l', null)).toThrow(/must be a list of integers, got \[1\.5\]/);
    // An explicit None reaches the official code, which indexes it: refused, as is a None default.
    expect(() => kw.list('n', [1])).toThrow(/Toy official kwarg n is None: required \(the official code indexes n\[i\]: TypeError\)/);
    expect(() => kw.list('zz', null, 'it is required')).toThrow(/kwarg zz is None: it is required/);
  });

  it('refuses keyword arguments the constructor does not take, as Python would', () => {
    expect(() => checkKnownKwargs({ depth: 2, detph: 3 }, ['depth', 'dim'], 'Toy()')).toThrow(/^Toy\(\) got unexpected keyword argument\(s\) detph; it takes depth, dim$/);
    expect(() => checkKnownKwargs({ depth: 2 }, new Set(['depth']), 'Toy()')).not.toThrow();
  });

  it('reads LayerNorm norm_layers as golden metadata spells them', () => {
    expect(parseTorchLayerNorm(null, 'Toy')).toEqual({ eps: 1e-5, elementwiseAffine: true });
    expect(parseTorchLayerNorm(undefined, 'Toy', 1e-6)).toEqual({ eps: 1e-6, elementwiseAffine: true });
    // A class without a partial is torch's default, whatever the constructor's own default.
    expect(parseTorchLayerNorm("<class 'torch.nn.modules.normalization.LayerNorm'>", 'Toy', 1e-6)).toEqual({ eps: 1e-5, elementwiseAffine: true });
    expect(parseTorchLayerNorm('functools.partial(torch.nn.LayerNorm, eps=1e-06, elementwise_affine=False)', 'Toy')).toEqual({ eps: 1e-6, elementwiseAffine: false });
    expect(() => parseTorchLayerNorm("<class 'torch.nn.BatchNorm2d'>", 'Toy')).toThrow(/Toy norm_layer .* is not supported: only \(partials of\) torch\.nn\.LayerNorm/);
    expect(() => parseTorchLayerNorm('functools.partial(torch.nn.LayerNorm, eps=-1)', 'Toy')).toThrow(/Toy norm_layer has an invalid eps/);
  });

  it("reads the DeiT-signature kwargs (vitCommon): Python's defaults, qk_scale None → null, wrong types named", () => {
    expect(kwargReader({}, 'ViT').vitCommon()).toEqual({ inChans: 3, numClasses: 1000, qkScale: null, dropRate: 0, attnDropRate: 0, dropPathRate: 0 });
    expect(kwargReader({ in_chans: 1, num_classes: 10, qk_scale: 0.125, drop_rate: 0.1, attn_drop_rate: 0.2, drop_path_rate: 0.3 }, 'ViT').vitCommon()).toEqual({
      inChans: 1,
      numClasses: 10,
      qkScale: 0.125,
      dropRate: 0.1,
      attnDropRate: 0.2,
      dropPathRate: 0.3,
    });
    expect(kwargReader({ qk_scale: null }, 'ViT').vitCommon().qkScale).toBeNull();
    expect(() => kwargReader({ qk_scale: 'auto' }, 'ViT').vitCommon()).toThrow(/^ViT kwarg qk_scale must be a number, got "auto"$/);
  });
});
