#!/usr/bin/env node
// Makes the Fashion-MNIST subset bundled with @vit/cli: a balanced, seeded sample of the train and
// test splits of the full data set, written as gzipped IDX files with the original names, so
// `fashionMnist({ dir })` reads it like the full set.
//
//   node tools/make-fashion-mnist-subset.mjs [--src DIR] [--out DIR] [--train-per-class N] [--test-per-class N] [--seed S]
//
// Defaults: --src /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist package),
// --out packages/cli/data/fashion-mnist-subset, 500 train and 100 test images per class, seed 0.
// The output is a pure function of the source files and these options.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gunzipSync, gzipSync, constants } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    src: { type: 'string', default: '/usr/share/datasets/fashion-mnist' },
    out: { type: 'string', default: join(root, 'packages/cli/data/fashion-mnist-subset') },
    'train-per-class': { type: 'string', default: '500' },
    'test-per-class': { type: 'string', default: '100' },
    seed: { type: 'string', default: '0' },
  },
});

const CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

function readIdx(path) {
  let bytes = readFileSync(path);
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
  if (bytes[0] !== 0 || bytes[1] !== 0 || bytes[2] !== 0x08) throw new Error(`${path}: not an unsigned-byte IDX file`);
  const nd = bytes[3];
  const dims = Array.from({ length: nd }, (_, i) => bytes.readUInt32BE(4 + 4 * i));
  const data = bytes.subarray(4 + 4 * nd);
  if (data.length !== dims.reduce((a, b) => a * b, 1)) throw new Error(`${path}: size does not match dims ${dims}`);
  return { dims, data };
}

function idxBytes(dims, data) {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head[2] = 0x08;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, data]);
}

// mulberry32: small, seeded, and stable across Node versions (Math.random is not seedable).
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function find(dir, base) {
  for (const name of [`${base}.gz`, base]) {
    if (existsSync(join(dir, name))) return join(dir, name);
  }
  throw new Error(`No ${base}[.gz] in ${dir} (install Debian's dataset-fashion-mnist or pass --src)`);
}

/** Indices of `perClass` examples of every class, drawn by a seeded shuffle, kept in source order. */
function balanced(labels, perClass, seed) {
  const n = labels.length;
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const r = rng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const counts = new Array(CLASSES.length).fill(0);
  const picked = [];
  for (const i of order) {
    if (counts[labels[i]] < perClass) {
      counts[labels[i]]++;
      picked.push(i);
    }
  }
  if (counts.some((c) => c < perClass)) throw new Error(`A class has fewer than ${perClass} examples: ${counts}`);
  return picked.sort((a, b) => a - b);
}

mkdirSync(opts.out, { recursive: true });
const seed = Number(opts.seed);
const summary = [];
for (const [split, prefix, perClass] of [
  ['train', 'train', Number(opts['train-per-class'])],
  ['test', 't10k', Number(opts['test-per-class'])],
]) {
  const images = readIdx(find(opts.src, `${prefix}-images-idx3-ubyte`));
  const labels = readIdx(find(opts.src, `${prefix}-labels-idx1-ubyte`));
  const [n, h, w] = images.dims;
  if (labels.dims[0] !== n) throw new Error(`${split}: ${labels.dims[0]} labels for ${n} images`);
  // Different streams for the two splits.
  const picked = balanced(labels.data, perClass, seed * 2 + (split === 'train' ? 0 : 1));
  const px = h * w;
  const outImages = Buffer.alloc(picked.length * px);
  const outLabels = Buffer.alloc(picked.length);
  picked.forEach((src, k) => {
    images.data.copy(outImages, k * px, src * px, (src + 1) * px);
    outLabels[k] = labels.data[src];
  });
  for (const [name, bytes] of [
    [`${prefix}-images-idx3-ubyte.gz`, idxBytes([picked.length, h, w], outImages)],
    [`${prefix}-labels-idx1-ubyte.gz`, idxBytes([picked.length], outLabels)],
  ]) {
    // mtime 0 in the gzip header (zlib writes none) keeps the output byte-identical across runs.
    const gz = gzipSync(bytes, { level: constants.Z_BEST_COMPRESSION });
    writeFileSync(join(opts.out, name), gz);
    summary.push({ name, bytes: gz.length, sha256: createHash('sha256').update(gz).digest('hex') });
  }
  // The source positions, so anyone can check the subset against the full set.
  writeFileSync(join(opts.out, `${prefix}-indices.txt`), picked.join('\n') + '\n');
  console.log(`${split}: ${picked.length} images (${perClass} per class) of ${n}`);
}
for (const s of summary) console.log(`${s.name}  ${s.bytes} bytes  sha256 ${s.sha256}`);
console.log(`written to ${relative(process.cwd(), opts.out) || '.'}`);
