#!/usr/bin/env node
// Builds tools/gpu/dist/: everything the lent GPU machine needs to run our GPU suite and the
// benchmarks, since that machine has no Node, no node_modules and no registry access
// (docs/gpu.md). tools/gpu/dist is git-ignored (`dist/`) and travels as the `carry` of the device
// tool's `run` (64 MiB limit for the working tree plus carry).
//
//   node tools/gpu/prepare.mjs [--no-node] [--no-debs]
//
// Contents:
//   suite.mjs, bench.mjs + chunks/   the GPU test files and the bench API, bundled with TF.js inlined
//                                    (vitest → tools/gpu/mini-vitest.mjs), one shared copy of tfjs-core
//   node_modules/@tensorflow/tfjs-backend-{webgpu,wasm}/   re-exports of the bundled backends, so
//                                    core's optional dynamic imports resolve
//   node_modules/webgpu/             Dawn (index.js + dawn.node, xz-compressed: unpacked on the machine)
//   wasm/                            tfjs-backend-wasm binaries (VIT_WASM_PATHS)
//   node/node-<version>-linux-x64.tar.xz   this machine's Node binary
//   debs/libvulkan1_*.deb            the Vulkan loader, in case the machine has none (its README)
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { archPackages, bundleSplit, root, sourceUrlPlugin } from '../bench/bundle.mjs';

const { values: opt } = parseArgs({ options: { 'no-node': { type: 'boolean', default: false }, 'no-debs': { type: 'boolean', default: false } } });
const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
const req = createRequire(join(root, 'package.json'));
const log = (m) => console.log(`[gpu/prepare] ${m}`);

function gpuTestFiles() {
  const files = [];
  for (const p of ['core', ...archPackages()]) {
    const walk = (d) => {
      for (const f of readdirSync(d, { withFileTypes: true })) {
        const full = join(d, f.name);
        if (f.isDirectory()) walk(full);
        else if (f.name.endsWith('.gpu.test.ts')) files.push(full);
      }
    };
    const src = join(root, 'packages', p, 'src');
    if (existsSync(src)) walk(src);
  }
  return files;
}

// Keep the big, slow-to-make pieces (node tarball, debs) between runs; rebuild the rest.
for (const f of existsSync(dist) ? readdirSync(dist) : []) if (!['node', 'debs'].includes(f)) rmSync(join(dist, f), { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

// 1. Bundles
const tests = gpuTestFiles();
const shim = join(here, 'mini-vitest.mjs');
const imp = (p) => JSON.stringify(p);
const entries = {
  suite: [
    "import '@tensorflow/tfjs';",
    `import { run } from ${imp(shim)};`,
    ...tests.map((f) => `import ${imp(f)};`),
    'const t0 = performance.now();',
    'const c = await run();',
    "console.log(`\\nGPU suite: ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped (${((performance.now() - t0) / 1000).toFixed(1)} s)`);",
    "for (const f of c.failures) console.log(`  FAILED ${f}`);",
    'process.exitCode = c.failed ? 1 : 0;',
  ].join('\n'),
  bench: [
    "import '@tensorflow/tfjs';",
    "export * as tf from '@tensorflow/tfjs-core';",
    "export { initBackend, benchmarkModel, createModel, listModels, getModelCard, formatBytes, VERSION } from '@vit/core';",
    ...archPackages().map((p) => `import '@vit/${p}';`),
  ].join('\n'),
  // Named re-exports: `export *` of a CommonJS package inlined into ESM loses the names.
  'tfjs-backend-webgpu': "import * as m from '@tensorflow/tfjs-backend-webgpu';\nexport const WebGPUBackend = m.WebGPUBackend;\nexport const webgpu_util = m.webgpu_util;\nexport default m;",
  'tfjs-backend-wasm':
    "import * as m from '@tensorflow/tfjs-backend-wasm';\nexport const setWasmPaths = m.setWasmPaths;\nexport const getThreadsCount = m.getThreadsCount;\nexport const setThreadsCount = m.setThreadsCount;\nexport const BackendWasm = m.BackendWasm;\nexport default m;",
};
log(`bundling ${tests.length} GPU test files (${tests.map((f) => relative(root, f)).join(', ')}) and the bench API`);
await bundleSplit({ entries, outdir: dist, alias: { vitest: shim }, plugins: [sourceUrlPlugin()] });
for (const name of ['tfjs-backend-webgpu', 'tfjs-backend-wasm']) {
  const d = join(dist, 'node_modules', '@tensorflow', name);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'package.json'), JSON.stringify({ name: `@tensorflow/${name}`, type: 'module', main: 'index.mjs' }));
  writeFileSync(join(d, 'index.mjs'), `export * from '../../../${name}.mjs';\nexport { default } from '../../../${name}.mjs';\n`);
}

