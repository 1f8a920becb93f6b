#!/usr/bin/env node
// Pack-install test: `npm pack` every publishable package, install the tarballs into a fresh
// temporary project that has only @tensorflow/tfjs besides them, then import each package (ESM
// and CommonJS), build a model, run a forward pass, and run the installed `vit` binary.
// This catches what workspace symlinks hide: missing `files`, broken `exports`, undeclared deps.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const pkgDirs = ['core', 'cait', 'conv2former', 'hilo', 'mrla', 'regionvit', 'cli'];
const tmp = mkdtempSync(join(tmpdir(), 'vit-pack-'));
const keep = process.argv.includes('--keep');
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });

try {
  const tarballs = [];
  for (const d of pkgDirs) {
    const dir = join(root, 'packages', d);
    const pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    for (const f of ['dist/index.js', 'dist/index.cjs', 'dist/index.d.ts']) {
      try {
        readFileSync(join(dir, f));
      } catch {
        throw new Error(`${pj.name}: ${f} is missing — run the build first (npm run build)`);
      }
    }
    const out = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', tmp], dir));
    const files = out[0].files.map((f) => f.path);
    if (files.some((f) => f.startsWith('src/') || f.includes('.test.'))) throw new Error(`${pj.name}: tarball ships sources or tests: ${files.join(', ')}`);
    tarballs.push(join(tmp, out[0].filename));
    console.log(`packed ${out[0].filename} (${files.length} files, ${(out[0].size / 1024).toFixed(0)} kB)`);
  }

  const proj = join(tmp, 'app');
  run('mkdir', ['-p', proj], tmp);
  writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'vit-pack-test', private: true, type: 'module' }, null, 2));
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '@tensorflow/tfjs@^4.22.0', ...tarballs], proj);
  console.log('installed the tarballs with @tensorflow/tfjs only');

  writeFileSync(
    join(proj, 'esm.mjs'),
    `import * as tf from '@tensorflow/tfjs';
import { createModel, listModels, getModelCard, loadPretrained, Sequential, Conv2d, GELU, VERSION } from '@vit/core';
import '@vit/cait';
import '@vit/conv2former';
import '@vit/hilo';
import '@vit/mrla';
import '@vit/regionvit';
await tf.setBackend('cpu');
const net = new Sequential(new Conv2d(3, 8, 3, { stride: 2, padding: 1 }), new GELU());
const y = tf.tidy(() => net.forward(tf.ones([1, 16, 16, 3])));
if (y.shape.join() !== '1,8,8,8') throw new Error('core layer forward gave ' + y.shape);
y.dispose();
const names = listModels();
const byArch = new Map();
for (const n of names) {
  const c = getModelCard(n);
  const best = byArch.get(c.arch);
  if (!best || (c.paramCount ?? Infinity) < (best.paramCount ?? Infinity)) byArch.set(c.arch, c);
}
for (const c of byArch.values()) {
  const m = createModel(c.name);
  m.eval();
  const out = tf.tidy(() => m.forward(tf.zeros([1, c.inputSize[0], c.inputSize[1], c.inputSize[2]])));
  if (out.shape.join() !== [1, c.numClasses].join()) throw new Error(c.name + ' gave ' + out.shape);
  console.log('esm: ' + c.name + ' forward ok ' + JSON.stringify(out.shape) + ', ' + m.numParams() + ' params');
  out.dispose();
  m.dispose();
}
// Weights shipped inside a package load from the installed folder (the card's file: URL).
const pre = await loadPretrained('conv2former_nano');
if (!pre.file.includes('node_modules/@vit/conv2former/weights/')) throw new Error('conv2former_nano weights from ' + pre.file);
const logits = tf.tidy(() => pre.model.forward(tf.zeros([1, 32, 32, 3])));
if (logits.shape.join() !== '1,10') throw new Error('pretrained conv2former_nano gave ' + logits.shape);
logits.dispose();
pre.model.dispose();
console.log('esm: conv2former_nano.fashion_mnist loaded from ' + pre.file);
console.log('esm: @vit/core ' + VERSION + ', ' + names.length + ' registered models');
`,
  );
  writeFileSync(
    join(proj, 'cjs.cjs'),
    `const tf = require('@tensorflow/tfjs');
const core = require('@vit/core');
require('@vit/cait');
require('@vit/regionvit');
tf.setBackend('cpu').then(async () => {
  const lin = new core.Linear(4, 2);
  const y = tf.tidy(() => lin.forward(tf.ones([3, 4])));
  if (y.shape.join() !== '3,2') throw new Error('cjs Linear gave ' + y.shape);
  console.log('cjs: @vit/core ' + core.VERSION + ' Linear forward ok, ' + core.listModels().length + ' registered models');
  // The CJS build finds its package's weights too (import.meta.url shimmed by tsup).
  const pre = await core.loadPretrained('regionvit_nano');
  if (!pre.file.includes('node_modules/@vit/regionvit/weights/')) throw new Error('regionvit_nano weights from ' + pre.file);
  pre.model.dispose();
  console.log('cjs: regionvit_nano.fashion_mnist loaded from ' + pre.file);
});
`,
  );
  process.stdout.write(run('node', ['esm.mjs'], proj));
  process.stdout.write(run('node', ['cjs.cjs'], proj));
  process.stdout.write(`vit --version: ${run('npx', ['--no-install', 'vit', '--version'], proj)}`);
  const models = run('npx', ['--no-install', 'vit', 'models'], proj).trim().split('\n');
  console.log(`vit models: ${models[models.length - 1]}`);
  console.log('pack-install test: PASS');
} finally {
  if (keep) console.log(`kept ${tmp}`);
  else rmSync(tmp, { recursive: true, force: true });
}
