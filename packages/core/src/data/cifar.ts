import { ConfigError, DataError, FormatError } from '../errors.js';
import { readMaybeGzip } from './files.js';
import type { Split } from './idx.js';
import { ArrayDataset } from './memory.js';
import { nodeApi } from './node.js';
import { readTar } from './tar.js';

export const CIFAR10_CLASSES: readonly string[] = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
];

const RECORD = 1 + 32 * 32 * 3;
const TRAIN_FILES = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`);
const TEST_FILES = ['test_batch.bin'];

/**
 * Decodes CIFAR-10 binary records (a label byte, then 1024 red, 1024 green, 1024 blue bytes, rows
 * top to bottom) into HWC pixels and labels. `file` names the source in errors.
 */
export function parseCifar10Batch(bytes: Uint8Array, file = 'CIFAR-10 batch'): { images: Uint8Array; labels: Uint8Array } {
  if (bytes.length === 0 || bytes.length % RECORD !== 0) {
    throw new FormatError(
      `${file}: ${bytes.length} bytes is not a whole number of ${RECORD}-byte CIFAR-10 records (label + 32x32x3) (truncated or not a CIFAR-10 binary batch)`,
    );
  }
  const n = bytes.length / RECORD;
  const images = new Uint8Array(n * 3072);
  const labels = new Uint8Array(n);
  for (let r = 0; r < n; r++) {
    const base = r * RECORD;
    const label = bytes[base]!;
    if (label > 9) throw new FormatError(`${file}: record ${r} has label ${label}; CIFAR-10 labels are 0–9 (is this CIFAR-100?)`);
    labels[r] = label;
    const out = r * 3072;
    for (let p = 0; p < 1024; p++) {
      images[out + p * 3] = bytes[base + 1 + p]!;
      images[out + p * 3 + 1] = bytes[base + 1025 + p]!;
      images[out + p * 3 + 2] = bytes[base + 2049 + p]!;
    }
  }
  return { images, labels };
}

function classNamesFrom(meta: Uint8Array | undefined): readonly string[] {
  if (!meta) return CIFAR10_CLASSES;
  const names = new TextDecoder().decode(meta).split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
  return names.length === 10 ? names : CIFAR10_CLASSES;
}

function assemble(parts: Array<{ images: Uint8Array; labels: Uint8Array }>, classNames: readonly string[]): ArrayDataset {
  const n = parts.reduce((a, p) => a + p.labels.length, 0);
  const images = new Uint8Array(n * 3072);
  const labels = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    images.set(p.images, at * 3072);
    labels.set(p.labels, at);
    at += p.labels.length;
  }
  return new ArrayDataset(images, labels, [32, 32, 3], classNames);
}

export interface Cifar10Options {
  /** A folder with `data_batch_1.bin`…`data_batch_5.bin` and `test_batch.bin` (e.g. the extracted `cifar-10-batches-bin`), or `cifar-10-binary.tar.gz` itself. */
  path: string;
  split?: Split;
}

/**
 * CIFAR-10 (32×32×3 uint8, 10 classes) from the binary distribution: the extracted folder or the
 * `.tar.gz` (read in memory, nothing is written). Class names come from `batches.meta.txt` when present.
 */
export async function cifar10(options: Cifar10Options): Promise<ArrayDataset> {
  const split = options.split ?? 'train';
  if (split !== 'train' && split !== 'test') throw new ConfigError(`split must be 'train' or 'test', got '${String(split)}'`);
  const wanted = split === 'train' ? TRAIN_FILES : TEST_FILES;
  const { fs, path } = await nodeApi('Reading CIFAR-10');
  const join = path.join;
  let info;
  try {
    info = await fs.stat(options.path);
  } catch {
    throw new DataError(`CIFAR-10 path ${options.path} does not exist (give the cifar-10-batches-bin folder or cifar-10-binary.tar.gz)`);
  }
  if (info.isDirectory()) {
    const present = new Set(await fs.readdir(options.path));
    // The archive's top folder, when given the folder that holds it.
    if (!wanted.every((f) => present.has(f)) && present.has('cifar-10-batches-bin')) {
      return cifar10({ ...options, path: join(options.path, 'cifar-10-batches-bin') });
    }
    const missing = wanted.filter((f) => !present.has(f));
    if (missing.length) throw new DataError(`${options.path}: missing CIFAR-10 file(s) ${missing.join(', ')}`);
    const parts = await Promise.all(
      wanted.map(async (f) => {
        const p = join(options.path, f);
        return parseCifar10Batch(await readMaybeGzip(p), p);
      }),
    );
    const meta = present.has('batches.meta.txt') ? await readMaybeGzip(join(options.path, 'batches.meta.txt')) : undefined;
    return assemble(parts, classNamesFrom(meta));
  }
  const bytes = await readMaybeGzip(options.path);
  const entries = readTar(bytes, options.path);
  const byName = new Map(entries.map((e) => [path.basename(e.name), e] as const));
  const missing = wanted.filter((f) => !byName.has(f));
  if (missing.length) {
    throw new FormatError(`${options.path}: archive lacks CIFAR-10 file(s) ${missing.join(', ')} (is it the binary version, cifar-10-binary.tar.gz?)`);
  }
  const parts = wanted.map((f) => parseCifar10Batch(byName.get(f)!.data, `${options.path}:${byName.get(f)!.name}`));
  return assemble(parts, classNamesFrom(byName.get('batches.meta.txt')?.data));
}
