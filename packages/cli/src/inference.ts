import { existsSync, statSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import {
  CenterCrop,
  ConfigError,
  DataLoader,
  ImageFolderDataset,
  ShapeError,
  Trainer,
  UnknownModelError,
  createModel,
  createOptimizer,
  getModelCard,
  loadOurStateDict,
  loadOfficialCheckpoint,
  loadPretrained,
  loadPthFile,
  loadSafetensorsFile,
  OUR_LAYOUT,
  resolveCheckpointDir,
  WeightLoadError,
  type DownloadProgress,
  type Module,
} from '@vit/core';
import type { OptionSpec } from './command.js';
import { InputError, UsageError } from './exit-codes.js';
import { posInt } from './flags.js';
import type { Io } from './io.js';

/** A model ready for evaluation or prediction, with what its training run recorded. */
export interface LoadedModel {
  trainer: Trainer;
  modelName: string;
  imgSize: number;
  channels: 1 | 3;
  mean: readonly number[];
  std: readonly number[];
  cropPct: number;
  classNames: readonly string[] | undefined;
  source: string;
  /** Problems worth a warning (weights holding NaN or Inf). */
  warnings: string[];
  dispose(): void;
}

/** The parameters and buffers holding NaN or ±Inf: predictions from them are meaningless, and say nothing of it. */
function nonFiniteWarnings(model: Module, source: string): string[] {
  const bad = [...model.namedParameters(), ...model.namedBuffers()]
    .filter(([, v]) => v.dtype === 'float32' && tf.tidy(() => tf.any(tf.logicalNot(tf.isFinite(v))).dataSync()[0] === 1))
    .map(([n]) => n);
  if (bad.length === 0) return [];
  return [`warning: ${source}: ${bad.length} weight tensor(s) hold NaN or Inf (${bad.slice(0, 3).join(', ')}${bad.length > 3 ? ', …' : ''}); the outputs will be meaningless`];
}

/** The largest image side a checkpoint's config may ask for: 16 images of 2048² RGB are 800 MB already. */
export const MAX_IMAGE_SIZE = 2048;

/**
 * What a checkpoint's config.json says about its inputs, checked before any image is decoded: a
 * crafted `imgSize: 100000` would otherwise ask for a 28 GB buffer.
 */
function checkMeta(
  m: { imgSize: unknown; channels: unknown; mean: unknown; std: unknown; cropPct: unknown; classNames: unknown },
  file: string,
  model: Module,
): void {
  const bad = (what: string) => {
    throw new InputError(`${file}: meta.${what}`);
  };
  if (!(Number.isInteger(m.imgSize) && (m.imgSize as number) >= 1 && (m.imgSize as number) <= MAX_IMAGE_SIZE)) bad(`imgSize must be an integer in [1, ${MAX_IMAGE_SIZE}], got ${JSON.stringify(m.imgSize)}`);
  if (m.channels !== 1 && m.channels !== 3) bad(`channels must be 1 or 3, got ${JSON.stringify(m.channels)}`);
  const stats = (v: unknown) => Array.isArray(v) && (v.length === 1 || v.length === m.channels) && v.every((x) => typeof x === 'number' && Number.isFinite(x));
  if (!stats(m.mean)) bad(`mean must be ${String(m.channels)} finite numbers, got ${JSON.stringify(m.mean)}`);
  if (!stats(m.std) || (m.std as number[]).some((x) => !(x > 0))) bad(`std must be ${String(m.channels)} positive numbers, got ${JSON.stringify(m.std)}`);
  if (!(typeof m.cropPct === 'number' && m.cropPct > 0 && m.cropPct <= 1)) bad(`cropPct must be in (0, 1], got ${JSON.stringify(m.cropPct)}`);
  if (m.classNames !== undefined) {
    const names = m.classNames;
    if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) bad(`classNames must be a list of strings`);
    const classes = (model as { numClasses?: number }).numClasses;
    if (typeof classes === 'number' && (names as string[]).length !== classes) bad(`classNames lists ${(names as string[]).length} names for a model with ${classes} classes`);
  }
}

/** A run folder means its best checkpoint (then final, then last). */
async function checkpointDir(dir: string): Promise<string> {
  const abs = resolve(dir);
  if (!existsSync(abs)) throw new InputError(`no such checkpoint: ${abs}`);
  if (await resolveCheckpointDir(abs)) return abs;
  for (const sub of ['best', 'final', 'last']) {
    if (existsSync(join(abs, sub)) || existsSync(join(abs, `.${sub}.old`))) {
      if (await resolveCheckpointDir(join(abs, sub))) return join(abs, sub);
    }
  }
  throw new InputError(`${abs} is not a checkpoint: expected a folder written by \`vit train\` (with config.json), or a run folder holding best/, final/ or last/`);
}

