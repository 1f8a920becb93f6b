import { asOutOfMemory, BENCH_OPTIMIZERS, benchmarkModel, createModel, formatBytes, getModelCard, listModels, type BenchmarkResult, type Module } from '@vit/core';
import type { Command } from '../main.js';
import { EXIT, UsageError } from '../exit-codes.js';
import { useBackend } from '../setup.js';

function posInt(v: unknown, flag: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${flag} expects a positive integer, got '${String(v)}'`);
  return n;
}

export const benchCommand: Command = {
  name: 'bench',
  summary: 'Measure forward and training-step images/s and peak memory (median of runs after warm-up)',
  usage: 'vit bench --model <name|glob> [--backend auto] [--batch 32] [--img-size N] [--train [--opt sgd|adamw] [--grad-checkpointing]] [--runs 5] [--warmup 2] [--json]',
  options: {
    model: { type: 'string' },
    backend: { type: 'string' },
    batch: { type: 'string' },
    'img-size': { type: 'string' },
    train: { type: 'boolean' },
    opt: { type: 'string' },
    'grad-checkpointing': { type: 'boolean' },
    runs: { type: 'string' },
    warmup: { type: 'string' },
    json: { type: 'boolean' },
  },
  help: [
    'Examples:',
    '  vit bench --model cait_xxs24_224 --batch 8',
    "  vit bench --model '*_nano' --train --backend wasm --json",
    '  vit bench --model conv2former_nano --train --opt adamw --batch 128 --backend wasm',
    '',
    'Forward runs in eval mode; --train also times a training step (forward, cross entropy, backward,',
    'update) in train mode. The update is plain SGD by default; --opt adamw runs what `vit train`',
    "runs (AdamW and the gradient norm it reads back every step), so its images/s predict training's.",
    '--grad-checkpointing times the training step with activation checkpointing (less memory, more compute).',
    'Peak memory is the largest memory of tensor buffers seen during a phase (weights included); "step" is',
    'what a training step adds to what was alive before it (activations, what autodiff keeps, gradients).',
    'For comparisons across backends, run tools/bench/run.mjs (ratios against tensorflow in one run);',
    'against PyTorch on this machine, tools/bench/peer.mjs (docs/performance.md).',
  ].join('\n'),
  async run({ values }, io) {
    const pattern = values.model as string | undefined;
    if (!pattern) throw new UsageError('--model is required (a name or a glob such as "*_nano"; see `vit models`)');
    const names = /[*?[]/.test(pattern) ? listModels(pattern) : [getModelCard(pattern).name];
    if (names.length === 0) throw new UsageError(`no registered model matches '${pattern}' (see \`vit models\`)`);
    const batchSize = posInt(values.batch, 'batch', 32);
    const runs = posInt(values.runs, 'runs', 5);
    const warmup = values.warmup === undefined ? 2 : Number(values.warmup);
    if (!Number.isInteger(warmup) || warmup < 0) throw new UsageError(`--warmup expects an integer ≥ 0, got '${String(values.warmup)}'`);
    const size = values['img-size'] === undefined ? undefined : posInt(values['img-size'], 'img-size', 1);
    const optimizer = (values.opt ?? 'sgd') as (typeof BENCH_OPTIMIZERS)[number];
    if (!BENCH_OPTIMIZERS.includes(optimizer)) throw new UsageError(`--opt expects ${BENCH_OPTIMIZERS.join(' or ')}, got '${optimizer}'`);
    if (values.opt !== undefined && values.train !== true) throw new UsageError('--opt sets the training step\'s update: add --train');
    const gradCheckpointing = values['grad-checkpointing'] === true;
    if (gradCheckpointing && values.train !== true) throw new UsageError('--grad-checkpointing applies to the training step: add --train');
    const backend = await useBackend(values.backend ?? 'auto');
    const results: Array<{ model: string } & BenchmarkResult> = [];
    for (const name of names) {
      const card = getModelCard(name);
      const inputSize = size ?? card.inputSize[0];
      const model = createModel(name, size ? { imgSize: size } : {}) as Module;
      try {
        const r = await benchmarkModel(model, { batchSize, inputSize, channels: card.inputSize[2], train: values.train === true, optimizer, runs, warmup, gradCheckpointing }).catch((e: unknown) => {
          throw asOutOfMemory(e, { what: `benchmarking ${name}${values.train ? ' (with a training step)' : ''} at batch ${batchSize}`, hints: ['a smaller --batch'] });
        });
        results.push({ model: name, ...r });
        if (!values.json) {
          io.out(
            `${name.padEnd(28)} ${String(inputSize).padStart(4)}px  batch ${batchSize}  fwd ${r.forwardImagesPerSec?.toFixed(1) ?? '—'} img/s` +
              (values.train ? `  train (${optimizer}${gradCheckpointing ? ', checkpointed' : ''}) ${r.trainImagesPerSec?.toFixed(1) ?? '—'} img/s` : '') +
              `  peak ${formatBytes(r.peakBytes)}${r.train?.stepBytes !== undefined ? `  step ${formatBytes(r.train.stepBytes)}` : ''}  (${backend})`,
          );
        }
      } finally {
        model.dispose();
      }
    }
    if (values.json) io.out(JSON.stringify({ backend, batchSize, runs, warmup, ...(values.train ? { optimizer } : {}), results }, null, 2));
    return EXIT.OK;
  },
};
