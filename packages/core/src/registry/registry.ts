import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError, UnknownModelError, nearestNames } from '../errors.js';
import type { Module } from '../nn/module.js';
import { processWide } from '../process_wide.js';
import type { AdaptedCheckpoint } from '../weights/convert.js';
import type { Explainer } from '../explain/types.js';

/** What a user needs to feed a model correctly (timm's pretrained_cfg). */
export interface ModelCard {
  /** Registered name, timm's spelling (`cait_xxs24_224`). */
  name: string;
  /** Architecture family (`cait`, `litv2`, `conv2former`, `regionvit`, `mrla`). */
  arch: string;
  /** Default input size as NHWC without batch: `[H, W, C]`. */
  inputSize: [number, number, number];
  numClasses: number;
  mean: [number, number, number];
  std: [number, number, number];
  /** Eval crop fraction (resize to size/cropPct then centre-crop). */
  cropPct: number;
  interpolation: 'bilinear' | 'bicubic' | 'nearest';
  /** Dotted name of the first conv (for adapting input channels). */
  firstConv: string;
  /** Dotted name of the classifier (for resetting the head). */
  classifier: string;
  /** Exact parameter count with `numClasses` classes, when known. */
  paramCount?: number;
  /** Top-1 on ImageNet-1k (or the dataset in `notes`) as reported by the paper. */
  top1?: number;
  paper?: string;
  /** Official code the variant comes from (`owner/repo:path`). */
  reference?: string;
  /** False for variants we defined by analogy or from a seed write-up. */
  official: boolean;
  notes?: string;
  /**
   * Published weights (timm's pretrained tags), the default tag first. A tag whose `unavailable`
   * says why has no file a program can fetch (load a copy you obtained with `url`).
   */
  pretrained?: PretrainedTag[];
}

/** One file of published weights and what is known about it. */
export interface PretrainedSource {
  /**
   * Where it is: `https:` (or `http:`), or a `file:` URL (weights shipped inside an npm package,
   * written as `packageAsset(() => new URL('../weights/x.safetensors', import.meta.url))`, which bundlers see).
   */
  url: string;
  /** `pth`: a torch.save file with the official keys and layouts; `safetensors`: ours or official (read from its metadata). */
  format: 'pth' | 'safetensors';
  /** Hex SHA-256 of the file, where the publisher gives one (or where we made the file). */
  sha256?: string;
  /** Exact size in bytes, where known. */
  sizeBytes?: number;
  /** The entry holding the state dict in a wrapped .pth (otherwise found as timm does). */
  stateDictKey?: string;
  /**
   * The publisher's .pth also holds non-tensor objects (a training config, argparse args): read
   * them as inert placeholders (nothing is executed either way).
   */
  lenient?: boolean;
}

/** A pretrained tag of a model (timm's `pretrained_cfg`): the weights and how to feed them. */
export interface PretrainedTag {
  /** `fb_dist_in1k`, `in1k`, `fashion_mnist`… (the name after the dot in timm's `model.tag`). */
  tag: string;
  /** Tried in order; the first that answers is used. Empty when `unavailable`. */
  sources: PretrainedSource[];
  /** Licence of the weights (the publisher's). */
  license: string;
  /** Label set the classifier was trained on: a key of `LABEL_SETS` (`imagenet-1k`, `fashion-mnist`, `cifar-10`); '' when unknown. */
  labels: string;
  numClasses: number;
  /** Input size, normalisation and eval crop the weights expect (the card's when the same). */
  inputSize: [number, number, number];
  mean: [number, number, number];
  std: [number, number, number];
  cropPct: number;
  interpolation: 'bilinear' | 'bicubic' | 'nearest';
  /** Top-1 of these weights on their label set's validation/test split, as reported (the publisher's or ours). */
  top1?: number;
  /** Why no program can fetch these weights (a share site needing a browser login); a `url` option still loads a local copy. */
  unavailable?: string;
  notes?: string;
}

/** A tag filled with its card's input settings so registrations only state what differs. */
export function pretrainedTag(
  card: Pick<ModelCard, 'inputSize' | 'mean' | 'std' | 'cropPct' | 'interpolation' | 'numClasses'>,
  tag: Partial<PretrainedTag> & Pick<PretrainedTag, 'tag' | 'license' | 'labels'>,
): PretrainedTag {
  return {
    sources: [],
    numClasses: card.numClasses,
    inputSize: card.inputSize,
    mean: card.mean,
    std: card.std,
    cropPct: card.cropPct,
    interpolation: card.interpolation,
    ...tag,
  };
}

/** Whether a card has a pretrained tag a program can fetch. */
export function hasPretrained(card: ModelCard): boolean {
  return (card.pretrained ?? []).some((t) => !t.unavailable && t.sources.length > 0);
}

export const IMAGENET_DEFAULT_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_DEFAULT_STD: [number, number, number] = [0.229, 0.224, 0.225];

