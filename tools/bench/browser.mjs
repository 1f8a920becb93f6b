#!/usr/bin/env node
// Forward (and optionally training-step) images/s of models in headless Chromium, per backend,
// through @vit/core's `initBackend` and `benchmarkModel`: the numbers in docs/browser.md.
//
//   node tools/bench/browser.mjs [--models cait_nano,…] [--backends webgpu,webgl,wasm,wasm-threads,cpu]
//                                [--batch 8] [--runs 5] [--warmup 2] [--train] [--json FILE]
//
// The app is bundled the way a user's bundler does it: from the built packages (run the build
// first), esbuild's browser defaults, the backends imported by the app. One fresh page per backend;
// `wasm` runs on a page that is not cross-origin isolated (one thread), `wasm-threads` on one that
// is (COOP/COEP: every core). WebGPU needs Chromium's --enable-unsafe-webgpu on Linux, which this
// passes. Debian's chromium (or VIT_CHROMIUM); playwright-core drives it.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BACKENDS = ['webgpu', 'webgl', 'wasm', 'wasm-threads', 'cpu'];
const { values: opt } = parseArgs({
  options: {
    models: { type: 'string', default: 'cait_nano,conv2former_nano,litv2_nano,regionvit_nano,resnet10_mrlal_nano' },
    backends: { type: 'string', default: BACKENDS.join(',') },
    batch: { type: 'string', default: '8' },
    runs: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    train: { type: 'boolean', default: false },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 12).join('\n').replace(/^\/\/ ?/gm, ''));
  process.exit(0);
}
const backends = opt.backends.split(',').map((s) => s.trim());
for (const b of backends) if (!BACKENDS.includes(b)) throw new Error(`--backends: unknown '${b}'; expected some of ${BACKENDS.join(', ')}`);
const chromium = [process.env.VIT_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => p && existsSync(p));
if (!chromium) throw new Error('Chromium is not installed (apt-get install chromium, or set VIT_CHROMIUM)');
for (const p of ['core', 'cait', 'conv2former', 'hilo', 'regionvit', 'mrla']) {
  if (!existsSync(join(repo, 'packages', p, 'dist', 'index.js'))) throw new Error(`packages/${p}/dist is missing: run npx nx run-many -t build first`);
}

const app = `
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { benchmarkModel, createModel, getModelCard, initBackend } from '@vit/core';
import '@vit/cait'; import '@vit/conv2former'; import '@vit/hilo'; import '@vit/mrla'; import '@vit/regionvit';
globalThis.vitBench = async ({ backend, models, batch, runs, warmup, train }) => {
  setWasmPaths('/wasm/');
  const init = await initBackend(backend === 'wasm-threads' ? 'wasm' : backend, { env: false });
  const rows = [];
  for (const name of models) {
    const [h, w, c] = getModelCard(name).inputSize;
    const model = createModel(name);
    const r = await benchmarkModel(model, { batchSize: batch, inputSize: [h, w], channels: c, runs, warmup, train, memory: false });
    model.dispose();
    rows.push({ model: name, forward: r.forwardImagesPerSec, train: r.trainImagesPerSec, firstMs: r.forward?.firstMs });
  }
  return { backend: init.backend, detail: init.detail, rows };
};
`;
const out = join(repo, 'node_modules', '.cache', 'vit-browser-bench');
mkdirSync(out, { recursive: true });
const { build } = await import('esbuild');
await build({ stdin: { contents: app, resolveDir: repo, loader: 'js', sourcefile: 'app.js' }, bundle: true, platform: 'browser', format: 'esm', outfile: join(out, 'app.js'), logLevel: 'error' });

const wasmDir = join(repo, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist');
const html = '<!doctype html><meta charset="utf-8"><title>vit bench</title><script type="module" src="/app.js"></script>';
const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const headers = url.searchParams.get('isolated') === '1' ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } : {};
  const name = url.pathname.split('/').pop();
  if (url.pathname === '/') return void res.writeHead(200, { ...headers, 'Content-Type': 'text/html' }).end(html);
  if (url.pathname === '/app.js') return void res.writeHead(200, { ...headers, 'Content-Type': 'text/javascript' }).end(readFileSync(join(out, 'app.js')));
  if (url.pathname.startsWith('/wasm/') && name.endsWith('.wasm') && existsSync(join(wasmDir, name))) {
    return void res.writeHead(200, { ...headers, 'Content-Type': 'application/wasm' }).end(readFileSync(join(wasmDir, name)));
  }
  res.writeHead(404, headers).end();
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;
const { chromium: pw } = await import('playwright-core');
const browser = await pw.launch({ executablePath: chromium, headless: true, args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--no-first-run'] });
const version = browser.version();
const results = [];
try {
  for (const backend of backends) {
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.error(`[${backend}] page error: ${e.message}`));
    await page.goto(`${origin}/?isolated=${backend === 'wasm-threads' ? 1 : 0}`);
    await page.waitForFunction('typeof globalThis.vitBench === "function"');
    const arg = { backend, models: opt.models.split(','), batch: Number(opt.batch), runs: Number(opt.runs), warmup: Number(opt.warmup), train: opt.train };
    try {
      const r = await page.evaluate((a) => globalThis.vitBench(a), arg);
      console.log(`${backend}: ${r.detail}`);
      for (const row of r.rows) {
        console.log(`  ${row.model.padEnd(22)} forward ${row.forward.toFixed(1).padStart(8)} img/s${row.train ? `, train ${row.train.toFixed(1)} img/s` : ''} (first forward ${row.firstMs.toFixed(0)} ms)`);
        results.push({ backend, detail: r.detail, ...row });
      }
    } catch (e) {
      console.log(`${backend}: failed: ${String(e.message ?? e).split('\n')[0]}`);
    }
    await page.close();
  }
} finally {
  await browser.close();
  server.close();
}
const file = opt.json ?? join(repo, 'runs', 'bench', `browser-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, JSON.stringify({ chromium: version, batch: Number(opt.batch), results }, null, 2));
console.log(`wrote ${file}`);
