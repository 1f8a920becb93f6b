import { asOutOfMemory, BENCH_OPTIMIZERS, benchmarkModel, createModel, formatBytes, getModelCard, listModels, type BenchmarkResult, type Module } from '@vit/core';
import { JSON_OPTION, type Command } from '../command.js';
import { EXIT, UsageError } from '../exit-codes.js';
import { nonNegInt, oneOf, posInt } from '../flags.js';
import { BACKEND_OPTION, useBackend } from '../setup.js';

const DEFAULTS = { batch: 32, runs: 5, warmup: 2, opt: 'sgd' } as const;

export const benchCommand: Command = {
  name: 'bench',
  summary: 'Measure forward and training-step images/s and peak memory (median of runs after warm-up)',
  usage: `vit bench --model <name|glob> [--backend auto] [--batch ${DEFAULTS.batch}] [--img-size N] [--train [--opt ${BENCH_OPTIMIZERS.join('|')}] [--grad-checkpointing]] [--runs ${DEFAULTS.runs}] [--warmup ${DEFAULTS.warmup}] [--json]`,
  options: {
    model: { type: 'string', value: '<name|glob>', description: "a registered model, or a glob such as '*_nano' for several (see `vit models`)" },
    backend: BACKEND_OPTION,
    batch: { type: 'string', value: '<n>', description: `images per batch (default ${DEFAULTS.batch})` },
    'img-size': { type: 'string', value: '<px>', description: "the input image size (square; default the model card's)" },
    train: { type: 'boolean', description: 'also time a training step (forward, cross entropy, backward, update)' },
    opt: { type: 'string', value: `<${BENCH_OPTIMIZERS.join('|')}>`, description: `the training step's update (default ${DEFAULTS.opt}; adamw: what \`vit train\` runs by default)` },
    'grad-checkpointing': { type: 'boolean', description: 'time the training step with activation checkpointing' },
    runs: { type: 'string', value: '<n>', description: `timed runs per phase; the median is reported (default ${DEFAULTS.runs})` },
    warmup: { type: 'string', value: '<n>', description: `untimed runs before them (default ${DEFAULTS.warmup})` },
    json: JSON_OPTION,
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
    const batchSize = posInt(values.batch, 'batch') ?? DEFAULTS.batch;
    const runs = posInt(values.runs, 'runs') ?? DEFAULTS.runs;
    const warmup = nonNegInt(values.warmup, 'warmup') ?? DEFAULTS.warmup;
    const size = posInt(values['img-size'], 'img-size');
    const optimizer = oneOf(values.opt, 'opt', BENCH_OPTIMIZERS) ?? DEFAULTS.opt;
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
