#!/usr/bin/env node
// Where a model's time goes, per kernel type: tf.profile of one forward pass (eval mode) and one
// training step (valueAndGrads + SGD update), after warm-up runs, on one backend.
//
//   node tools/bench/profile.mjs --model conv2former_n [--batch 8] [--size 224] [--backend wasm]
//                                [--warmup 1] [--runs 1] [--model-options JSON] [--top 25]
//
// Prints each phase's kernel types by total kernelMs (share of the kernel time, calls), and the
// wall time of the profiled run. Use VIT_WASM_THREADS=1 when other jobs share the cores.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { archPackages, bundle, root } from './bundle.mjs';
import { modelSteps } from './steps.mjs';

const { values: opt } = parseArgs({
  options: {
    model: { type: 'string' },
    batch: { type: 'string', default: '8' },
    size: { type: 'string', default: '224' },
    backend: { type: 'string', default: 'wasm' },
    warmup: { type: 'string', default: '1' },
    runs: { type: 'string', default: '1' },
    'model-options': { type: 'string' },
    top: { type: 'string', default: '25' },
    'no-train': { type: 'boolean', default: false },
    'no-forward': { type: 'boolean', default: false },
  },
});
if (!opt.model) throw new Error('--model is required');

const outfile = join(root, 'node_modules', '.cache', 'vit-bench', 'profile.mjs');
await bundle({
  contents: [
    "import '@tensorflow/tfjs';",
    "export * as tf from '@tensorflow/tfjs-core';",
    "export { initBackend, createModel, valueAndGrads } from '@vit/core';",
    ...archPackages().map((p) => `import '@vit/${p}';`),
  ].join('\n'),
  outfile,
});
const { tf, initBackend, createModel, valueAndGrads } = await import(pathToFileURL(outfile).href);
const init = await initBackend(opt.backend, { quiet: true });
console.log(`backend ${init.backend}: ${init.detail}`);

const batch = Number(opt.batch);
const size = Number(opt.size);
const model = createModel(opt.model, opt['model-options'] ? JSON.parse(opt['model-options']) : {});
const { forward, train } = modelSteps({ tf, valueAndGrads }, model, batch, size);

async function profile(name, step) {
  for (let i = 0; i < Number(opt.warmup); i++) await step();
  const byKernel = new Map();
  let wall = 0;
  const runs = Number(opt.runs);
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    const info = await tf.profile(step);
    wall += performance.now() - t0;
    for (const k of info.kernels) {
      // Op scopes (`fusedConv2d__op`, customGrad's 'unnamed scope') contain kernels counted on their own.
      if (!tf.getKernel(k.name, tf.getBackend())) continue;
      const ms = await k.kernelTimeMs;
      const e = byKernel.get(k.name) ?? { ms: 0, calls: 0 };
      e.ms += (typeof ms === 'number' ? ms : 0) / runs;
      e.calls += 1 / runs;
      byKernel.set(k.name, e);
    }
  }
  const total = [...byKernel.values()].reduce((s, e) => s + e.ms, 0);
  console.log(`\n${opt.model} ${name}, batch ${batch}, ${size} px: kernel time ${total.toFixed(0)} ms, profiled wall ${(wall / runs).toFixed(0)} ms`);
  console.log('| kernel | ms | share | calls |\n|---|---:|---:|---:|');
  const rows = [...byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms);
  for (const [k, e] of rows.slice(0, Number(opt.top))) console.log(`| ${k} | ${e.ms.toFixed(1)} | ${((100 * e.ms) / total).toFixed(1)}% | ${Math.round(e.calls)} |`);
  const rest = rows.slice(Number(opt.top)).reduce((s, [, e]) => s + e.ms, 0);
  if (rest > 0) console.log(`| (others) | ${rest.toFixed(1)} | ${((100 * rest) / total).toFixed(1)}% | |`);
}

if (!opt['no-forward']) {
  model.eval();
  await profile('forward', forward);
}
if (!opt['no-train']) {
  model.train();
  await profile('training step', train);
}
