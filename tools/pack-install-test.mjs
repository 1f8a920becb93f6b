#!/usr/bin/env node
// Pack-install test: `npm pack` every publishable package, install the tarballs into a fresh
// temporary project that has only @tensorflow/tfjs besides them, then import each package (ESM
// and CommonJS), build a model, run a forward pass, and run the installed `vit` binary.
// This catches what workspace symlinks hide: missing `files`, broken `exports`, undeclared deps.
// Then every package README's "Quick start" runs as written in that project, and its "Example"
// passes eslint's no-undef (running the 224-px examples on the cpu backend takes ~3 minutes on two
// cores: `--run-examples` runs them too).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { manifest, packPackages, pkgDirs, root, run, withTempDir } from './lib/packages.mjs';

const eslint = join(root, 'node_modules', 'eslint', 'bin', 'eslint.js');
const runExamples = process.argv.includes('--run-examples');

/** The first code block of each "## Quick start" / "## Example" section of a README. */
function readmeExamples(readme) {
  const out = [];
  for (const section of readme.split(/^(?=## )/m)) {
    const m = /^## (Quick start|Example)\n[\s\S]*?```(\w+)\n([\s\S]*?)```/.exec(section);
    if (m) out.push({ title: m[1], lang: m[2], code: m[3] });
  }
  return out;
}

await withTempDir('vit-pack-', async (tmp) => {
  const tarballs = packPackages(tmp).map((p) => p.tarball);

  const proj = join(tmp, 'app');
  mkdirSync(proj);
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
  const version = run('npx', ['--no-install', 'vit', '--version'], proj).trim();
  console.log(`vit --version: ${version}`);
  if (version !== manifest('cli').version) throw new Error(`vit --version says ${version}, package.json ${manifest('cli').version}`);
  const models = run('npx', ['--no-install', 'vit', 'models'], proj).trim().split('\n');
  console.log(`vit models: ${models[models.length - 1]}`);

  for (const d of pkgDirs) {
    const examples = readmeExamples(readFileSync(join(root, 'packages', d, 'README.md'), 'utf8'));
    if (!examples.some((e) => e.title === 'Quick start')) throw new Error(`packages/${d}/README.md has no "## Quick start" example`);
    examples.forEach((e, i) => {
      if (e.lang === 'sh') {
        for (const line of e.code.split('\n').filter((l) => l.startsWith('npx vit '))) run('bash', ['-c', line.replace(/^npx vit /, 'npx --no-install vit ')], proj);
        console.log(`README of @vit/${d}: "${e.title}" runs as written`);
        return;
      }
      const file = `readme-${d}-${i}.mjs`;
      writeFileSync(join(proj, file), e.code);
      // Catches what made cait's example throw "tf is not defined".
      run(process.execPath, [eslint, '--no-config-lookup', '--parser-options', 'sourceType:module', '--parser-options', 'ecmaVersion:latest', '--global', 'console,process', '--rule', 'no-undef: error', file], proj);
      if (e.title === 'Quick start' || runExamples) {
        run('node', [file], proj);
        console.log(`README of @vit/${d}: "${e.title}" runs as written`);
      } else console.log(`README of @vit/${d}: "${e.title}" uses nothing undefined (--run-examples runs it)`);
    });
  }
  console.log('pack-install test: PASS');
});