/** Fills the usual ImageNet defaults so registrations only state what differs. */
export function modelCard(card: Partial<ModelCard> & Pick<ModelCard, 'name' | 'arch' | 'firstConv' | 'classifier'>): ModelCard {
  return {
    inputSize: [224, 224, 3],
    numClasses: 1000,
    mean: IMAGENET_DEFAULT_MEAN,
    std: IMAGENET_DEFAULT_STD,
    cropPct: 0.875,
    interpolation: 'bicubic',
    official: true,
    ...card,
  };
}

/** Options every factory accepts on top of its architecture's own. */
export interface CreateModelOptions {
  numClasses?: number;
  inChans?: number;
  dropPathRate?: number;
  dropRate?: number;
  [key: string]: unknown;
}

export type ModelFactory = (options?: CreateModelOptions) => Module;

interface Entry {
  factory: ModelFactory;
  card: ModelCard;
}

// On globalThis (`Symbol.for('@vit/core.registry')`): the CommonJS and ESM builds share one registry.
const { models, architectures } = processWide('registry', () => ({ models: new Map<string, Entry>(), architectures: new Map<string, ArchitectureAdapter>() }));

/** Registers a model variant. Registering a name twice is an error (two packages disagreeing). */
export function registerModel(name: string, factory: ModelFactory, card: Omit<ModelCard, 'name'> & { name?: string }): void {
  if (models.has(name)) throw new ConfigError(`Model '${name}' is already registered`);
  models.set(name, { factory, card: { ...card, name } });
}

/** Removes a registration (tests, or a user replacing a variant). */
export function unregisterModel(name: string): boolean {
  return models.delete(name);
}

function entry(name: string): Entry {
  const e = models.get(name);
  if (!e) throw new UnknownModelError(name, nearestNames(name, models.keys()));
  return e;
}

/** Builds a registered model. Unknown names throw `UnknownModelError` with the nearest names. */
export function createModel<M extends Module = Module>(name: string, options: CreateModelOptions = {}): M {
  const e = entry(name);
  if (options.pretrained !== undefined && options.pretrained !== false) {
    // Weights come from a file or the network: asynchronous, so not through this synchronous factory.
    throw new ConfigError(`createModel('${name}') builds a model synchronously with fresh weights; for pretrained weights use \`await createPretrainedModel('${name}')\``);
  }
  const { pretrained: _ignored, ...rest } = options;
  return e.factory(rest) as M;
}

export function getModelCard(name: string): ModelCard {
  const { card } = entry(name);
  return { ...card };
}

export function isModelRegistered(name: string): boolean {
  return models.has(name);
}

