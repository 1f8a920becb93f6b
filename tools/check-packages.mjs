#!/usr/bin/env node
// Package checks for every kind of consumer, on what npm would publish:
// 1. `publint --strict` and `attw --pack --profile node16` (node16 from CJS and from ESM, and
//    bundler) on every package: exports, types and files as tools resolve them.
// 2. TypeScript consumers of the packed packages (installed from the tarballs into a temp project):
//    moduleResolution `bundler`, `node16` ESM (.ts in a type: module project) and `node16` CJS
//    (.cts), each with `types: []` (no @types/node) and skipLibCheck off, so our .d.ts files are
//    checked too. `@ts-expect-error` lines fail the check if an import resolved to `any`.
//    TF.js's own .d.ts need the global `Long` of @types/long, which `types: []` leaves out: errors
//    in @tensorflow/* files are printed as a note, any other error fails.
// Needs the build (npm run build). `--keep` keeps the temp project.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packPackages, pkgDirs, root, run, withTempDir } from './lib/packages.mjs';

const bin = (name) => join(root, 'node_modules', '.bin', name);
const failures = [];

for (const d of pkgDirs) {
  const dir = join(root, 'packages', d);
  for (const [tool, args] of [
    ['publint', ['--strict', dir]],
    ['attw', ['--pack', dir, '--profile', 'node16', '--format', 'table-flipped']],
  ]) {
    try {
      const out = run(bin(tool), args, root);
      console.log(`${tool} @vit/${d}: ok`);
      if (process.env.VIT_VERBOSE) console.log(out);
    } catch (e) {
      console.log(`${tool} @vit/${d}: FAILED\n${e.stdout ?? e.message}`);
      failures.push(`${tool} @vit/${d}`);
    }
  }
}

// Every public entry, used with a type annotation, plus checks that fail if a type were `any`.
const consumer = `import { createModel, getModelCard, listModels, Linear, VERSION, type ModelCard, type Module } from '@vit/core';
import { runConformance } from '@vit/core/testing';
import { CaiT } from '@vit/cait';
import { Conv2Former } from '@vit/conv2former';
import { LITv2 } from '@vit/hilo';
import { ResNetMRLA } from '@vit/mrla';
import { RegionViT } from '@vit/regionvit';
import { main, type Command } from '@vit/cli';

const version: string = VERSION;
const card: ModelCard = getModelCard('cait_nano');
const names: string[] = listModels('cait_*');
const model: CaiT = createModel<CaiT>('cait_nano');
const layer: Module = new Linear(4, 2);
const archs = [CaiT, Conv2Former, LITv2, ResNetMRLA, RegionViT];
const run: typeof runConformance = runConformance;
const code: Promise<number> = main(['--version']);
const commandName = (c: Command): string => c.name;
// @ts-expect-error VERSION is a string (an unresolved import would be \`any\` and pass)
const wrong: number = VERSION;
// @ts-expect-error createModel takes a model name
createModel(42);
export { version, card, names, model, layer, archs, run, code, commandName, wrong };
`;

const projects = {
  bundler: { module: 'esnext', moduleResolution: 'bundler', file: 'consumer.ts' },
  'node16-esm': { module: 'node16', moduleResolution: 'node16', file: 'consumer.ts' },
  'node16-cjs': { module: 'node16', moduleResolution: 'node16', file: 'consumer.cts' },
};

await withTempDir('vit-types-', async (tmp) => {
  const tarballs = packPackages(tmp, { log: () => {} }).map((p) => p.tarball);
  const proj = join(tmp, 'app');
  run('mkdir', ['-p', proj], tmp);
  writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'vit-types-test', private: true, type: 'module' }));
  // --ignore-scripts: only the type declarations matter here (no sharp/tfjs binaries needed).
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', '@tensorflow/tfjs-core@^4.22.0', ...tarballs], proj);
  for (const [name, p] of Object.entries(projects)) {
    writeFileSync(join(proj, p.file), consumer);
    const tsconfig = {
      compilerOptions: { target: 'ES2022', lib: ['ES2022', 'DOM'], module: p.module, moduleResolution: p.moduleResolution, strict: true, noEmit: true, types: [], skipLibCheck: false },
      files: [p.file],
    };
    writeFileSync(join(proj, `tsconfig.${name}.json`), JSON.stringify(tsconfig, null, 2));
    let errors = [];
    try {
      run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', `tsconfig.${name}.json`, '--pretty', 'false'], proj);
    } catch (e) {
      if (e.stdout === undefined) throw e;
      errors = e.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
      if (!errors.length) throw e;
    }
    const tfjs = errors.filter((l) => l.startsWith('node_modules/@tensorflow/'));
    const ours = errors.filter((l) => !tfjs.includes(l));
    const note = tfjs.length ? ` (${tfjs.length} errors in TF.js's own .d.ts ignored: ${[...new Set(tfjs.map((l) => l.replace(/^.*error /, '')))].join('; ')})` : '';
    if (ours.length) {
      console.log(`TypeScript consumer (${name}, types: []): FAILED${note}\n${ours.join('\n')}`);
      failures.push(`consumer ${name}`);
    } else console.log(`TypeScript consumer (${name}, types: []): ok${note}`);
  }
});

if (failures.length) {
  console.error(`package checks failed: ${failures.join(', ')}`);
  process.exit(1);
}
console.log('package checks: PASS');
