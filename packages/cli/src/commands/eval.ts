import { asOutOfMemory, DataLoader } from '@vit/core';
import { JSON_OPTION, type Command } from '../command.js';
import { EXIT, UsageError } from '../exit-codes.js';
import { oneOf, posInt } from '../flags.js';
import { BACKEND_OPTION, useBackend } from '../setup.js';
import { DATA_SPEC_HELP, evalTransform, loadData } from '../data.js';
import { INFERENCE_OPTIONS, loadForInference } from '../inference.js';

const SPLITS = ['val', 'train'] as const;
const DEFAULT_BATCH = 128;

export const evalCommand: Command = {
  name: 'eval',
  summary: 'Evaluate a checkpoint on a dataset: loss, top-1, top-5, images/s',
  usage: 'vit eval (--checkpoint DIR | --model <name> (--weights FILE | --pretrained [--tag T] [--weights-url URL])) --data <spec> [--split val|train] [--batch-size 128] [--backend auto] [--json]',
  options: {
    ...INFERENCE_OPTIONS,
    data: { type: 'string', value: '<spec>', description: 'the data set (see Data specs below)' },
    split: { type: 'string', value: `<${SPLITS.join('|')}>`, description: 'which split to evaluate (default val: the held-out split)' },
    'batch-size': { type: 'string', value: '<n>', description: `images per batch (default ${DEFAULT_BATCH})` },
    backend: BACKEND_OPTION,
    json: JSON_OPTION,
  },
  help: [
    'Examples:',
    '  vit eval --checkpoint runs/conv2former_nano --data fashion-mnist      # a run folder means its best/ checkpoint',
    '  vit eval --checkpoint runs/conv2former_nano/final --data fashion-mnist --json',
    '',
    'The images get the preprocessing the run trained with (size, channels, mean/std) from its config.',
    '',
    DATA_SPEC_HELP,
  ].join('\n'),
  async run({ values }, io) {
    const spec = values.data as string | undefined;
    if (!spec) throw new UsageError(`--data is required.\n${DATA_SPEC_HELP}`);
    const split = oneOf(values.split, 'split', SPLITS) ?? 'val';
    const batchSize = posInt(values['batch-size'], 'batch-size') ?? DEFAULT_BATCH;
    const backend = await useBackend(values.backend ?? 'auto');
    const m = await loadForInference(values, io);
    for (const w of m.warnings) io.err(w);
    try {
      const data = await loadData(spec, { imageSize: m.imgSize, channels: m.channels, seed: 0 });
      if (m.classNames && m.classNames.length !== data.classNames.length) {
        throw new UsageError(`the checkpoint was trained on ${m.classNames.length} classes, ${spec} has ${data.classNames.length}`);
      }
      const ds = split === 'val' ? data.val : data.train;
      const loader = new DataLoader(ds, { batchSize, transform: evalTransform(ds.imageShape[0], m.imgSize, m.cropPct), channels: m.channels, mean: m.mean, std: m.std });
      const r = await m.trainer.evaluate(loader).catch((e: unknown) => {
        throw asOutOfMemory(e, { what: `evaluating ${m.modelName}`, batchSize });
      });
      const out = { model: m.modelName, checkpoint: m.source, data: data.description, split, backend, examples: r.numExamples, loss: r.loss, top1: r.top1, top5: r.top5, imagesPerSecond: r.imagesPerSecond, seconds: r.seconds };
      if (values.json) {
        io.out(JSON.stringify(out, null, 2));
      } else {
        io.out(`${m.modelName} (${m.source}) on ${data.description}, ${split} split, backend ${backend}`);
        io.out(`  examples ${r.numExamples} | loss ${r.loss.toFixed(4)} | top-1 ${(100 * r.top1).toFixed(2)}% | top-5 ${(100 * r.top5).toFixed(2)}% | ${r.imagesPerSecond.toFixed(1)} img/s (${r.seconds.toFixed(1)} s)`);
      }
    } finally {
      m.dispose();
    }
    return EXIT.OK;
  },
};
