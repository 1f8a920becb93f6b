#!/usr/bin/env node
// Soak test: a long training run (default 1,000 steps) of a registered model through the Trainer,
// with validation every epoch and checkpoints every 100 steps, as `vit train` runs it. Samples the
// tensor count, tensor bytes and the process's RSS every 50 steps and fails (exit 1) when tensors
// or bytes grow after the first epoch (a leak), or RSS grows by more than --rss-slack MB.
//
//   node tools/bench/soak.mjs [--model cait_nano] [--steps 1000] [--batch 16] [--backend wasm]
//        [--size PX] [--rss-slack 150] [--json FILE]
//
// A benchmark, not a unit test: minutes on two cores. Results in docs/performance.md.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { bundleVitTool } from './bundle.mjs';

const { values: opt } = parseArgs({
  options: {
    model: { type: 'string', default: 'cait_nano' },
    steps: { type: 'string', default: '1000' },
    batch: { type: 'string', default: '16' },
    backend: { type: 'string', default: 'wasm' },
    size: { type: 'string' },
    'rss-slack': { type: 'string', default: '150' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (opt.help) {
  console.error('usage: node tools/bench/soak.mjs [--model cait_nano] [--steps 1000] [--batch 16] [--backend wasm] [--size PX] [--rss-slack 150] [--json FILE]');
  process.exit(0);
}

const outfile = await bundleVitTool('soak', [
  'initBackend',
  'createModel',
  'createOptimizer',
  'getModelCard',
  'Trainer',
  'DataLoader',
  'synthetic',
  'ModelCheckpoint',
  'LabelSmoothingCrossEntropy',
  'CosineAnnealingLR',
]);
const vit = await import(pathToFileURL(outfile).href);
const { tf } = vit;

const steps = Number(opt.steps);
const batch = Number(opt.batch);
const backend = (await vit.initBackend(opt.backend, { quiet: true })).backend;
const card = vit.getModelCard(opt.model);
const size = opt.size ? Number(opt.size) : card.inputSize[0];
const channels = card.inputSize[2];
// 20 steps per epoch: validation and the epoch-end checkpoint run 50 times in 1,000 steps.
const perEpoch = 20;
const train = vit.synthetic({ length: perEpoch * batch, numClasses: 10, imageShape: [size, size, channels], seed: 1 });
const val = vit.synthetic({ length: 2 * batch, numClasses: 10, imageShape: [size, size, channels], seed: 2 });
const loader = new vit.DataLoader(train, { batchSize: batch, shuffle: true, dropLast: true, seed: 0 });
const valLoader = new vit.DataLoader(val, { batchSize: batch });
const model = vit.createModel(opt.model, { ...(opt.size ? { imgSize: size } : {}), numClasses: 10 });
const optimizer = vit.createOptimizer(model, { type: 'adamw', lr: 1e-3, weightDecay: 0.05 });
const dir = mkdtempSync(join(tmpdir(), 'vit-soak-'));

const samples = [];
const sample = (step) => {
  const m = tf.memory();
  samples.push({ step, tensors: m.numTensors, bytes: m.numBytes, rssMB: process.memoryUsage().rss / 2 ** 20 });
};
const every = 50;
const trainer = new vit.Trainer({
  model,
  optimizer,
  loss: new vit.LabelSmoothingCrossEntropy(0.1),
  schedule: new vit.CosineAnnealingLR({ tMax: steps }),
  seed: 0,
  callbacks: [
    new vit.ModelCheckpoint({ dir, monitor: 'valAcc', everySteps: 100 }),
    { onBatchEnd: (_t, s) => void (s.step % every === 0 && sample(s.step)) },
  ],
});
const epochs = Math.ceil(steps / perEpoch);
const t0 = performance.now();
const res = await trainer.fit(loader, { epochs, validation: valLoader });
const seconds = (performance.now() - t0) / 1000;
model.dispose();
optimizer.dispose();
const after = tf.memory();
rmSync(dir, { recursive: true, force: true });

// After the first epoch (optimizer state and kernels' caches exist), nothing may grow.
const settled = samples.filter((s) => s.step > perEpoch);
const first = settled[0];
const last = settled.at(-1);
const maxTensors = Math.max(...settled.map((s) => s.tensors));
const maxBytes = Math.max(...settled.map((s) => s.bytes));
const rssGrowth = last.rssMB - first.rssMB;
const problems = [];
if (maxTensors > first.tensors) problems.push(`tensor count grew from ${first.tensors} to ${maxTensors}`);
if (maxBytes > first.bytes) problems.push(`tensor bytes grew from ${first.bytes} to ${maxBytes}`);
if (rssGrowth > Number(opt['rss-slack'])) problems.push(`RSS grew ${rssGrowth.toFixed(0)} MB (more than --rss-slack ${opt['rss-slack']} MB)`);
if (after.numTensors !== 0) problems.push(`${after.numTensors} tensor(s) left after disposing the model and optimizer`);
const summary = {
  model: opt.model,
  backend,
  batch,
  size,
  steps: res.steps,
  epochs: res.epochs,
  seconds,
  stepsPerSecond: res.steps / seconds,
  tensors: { first: first.tensors, max: maxTensors, last: last.tensors, afterDispose: after.numTensors },
  bytes: { first: first.bytes, max: maxBytes },
  rssMB: { first: first.rssMB, last: last.rssMB, max: Math.max(...settled.map((s) => s.rssMB)) },
  finalTrainLoss: res.history.epochs.at(-1)?.trainLoss,
  ok: problems.length === 0,
  problems,
};
console.log(
  `${opt.model} on ${backend}, batch ${batch} at ${size}px: ${res.steps} steps (${res.epochs} epochs, validation and a checkpoint every 20 steps, periodic checkpoints every 100) in ${seconds.toFixed(0)} s\n` +
    `  tensors ${first.tensors} → max ${maxTensors} (last ${last.tensors}), bytes ${(first.bytes / 2 ** 20).toFixed(1)} → max ${(maxBytes / 2 ** 20).toFixed(1)} MiB, ` +
    `RSS ${first.rssMB.toFixed(0)} → ${last.rssMB.toFixed(0)} MB (max ${summary.rssMB.max.toFixed(0)}), ${after.numTensors} tensors after dispose\n` +
    `  ${problems.length ? `FAIL: ${problems.join('; ')}` : 'ok: nothing grows'}`,
);
if (opt.json) writeFileSync(opt.json, JSON.stringify({ summary, samples }, null, 2));
process.exit(problems.length ? 1 : 0);
