import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
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
  warmupCosine,
  writeFileAtomic,
  withSeededRandom,
  VERSION,
  type Callback,
  type EpochRecord,
  type EvalResult,
  type FitResult,
  type LRSchedule,
  type ModelCard,
  type Module,
  OPTIMIZER_TYPES,
} from '@vit/core';
import type { Command } from '../command.js';
import type { Io } from '../io.js';
import { EXIT, InputError, UsageError } from '../exit-codes.js';
import { fraction, jsonObject, nonNeg, nonNegInt, oneOf, posInt, posNum, probability } from '../flags.js';
import { BACKEND_OPTION, useBackend } from '../setup.js';
import { DATA_SPEC_HELP, evalTransform, loadData, trainTransform, type DataSplits } from '../data.js';
import { RECIPES, recipeNames, SCHEDULES, type Recipe } from '../recipes.js';

const BAD_IMAGES = ['error', 'skip'] as const;
const MICRO_BATCH_MODES = ['auto', 'off'] as const;
/** Warm-up starts at 1% of the base rate, whatever schedule follows. */
const WARMUP_START_FACTOR = 0.01;

/** The warm-up + main schedule of a run, as a function of its size (the Trainer calls it in fit). */
export function scheduleFor(r: Recipe): (info: { stepsPerEpoch: number; epochs: number }) => LRSchedule {
  return ({ stepsPerEpoch, epochs }) => {
    const total = stepsPerEpoch * epochs;
    // At least one step after the warm-up, however long --warmup asks it to be.
    const warm = Math.min(Math.round(r.warmupEpochs * stepsPerEpoch), total - 1);
    if (r.sched === 'cosine') return warmupCosine({ totalSteps: total, warmupSteps: warm, warmupStartFactor: WARMUP_START_FACTOR });
    const main = r.sched === 'multistep' ? new MultiStepLR({ milestones: r.milestones ?? [], gamma: r.gamma ?? 0.1, stepsPerEpoch }) : new ConstantLR();
    if (warm <= 0) return main;
    return new SequentialLR([new LinearLR({ startFactor: WARMUP_START_FACTOR, totalIters: warm }), main], [warm]);
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

/** Where a run lives, and what a resumed one recorded. */
interface RunFolder {
  outDir: string;
  lastDir: string;
  resume: boolean;
  /** The flags the resumed run recorded (`{}` for a new run): the defaults under this command's flags. */
  saved: Record<string, unknown>;
  /** This command makes the folder (out of memory before any checkpoint removes it again). */
  created: boolean;
}

/** `--out` and `--resume`: the run folder, checked (and, to resume, its last/ checkpoint read) before anything else. */
async function openRunFolder(values: Record<string, unknown>): Promise<RunFolder> {
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
  return { outDir, lastDir, resume, saved, created: !existsSync(outDir) };
}

/** A run's settings: each flag given, else the resumed run's, else the recipe's (or the model card's). */
interface TrainOptions {
  modelName: string;
  dataSpec: string;
  recipeName: string;
  recipe: Recipe;
  card: ModelCard;
  accumSteps: number;
  microBatch: number | 'auto' | 'off';
  gradCheckpointing: boolean;
  dropPath: number | undefined;
  clipGrad: number | undefined;
  seed: number;
  imgSize: number;
  channels: 1 | 3;
  /** `--model-opts` as given (recorded as text), and the options the model is built with. */
  modelOpts: unknown;
  modelOptions: Record<string, unknown>;
  badImages: (typeof BAD_IMAGES)[number];
}

/** Checks and resolves every setting (a bad one is a usage error before any data is read). */
function trainOptions(pick: (flag: string) => unknown): TrainOptions {
  const modelName = pick('model') as string | undefined;
  const dataSpec = pick('data') as string | undefined;
  if (!modelName) throw new UsageError('--model is required (see `vit models`)');
  if (!dataSpec) throw new UsageError(`--data is required.\n${DATA_SPEC_HELP}`);
  const recipeName = (pick('recipe') as string | undefined) ?? 'default';
  const base = RECIPES[recipeName];
  if (!base) throw new UsageError(`unknown recipe '${recipeName}': expected one of ${recipeNames().join(', ')}`);
  const card = getModelCard(modelName);

  const recipe: Recipe = {
    ...base,
    opt: oneOf(pick('opt'), 'opt', OPTIMIZER_TYPES) ?? base.opt,
    sched: oneOf(pick('sched'), 'sched', SCHEDULES) ?? base.sched,
    epochs: posInt(pick('epochs'), 'epochs') ?? base.epochs,
    batchSize: posInt(pick('batch-size'), 'batch-size') ?? base.batchSize,
    lr: posNum(pick('lr'), 'lr') ?? base.lr,
    warmupEpochs: nonNeg(pick('warmup'), 'warmup') ?? base.warmupEpochs,
    weightDecay: nonNeg(pick('weight-decay'), 'weight-decay') ?? base.weightDecay,
    momentum: fraction(pick('momentum'), 'momentum') ?? base.momentum,
    labelSmoothing: fraction(pick('label-smoothing'), 'label-smoothing') ?? base.labelSmoothing,
    mixup: nonNeg(pick('mixup'), 'mixup') ?? base.mixup,
    cutmix: nonNeg(pick('cutmix'), 'cutmix') ?? base.cutmix,
    augment: {
      ...base.augment,
      cropPadding: nonNegInt(pick('crop-padding'), 'crop-padding') ?? base.augment.cropPadding,
      flip: probability(pick('flip'), 'flip') ?? base.augment.flip,
    },
  };
  const accumSteps = posInt(pick('accum-steps'), 'accum-steps') ?? 1;
  const microRaw = pick('micro-batch');
  const microBatch = MICRO_BATCH_MODES.find((m) => m === microRaw) ?? posInt(microRaw, 'micro-batch') ?? 'auto';
  const dropPath = fraction(pick('drop-path'), 'drop-path');
  const clipGrad = posNum(pick('clip-grad'), 'clip-grad');
  const seed = nonNegInt(pick('seed'), 'seed') ?? 0;
  const imgSize = posInt(pick('img-size'), 'img-size') ?? card.inputSize[0];
  const modelOpts = pick('model-opts');
  const modelOptions: Record<string, unknown> = { ...jsonObject(modelOpts, 'model-opts', '{"depths":[1,1,2,1]}') };
  if (dropPath !== undefined) modelOptions.dropPathRate = dropPath;
  const badImages = oneOf(pick('bad-images'), 'bad-images', BAD_IMAGES) ?? 'error';
  return {
    modelName,
    dataSpec,
    recipeName,
    recipe,
    card,
    accumSteps,
    microBatch,
    gradCheckpointing: pick('grad-checkpointing') === true,
    dropPath,
    clipGrad,
    seed,
    imgSize,
    channels: card.inputSize[2] === 1 ? 1 : 3,
    modelOpts,
    modelOptions,
    badImages,
  };
}

/** The run's settings as flags: kept in its checkpoints (what --resume defaults to) and in summary.json. */
function runRecord(o: TrainOptions): Record<string, unknown> {
  const { recipe } = o;
  return {
    model: o.modelName,
    data: o.dataSpec,
    recipe: o.recipeName,
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
    'drop-path': o.dropPath,
    'clip-grad': o.clipGrad,
    'img-size': o.imgSize,
    'model-opts': o.modelOpts,
    'accum-steps': o.accumSteps,
    'micro-batch': o.microBatch,
    'grad-checkpointing': o.gradCheckpointing,
    'bad-images': o.badImages,
    seed: o.seed,
  };
}

/** What a run trains with: the loaders, the trainer (its model and optimizer) and the checkpoint callback. */
interface Run {
  trainer: Trainer;
  trainLoader: DataLoader;
  valLoader: DataLoader;
  checkpoint: ModelCheckpoint;
  mean: readonly number[];
  std: readonly number[];
  record: Record<string, unknown>;
}

/** Builds the run: a new model and optimizer (seeded), or the ones last/ holds for --resume. */
async function buildRun(o: TrainOptions, folder: RunFolder, data: DataSplits, io: Io): Promise<Run> {
  const { recipe, card, imgSize, channels, seed } = o;
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

  const record = runRecord(o);
  const meta = { cli: record, classNames: data.classNames, imgSize, channels, mean, std, cropPct: card.cropPct };
  const checkpoint = new ModelCheckpoint({ dir: folder.outDir, monitor: 'valAcc', everySteps: 200 });
  const callbacks: Callback[] = [new ProgressBar({ tty: process.stderr.isTTY, epochLines: false }), new EpochLines(io, recipe.epochs), new HistoryWriter(join(folder.outDir, 'history.json')), checkpoint];
  const loss = mixing ? new SoftTargetCrossEntropy() : new LabelSmoothingCrossEntropy(recipe.labelSmoothing);
  // What a new and a resumed trainer share (a resumed one takes its model and optimizer from last/).
  const shared = { callbacks, loss, schedule: scheduleFor(recipe), meta, accumSteps: o.accumSteps, microBatch: o.microBatch, gradCheckpointing: o.gradCheckpointing, onNotice: (m: string) => io.err(m) };
  let trainer: Trainer;
  if (folder.resume) {
    trainer = await Trainer.fromCheckpoint(folder.lastDir, shared);
  } else {
    const modelOptions = { ...o.modelOptions, numClasses: data.classNames.length };
    // Seeded init: tfjs draws an unseeded initializer's seed from Math.random, so without this two
    // runs with the same --seed started from different weights.
    const model = withSeededRandom(seed, () => createModel(o.modelName, modelOptions)) as Module;
    const optimizer = createOptimizer(model, {
      type: recipe.opt,
      lr: recipe.lr,
      weightDecay: recipe.weightDecay,
      ...(recipe.opt === 'sgd' ? { momentum: recipe.momentum ?? 0.9 } : {}),
    });
    trainer = new Trainer({ model, optimizer, clipGradNorm: o.clipGrad, seed, modelName: o.modelName, modelOptions, ...shared });
  }
  return { trainer, trainLoader, valLoader, checkpoint, mean, std, record };
}

function disposeTrainer(trainer: Trainer): void {
  trainer.model.dispose();
  trainer.optimizer.dispose();
}

/** `fit` with Ctrl-C as a request to stop after the current step (last/ is saved for --resume). */
async function fitRun(run: Run, epochs: number, folder: RunFolder, io: Io): Promise<{ result: FitResult; wall: number }> {
  const controller = new AbortController();
  const onSigint = () => {
    io.err('\nvit train: stopping after this step (Ctrl-C again to kill); last/ will be saved for --resume');
    controller.abort();
    process.off('SIGINT', onSigint);
  };
  process.on('SIGINT', onSigint);
  const t0 = Date.now();
  try {
    const result = await run.trainer.fit(run.trainLoader, { epochs, validation: run.valLoader, signal: controller.signal });
    return { result, wall: (Date.now() - t0) / 1000 };
  } catch (err) {
    // Out of memory (wasm's instance is dead then: nothing can be saved): a run folder this
    // command created and nothing was checkpointed into is removed, so the disk is as it was.
    const { outDir, lastDir } = folder;
    if (isOutOfMemory(err) && folder.created && !existsSync(lastDir) && !existsSync(join(outDir, 'best'))) await rm(outDir, { recursive: true, force: true });
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** curves.png/.svg, confusion.png/.svg and predictions.png (the first 32 validation images); returns the files written. */
async function writePlots(run: Run, ev: EvalResult, o: TrainOptions, data: DataSplits, outDir: string): Promise<string[]> {
  const { trainer, valLoader } = run;
  const { modelName } = o;
  const files: string[] = [];
  const curves = await plotLearningCurves(trainer.history, join(outDir, 'curves.png'), { title: `${modelName} on ${o.dataSpec}` });
  const conf = await plotConfusionMatrix(ev.confusion!, data.classNames, join(outDir, 'confusion.png'), { title: `${modelName}: confusion (top-1 ${(100 * ev.top1).toFixed(2)}%)` });
  const gridBatch = (await valLoader.epoch(0)[Symbol.asyncIterator]().next()).value;
  if (gridBatch) {
    const n = Math.min(32, gridBatch.labels.length);
    const images = tf.tidy(() => tf.slice(gridBatch.x, [0, 0, 0, 0], [n, -1, -1, -1]));
    const pred = await trainer.predict(images, { topK: 1 });
    const grid = await plotPredictionGrid(
      { images, predicted: pred.classes.map((c) => c[0]!), actual: Array.from(gridBatch.labels.slice(0, n)), classNames: data.classNames, confidence: pred.probabilities.map((p) => p[0]!), mean: run.mean, std: run.std, title: `${modelName}: validation predictions` },
      join(outDir, 'predictions.png'),
    );
    images.dispose();
    tf.dispose([gridBatch.x, gridBatch.y]);
    files.push(grid.png);
  }
  for (const f of [curves.png, curves.svg, conf.png, conf.svg]) if (f) files.push(f);
  return files;
}

/** After a finished fit: the final evaluation, plots, summary.json and the closing lines. */
async function finishRun(run: Run, result: FitResult, wall: number, o: TrainOptions, data: DataSplits, outDir: string, backend: string, plots: boolean, io: Io): Promise<void> {
  const { trainer, checkpoint } = run;
  // The final weights; best/ holds the best epoch's.
  const ev = await trainer.evaluate(run.valLoader, { returnPredictions: true });
  const files: string[] = [join(outDir, 'final'), join(outDir, 'best'), join(outDir, 'history.json')];
  if (plots) files.push(...(await writePlots(run, ev, o, data, outDir)));
  const last = trainer.history.epochs.at(-1);
  const summary = {
    model: o.modelName,
    params: trainer.model.numParams(),
    data: data.description,
    recipe: o.recipeName,
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
    command: run.record,
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
}

/** run folder → settings → data → model/trainer → fit → evaluation, plots and summary. */
async function train(values: Record<string, unknown>, io: Io): Promise<number> {
  const folder = await openRunFolder(values);
  const o = trainOptions((flag) => values[flag] ?? folder.saved[flag]);
  const { recipe } = o;
  const { outDir } = folder;
  const backend = await useBackend(values.backend ?? 'auto');
  const data = await loadData(o.dataSpec, { imageSize: o.imgSize, channels: o.channels, seed: o.seed, badImages: o.badImages, log: (l) => io.err(l) });
  const run = await buildRun(o, folder, data, io);
  // Only now that the model is built (bad --model-opts are refused above) does the run folder exist.
  await mkdir(outDir, { recursive: true });
  io.out(`vit train: ${o.modelName} (${(run.trainer.model.numParams() / 1e6).toFixed(2)}M params) on ${data.description}`);
  io.out(
    `  backend ${backend} | recipe ${o.recipeName} | ${recipe.epochs} epochs × ${run.trainLoader.numBatches} steps of ${recipe.batchSize}${o.accumSteps > 1 ? ` (${o.accumSteps} micro-batches each)` : ''} | ${recipe.opt} lr ${recipe.lr} wd ${recipe.weightDecay} | ${recipe.sched}${recipe.warmupEpochs ? ` (+${recipe.warmupEpochs} warm-up)` : ''} | image ${o.imgSize}px${o.gradCheckpointing ? ' | grad checkpointing' : ''} | run folder ${outDir}`,
  );

  const { result, wall } = await fitRun(run, recipe.epochs, folder, io);
  if (result.status === 'diverged') {
    io.err(`vit train: ${result.message ?? 'the loss diverged'}`);
    disposeTrainer(run.trainer);
    return EXIT.FAILED;
  }
  if (result.status === 'interrupted') {
    io.out(`vit train: interrupted; continue with: vit train --out ${outDir} --resume`);
    disposeTrainer(run.trainer);
    return EXIT.INTERRUPTED;
  }
  await finishRun(run, result, wall, o, data, outDir, backend, !values['no-plots'], io);
  disposeTrainer(run.trainer);
  return EXIT.OK;
}

const RECIPE_DEFAULT = "(default: the recipe's)";

export const trainCommand: Command = {
  name: 'train',
  summary: 'Train (or fine-tune) a model on a dataset; writes checkpoints, history and plots to a run folder',
  usage: 'vit train --model <name> --data <spec> [options]\n       vit train --out <dir> --resume [options]',
  options: {
    model: { type: 'string', value: '<name>', description: 'the model to train (see `vit models`)' },
    data: { type: 'string', value: '<spec>', description: 'the data set (see Data specs below)' },
    recipe: { type: 'string', value: '<name>', description: 'the recipe whose values the other flags override (default: default; see Recipes below)' },
    epochs: { type: 'string', value: '<n>', description: `epochs to train ${RECIPE_DEFAULT}` },
    'batch-size': { type: 'string', value: '<n>', description: `images per optimizer step ${RECIPE_DEFAULT}` },
    lr: { type: 'string', value: '<x>', description: `the base learning rate ${RECIPE_DEFAULT}` },
    opt: { type: 'string', value: `<${OPTIMIZER_TYPES.join('|')}>`, description: `the optimizer ${RECIPE_DEFAULT}` },
    sched: { type: 'string', value: `<${SCHEDULES.join('|')}>`, description: `the learning-rate schedule after the warm-up, stepped per step ${RECIPE_DEFAULT}` },
    warmup: { type: 'string', value: '<epochs>', description: `epochs of linear warm-up from ${100 * WARMUP_START_FACTOR}% of --lr, fractions allowed ${RECIPE_DEFAULT}` },
    'weight-decay': { type: 'string', value: '<x>', description: `weight decay: decoupled with adamw, L2 with adam and sgd ${RECIPE_DEFAULT}` },
    momentum: { type: 'string', value: '<x>', description: "sgd's momentum, in [0, 1) (default: the recipe's, else 0.9)" },
    'label-smoothing': { type: 'string', value: '<x>', description: `label smoothing, in [0, 1) ${RECIPE_DEFAULT}` },
    mixup: { type: 'string', value: '<alpha>', description: `MixUp with λ ~ Beta(alpha, alpha), 0 = off ${RECIPE_DEFAULT}` },
    cutmix: { type: 'string', value: '<alpha>', description: `CutMix with λ ~ Beta(alpha, alpha), 0 = off ${RECIPE_DEFAULT}` },
    'drop-path': { type: 'string', value: '<x>', description: "the stochastic-depth rate, in [0, 1) (default: the model's)" },
    'crop-padding': { type: 'string', value: '<px>', description: `zero padding of the random crop, 0 = no crop ${RECIPE_DEFAULT}` },
    flip: { type: 'string', value: '<p>', description: `horizontal-flip probability ${RECIPE_DEFAULT}` },
    'img-size': { type: 'string', value: '<px>', description: "the training image size (square; default the model card's)" },
    'model-opts': { type: 'string', value: '<json>', description: 'model options as a JSON object, e.g. \'{"depths":[1,1,2,1]}\'' },
    'clip-grad': { type: 'string', value: '<x>', description: 'clip the global gradient norm to this (default: no clipping)' },
    'accum-steps': { type: 'string', value: '<n>', description: 'split every batch into n micro-batches with one optimizer step (default 1)' },
    'micro-batch': { type: 'string', value: `<n|${MICRO_BATCH_MODES.join('|')}>`, description: 'the largest micro-batch; auto (default) splits only batches that would not fit, off never' },
    'grad-checkpointing': { type: 'boolean', description: 'recompute each block in the backward pass instead of keeping its intermediates' },
    backend: BACKEND_OPTION,
    seed: { type: 'string', value: '<n>', description: 'seed of the initial weights, data order and augmentation (default 0)' },
    out: { type: 'string', value: '<dir>', description: 'the run folder (default runs/<model>-<date>-<time>)' },
    resume: { type: 'boolean', description: "continue the run in --out from its last/ checkpoint (its flags are the defaults)" },
    'no-plots': { type: 'boolean', description: 'write no curves, confusion matrix or prediction grid' },
    'bad-images': { type: 'string', value: `<${BAD_IMAGES.join('|')}>`, description: 'image folders: refuse a run with bad images (default error), or skip them with a warning each' },
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
  run: ({ values }, io) => train(values, io),
};
