import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CenterCrop,
  ColorJitter,
  Compose,
  FASHION_MNIST_DIR,
  RandomCrop,
  RandomErasing,
  RandomHorizontalFlip,
  RandomResizedCrop,
  RandomRotation,
  Resize,
  cifar10,
  fashionMnist,
  imageFolder,
  mnist,
  splitDataset,
  synthetic,
  type Dataset,
  type Transform,
} from '@vit/core';
import { InputError, UsageError } from './exit-codes.js';
import type { AugmentSpec } from './recipes.js';

export interface DataSplits {
  /** What was loaded, for logs and the run summary (e.g. "fashion-mnist (bundled 5,000/1,000 subset)"). */
  description: string;
  train: Dataset;
  /** The held-out split: the official test set where the dataset has one. */
  val: Dataset;
  classNames: readonly string[];
}

/** The subset of Fashion-MNIST shipped inside @vit/cli (`data/` beside `dist/` and `src/`). */
export function bundledFashionMnistDir(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, 'data', 'fashion-mnist-subset');
    if (existsSync(join(candidate, 'train-images-idx3-ubyte.gz'))) return candidate;
    dir = dirname(dir);
  }
  return null;
}

export const DATA_SPEC_HELP = [
  'Data specs:',
  '  fashion-mnist          the full set from /usr/share/datasets/fashion-mnist (Debian: dataset-fashion-mnist) when present,',
  '                         else the 5,000/1,000-image subset bundled with @vit/cli',
  '  fashion-mnist:DIR      Fashion-MNIST IDX files (gzipped or not) in DIR; fashion-mnist:bundled forces the subset',
  '  mnist:DIR              MNIST IDX files in DIR',
  '  cifar10:PATH           the CIFAR-10 binary distribution: its folder or cifar-10-binary.tar.gz',
  '  folder:DIR             one sub-folder per class; DIR/train + DIR/val when present, else a stratified 10% validation split',
  '  synthetic[:N]          N (default 2,048) seeded synthetic images of 10 learnable classes, for smoke tests',
].join('\n');

/**
 * Resolves a `--data` spec to train and validation datasets. `imageSize` is only used by
 * image folders (decoded straight to the training size).
 */
export interface LoadDataOptions {
  imageSize: number;
  channels: 1 | 3;
  seed: number;
  valFraction?: number;
  /** Image folders: refuse bad image files (default, with the full list) or leave them out with a warning each. */
  badImages?: 'error' | 'skip';
  /** Where warnings and the image check's progress go (stderr in the CLI). */
  log?: (line: string) => void;
}