/** `*` matches any run of characters, `?` one; several patterns are a union. */
export function globToRegExp(glob: string): RegExp {
  const esc = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${esc}$`);
}

export interface ListModelsOptions {
  /** Only models with a pretrained tag a program can fetch (timm's `list_models(pretrained=True)`). */
  pretrained?: boolean;
}

/** Registered names matching the glob(s), sorted. `listModels({ pretrained: true })` filters to models with weights. */
export function listModels(pattern: string | string[] | ListModelsOptions = '*', options: ListModelsOptions = {}): string[] {
  if (typeof pattern === 'object' && !Array.isArray(pattern)) return listModels('*', pattern);
  const res = (Array.isArray(pattern) ? pattern : [pattern]).map(globToRegExp);
  return [...models.entries()]
    .filter(([n, e]) => res.some((r) => r.test(n)) && (!options.pretrained || hasPretrained(e.card)))
    .map(([n]) => n)
    .sort();
}

/** A golden or official config of one architecture, as the official constructor's kwargs. */
export type OfficialKwargs = Record<string, unknown>;

/**
 * How an architecture package plugs into tools that start from the official code's terms:
 * `vit parity` builds a model from a golden file's `arch` + `config` metadata through this.
 */
export interface ArchitectureAdapter {
  /** The golden metadata's `arch` (`cait`, `litv2`, `conv2former`, `regionvit`, `mrla`). */
  name: string;
  /** Human name and official reference, for messages. */
  description?: string;
  /**
   * Builds the model from the official constructor kwargs. `extra` carries golden metadata the
   * official constructor does not take (MRLA's class-attribute `overrides`).
   */
  fromOfficialConfig(kwargs: OfficialKwargs, extra?: { overrides?: Record<string, unknown> }): Module;
  /**
   * The tensors the official code calls per-stage features, keyed as a golden's
   * `golden.features.<i>` (and e.g. `golden.features_regional.<i>`), in our layouts: maps NHWC,
   * tokens `[B, N, C]`.
   */
  officialFeatures?(model: Module, x: tf.Tensor4D): Record<string, tf.Tensor>;
  /**
   * timm's `checkpoint_filter_fn`: readies an official state dict (official keys and layouts) for
   * `model` — unwrap prefixes, resample position tables, drop a classifier of another class count.
   * Every official-weights path goes through it (`loadOfficialCheckpoint`: `vit convert`,
   * `vit predict --weights`, pretrained loading). Absent: `defaultCheckpointFilter`.
   */
  filterCheckpoint?(model: Module, tensors: Map<string, tf.Tensor>): AdaptedCheckpoint;
  /**
   * How `explain()`, `gradCam` and `attentionRollout` treat this architecture's models (the
   * Grad-CAM layers, the attention maps); `undefined` for a model that is not one of them:
   * `explain()` asks every registered adapter.
   */
  explainer?(model: Module): Explainer | undefined;
}

/**
 * Registers an adapter. The same package's adapter again is a no-op (its CommonJS and ESM builds
 * both register: same name and description); another adapter under a taken name is an error.
 */
export function registerArchitecture(adapter: ArchitectureAdapter): void {
  const had = architectures.get(adapter.name);
  if (had === adapter || (had && had.description === adapter.description)) return;
  if (had) throw new ConfigError(`Architecture '${adapter.name}' is already registered`);
  architectures.set(adapter.name, adapter);
}

export function getArchitecture(name: string): ArchitectureAdapter {
  const a = architectures.get(name);
  if (!a) throw new UnknownModelError(name, nearestNames(name, architectures.keys()), 'architecture');
  return a;
}

/** The explainer of the first registered architecture that recognises `model`, if any. */
export function findExplainer(model: Module): Explainer | undefined {
  for (const a of architectures.values()) {
    const e = a.explainer?.(model);
    if (e) return e;
  }
  return undefined;
}

export function listArchitectures(): string[] {
  return [...architectures.keys()].sort();
}

/**
 * The URL of a file shipped inside a package, written as
 * `packageAsset(() => new URL('../weights/x.safetensors', import.meta.url))` (relative to the
 * calling module: the same from `src/` and `dist/`). Bundlers (Vite, webpack 5, Parcel) recognise
 * only that literal `new URL('…', import.meta.url)`: they copy the file into the bundle and rewrite
 * the URL; Node resolves it beside the module. Undefined where the module has no URL (an esbuild
 * IIFE bundle empties `import.meta`): the package still loads. The older form
 * `packageAsset(rel, import.meta.url)` hides the file from bundlers; it keeps `rel` where there is no URL.
 */
export function packageAsset(make: () => URL): string | undefined;
export function packageAsset(rel: string, moduleUrl: string | undefined): string;
export function packageAsset(rel: string | (() => URL), moduleUrl?: string): string | undefined {
  try {
    return typeof rel === 'function' ? rel().href : new URL(rel, moduleUrl).href;
  } catch {
    return typeof rel === 'function' ? undefined : rel;
  }
}

/**
 * The card fields every @vit `*_nano` variant shares: 32×32 inputs (Fashion-MNIST, CIFAR), ours
 * rather than the paper's, no centre crop, bilinear resizing, and the note saying so.
 */
export const NANO_CARD: { inputSize: [number, number, number]; official: false; cropPct: number; interpolation: 'bilinear'; notes: string } = {
  inputSize: [32, 32, 3],
  official: false,
  cropPct: 1,
  interpolation: 'bilinear',
  notes: 'Defined by @vit for 32×32 small-image datasets (Fashion-MNIST, CIFAR) and quick experiments; not from the paper. Results: docs/results.md.',
};

/** A weights file of ours shipped in a package (see `fashionMnistNanoTag`). */
export interface NanoWeights {
  /**
   * `packageAsset(() => new URL('../weights/<name>.fashion_mnist.safetensors', import.meta.url))`;
   * undefined in a bundle that gives the module no URL (the tag then says the file is unavailable).
   */
  url: string | undefined;
  sha256: string;
  sizeBytes: number;
  /** Test top-1 (%) of this file on the 10,000 Fashion-MNIST test images. */
  top1: number;
  /** Epochs of `vit train`'s default recipe it was trained for. */
  epochs: number;
}

/**
 * The `fashion_mnist` tag of our nano variants: weights @vit trained on Fashion-MNIST (32×32,
 * grey repeated to 3 channels, ImageNet mean/std), shipped in the architecture package.
 */
export function fashionMnistNanoTag(card: Pick<ModelCard, 'inputSize' | 'mean' | 'std' | 'cropPct' | 'interpolation' | 'numClasses'>, file: NanoWeights): PretrainedTag {
  return pretrainedTag(card, {
    tag: 'fashion_mnist',
    ...(file.url === undefined
      ? { sources: [], unavailable: 'this build of the package gives its modules no URL (import.meta.url), so the weights file shipped in it cannot be located' }
      : { sources: [{ url: file.url, format: 'safetensors' as const, sha256: file.sha256, sizeBytes: file.sizeBytes }] }),
    license: 'Apache-2.0',
    labels: 'fashion-mnist',
    top1: file.top1,
    notes:
      `Trained by @vit: ${file.epochs} epoch${file.epochs === 1 ? '' : 's'} of \`vit train\`'s default recipe (AdamW, label smoothing 0.1, flips) on the full ` +
      'Fashion-MNIST at batch 128; stored as float16 (the top-1 is measured on this file). `node tools/nano-weights.mjs` remakes it (docs/results.md).',
  });
}
