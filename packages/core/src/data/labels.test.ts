import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { FASHION_MNIST_CLASSES } from './idx.js';
import { IMAGENET_1K_CLASSES, IMAGENET_1K_LEMMAS, IMAGENET_1K_SYNSETS, labelSet, topK } from './labels.js';

describe('label sets', () => {
  it('ImageNet-1k: 1000 classes in the standard order (synsets sorted, as every official checkpoint indexes them)', () => {
    expect(IMAGENET_1K_SYNSETS).toHaveLength(1000);
    expect(new Set(IMAGENET_1K_SYNSETS).size).toBe(1000);
    // The training order is the sorted synset ids (torchvision ImageFolder over ILSVRC train/).
    expect([...IMAGENET_1K_SYNSETS].sort()).toEqual(IMAGENET_1K_SYNSETS);
    expect(IMAGENET_1K_LEMMAS).toHaveLength(1000);
    expect([IMAGENET_1K_CLASSES[0], IMAGENET_1K_CLASSES[281], IMAGENET_1K_CLASSES[999]]).toEqual(['tench', 'tabby', 'toilet tissue']);
    expect(IMAGENET_1K_LEMMAS[281]).toBe('tabby, tabby cat');
  });

  it('labelSet names the known sets and suggests for a typo', () => {
    expect(labelSet('fashion-mnist')).toBe(FASHION_MNIST_CLASSES);
    expect(labelSet('imagenet-1k')).toHaveLength(1000);
    expect(() => labelSet('imagenet1k')).toThrow(ConfigError);
    expect(() => labelSet('imagenet1k')).toThrow(/Unknown label set 'imagenet1k'; did you mean imagenet-1k/);
  });

  it('topK: highest first, ties by index, named; from logits with softmax', () => {
    expect(topK([0.1, 0.5, 0.2, 0.2], 3, ['a', 'b', 'c', 'd'])).toEqual([
      { index: 1, label: 'b', probability: 0.5 },
      { index: 2, label: 'c', probability: 0.2 },
      { index: 3, label: 'd', probability: 0.2 },
    ]);
    const r = topK([0, Math.log(3)], 2, undefined, { softmax: true });
    expect(r.map((e) => e.label)).toEqual(['1', '0']);
    expect(r[0]!.probability).toBeCloseTo(0.75, 12);
  });
});