// 2. Dawn
const webgpuDir = dirname(req.resolve('webgpu/package.json'));
const wdst = join(dist, 'node_modules', 'webgpu');
mkdirSync(join(wdst, 'dist', 'linux-x64'), { recursive: true });
for (const f of ['package.json', 'index.js']) copyFileSync(join(webgpuDir, f), join(wdst, f));
log('compressing dawn.node (xz)');
execFileSync('sh', ['-c', `xz -T0 -6 -c ${JSON.stringify(join(webgpuDir, 'dist', 'linux-x64', 'dawn.node'))} > ${JSON.stringify(join(wdst, 'dist', 'linux-x64', 'dawn.node.xz'))}`]);

// 3. wasm binaries
const wasmDir = dirname(req.resolve('@tensorflow/tfjs-backend-wasm'));
mkdirSync(join(dist, 'wasm'), { recursive: true });
// The threaded build is never used in Node (tfjs cannot start its workers there).
for (const f of readdirSync(wasmDir)) if (f.endsWith('.wasm') && !f.includes('threaded')) copyFileSync(join(wasmDir, f), join(dist, 'wasm', f));

// 4. Node
if (!opt['no-node']) {
  const name = `node-${process.version}-linux-${process.arch}.tar.xz`;
  const out = join(dist, 'node', name);
  if (!existsSync(out)) {
    rmSync(join(dist, 'node'), { recursive: true, force: true });
    mkdirSync(join(dist, 'node', 'stage', 'bin'), { recursive: true });
    copyFileSync(process.execPath, join(dist, 'node', 'stage', 'bin', 'node'));
    // Symbols are ~10 MB of the 95 MB binary; the 64 MiB the device tool carries is tight.
    spawnSync('strip', [join(dist, 'node', 'stage', 'bin', 'node')]);
    log(`packing ${process.execPath} (${process.version}) as ${name}: a few minutes of xz`);
    execFileSync('tar', ['-C', join(dist, 'node', 'stage'), '-cf', out, '--use-compress-program=xz -T0 -6', 'bin']);
    rmSync(join(dist, 'node', 'stage'), { recursive: true, force: true });
  } else log(`reusing ${relative(root, out)}`);
}

// 5. Vulkan loader (the machine may have none: device README)
if (!opt['no-debs']) {
  const d = join(dist, 'debs');
  mkdirSync(d, { recursive: true });
  if (!readdirSync(d).some((f) => f.startsWith('libvulkan1_'))) {
    const r = spawnSync('apt-get', ['download', 'libvulkan1'], { cwd: d, encoding: 'utf8' });
    log(r.status === 0 ? `downloaded ${readdirSync(d).join(', ')}` : `apt-get download libvulkan1 failed (${(r.stderr ?? r.error?.message ?? '').trim().split('\n').pop()}): the machine must have its own Vulkan loader`);
  }
}

// Sizes: the device tool sends the working tree (tracked + untracked-not-ignored) plus the carry, 64 MiB at most.
const du = (p) => {
  if (!existsSync(p)) return 0;
  const s = statSync(p);
  return s.isDirectory() ? readdirSync(p).reduce((a, f) => a + du(join(p, f)), 0) : s.size;
};
const carry = du(dist);
let tree = 0;
try {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28 }).split('\0').filter(Boolean);
  tree = files.reduce((a, f) => a + (existsSync(join(root, f)) ? statSync(join(root, f)).size : 0), 0);
} catch {
  // not a git checkout: only the carry is known
}
const mib = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
log(`tools/gpu/dist: ${mib(carry)}; working tree: ${mib(tree)}; together ${mib(carry + tree)} of the 64 MiB the device tool sends`);
if (carry + tree > 64 * 2 ** 20) log('WARNING: over 64 MiB: the device tool will refuse it (leave out wasm/ or the debs, or trim untracked files)');
log(`next: the device tool's run with command "bash tools/gpu/run-on-device.sh" and carry ["tools/gpu/dist"] (docs/gpu.md)`);