/** The flags that say which published weights to fetch (download, and predict/eval with --pretrained). */
export const PRETRAINED_OPTIONS = {
  tag: { type: 'string', value: '<tag>', description: "which of the card's pretrained weights (default its first; see `vit models --pretrained`)" },
  'weights-url': { type: 'string', value: '<url|file>', description: "another copy of the tag's weights (a mirror, a file you downloaded)" },
  'cache-dir': { type: 'string', value: '<dir>', description: 'the weights cache (default VIT_CACHE_DIR, else $XDG_CACHE_HOME/vit, else ~/.cache/vit)' },
} satisfies Record<string, OptionSpec>;

/** The flags that choose a model and its weights for `loadForInference` (predict, eval). */
export const INFERENCE_OPTIONS = {
  checkpoint: { type: 'string', value: '<dir>', description: 'a checkpoint or run folder written by `vit train` (a run folder means its best/)' },
  model: { type: 'string', value: '<name>', description: 'a registered model (see `vit models`), with --weights or --pretrained (random weights without)' },
  weights: { type: 'string', value: '<file>', description: 'weights for --model: our safetensors, PyTorch-layout safetensors or an official .pth' },
  'num-classes': { type: 'string', value: '<n>', description: "the classifier's class count with --model (default the card's; with --pretrained the weights')" },
  pretrained: { type: 'boolean', description: "load --model's published weights through the cache" },
  ...PRETRAINED_OPTIONS,
} satisfies Record<string, OptionSpec>;

/** `--tag`, `--weights-url` (a URL, or a local path made absolute) and `--cache-dir` as the pretrained loader takes them. */
export function pretrainedFlags(values: Record<string, unknown>): { tag?: string; url?: string; cacheDir?: string } {
  const url = values['weights-url'] as string | undefined;
  return {
    tag: values.tag as string | undefined,
    // A local path works too; the loader reads file: URLs and paths in place.
    url: url !== undefined && !/^[a-z]+:\/\//i.test(url) ? resolve(url) : url,
    cacheDir: values['cache-dir'] !== undefined ? resolve(values['cache-dir'] as string) : undefined,
  };
}

/**
 * A download progress line on stderr, at most every 2 s and once at the end: a 300 MB file over a
 * slow line should show it is alive without flooding a log.
 */
export function downloadProgress(io: Io): (p: DownloadProgress) => void {
  let last = 0;
  let lastUrl = '';
  return (p) => {
    const now = Date.now();
    const done = p.total !== undefined && p.loaded >= p.total;
    if (!done && p.url === lastUrl && now - last < 2000) return;
    last = now;
    lastUrl = p.url;
    const mb = (n: number) => (n / 1024 ** 2).toFixed(1);
    const pct = p.total ? ` (${Math.floor((100 * p.loaded) / p.total)}%)` : '';
    io.err(`downloading ${p.url}: ${mb(p.loaded)}${p.total ? `/${mb(p.total)}` : ''} MiB${pct}${p.attempt > 1 ? `, try ${p.attempt}` : ''}`);
  };
}

/**
 * `--checkpoint DIR` (a `vit train` checkpoint or run folder), `--model NAME --weights FILE`
 * (our safetensors, PyTorch-layout safetensors, or an official .pth), or `--model NAME
 * --pretrained` (the card's published weights through the cache; `--weights-url` another copy).
 */
