import { ConfigError, nearestNames } from '../errors.js';
import { CIFAR10_CLASSES } from './cifar.js';
import { FASHION_MNIST_CLASSES, MNIST_CLASSES } from './idx.js';
import { IMAGENET_1K_LEMMAS } from './imagenet_classes.js';

export { IMAGENET_1K_LEMMAS, IMAGENET_1K_SYNSETS } from './imagenet_classes.js';

/**
 * ImageNet-1k class names by index, one short name each: the first WordNet lemma (`tench`,
 * `tabby`). Some repeat (`crane` the bird and the machine, `maillot`): the index tells them apart,
 * and `IMAGENET_1K_LEMMAS` has the full lemma lists.
 */
export const IMAGENET_1K_CLASSES: readonly string[] = IMAGENET_1K_LEMMAS.map((l) => l.split(', ')[0]!);

/** The label sets pretrained tags name (`PretrainedTag.labels`). */
export const LABEL_SETS: Readonly<Record<string, readonly string[]>> = {
  'imagenet-1k': IMAGENET_1K_CLASSES,
  'fashion-mnist': FASHION_MNIST_CLASSES,
  mnist: MNIST_CLASSES,
  'cifar-10': CIFAR10_CLASSES,
};

/** The class names of a label set; unknown names throw with the nearest ones. */
export function labelSet(name: string): readonly string[] {
  const names = LABEL_SETS[name];
  if (!names) {
    const near = nearestNames(name, Object.keys(LABEL_SETS));
    throw new ConfigError(`Unknown label set '${name}'${near.length ? `; did you mean ${near.join(', ')}?` : ''} (known: ${Object.keys(LABEL_SETS).join(', ')})`);
  }
  return names;
}

export interface TopKEntry {
  /** Class index. */
  index: number;
  /** Class name, when a label list was given (else the index as text). */
  label: string;
  probability: number;
}

/**
 * The k most probable classes of one row of probabilities (or logits with `{ softmax: true }`),
 * highest first, named from `labels`.
 */
export function topK(row: ArrayLike<number>, k: number, labels?: readonly string[], options: { softmax?: boolean } = {}): TopKEntry[] {
  let p = Array.from(row);
  if (options.softmax) {
    const m = Math.max(...p);
    const e = p.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    p = e.map((v) => v / s);
  }
  return p
    .map((probability, index) => ({ index, probability }))
    .sort((a, b) => b.probability - a.probability || a.index - b.index)
    .slice(0, Math.max(0, k))
    .map(({ index, probability }) => ({ index, label: labels?.[index] ?? String(index), probability }));
}
