import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  CosineAnnealingLR,
  DataLoader,
  HistoryWriter,
  LabelSmoothingCrossEntropy,
  ModelCheckpoint,
  Mixup,
  MultiStepLR,
  ProgressBar,
  SequentialLR,
  ConstantLR,
  LinearLR,
  SoftTargetCrossEntropy,
  Trainer,
  createModel,
  createOptimizer,
  formatEpochRecord,
  isOutOfMemory,
  getModelCard,
  loadCheckpoint,
  plotConfusionMatrix,
  plotLearningCurves,
  plotPredictionGrid,
  writeFileAtomic,
  withSeededRandom,
  VERSION,
  type Callback,
  type EpochRecord,
  type LRSchedule,
  type Module,
  OPTIMIZER_TYPES,
} from '@vit/core';
import type { Command } from '../main.js';
import type { Io } from '../io.js';
import { EXIT, InputError, UsageError } from '../exit-codes.js';
import { useBackend } from '../setup.js';
import { DATA_SPEC_HELP, evalTransform, loadData, trainTransform } from '../data.js';
import { RECIPES, recipeNames, type Recipe } from '../recipes.js';

function num(v: unknown, flag: string, check: (n: number) => boolean, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || !check(n)) throw new UsageError(`--${flag} expects ${what}, got '${String(v)}'`);
  return n;
}
const posInt = (v: unknown, flag: string) => num(v, flag, (n) => Number.isInteger(n) && n > 0, 'a positive integer');
const nonNegInt = (v: unknown, flag: string) => num(v, flag, (n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0');
const posNum = (v: unknown, flag: string) => num(v, flag, (n) => n > 0, 'a positive number');
const nonNeg = (v: unknown, flag: string) => num(v, flag, (n) => n >= 0, 'a number ≥ 0');
const fraction = (v: unknown, flag: string) => num(v, flag, (n) => n >= 0 && n < 1, 'a number in [0, 1)');

export function parseModelOpts(v: unknown): Record<string, unknown> {
  if (v === undefined) return {};
  try {
    const o = JSON.parse(String(v)) as unknown;
    if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new Error('not an object');
    return o as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`--model-opts expects a JSON object such as '{"depths":[1,1,2,1]}', got '${String(v)}' (${(e as Error).message})`);
  }
}

/** The warm-up + main schedule of a run, as a function of its size (the Trainer calls it in fit). */
function scheduleFor(r: Recipe): (info: { stepsPerEpoch: number; epochs: number }) => LRSchedule {
  return ({ stepsPerEpoch, epochs }) => {
    const warm = Math.min(Math.round(r.warmupEpochs * stepsPerEpoch), stepsPerEpoch * epochs - 1);
    const total = stepsPerEpoch * epochs;
    let main: LRSchedule;
    if (r.sched === 'cosine') main = new CosineAnnealingLR({ tMax: Math.max(1, total - warm) });
    else if (r.sched === 'multistep') main = new MultiStepLR({ milestones: r.milestones ?? [], gamma: r.gamma ?? 0.1, stepsPerEpoch });
    else main = new ConstantLR();
    if (warm <= 0) return main;
    return new SequentialLR([new LinearLR({ startFactor: 0.01, totalIters: warm }), main], [warm]);
  };
}

function stamp(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** Prints one line per epoch through the CLI's output (the progress bar draws on stderr). */
class EpochLines implements Callback {
  constructor(
    private readonly io: Io,
    private readonly epochs: number,
  ) {}
  onEpochEnd(_t: Trainer, record: EpochRecord): void {
    this.io.out(formatEpochRecord(record, this.epochs));
  }
}

export const trainCommand: Command = {
  name: 'train',
  summary: 'Train (or fine-tune) a model on a dataset; writes checkpoints, history and plots to a run folder',
  usage:
    'vit train --model <name> --data <spec> [--recipe default] [--epochs N] [--batch-size N] [--lr X] [--opt adamw|adam|sgd] [--sched cosine|multistep|none] [--warmup EPOCHS] [--weight-decay X] [--label-smoothing X] [--mixup A] [--cutmix A] [--drop-path X] [--crop-padding PX] [--flip P] [--img-size N] [--model-opts JSON] [--accum-steps N] [--micro-batch N|auto|off] [--grad-checkpointing] [--bad-images error|skip] [--backend auto] [--seed N] [--out DIR] [--resume]',
  options: {
    model: { type: 'string' },
    data: { type: 'string' },
    recipe: { type: 'string' },
    epochs: { type: 'string' },
    'batch-size': { type: 'string' },
    lr: { type: 'string' },
    opt: { type: 'string' },
    sched: { type: 'string' },
    warmup: { type: 'string' },
    'weight-decay': { type: 'string' },
    momentum: { type: 'string' },
    'label-smoothing': { type: 'string' },
    mixup: { type: 'string' },
    cutmix: { type: 'string' },
    'drop-path': { type: 'string' },
    'crop-padding': { type: 'string' },
    flip: { type: 'string' },
    'img-size': { type: 'string' },
    'model-opts': { type: 'string' },
    'clip-grad': { type: 'string' },
    'accum-steps': { type: 'string' },
    'micro-batch': { type: 'string' },
    'grad-checkpointing': { type: 'boolean' },
    backend: { type: 'string' },
    seed: { type: 'string' },
    out: { type: 'string' },
    resume: { type: 'boolean' },
    'no-plots': { type: 'boolean' },
    'bad-images': { type: 'string' },
  },
  help: [
    'Examples:',
    '  vit train --model conv2former_nano --data fashion-mnist --epochs 3',
    '  vit train --model resnet18_mrlal_cifar --data cifar10:~/cifar-10-binary.tar.gz --recipe seed-mrla --out runs/mrla',
    '  vit train --model litv2_nano --data folder:./flowers --img-size 64 --model-opts \'{"depths":[1,1,2,1]}\'',
    '  vit train --model regionvit_nano --data fashion-mnist --epochs 4 --crop-padding 0   # no random crop: short runs fit faster',
    '  vit train --out runs/mrla --resume          # continue an interrupted run exactly where it stopped',
    '  vit train --model conv2former_n_cifar --recipe seed-conv2former --data fashion-mnist --grad-checkpointing',
    '',
    'Memory: --accum-steps N splits every batch into N micro-batches with one optimizer step (the same update',
    'as the whole batch without BatchNorm; BatchNorm sees each micro-batch on its own). On wasm (a 4 GiB heap)',
    'the trainer measures a step before the first one and splits batches that would not fit by itself',
    '(--micro-batch auto, the default; a number caps the micro-batch, off never splits). --grad-checkpointing',
    'recomputes each block in the backward pass instead of keeping its intermediates (about 1/3 more compute).',
    'Running out of memory ends with exit code 5 and a message saying what to try; a new run folder is removed.',
    '',
    DATA_SPEC_HELP,
    'Image folders are checked before the first step (every image decoded): bad files are listed and the run',
    'refused (exit 3), or with --bad-images skip left out with a warning each.',
    '',
    `Recipes (--recipe; flags override them): ${recipeNames().join(', ')}`,
    ...Object.values(RECIPES).map((r) => `  ${r.name.padEnd(17)} ${r.description}`),
    '',
    'The run folder gets best/, last/ and final/ checkpoints (safetensors weights, optimizer and trainer state),',
    'history.json, curves.png/.svg, confusion.png/.svg, predictions.png and summary.json.',
    'Ctrl-C stops after the current step and saves last/, so --resume can continue.',
  ].join('\n'),
  async run({ values }, io) {
    const resume = values.resume === true;
    const outFlag = values.out as string | undefined;
    if (resume && !outFlag) throw new UsageError('--resume needs --out DIR (the run folder to continue)');
    const outDir = resolve(outFlag ?? join('runs', `${String(values.model ?? 'model')}-${stamp()}`));
    const lastDir = join(outDir, 'last');
    if (resume && !existsSync(lastDir) && !existsSync(join(outDir, '.last.old'))) {
      throw new UsageError(`nothing to resume in ${outDir}: no last/ checkpoint there`);
    }
    if (!resume && existsSync(join(outDir, 'last'))) {
      throw new UsageError(`${outDir} already holds a run: pass --resume to continue it, or another --out`);
    }

    // On resume the saved run config gives the defaults; flags still override.
    let saved: Record<string, unknown> = {};
    if (resume) {
      let ck;
      try {
        ck = await loadCheckpoint(lastDir);
      } catch (e) {
        const best = existsSync(join(outDir, 'best')) ? ` Its best/ checkpoint (the best epoch) can still be evaluated or used: vit eval --checkpoint ${join(outDir, 'best')}.` : '';
        throw new InputError(`cannot resume from ${lastDir}: ${(e as Error).message}.${best}`);
      }
      saved = (ck.config.meta?.cli as Record<string, unknown> | undefined) ?? {};
      ck.dispose();
    }
    const pick = (flag: string): unknown => values[flag] ?? saved[flag];

    const modelName = pick('model') as string | undefined;
    const dataSpec = pick('data') as string | undefined;
    if (!modelName) throw new UsageError('--model is required (see `vit models`)');
    if (!dataSpec) throw new UsageError(`--data is required.\n${DATA_SPEC_HELP}`);
    const recipeName = (pick('recipe') as string | undefined) ?? 'default';
    const base = RECIPES[recipeName];
    if (!base) throw new UsageError(`unknown recipe '${recipeName}': expected one of ${recipeNames().join(', ')}`);
    const card = getModelCard(modelName);

    const opt = (pick('opt') as string | undefined) ?? base.opt;
    if (!(OPTIMIZER_TYPES as readonly string[]).includes(opt)) throw new UsageError(`--opt expects ${OPTIMIZER_TYPES.join(', ')}, got '${opt}'`);
    const sched = (pick('sched') as string | undefined) ?? base.sched;
    if (!['cosine', 'multistep', 'none'].includes(sched)) throw new UsageError(`--sched expects cosine, multistep or none, got '${sched}'`);
    const recipe: Recipe = {
      ...base,
      epochs: posInt(pick('epochs'), 'epochs') ?? base.epochs,
      batchSize: posInt(pick('batch-size'), 'batch-size') ?? base.batchSize,
      lr: posNum(pick('lr'), 'lr') ?? base.lr,
      opt: opt as Recipe['opt'],
      sched: sched as Recipe['sched'],
      warmupEpochs: nonNeg(pick('warmup'), 'warmup') ?? base.warmupEpochs,
      weightDecay: nonNeg(pick('weight-decay'), 'weight-decay') ?? base.weightDecay,
      momentum: fraction(pick('momentum'), 'momentum') ?? base.momentum,
      labelSmoothing: fraction(pick('label-smoothing'), 'label-smoothing') ?? base.labelSmoothing,
      mixup: nonNeg(pick('mixup'), 'mixup') ?? base.mixup,
      cutmix: nonNeg(pick('cutmix'), 'cutmix') ?? base.cutmix,
      augment: {
        ...base.augment,
        cropPadding: nonNegInt(pick('crop-padding'), 'crop-padding') ?? base.augment.cropPadding,
        flip: num(pick('flip'), 'flip', (n) => n >= 0 && n <= 1, 'a probability in [0, 1]') ?? base.augment.flip,
      },
    };
    const accumSteps = posInt(pick('accum-steps'), 'accum-steps') ?? 1;
    const microRaw = pick('micro-batch');
    const microBatch: number | 'auto' | 'off' = microRaw === undefined || microRaw === 'auto' || microRaw === 'off' ? ((microRaw as 'auto' | 'off' | undefined) ?? 'auto') : posInt(microRaw, 'micro-batch')!;
    const gradCheckpointing = pick('grad-checkpointing') === true;
    const dropPath = fraction(pick('drop-path'), 'drop-path');
    const clipGrad = posNum(pick('clip-grad'), 'clip-grad');
    const seed = nonNegInt(pick('seed'), 'seed') ?? 0;
    const imgSize = posInt(pick('img-size'), 'img-size') ?? card.inputSize[0];
    const channels = card.inputSize[2] === 1 ? 1 : 3;
    const modelOptions: Record<string, unknown> = { ...parseModelOpts(pick('model-opts')) };
    if (dropPath !== undefined) modelOptions.dropPathRate = dropPath;

    const badImages = (pick('bad-images') as string | undefined) ?? 'error';
    if (badImages !== 'error' && badImages !== 'skip') throw new UsageError(`--bad-images expects error or skip, got '${badImages}'`);
    const backend = await useBackend(values.backend ?? 'auto');
    const data = await loadData(dataSpec, { imageSize: imgSize, channels, seed, badImages, log: (l) => io.err(l) });
    const srcSize = data.train.imageShape[0];
    const mean = recipe.mean ?? card.mean;
    const std = recipe.std ?? card.std;
    const common = { channels, mean, std } as const;
    const mixing = recipe.mixup > 0 || recipe.cutmix > 0;
    const trainLoader = new DataLoader(data.train, {
      batchSize: recipe.batchSize,
      shuffle: true,
      dropLast: data.train.length >= 2 * recipe.batchSize,
      seed,
      transform: trainTransform(recipe.augment, srcSize, imgSize),
      batchTransform: mixing ? new Mixup({ mixupAlpha: recipe.mixup, cutmixAlpha: recipe.cutmix, labelSmoothing: recipe.labelSmoothing }) : undefined,
      ...common,
    });
    const valLoader = new DataLoader(data.val, { batchSize: Math.max(recipe.batchSize, 128), transform: evalTransform(srcSize, imgSize, card.cropPct), ...common });

    const cli = {
      model: modelName,
      data: dataSpec,
      recipe: recipeName,
      epochs: recipe.epochs,
      'batch-size': recipe.batchSize,
      lr: recipe.lr,
      opt: recipe.opt,
      sched: recipe.sched,
      warmup: recipe.warmupEpochs,
      'weight-decay': recipe.weightDecay,
      momentum: recipe.momentum,
      'label-smoothing': recipe.labelSmoothing,
      mixup: recipe.mixup,
      cutmix: recipe.cutmix,
      // The recipes' -1 ("1/8 of the image") is not a valid flag value: recorded as absent, so a
      // resumed run takes it from the recipe again.
      'crop-padding': (recipe.augment.cropPadding ?? -1) >= 0 ? recipe.augment.cropPadding : undefined,
      flip: recipe.augment.flip,
      'drop-path': dropPath,
      'clip-grad': clipGrad,
      'img-size': imgSize,
      'model-opts': values['model-opts'] ?? saved['model-opts'],
      'accum-steps': accumSteps,
      'micro-batch': microBatch,
      'grad-checkpointing': gradCheckpointing,
      'bad-images': badImages,
      seed,
    };
    const meta = { cli, classNames: data.classNames, imgSize, channels, mean, std, cropPct: card.cropPct };

    const createdOut = !existsSync(outDir);
    const checkpoint = new ModelCheckpoint({ dir: outDir, monitor: 'valAcc', everySteps: 200 });
    const callbacks: Callback[] = [new ProgressBar({ tty: process.stderr.isTTY, epochLines: false }), new EpochLines(io, recipe.epochs), new HistoryWriter(join(outDir, 'history.json')), checkpoint];

    let trainer: Trainer;
    const loss = mixing ? new SoftTargetCrossEntropy() : new LabelSmoothingCrossEntropy(recipe.labelSmoothing);
    const memory = { accumSteps, microBatch, gradCheckpointing, onNotice: (m: string) => io.err(m) };
    if (resume) {
      trainer = await Trainer.fromCheckpoint(lastDir, { callbacks, loss, schedule: scheduleFor(recipe), meta, ...memory });
    } else {
      // Seeded init: tfjs draws an unseeded initializer's seed from Math.random, so without this two
      // runs with the same --seed started from different weights.
      const model = withSeededRandom(seed, () => createModel(modelName, { ...modelOptions, numClasses: data.classNames.length })) as Module;
      const optimizer = createOptimizer(model, {
        type: recipe.opt,
        lr: recipe.lr,
        weightDecay: recipe.weightDecay,
        ...(recipe.opt === 'sgd' ? { momentum: recipe.momentum ?? 0.9 } : {}),
      });
      trainer = new Trainer({
        model,
        optimizer,
        loss,
        schedule: scheduleFor(recipe),
        clipGradNorm: clipGrad,
        seed,
        callbacks,
        modelName,
        modelOptions: { ...modelOptions, numClasses: data.classNames.length },
        meta,
        ...memory,
      });
    }
    // Only now that the model is built (bad --model-opts are refused above) does the run folder exist.
    await mkdir(outDir, { recursive: true });
    const model = trainer.model;
    io.out(`vit train: ${modelName} (${(model.numParams() / 1e6).toFixed(2)}M params) on ${data.description}`);
    io.out(
      `  backend ${backend} | recipe ${recipeName} | ${recipe.epochs} epochs × ${trainLoader.numBatches} steps of ${recipe.batchSize}${accumSteps > 1 ? ` (${accumSteps} micro-batches each)` : ''} | ${recipe.opt} lr ${recipe.lr} wd ${recipe.weightDecay} | ${recipe.sched}${recipe.warmupEpochs ? ` (+${recipe.warmupEpochs} warm-up)` : ''} | image ${imgSize}px${gradCheckpointing ? ' | grad checkpointing' : ''} | run folder ${outDir}`,
    );

    const controller = new AbortController();
    const onSigint = () => {
      io.err('\nvit train: stopping after this step (Ctrl-C again to kill); last/ will be saved for --resume');
      controller.abort();
      process.off('SIGINT', onSigint);
    };
    process.on('SIGINT', onSigint);
    const t0 = Date.now();
    let result;
    try {
      result = await trainer.fit(trainLoader, { epochs: recipe.epochs, validation: valLoader, signal: controller.signal });
    } catch (err) {
      // Out of memory (wasm's instance is dead then: nothing can be saved): a run folder this
      // command created and nothing was checkpointed into is removed, so the disk is as it was.
      if (isOutOfMemory(err) && createdOut && !existsSync(lastDir) && !existsSync(join(outDir, 'best'))) await rm(outDir, { recursive: true, force: true });
      throw err;
    } finally {
      process.off('SIGINT', onSigint);
    }
    const wall = (Date.now() - t0) / 1000;
    if (result.status === 'diverged') {
      io.err(`vit train: ${result.message ?? 'the loss diverged'}`);
      trainer.model.dispose();
      trainer.optimizer.dispose();
      return EXIT.FAILED;
    }
    if (result.status === 'interrupted') {
      io.out(`vit train: interrupted; continue with: vit train --out ${outDir} --resume`);
      trainer.model.dispose();
      trainer.optimizer.dispose();
      return EXIT.INTERRUPTED;
    }

    // Final evaluation (the final weights; best/ holds the best epoch's).
    const ev = await trainer.evaluate(valLoader, { returnPredictions: true });
    const files: string[] = [join(outDir, 'final'), join(outDir, 'best'), join(outDir, 'history.json')];
    if (!values['no-plots']) {
      const curves = await plotLearningCurves(trainer.history, join(outDir, 'curves.png'), { title: `${modelName} on ${dataSpec}` });
      const conf = await plotConfusionMatrix(ev.confusion!, data.classNames, join(outDir, 'confusion.png'), { title: `${modelName}: confusion (top-1 ${(100 * ev.top1).toFixed(2)}%)` });
      // A grid of the first 32 validation images with their predictions.
      const gridBatch = (await valLoader.epoch(0)[Symbol.asyncIterator]().next()).value;
      if (gridBatch) {
        const n = Math.min(32, gridBatch.labels.length);
        const images = tf.tidy(() => tf.slice(gridBatch.x, [0, 0, 0, 0], [n, -1, -1, -1]));
        const pred = await trainer.predict(images, { topK: 1 });
        const grid = await plotPredictionGrid(
          { images, predicted: pred.classes.map((c) => c[0]!), actual: Array.from(gridBatch.labels.slice(0, n)), classNames: data.classNames, confidence: pred.probabilities.map((p) => p[0]!), mean, std, title: `${modelName}: validation predictions` },
          join(outDir, 'predictions.png'),
        );
        images.dispose();
        tf.dispose([gridBatch.x, gridBatch.y]);
        files.push(grid.png);
      }
      for (const f of [curves.png, curves.svg, conf.png, conf.svg]) if (f) files.push(f);
    }
    const last = trainer.history.epochs.at(-1);
    const summary = {
      model: modelName,
      params: model.numParams(),
      data: data.description,
      recipe: recipeName,
      epochs: result.epochs,
      status: result.status,
      backend,
      valTop1: ev.top1,
      valTop5: ev.top5,
      valLoss: ev.loss,
      bestValTop1: checkpoint.best,
      bestEpoch: checkpoint.bestEpoch === null ? null : checkpoint.bestEpoch + 1,
      trainImagesPerSecond: last?.trainImagesPerSecond,
      evalImagesPerSecond: ev.imagesPerSecond,
      wallSeconds: wall,
      version: VERSION,
      command: cli,
    };
    await writeFileAtomic(join(outDir, 'summary.json'), JSON.stringify(summary, null, 2));
    files.push(join(outDir, 'summary.json'));
    io.out('');
    io.out(
      `vit train: done in ${wall.toFixed(0)} s — val top-1 ${(100 * ev.top1).toFixed(2)}%, top-5 ${(100 * ev.top5).toFixed(2)}%` +
        (checkpoint.best !== null ? ` (best ${(100 * checkpoint.best).toFixed(2)}% at epoch ${checkpoint.bestEpoch! + 1})` : '') +
        ` | train ${last?.trainImagesPerSecond.toFixed(1) ?? '?'} img/s, eval ${ev.imagesPerSecond.toFixed(1)} img/s on ${backend}`,
    );
    io.out(`Wrote:`);
    for (const f of files) io.out(`  ${f}`);
    trainer.model.dispose();
    trainer.optimizer.dispose();
    return EXIT.OK;
  },
};
