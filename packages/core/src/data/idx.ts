import { ConfigError, DataError, FormatError } from '../errors.js';
import { readMaybeGzip } from './files.js';
import { ArrayDataset } from './memory.js';
import { exists, nodeApi } from './node.js';

/** A parsed IDX file (the MNIST format): its dimensions and its unsigned-byte data. */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/**
 * Parses IDX bytes: two zero bytes, a type code (only 0x08, unsigned byte, is accepted), the
 * number of dimensions, the big-endian int32 sizes, then the data. `file` names the source in errors.
 */
export function parseIdx(bytes: Uint8Array, file = 'IDX data'): IdxArray {
  if (bytes.length < 4) throw new FormatError(`${file}: not an IDX file (only ${bytes.length} bytes, shorter than the 4-byte magic)`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    const magic = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new FormatError(`${file}: bad IDX magic ${magic} (expected 00 00 08 <ndims>)`);
  }
  if (bytes[2] !== 0x08) {
    throw new FormatError(`${file}: unsupported IDX data type 0x${bytes[2]!.toString(16).padStart(2, '0')} (only unsigned byte, 0x08, is supported)`);
  }
  const ndims = bytes[3]!;
  if (ndims < 1) throw new FormatError(`${file}: IDX header declares 0 dimensions`);
  const headerLen = 4 + 4 * ndims;
  if (bytes.length < headerLen) throw new FormatError(`${file}: truncated IDX header (${bytes.length} bytes, header needs ${headerLen})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < ndims; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, b) => a * b, 1);
  const have = bytes.length - headerLen;
  if (have < count) {
    throw new FormatError(`${file}: truncated: dimensions [${dims.join(', ')}] need ${count} data bytes, found ${have}`);
  }
  if (have > count) {
    throw new FormatError(`${file}: ${have - count} unexpected bytes after the data of dimensions [${dims.join(', ')}]`);
  }
  return { dims, data: bytes.subarray(headerLen) };
}

/** Reads an IDX file, gzipped or not. */
export async function readIdxFile(path: string): Promise<IdxArray> {
  return parseIdx(await readMaybeGzip(path), path);
}

export interface IdxDatasetOptions {
  images: string;
  labels: string;
  classNames: readonly string[];
}

/**
 * An image dataset from an IDX image file (`[N, H, W]` or `[N, H, W, C]`) and an IDX label
 * file (`[N]`), checked against each other.
 */
export async function idxDataset(options: IdxDatasetOptions): Promise<ArrayDataset> {
  const [images, labels] = await Promise.all([readIdxFile(options.images), readIdxFile(options.labels)]);
  if (images.dims.length !== 3 && images.dims.length !== 4) {
    throw new FormatError(`${options.images}: expected an image file with dimensions [N, H, W] or [N, H, W, C], got [${images.dims.join(', ')}]`);
  }
  if (labels.dims.length !== 1) {
    throw new FormatError(`${options.labels}: expected a label file with one dimension [N], got [${labels.dims.join(', ')}]`);
  }
  const n = images.dims[0]!;
  if (labels.dims[0] !== n) {
    throw new FormatError(`${options.labels}: has ${labels.dims[0]} labels but ${options.images} has ${n} images`);
  }
  const K = options.classNames.length;
  const bad = labels.data.findIndex((l) => l >= K);
  if (bad >= 0) throw new FormatError(`${options.labels}: label ${labels.data[bad]} of example ${bad} is not a class index below ${K}`);
  const [, h, w, c = 1] = images.dims as [number, number, number, number?];
  return new ArrayDataset(images.data, labels.data, [h, w, c], options.classNames);
}

export const FASHION_MNIST_CLASSES: readonly string[] = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

export const MNIST_CLASSES: readonly string[] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

/** Where Debian's `dataset-fashion-mnist` package installs the full data set. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export type Split = 'train' | 'test';

export interface MnistOptions {
  /** Folder holding `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, `t10k-…`. */
  dir?: string;
  split?: Split;
}

async function findIdx(dir: string, base: string): Promise<string> {
  const { path } = await nodeApi('Reading IDX files');
  for (const name of [`${base}.gz`, base]) {
    const p = path.join(dir, name);
    if (await exists(p)) return p;
  }
  throw new DataError(`No ${base}[.gz] in ${dir}: expected the MNIST-format files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (gzipped or not)`);
}

async function mnistLike(dir: string, split: Split, classNames: readonly string[]): Promise<ArrayDataset> {
  if (split !== 'train' && split !== 'test') throw new ConfigError(`split must be 'train' or 'test', got '${String(split)}'`);
  if (!(await exists(dir))) throw new DataError(`Dataset folder ${dir} does not exist`);
  const prefix = split === 'train' ? 'train' : 't10k';
  return idxDataset({
    images: await findIdx(dir, `${prefix}-images-idx3-ubyte`),
    labels: await findIdx(dir, `${prefix}-labels-idx1-ubyte`),
    classNames,
  });
}

/**
 * Fashion-MNIST (28×28×1 uint8, 10 classes) from IDX files, by default Debian's
 * /usr/share/datasets/fashion-mnist. Any folder with the same file names works (the CLI's
 * bundled subset, a download of the originals).
 */
export function fashionMnist(options: MnistOptions = {}): Promise<ArrayDataset> {
  return mnistLike(options.dir ?? FASHION_MNIST_DIR, options.split ?? 'train', FASHION_MNIST_CLASSES);
}

/** MNIST digits from a folder of the original IDX files. */
export function mnist(options: MnistOptions & { dir: string }): Promise<ArrayDataset> {
  return mnistLike(options.dir, options.split ?? 'train', MNIST_CLASSES);
}
