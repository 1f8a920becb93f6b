import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { DataError, FormatError } from '../errors.js';
import { CIFAR10_CLASSES, cifar10, parseCifar10Batch } from './cifar.js';
import { readTar } from './tar.js';

const RECORD = 3073;

/** n CIFAR records: label (offset + r) % 10, channel c of pixel p = (r·7 + c·50 + p) % 256. */
function batch(n: number, offset = 0): Uint8Array {
  const out = new Uint8Array(n * RECORD);
  for (let r = 0; r < n; r++) {
    out[r * RECORD] = (offset + r) % 10;
    for (let c = 0; c < 3; c++) for (let p = 0; p < 1024; p++) out[r * RECORD + 1 + c * 1024 + p] = (r * 7 + c * 50 + p) % 256;
  }
  return out;
}

/** A minimal ustar writer (what `tar` produces for short names). */
function tar(files: Array<[string, Uint8Array]>, opts: { endBlocks?: boolean } = {}): Uint8Array {
  const blocks: Uint8Array[] = [];
  for (const [name, data] of files) {
    const h = new Uint8Array(512);
    const put = (s: string, at: number) => h.set(new TextEncoder().encode(s), at);
    put(name, 0);
    put('0000644\0', 100);
    put('0000000\0', 108);
    put('0000000\0', 116);
    put(data.length.toString(8).padStart(11, '0') + '\0', 124);
    put('00000000000\0', 136);
    put('        ', 148);
    h[156] = '0'.charCodeAt(0);
    put('ustar\0' + '00', 257);
    const sum = h.reduce((a, b) => a + b, 0);
    put(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, data, new Uint8Array((512 - (data.length % 512)) % 512));
  }
  if (opts.endBlocks !== false) blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((a, b) => a + b.length, 0));
  let at = 0;
  for (const b of blocks) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), 'vit-cifar-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const files: Array<[string, Uint8Array]> = [
  ...[1, 2, 3, 4, 5].map((i) => [`cifar-10-batches-bin/data_batch_${i}.bin`, batch(3, i * 3)] as [string, Uint8Array]),
  ['cifar-10-batches-bin/test_batch.bin', batch(4)],
  ['cifar-10-batches-bin/batches.meta.txt', new TextEncoder().encode(CIFAR10_CLASSES.join('\n') + '\n\n')],
];

describe('parseCifar10Batch', () => {
  it('turns planar CHW records into HWC pixels', () => {
    const { images, labels } = parseCifar10Batch(batch(2, 4));
    expect(Array.from(labels)).toEqual([4, 5]);
    // Record 1, pixel 5 (row 0, col 5): R = 7 + 5, G = 7 + 50 + 5, B = 7 + 100 + 5.
    expect(Array.from(images.subarray(3072 + 15, 3072 + 18))).toEqual([12, 62, 112]);
  });

  it('rejects truncated files and foreign labels, naming the file', () => {
    expect(() => parseCifar10Batch(batch(2).subarray(0, 5000), 'x.bin')).toThrow(FormatError);
    expect(() => parseCifar10Batch(batch(2).subarray(0, 5000), 'x.bin')).toThrow(/x\.bin: 5000 bytes is not a whole number of 3073-byte/);
    expect(() => parseCifar10Batch(new Uint8Array(0), 'x.bin')).toThrow(/0 bytes/);
    const b = batch(2);
    b[RECORD] = 57;
    expect(() => parseCifar10Batch(b, 'y.bin')).toThrow(/y\.bin: record 1 has label 57/);
  });
});

