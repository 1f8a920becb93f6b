import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnknownModelError } from '../errors.js';
import { Module } from '../nn/module.js';
import {
  createModel,
  fashionMnistNanoTag,
  getArchitecture,
  getModelCard,
  globToRegExp,
  listModels,
  hasPretrained,
  modelCard,
  packageAsset,
  pretrainedTag,
  registerArchitecture,
  registerModel,
  unregisterModel,
} from './registry.js';
import { resolveIndices } from './contract.js';
import { setTestBackend } from '../testing/backend.js';

class Tiny extends Module {
  constructor(readonly numClasses: number) {
    super();
    this.addParameter('w', tf.zeros([numClasses]));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
}

const names = ['toy_a_224', 'toy_a_384', 'toy_b_224'];

describe('registry', () => {
  beforeAll(async () => {
    await setTestBackend();
    for (const n of names) {
      registerModel(n, (o = {}) => new Tiny(o.numClasses ?? 1000), modelCard({ name: n, arch: 'toy', firstConv: 'stem', classifier: 'head', paramCount: 1000 }));
    }
  });
  afterAll(() => names.forEach(unregisterModel));

  it('pretrained tags: listModels({ pretrained: true }) lists models with a fetchable tag; createModel refuses `pretrained`', () => {
    const card = modelCard({ name: 'toy_w_224', arch: 'toy', firstConv: 'stem', classifier: 'head' });
    const tag = pretrainedTag(card, { tag: 'in1k', license: 'MIT', labels: 'imagenet-1k', sources: [{ url: 'https://example.org/w.pth', format: 'pth' }] });
    expect(tag).toMatchObject({ numClasses: 1000, inputSize: [224, 224, 3], cropPct: 0.875, interpolation: 'bicubic' });
    registerModel('toy_w_224', (o = {}) => new Tiny(o.numClasses ?? 1000), { ...card, pretrained: [tag] });
    // A tag nobody can fetch (a share site) does not count.
    registerModel('toy_m_224', (o = {}) => new Tiny(o.numClasses ?? 1000), { ...card, name: 'toy_m_224', pretrained: [{ ...tag, sources: [], unavailable: 'share site' }] });
    try {
      expect(listModels('toy_*', { pretrained: true })).toEqual(['toy_w_224']);
      expect(listModels({ pretrained: true }).filter((n) => n.startsWith('toy_'))).toEqual(['toy_w_224']);
      expect(listModels('toy_*')).toContain('toy_m_224');
      expect(hasPretrained(getModelCard('toy_m_224'))).toBe(false);
      expect(() => createModel('toy_w_224', { pretrained: true })).toThrow(/createModel\('toy_w_224'\) builds a model synchronously .* use `await createPretrainedModel\('toy_w_224'\)`/);
      const m = createModel<Tiny>('toy_w_224', { pretrained: false, numClasses: 3 });
      expect(m.numClasses).toBe(3);
      m.dispose();
    } finally {
      unregisterModel('toy_w_224');
      unregisterModel('toy_m_224');
    }
  });

  it('packageAsset resolves a file beside a module URL, and keeps the path where there is none', () => {
    expect(packageAsset('../weights/a.safetensors', 'file:///x/pkg/dist/index.js')).toBe('file:///x/pkg/weights/a.safetensors');
    expect(packageAsset('../weights/a.safetensors', undefined)).toBe('../weights/a.safetensors');
  });

  it("packageAsset's bundler-visible form: the URL beside the module, or undefined (an unavailable tag) where the module has none", () => {
    const base = 'file:///x/pkg/dist/index.js';
    expect(packageAsset(() => new URL('../weights/a.safetensors', base))).toBe('file:///x/pkg/weights/a.safetensors');
    // What an esbuild IIFE bundle leaves of `import.meta.url`.
    const none = undefined as unknown as string;
    const url = packageAsset(() => new URL('../weights/a.safetensors', none));
    expect(url).toBeUndefined();
    const card = modelCard({ name: 'toy_nano', arch: 'toy', firstConv: 'c', classifier: 'head', numClasses: 10, inputSize: [32, 32, 3] });
    const weights = { sha256: 'ab', sizeBytes: 2, top1: 50, epochs: 1 };
    const missing = fashionMnistNanoTag(card, { ...weights, url });
    expect(missing.sources).toEqual([]);
    expect(missing.unavailable).toMatch(/no URL \(import\.meta\.url\)/);
    expect(hasPretrained({ ...card, pretrained: [missing] })).toBe(false);
    const there = fashionMnistNanoTag(card, { ...weights, url: packageAsset(() => new URL('../weights/a.safetensors', base)) });
    expect(there.sources).toEqual([{ url: 'file:///x/pkg/weights/a.safetensors', format: 'safetensors', sha256: 'ab', sizeBytes: 2 }]);
    expect(hasPretrained({ ...card, pretrained: [there] })).toBe(true);
  });

  it('lists with globs, sorted', () => {
    expect(listModels('toy_*_224')).toEqual(['toy_a_224', 'toy_b_224']);
    expect(listModels(['toy_a_*', 'toy_b*'])).toEqual(names);
    expect(listModels('toy_?_384')).toEqual(['toy_a_384']);
    expect(globToRegExp('a.b*').test('a.bc')).toBe(true);
    expect(globToRegExp('a.b*').test('axbc')).toBe(false);
  });

  it('creates models with options and returns cards with defaults filled', () => {
    const m = createModel<Tiny>('toy_a_224', { numClasses: 7 });
    expect(m.numClasses).toBe(7);
    m.dispose();
    const card = getModelCard('toy_b_224');
    expect(card).toMatchObject({ name: 'toy_b_224', arch: 'toy', inputSize: [224, 224, 3], numClasses: 1000, cropPct: 0.875, official: true });
  });

  it('suggests the nearest names for an unknown model', () => {
    let err: unknown;
    try {
      createModel('toy_a_244');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnknownModelError);
    expect((err as UnknownModelError).suggestions[0]).toBe('toy_a_224');
    expect((err as Error).message).toMatch(/Unknown model 'toy_a_244'\. Did you mean: toy_a_224/);
    expect(() => getModelCard('nope_xyz_000000000')).toThrow(/Unknown model 'nope_xyz_000000000'\.$/);
  });

  it('refuses duplicate registrations', () => {
    expect(() => registerModel('toy_a_224', () => new Tiny(1), modelCard({ name: 'x', arch: 'toy', firstConv: '', classifier: '' }))).toThrow(/already registered/);
  });

  it('resolves architecture adapters by golden arch name', () => {
    registerArchitecture({ name: 'toyarch', fromOfficialConfig: (kw) => new Tiny(kw.num_classes as number) });
    const m = getArchitecture('toyarch').fromOfficialConfig({ num_classes: 3 }) as Tiny;
    expect(m.numClasses).toBe(3);
    m.dispose();
    expect(() => getArchitecture('toyarc')).toThrow(/Unknown architecture 'toyarc'\. Did you mean: toyarch/);
  });

  it('resolves timm-style feature indices', () => {
    expect(resolveIndices(undefined, 3)).toEqual([0, 1, 2]);
    expect(resolveIndices([-1, 0], 4)).toEqual([3, 0]);
    expect(() => resolveIndices([4], 4)).toThrow(RangeError);
  });
});
