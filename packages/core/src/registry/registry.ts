import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError, UnknownModelError, nearestNames } from '../errors.js';
import type { Module } from '../nn/module.js';
import { processWide } from '../process_wide.js';

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
  return entry(name).factory(options) as M;
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

/** Registered names matching the glob(s), sorted. */
export function listModels(pattern: string | string[] = '*'): string[] {
  const res = (Array.isArray(pattern) ? pattern : [pattern]).map(globToRegExp);
  return [...models.keys()].filter((n) => res.some((r) => r.test(n))).sort();
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
}

export function registerArchitecture(adapter: ArchitectureAdapter): void {
  if (architectures.has(adapter.name)) throw new ConfigError(`Architecture '${adapter.name}' is already registered`);
  architectures.set(adapter.name, adapter);
}

export function getArchitecture(name: string): ArchitectureAdapter {
  const a = architectures.get(name);
  if (!a) throw new UnknownModelError(name, nearestNames(name, architectures.keys()), 'architecture');
  return a;
}

export function listArchitectures(): string[] {
  return [...architectures.keys()].sort();
}