describe('cifar10', () => {
  it('reads the extracted folder (or its parent) and both splits', async () => {
    const dir = join(tmp, 'extracted');
    for (const [name, data] of files) {
      mkdirSync(join(dir, 'cifar-10-batches-bin'), { recursive: true });
      writeFileSync(join(dir, name), data);
    }
    const train = await cifar10({ path: join(dir, 'cifar-10-batches-bin') });
    expect(train.length).toBe(15);
    expect(train.imageShape).toEqual([32, 32, 3]);
    expect(train.classNames).toEqual(CIFAR10_CLASSES);
    expect(Array.from({ length: 15 }, (_, i) => train.get(i).label)).toEqual(Array.from({ length: 15 }, (_, i) => (i + 3) % 10));
    const test = await cifar10({ path: dir, split: 'test' });
    expect(test.length).toBe(4);
    expect(Array.from(test.get(1).image.subarray(0, 3))).toEqual([7, 57, 107]);
  });

  it('reads the .tar.gz in memory, equal to the folder', async () => {
    const p = join(tmp, 'cifar-10-binary.tar.gz');
    writeFileSync(p, gzipSync(tar(files)));
    const fromTar = await cifar10({ path: p });
    const fromDir = await cifar10({ path: join(tmp, 'extracted') });
    expect(fromTar.length).toBe(15);
    expect(Buffer.from(fromTar.images).equals(Buffer.from(fromDir.images))).toBe(true);
    expect(Array.from(fromTar.labels)).toEqual(Array.from(fromDir.labels));
  });

  it('reads an archive made by the system tar', async () => {
    let tarOk = true;
    try {
      execFileSync('tar', ['--version'], { stdio: 'ignore' });
    } catch {
      tarOk = false;
    }
    if (!tarOk) return; // no tar binary here: the hand-written archive above covers the format
    const p = join(tmp, 'system.tar.gz');
    execFileSync('tar', ['-czf', p, '-C', join(tmp, 'extracted'), 'cifar-10-batches-bin']);
    expect((await cifar10({ path: p, split: 'test' })).length).toBe(4);
  });

  it('rejects malformed archives and folders with messages naming the file', async () => {
    const gz = gzipSync(tar(files));
    const cut = join(tmp, 'cut.tar.gz');
    writeFileSync(cut, gz.subarray(0, gz.length - 100));
    await expect(cifar10({ path: cut })).rejects.toThrow(/cut\.tar\.gz: corrupt or truncated gzip data/);

    const raw = tar(files);
    const truncated = join(tmp, 'truncated.tar');
    writeFileSync(truncated, raw.subarray(0, 512 * 25));
    await expect(cifar10({ path: truncated })).rejects.toThrow(/truncated\.tar: truncated: entry 'cifar-10-batches-bin\/data_batch_2\.bin' needs 9219 bytes/);

    const corrupt = raw.slice();
    corrupt[3] ^= 0xff;
    writeFileSync(join(tmp, 'corrupt.tar'), corrupt);
    await expect(cifar10({ path: join(tmp, 'corrupt.tar') })).rejects.toThrow(/corrupt\.tar: not a tar archive or corrupt header at byte 0/);

    writeFileSync(join(tmp, 'notar.gz'), gzipSync(new TextEncoder().encode('hello world')));
    await expect(cifar10({ path: join(tmp, 'notar.gz') })).rejects.toThrow(FormatError);

    const partial = join(tmp, 'partial.tar');
    writeFileSync(partial, tar(files.slice(0, 4)));
    await expect(cifar10({ path: partial })).rejects.toThrow(/partial\.tar: archive lacks CIFAR-10 file\(s\) data_batch_5\.bin/);

    const badRecord = join(tmp, 'bad');
    mkdirSync(badRecord);
    for (const [name, data] of files) writeFileSync(join(badRecord, name.split('/')[1]!), name.includes('test') ? data.subarray(0, 7000) : data);
    await expect(cifar10({ path: badRecord, split: 'test' })).rejects.toThrow(/bad\/test_batch\.bin: 7000 bytes/);
    rmSync(join(badRecord, 'data_batch_3.bin'));
    await expect(cifar10({ path: badRecord })).rejects.toThrow(DataError);
    await expect(cifar10({ path: badRecord })).rejects.toThrow(/missing CIFAR-10 file\(s\) data_batch_3\.bin/);
    await expect(cifar10({ path: join(tmp, 'nowhere') })).rejects.toThrow(/does not exist/);
  });
});

describe('readTar', () => {
  it('lists regular files, accepts archives without end blocks, and uses GNU long names', () => {
    const long = 'd/'.repeat(60) + 'file.txt';
    const longHeader: [string, Uint8Array] = ['././@LongLink', new TextEncoder().encode(long + '\0')];
    const raw = tar([longHeader, ['short', new TextEncoder().encode(long)], ['b.txt', Uint8Array.from([1, 2, 3])]], { endBlocks: false });
    raw[156] = 'L'.charCodeAt(0);
    // Recompute the first header's checksum after changing its type.
    raw.fill(32, 148, 156);
    const sum = raw.subarray(0, 512).reduce((a, b) => a + b, 0);
    raw.set(new TextEncoder().encode(sum.toString(8).padStart(6, '0') + '\0 '), 148);
    const entries = readTar(raw);
    expect(entries.map((e) => e.name)).toEqual([long, 'b.txt']);
    expect(Array.from(entries[1]!.data)).toEqual([1, 2, 3]);
    expect(() => readTar(new Uint8Array(100), 'tiny.tar')).toThrow(/tiny\.tar: truncated tar archive/);
  });
});