export async function loadData(spec: string, options: LoadDataOptions): Promise<DataSplits> {
  const colon = spec.indexOf(':');
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  const arg = colon < 0 ? '' : spec.slice(colon + 1);
  switch (kind) {
    case 'fashion-mnist': {
      let dir = arg;
      let description: string;
      if (!dir || dir === 'bundled') {
        const full = dir !== 'bundled' && existsSync(join(FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz'));
        const bundled = bundledFashionMnistDir();
        if (full) {
          dir = FASHION_MNIST_DIR;
          description = `fashion-mnist (${FASHION_MNIST_DIR})`;
        } else if (bundled) {
          dir = bundled;
          description = 'fashion-mnist (the subset bundled with @vit/cli)';
        } else {
          throw new InputError(`no Fashion-MNIST found: install Debian's dataset-fashion-mnist (files in ${FASHION_MNIST_DIR}) or pass fashion-mnist:DIR`);
        }
      } else {
        dir = resolve(dir);
        description = `fashion-mnist (${dir})`;
      }
      const train = await fashionMnist({ dir, split: 'train' });
      const val = await fashionMnist({ dir, split: 'test' });
      return { description: `${description}: ${train.length} train / ${val.length} test`, train, val, classNames: train.classNames };
    }
    case 'mnist': {
      if (!arg) throw new UsageError('mnist needs a folder: --data mnist:DIR');
      const dir = resolve(arg);
      const train = await mnist({ dir, split: 'train' });
      const val = await mnist({ dir, split: 'test' });
      return { description: `mnist (${dir}): ${train.length} train / ${val.length} test`, train, val, classNames: train.classNames };
    }
    case 'cifar10': {
      if (!arg) throw new UsageError('cifar10 needs a path: --data cifar10:PATH (the extracted folder or cifar-10-binary.tar.gz)');
      const path = resolve(arg);
      const train = await cifar10({ path, split: 'train' });
      const val = await cifar10({ path, split: 'test' });
      return { description: `cifar10 (${path}): ${train.length} train / ${val.length} test`, train, val, classNames: train.classNames };
    }
    case 'folder': {
      if (!arg) throw new UsageError('folder needs a directory: --data folder:DIR');
      const dir = resolve(arg);
      // Every image is decoded (and cached) before the first step, so a corrupt or non-image file
      // is reported now, all of them at once, and not an epoch into the run.
      const log = options.log ?? (() => {});
      let lastReport = Date.now();
      const common = {
        size: options.imageSize,
        channels: options.channels,
        cache: true,
        check: 'full',
        badImages: options.badImages ?? 'error',
        onCheckProgress: (done: number, total: number) => {
          if (total >= 2000 && (Date.now() - lastReport > 5000 || done === total)) {
            lastReport = Date.now();
            log(`checking images: ${done}/${total}`);
          }
        },
      } as const;
      const warnSkipped = (ds: { skipped: readonly { file: string; reason: string }[] }) => {
        for (const b of ds.skipped) log(`warning: skipped ${b.file}: ${b.reason}`);
      };
      if (existsSync(join(dir, 'train')) && existsSync(join(dir, 'val'))) {
        const train = await imageFolder({ dir: join(dir, 'train'), ...common });
        const val = await imageFolder({ dir: join(dir, 'val'), ...common });
        warnSkipped(train);
        warnSkipped(val);
        if (val.classNames.join('\n') !== train.classNames.join('\n')) {
          throw new InputError(`${dir}/train and ${dir}/val have different class folders: [${train.classNames.join(', ')}] vs [${val.classNames.join(', ')}]`);
        }
        return { description: `folder (${dir}): ${train.length} train / ${val.length} val`, train, val, classNames: train.classNames };
      }
      const all = await imageFolder({ dir, ...common });
      warnSkipped(all);
      const { train, val } = await splitDataset(all, { valSize: options.valFraction ?? 0.1, seed: options.seed });
      return { description: `folder (${dir}): ${train.length} train / ${val.length} val (stratified split)`, train, val, classNames: all.classNames };
    }
    case 'synthetic': {
      const n = arg ? Number(arg) : 2048;
      if (!Number.isInteger(n) || n < 20) throw new UsageError(`synthetic:N expects an integer N ≥ 20, got '${arg}'`);
      const size = options.imageSize;
      const train = synthetic({ length: n, numClasses: 10, imageShape: [size, size, options.channels], seed: options.seed });
      const val = synthetic({ length: Math.max(10, Math.round(n / 5)), numClasses: 10, imageShape: [size, size, options.channels], seed: options.seed + 1 });
      return { description: `synthetic: ${train.length} train / ${val.length} val`, train, val, classNames: train.classNames };
    }
    default:
      throw new UsageError(`unknown data spec '${spec}'.\n${DATA_SPEC_HELP}`);
  }
}

/** The training transform of a recipe for images of `srcSize` trained at `size`. */
export function trainTransform(aug: AugmentSpec, srcSize: number, size: number): Transform {
  const t: Transform[] = [];
  if (aug.preResize) t.push(new Resize(aug.preResize, 'bilinear'));
  if (aug.colorJitter) t.push(new ColorJitter({ brightness: aug.colorJitter, contrast: aug.colorJitter, saturation: aug.colorJitter }));
  if (aug.rrcScale) {
    t.push(new RandomResizedCrop(size, { scale: aug.rrcScale, interpolation: 'bilinear' }));
  } else {
    if (srcSize !== size) t.push(new Resize(size, 'bilinear'));
    // -1: the default padding of 1/8 of the side (4 px at 32, 3 at 28).
    const pad = aug.cropPadding === -1 ? Math.round(size / 8) : (aug.cropPadding ?? 0);
    if (pad > 0) t.push(new RandomCrop(size, { padding: pad }));
  }
  if (aug.flip) t.push(new RandomHorizontalFlip(aug.flip));
  if (aug.rotation) t.push(new RandomRotation(aug.rotation));
  if (aug.erasing) t.push(new RandomErasing({ p: aug.erasing }));
  return new Compose(t);
}

/** Evaluation transform: resize small images to the model size; centre-crop large ones by `cropPct`. */
export function evalTransform(srcSize: number, size: number, cropPct = 1): Transform {
  if (srcSize === size) return new Compose([]);
  if (srcSize < size || cropPct >= 1) return new Resize(size, 'bilinear');
  return new CenterCrop(size, { cropPct, interpolation: 'bilinear' });
}
