import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { DataError, FormatError } from '../errors.js';
import { FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, fashionMnist, idxDataset, mnist, parseIdx } from './idx.js';

function idx(dims: number[], data: Uint8Array, type = 0x08): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  out[2] = type;
  out[3] = dims.length;
  const v = new DataView(out.buffer);
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), 'vit-idx-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function write(name: string, bytes: Uint8Array, gz = false): string {
  const p = join(tmp, name);
  writeFileSync(p, gz ? gzipSync(bytes) : bytes);
  return p;
}

/** 5 images of 2x3 whose pixels encode (image, position), labels 0..4. */
const pixels = Uint8Array.from({ length: 30 }, (_, i) => i * 8);
const labels = Uint8Array.from([3, 1, 4, 1, 5]);

describe('parseIdx', () => {
  it('reads dims and data', () => {
    const a = parseIdx(idx([5, 2, 3], pixels));
    expect(a.dims).toEqual([5, 2, 3]);
    expect(Array.from(a.data)).toEqual(Array.from(pixels));
  });

  it.each([
    ['bad magic', Uint8Array.from([1, 2, 8, 1, 0, 0, 0, 0]), /f\.idx: bad IDX magic 01 02 08 01/],
    ['non-byte type', idx([2], Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0]), 0x0d), /unsupported IDX data type 0x0d/],
    ['short', Uint8Array.from([0, 0]), /not an IDX file/],
    ['truncated header', idx([5, 2, 3], pixels).subarray(0, 10), /truncated IDX header/],
    ['truncated data', idx([5, 2, 3], pixels).subarray(0, 30), /truncated: dimensions \[5, 2, 3\] need 30 data bytes, found 14/],
    ['trailing bytes', idx([4, 2, 3], pixels), /6 unexpected bytes after the data/],
  ])('rejects %s', (_name, bytes, message) => {
    expect(() => parseIdx(bytes, 'f.idx')).toThrow(FormatError);
    expect(() => parseIdx(bytes, 'f.idx')).toThrow(message);
  });
});

describe('idxDataset', () => {
  it('reads gzipped and plain files into samples', async () => {
    const ds = await idxDataset({
      images: write('i.gz', idx([5, 2, 3], pixels), true),
      labels: write('l', idx([5], labels)),
      classNames: ['a', 'b', 'c', 'd', 'e', 'f'],
    });
    expect(ds.length).toBe(5);
    expect(ds.imageShape).toEqual([2, 3, 1]);
    expect(ds.numClasses).toBe(6);
    const s = ds.get(2);
    expect(s.label).toBe(4);
    expect(Array.from(s.image)).toEqual(Array.from(pixels.subarray(12, 18)));
    expect(() => ds.get(5)).toThrow(/out of range/);
  });

  it('rejects mismatched counts, bad labels, wrong ranks and corrupt gzip, naming the file', async () => {
    const imgs = write('imgs', idx([5, 2, 3], pixels));
    const cls = ['a', 'b', 'c', 'd', 'e', 'f'];
    await expect(idxDataset({ images: imgs, labels: write('l4', idx([4], labels.subarray(0, 4))), classNames: cls })).rejects.toThrow(
      /l4: has 4 labels but .*imgs has 5 images/,
    );
    await expect(idxDataset({ images: imgs, labels: write('l5', idx([5], labels)), classNames: ['a', 'b', 'c', 'd'] })).rejects.toThrow(
      /l5: label 4 of example 2 is not a class index below 4/,
    );
    await expect(idxDataset({ images: write('flat', idx([30], pixels)), labels: write('l', idx([5], labels)), classNames: cls })).rejects.toThrow(
      /flat: expected an image file with dimensions \[N, H, W\]/,
    );
    await expect(idxDataset({ images: imgs, labels: write('l2d', idx([5, 1], labels)), classNames: cls })).rejects.toThrow(/l2d: expected a label file/);
    const gz = gzipSync(idx([5, 2, 3], pixels));
    const cut = write('cut.gz', gz.subarray(0, gz.length - 12));
    await expect(idxDataset({ images: cut, labels: write('l', idx([5], labels)), classNames: cls })).rejects.toThrow(
      /cut\.gz: corrupt or truncated gzip data/,
    );
    await expect(idxDataset({ images: join(tmp, 'nope'), labels: imgs, classNames: cls })).rejects.toThrow(/Cannot read .*nope/);
  });
});

describe('fashionMnist / mnist folders', () => {
  it('finds train and t10k files, gzipped or not', async () => {
    const dir = join(tmp, 'fm');
    mkdirSync(dir);
    const tenLabels = Uint8Array.from({ length: 10 }, (_, i) => i);
    const img28 = new Uint8Array(10 * 28 * 28).map((_, i) => i % 251);
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(idx([10, 28, 28], img28)));
    writeFileSync(join(dir, 'train-labels-idx1-ubyte.gz'), gzipSync(idx([10], tenLabels)));
    writeFileSync(join(dir, 't10k-images-idx3-ubyte'), idx([2, 28, 28], img28.subarray(0, 2 * 784)));
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idx([2], tenLabels.subarray(0, 2)));
    const train = await fashionMnist({ dir });
    expect(train.length).toBe(10);
    expect(train.classNames).toEqual(FASHION_MNIST_CLASSES);
    expect(train.get(9).label).toBe(9);
    const test = await mnist({ dir, split: 'test' });
    expect(test.length).toBe(2);
    expect(test.classNames[7]).toBe('7');
    await expect(fashionMnist({ dir: join(tmp, 'missing') })).rejects.toThrow(DataError);
    await expect(fashionMnist({ dir: tmp })).rejects.toThrow(/No train-images-idx3-ubyte\[\.gz\] in/);
    await expect(fashionMnist({ dir, split: 'val' as 'test' })).rejects.toThrow(/split must be/);
  });

  const bundled = fileURLToPath(new URL('../../../cli/data/fashion-mnist-subset', import.meta.url));
  it.skipIf(!existsSync(bundled))('reads the CLI bundled subset: balanced classes', async () => {
    for (const [split, perClass] of [['train', 500], ['test', 100]] as const) {
      const ds = await fashionMnist({ dir: bundled, split });
      const counts = new Array(10).fill(0);
      for (let i = 0; i < ds.length; i++) counts[ds.labelOf(i)]++;
      expect(counts).toEqual(new Array(10).fill(perClass));
    }
  });

  it.skipIf(!existsSync(FASHION_MNIST_DIR))(`reads the full test split from ${FASHION_MNIST_DIR}`, async () => {
    const ds = await fashionMnist({ split: 'test' });
    expect(ds.length).toBe(10000);
    expect(ds.imageShape).toEqual([28, 28, 1]);
    const counts = new Array(10).fill(0);
    for (let i = 0; i < ds.length; i++) counts[ds.labelOf(i)]++;
    expect(counts).toEqual(new Array(10).fill(1000));
  });
});