export async function loadForInference(values: Record<string, unknown>, io?: Io): Promise<LoadedModel> {
  const ckFlag = values.checkpoint as string | undefined;
  const name = values.model as string | undefined;
  const weights = values.weights as string | undefined;
  const pretrained = values.pretrained === true || values['weights-url'] !== undefined;
  if (ckFlag && (name || weights)) throw new UsageError('give either --checkpoint, or --model with --weights, not both');
  if (ckFlag && pretrained) throw new UsageError('--pretrained/--weights-url load a model by --model name, not a --checkpoint');
  if (pretrained && weights) throw new UsageError('give either --weights FILE or --pretrained [--weights-url URL], not both');
  if (!pretrained && (values.tag !== undefined || values['cache-dir'] !== undefined)) throw new UsageError('--tag and --cache-dir apply to --pretrained');
  if (ckFlag) {
    const dir = await checkpointDir(ckFlag);
    let trainer: Trainer;
    try {
      trainer = await Trainer.fromCheckpoint(dir);
    } catch (e) {
      // The model options come from the checkpoint's config.json here, not from flags: a file problem.
      if (e instanceof ConfigError || e instanceof ShapeError || e instanceof UnknownModelError) {
        throw new InputError(`${join(dir, 'config.json')}: cannot rebuild its model: ${e.message}`);
      }
      throw e;
    }
    const dispose = () => {
      trainer.model.dispose();
      trainer.optimizer.dispose();
    };
    try {
      const meta = (trainer.meta ?? {}) as Record<string, unknown>;
      const modelName = trainer.modelName ?? 'model';
      const card = trainer.modelName ? getModelCard(trainer.modelName) : undefined;
      const channels = (meta.channels ?? card?.inputSize[2] ?? 3) as number;
      const m = {
        imgSize: (meta.imgSize ?? card?.inputSize[0] ?? 224) as number,
        channels,
        mean: (meta.mean ?? card?.mean ?? [0.485, 0.456, 0.406]) as number[],
        std: (meta.std ?? card?.std ?? [0.229, 0.224, 0.225]) as number[],
        cropPct: (meta.cropPct ?? card?.cropPct ?? 1) as number,
        classNames: meta.classNames as string[] | undefined,
      };
      checkMeta(m, join(dir, 'config.json'), trainer.model);
      return {
        trainer,
        modelName,
        ...m,
        channels: m.channels === 1 ? 1 : 3,
        source: dir,
        warnings: nonFiniteWarnings(trainer.model, dir),
        dispose,
      };
    } catch (e) {
      dispose();
      throw e;
    }
  }
  if (!name) throw new UsageError('give --checkpoint DIR (from `vit train`), or --model NAME with --weights FILE');
  const card = getModelCard(name);
  const numClasses = posInt(values['num-classes'], 'num-classes');
  if (pretrained) {
    const r = await loadPretrained(name, {
      ...pretrainedFlags(values),
      numClasses,
      onProgress: io ? downloadProgress(io) : undefined,
    });
    return withTrainer(r.model, name, r.tag, {
      modelName: `${name}.${r.tag.tag}`,
      classNames: r.classNames,
      source: r.fromCache ? `${r.source} (cached: ${r.file})` : r.source,
      warnings: [...r.notes.map((n) => `note: ${n}`), ...nonFiniteWarnings(r.model, r.file)],
    });
  }
  const model = createModel(name, numClasses ? { numClasses } : {}) as Module;
  try {
    if (weights) {
      const file = resolve(weights);
      if (/\.(pth|pt|bin|ckpt)$/i.test(file)) {
        const { tensors } = await loadPthFile(file);
        try {
          // The architecture's checkpoint filter, as for `vit convert` and pretrained weights.
          loadOfficialCheckpoint(model, tensors, { arch: card.arch, classifier: card.classifier });
        } finally {
          for (const t of tensors.values()) t.dispose();
        }
      } else {
        const { tensors, metadata } = await loadSafetensorsFile(file);
        try {
          if (metadata.layout === OUR_LAYOUT) loadOurStateDict(model, Object.fromEntries(tensors), { strict: true });
          else loadOfficialCheckpoint(model, tensors, { arch: card.arch, classifier: card.classifier });
        } catch (err) {
          if (err instanceof WeightLoadError) throw new WeightLoadError(err.problems, `'${file}'`);
          throw err;
        } finally {
          for (const t of tensors.values()) t.dispose();
        }
      }
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  model.eval();
  return withTrainer(model, name, card, {
    modelName: name,
    classNames: undefined,
    source: weights ? resolve(weights) : `${name} (random weights)`,
    warnings: weights ? nonFiniteWarnings(model, resolve(weights)) : [],
  });
}

/** A model (in eval mode) with the preprocessing of its card or pretrained tag, ready for evaluate/predict. */
function withTrainer(
  model: Module,
  name: string,
  input: { inputSize: [number, number, number]; mean: readonly number[]; std: readonly number[]; cropPct: number },
  about: Pick<LoadedModel, 'modelName' | 'classNames' | 'source' | 'warnings'>,
): LoadedModel {
  // The Trainer runs evaluate/predict; a plain SGD with no state is all it needs here.
  const trainer = new Trainer({ model, optimizer: createOptimizer(model, { type: 'sgd', lr: 0 }), modelName: name });
  return {
    trainer,
    ...about,
    imgSize: input.inputSize[0],
    channels: input.inputSize[2] === 1 ? 1 : 3,
    mean: input.mean,
    std: input.std,
    cropPct: input.cropPct,
    dispose: () => {
      model.dispose();
      trainer.optimizer.dispose();
    },
  };
}

/** Image arguments as absolute paths, each an existing file (not a folder). */
export function imageFiles(positionals: string[]): string[] {
  if (positionals.length === 0) throw new UsageError('give at least one image file');
  const files = positionals.map((p) => resolve(p));
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length) throw new InputError(`no such image: ${missing.join(', ')}`);
  const dirs = files.filter((f) => statSync(f).isDirectory());
  if (dirs.length) throw new InputError(`${dirs.join(', ')}: a folder, not an image file (give the image files, e.g. ${dirs[0]}/*.png)`);
  return files;
}

/** The side images are decoded at before the centre crop to the model size (timm's eval: size/cropPct). */
export function decodeSize(m: Pick<LoadedModel, 'imgSize' | 'cropPct'>): number {
  return Math.floor(m.imgSize / m.cropPct);
}

/**
 * Batches of `files` prepared as the model expects: decoded at `decodeSize` (shorter side, centre),
 * centre-cropped to the model size, the run's channels and normalisation. Labels are dummies.
 */
export function imageLoader(files: string[], m: LoadedModel, batchSize = 16): DataLoader {
  const ds = new ImageFolderDataset(files, new Int32Array(files.length), m.classNames ?? [], sharp as unknown as ConstructorParameters<typeof ImageFolderDataset>[3], {
    dir: '',
    size: decodeSize(m),
    channels: m.channels,
  });
  return new DataLoader(ds, { batchSize, transform: new CenterCrop(m.imgSize), channels: m.channels, mean: m.mean, std: m.std });
}
