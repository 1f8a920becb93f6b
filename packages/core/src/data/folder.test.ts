import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataError, FormatError } from '../errors.js';
import { setTestBackend } from '../testing/backend.js';
import { imageFolder } from './folder.js';
import { DataLoader } from './loader.js';

const tmp = mkdtempSync(join(tmpdir(), 'vit-folder-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A 4x6 RGB image whose pixel (y, x) is [10y + x, 100 + 10y + x, 200 − x]. */
const rgb = Buffer.from(Array.from({ length: 4 * 6 }, (_, p) => [10 * Math.floor(p / 6) + (p % 6), 100 + 10 * Math.floor(p / 6) + (p % 6), 200 - (p % 6)]).flat());

async function save(path: string, data: Buffer, width: number, height: number, channels: 1 | 3 | 4, format: 'png' | 'jpeg' | 'webp'): Promise<void> {
  mkdirSync(join(path, '..'), { recursive: true });
  const img = sharp(data, { raw: { width, height, channels } });
  await (format === 'png' ? img.png() : format === 'jpeg' ? img.jpeg({ quality: 95 }) : img.webp({ lossless: true })).toFile(path);
}

const root = join(tmp, 'ds');
beforeAll(async () => {
  await setTestBackend();
  // Classes 'cat' (1 PNG + 1 nested lossless WebP) and 'dog' (gray PNG, RGBA PNG, JPEG); plus noise to ignore.
  await save(join(root, 'cat', 'a.png'), rgb, 6, 4, 3, 'png');
  await save(join(root, 'cat', 'sub', 'b.webp'), rgb, 6, 4, 3, 'webp');
  await save(join(root, 'dog', 'gray.PNG'), Buffer.from(Array.from({ length: 24 }, (_, i) => i * 10)), 6, 4, 1, 'png');
  const rgba = Buffer.from(Array.from({ length: 24 }, (_, p) => [rgb[p * 3]!, rgb[p * 3 + 1]!, rgb[p * 3 + 2]!, 255]).flat());
  await save(join(root, 'dog', 'rgba.png'), rgba, 6, 4, 4, 'png');
  await save(join(root, 'dog', 'photo.jpg'), Buffer.alloc(16 * 16 * 3, 128), 16, 16, 3, 'jpeg');
  writeFileSync(join(root, 'dog', 'notes.txt'), 'not an image');
  writeFileSync(join(root, 'dog', '.hidden.png'), 'ignored');
  mkdirSync(join(root, '.git'));
});

describe('imageFolder', () => {
  it('lists classes in sorted order and decodes PNG/WebP exactly', async () => {
    const ds = await imageFolder({ dir: root, size: [4, 6] });
    expect(ds.classNames).toEqual(['cat', 'dog']);
    expect(ds.length).toBe(5);
    expect(ds.imageShape).toEqual([4, 6, 3]);
    expect(ds.files.map((f) => f.slice(root.length + 1))).toEqual(['cat/a.png', 'cat/sub/b.webp', 'dog/gray.PNG', 'dog/photo.jpg', 'dog/rgba.png']);
    expect(Array.from(ds.labels)).toEqual([0, 0, 1, 1, 1]);
    const a = await ds.get(0);
    expect(a.label).toBe(0);
    expect(Buffer.from(a.image).equals(rgb)).toBe(true);
    expect(Buffer.from((await ds.get(1)).image).equals(rgb)).toBe(true);
    // Grayscale expands to three equal channels, alpha is dropped.
    const gray = (await ds.get(2)).image;
    expect(Array.from(gray.subarray(0, 9))).toEqual([0, 0, 0, 10, 10, 10, 20, 20, 20]);
    expect(Buffer.from((await ds.get(4)).image).equals(rgb)).toBe(true);
    // JPEG: lossy but a flat grey stays close; resized to the fixed size.
    const jpg = (await ds.get(3)).image;
    expect(jpg.length).toBe(4 * 6 * 3);
    expect(Math.max(...Array.from(jpg, (v) => Math.abs(v - 128)))).toBeLessThanOrEqual(2);
  });

  it('resizes to the requested size and channel count, and caches', async () => {
    const ds = await imageFolder({ dir: root, size: 3, channels: 1, fit: 'fill', cache: true });
    expect(ds.imageShape).toEqual([3, 3, 1]);
    const s = await ds.get(0);
    expect(s.image.length).toBe(9);
    expect(await ds.get(0)).toEqual(s);
    expect((await ds.get(0)).image).toBe(s.image);
  });

  it('rejects unreadable images naming the file', async () => {
    const bad = join(tmp, 'bad');
    mkdirSync(join(bad, 'x'), { recursive: true });
    writeFileSync(join(bad, 'x', 'garbage.png'), 'this is not a png');
    const png = readFileSync(join(root, 'cat', 'a.png'));
    writeFileSync(join(bad, 'x', 'truncated.png'), png.subarray(0, png.length - 30));
    const ds = await imageFolder({ dir: bad, size: 4, check: 'none' });
    await expect(ds.get(0)).rejects.toThrow(FormatError);
    await expect(ds.get(0)).rejects.toThrow(/bad\/x\/garbage\.png: cannot decode image/);
    await expect(ds.get(1)).rejects.toThrow(/bad\/x\/truncated\.png: cannot decode image/);
  });

  it('checks every image before returning: lists all bad files, or skips them', async () => {
    const dir = join(tmp, 'checked');
    const png = readFileSync(join(root, 'cat', 'a.png'));
    for (const c of ['a', 'b']) {
      mkdirSync(join(dir, c), { recursive: true });
      for (let i = 0; i < 5; i++) writeFileSync(join(dir, c, `${i}.png`), png);
    }
    writeFileSync(join(dir, 'a', 'text.jpg'), 'a text file named .jpg');
    writeFileSync(join(dir, 'b', 'cut.png'), png.subarray(0, png.length - 30));
    // The header check finds the file that is not an image; only decoding finds the truncated one.
    const header = imageFolder({ dir, size: 4 });
    await expect(header).rejects.toThrow(DataError);
    await expect(imageFolder({ dir, size: 4 })).rejects.toThrow(/checked: 1 of 12 image files cannot be read.*\n  .*checked\/a\/text\.jpg: /s);
    const progress: number[] = [];
    const full = imageFolder({ dir, size: 4, check: 'full', onCheckProgress: (done, total) => progress.push(done / total) });
    await expect(full).rejects.toThrow(/2 of 12 image files cannot be read/);
    await expect(imageFolder({ dir, size: 4, check: 'full' })).rejects.toThrow(/a\/text\.jpg: cannot decode image.*\n  .*b\/cut\.png: cannot decode image/s);
    expect(progress.at(-1)).toBe(1);

    const skipped = await imageFolder({ dir, size: 4, check: 'full', badImages: 'skip', cache: true });
    expect(skipped.length).toBe(10);
    expect(skipped.skipped.map((b) => b.file)).toEqual([join(dir, 'a', 'text.jpg'), join(dir, 'b', 'cut.png')]);
    expect(skipped.files.some((f) => f.endsWith('text.jpg') || f.endsWith('cut.png'))).toBe(false);
    expect(Array.from(skipped.labels)).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    for (let i = 0; i < skipped.length; i++) expect((await skipped.get(i)).image.length).toBe(48);

    // A class with nothing readable left is an error even when skipping.
    const dead = join(tmp, 'dead');
    mkdirSync(join(dead, 'ok'), { recursive: true });
    mkdirSync(join(dead, 'broken'), { recursive: true });
    writeFileSync(join(dead, 'ok', '0.png'), png);
    writeFileSync(join(dead, 'broken', '0.png'), 'nope');
    await expect(imageFolder({ dir: dead, size: 4, badImages: 'skip' })).rejects.toThrow(/no readable images left in class folder\(s\) broken/);
  });

  it('rejects folders without classes or with an empty class, and bad options', async () => {
    const empty = join(tmp, 'empty');
    mkdirSync(join(empty, 'a'), { recursive: true });
    writeFileSync(join(empty, 'a', 'readme.txt'), 'x');
    await expect(imageFolder({ dir: empty, size: 4 })).rejects.toThrow(/class 'a' has no images/);
    await expect(imageFolder({ dir: join(empty, 'a'), size: 4 })).rejects.toThrow(/no class sub-folders/);
    await expect(imageFolder({ dir: join(tmp, 'missing'), size: 4 })).rejects.toThrow(DataError);
    await expect(imageFolder({ dir: root, size: 0 })).rejects.toThrow(/positive integer/);
    await expect(imageFolder({ dir: root, size: 4, channels: 2 as 3 })).rejects.toThrow(/channels must be 1 or 3/);
  });
});

describe('imageFolder + DataLoader', () => {
  it('batches decoded images (async gets) into tensors', async () => {
    const before = tf.memory().numTensors;
    const ds = await imageFolder({ dir: root, size: [4, 6] });
    const loader = new DataLoader(ds, { batchSize: 2, prefetch: 2 });
    const shapes: number[][] = [];
    const labels: number[] = [];
    for await (const b of loader.epoch(0)) {
      shapes.push(b.x.shape);
      labels.push(...b.labels);
      tf.dispose([b.x, b.y]);
    }
    expect(shapes).toEqual([[2, 4, 6, 3], [2, 4, 6, 3], [1, 4, 6, 3]]);
    expect(labels).toEqual([0, 0, 1, 1, 1]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
