import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { Module } from '../nn/module.js';
import { setTestBackend } from '../testing/backend.js';
import { createModel, getModelCard, listModels, modelCard, pretrainedTag, unregisterModel } from './registry.js';
import { checkModelOptions, registerSpecVariants, registerVariants, variantCard, type VariantSpec } from './variants.js';
import { NANO_CARD } from './registry.js';

class Toy extends Module {
  constructor(readonly depth: number) {
    super();
    this.addParameter('w', tf.zeros([depth]));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
}

const VARIANTS = { vtoy_small: { depth: 2 }, vtoy_big: { depth: 4 } };
const spec = {
  typeName: 'Toy',
  optionNames: ['depth', 'numClasses'],
  card: (name: string) => modelCard({ name, arch: 'vtoy', firstConv: 'w', classifier: 'w' }),
  create: (v: { depth: number }, o: Record<string, unknown>) => new Toy((o.depth as number | undefined) ?? v.depth),
  pretrained: (name: string, _v: unknown, card: ReturnType<typeof modelCard>) =>
    name === 'vtoy_big' ? [pretrainedTag(card, { tag: 't', license: 'MIT', labels: '', sources: [{ url: 'https://example.org/w.pth', format: 'pth' as const }] })] : [],
};

describe('registerVariants', () => {
  beforeAll(async () => {
    await setTestBackend();
  });
  afterAll(() => Object.keys(VARIANTS).forEach(unregisterModel));

  it('registers cards, factories and pretrained tags once; a second call changes nothing', () => {
    expect(registerVariants(VARIANTS, spec)).toEqual(['vtoy_small', 'vtoy_big']);
    expect(registerVariants(VARIANTS, spec)).toEqual([]);
    expect(listModels('vtoy_*')).toEqual(['vtoy_big', 'vtoy_small']);
    expect(listModels('vtoy_*', { pretrained: true })).toEqual(['vtoy_big']);
    expect(getModelCard('vtoy_small')).toMatchObject({ arch: 'vtoy', pretrained: [] });
    const m = createModel<Toy>('vtoy_small', { depth: 3 });
    expect(m.depth).toBe(3);
    m.dispose();
  });

  it('refuses options the architecture does not take, naming the nearest; undefined values are unset flags', () => {
    expect(() => createModel('vtoy_small', { depthz: 3 })).toThrow(ConfigError);
    expect(() => createModel('vtoy_small', { depthz: 3 })).toThrow(/^Unknown Toy option\(s\) depthz \(did you mean depth\?\); valid options: depth, numClasses$/);
    expect(() => checkModelOptions({ depth: 1, extra: undefined }, ['depth'], 'Toy')).not.toThrow();
  });
});

describe('variantCard', () => {
  const arch = { arch: 'toy', firstConv: 'stem', classifier: 'head', cropPct: 0.9, interpolation: 'bicubic' as const, notes: 'the official weights' };

  it("takes the architecture's fields and defaults where the variant states nothing", () => {
    const card = variantCard('toy_b', { options: {}, paramCount: 10, inputSize: [224, 224, 3], top1: 80 }, arch);
    expect(card).toMatchObject({ name: 'toy_b', arch: 'toy', numClasses: 1000, cropPct: 0.9, interpolation: 'bicubic', notes: 'the official weights', official: true, paramCount: 10, top1: 80 });
    expect(card.mean).toEqual([0.485, 0.456, 0.406]);
  });

  it('lets the variant override them (a nano card: 32 px, ours, no crop, bilinear, its note, 10 classes)', () => {
    const card = variantCard('toy_nano', { ...NANO_CARD, options: { numClasses: 10 }, paramCount: 5, std: [0.5, 0.5, 0.5] }, arch);
    expect(card).toMatchObject({ inputSize: [32, 32, 3], numClasses: 10, official: false, cropPct: 1, interpolation: 'bilinear', notes: NANO_CARD.notes, std: [0.5, 0.5, 0.5] });
  });
});

describe('registerSpecVariants', () => {
  type ToyVariant = VariantSpec & { options: { depth: number; numClasses?: number }; released?: boolean };
  const SPECS: Record<string, ToyVariant> = {
    stoy_base: { options: { depth: 2 }, paramCount: 2, inputSize: [224, 224, 3], top1: 70, released: true },
    stoy_nano: {
      ...NANO_CARD,
      options: { depth: 1, numClasses: 10 },
      paramCount: 1,
      nanoWeights: { url: 'file:///nowhere/stoy_nano.safetensors', sha256: 'a'.repeat(64), sizeBytes: 4, top1: 88, epochs: 1 },
    },
    stoy_unreleased: { options: { depth: 3 }, paramCount: 3, inputSize: [224, 224, 3] },
  };
  beforeAll(async () => {
    await setTestBackend();
  });
  afterAll(() => Object.keys(SPECS).forEach(unregisterModel));

  it('builds with overrides, cards from the variant, the nano tag from its shipped weights and the others from officialTags', () => {
    const built: Array<Record<string, unknown>> = [];
    registerSpecVariants(SPECS, {
      typeName: 'SToy',
      optionNames: ['depth', 'numClasses'],
      build: (o) => {
        built.push(o);
        return new Toy(o.depth);
      },
      card: (name) => ({ arch: 'stoy', firstConv: 'w', classifier: 'w', notes: `${name}: official` }),
      officialTags: (_name, v, card) => (v.released ? [pretrainedTag(card, { tag: 'in1k', license: 'MIT', labels: 'imagenet-1k', sources: [{ url: 'https://example.org/w.pth', format: 'pth' }] })] : []),
    });
    expect(getModelCard('stoy_base')).toMatchObject({ arch: 'stoy', notes: 'stoy_base: official', top1: 70, official: true });
    expect(getModelCard('stoy_base').pretrained?.map((t) => t.tag)).toEqual(['in1k']);
    expect(getModelCard('stoy_nano')).toMatchObject({ official: false, numClasses: 10, notes: NANO_CARD.notes });
    expect(getModelCard('stoy_nano').pretrained?.map((t) => [t.tag, t.labels])).toEqual([['fashion_mnist', 'fashion-mnist']]);
    expect(getModelCard('stoy_unreleased').pretrained).toEqual([]);
    const m = createModel<Toy>('stoy_nano', { depth: 5 });
    expect(m.depth).toBe(5);
    expect(built.at(-1)).toEqual({ depth: 5, numClasses: 10 });
    m.dispose();
    expect(() => createModel('stoy_base', { dpth: 1 })).toThrow(/Unknown SToy option\(s\) dpth \(did you mean depth\?\)/);
  });
});

