/**
 * The one place parameter layouts are converted between the official PyTorch checkpoints and ours
 * (see `ParamKind` in nn/module.ts). Architecture packages never transpose weights themselves.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, WeightLoadError, type WeightProblem } from '../errors.js';
import type { Module, ParamKind, StateEntry } from '../nn/module.js';

const RANK: Record<ParamKind, number | undefined> = { linear: 2, conv2d: 4, depthwise: 4, conv1d: 3, plain: undefined };

function checkRank(kind: ParamKind, shape: readonly number[], layout: string): void {
  const r = RANK[kind];
  if (r !== undefined && shape.length !== r) {
    throw new ShapeError(`A '${kind}' parameter needs rank ${r} in ${layout} layout, got shape [${shape.join(', ')}]`);
  }
}

/** The shape a parameter of ours has in the official PyTorch layout. */
export function pytorchShape(kind: ParamKind, ourShape: readonly number[]): number[] {
  checkRank(kind, ourShape, 'our');
  const s = ourShape;
  switch (kind) {
    case 'linear':
      return [s[1]!, s[0]!];
    case 'conv2d':
      return [s[3]!, s[2]!, s[0]!, s[1]!];
    case 'depthwise':
      return [s[2]! * s[3]!, 1, s[0]!, s[1]!];
    case 'conv1d':
      return [s[2]!, s[1]!, s[0]!];
    case 'plain':
      return s.slice();
  }
}

/**
 * Official layout → ours. Returns a new tensor (the caller disposes it; the input is untouched).
 * A PyTorch depthwise weight `[C·m, 1, kh, kw]` does not say how C·m splits: pass `ourShape`
 * (`[kh, kw, C, m]`) or m = 1 is assumed.
 */
export function fromPytorchLayout(kind: ParamKind, t: tf.Tensor, ourShape?: readonly number[]): tf.Tensor {
  checkRank(kind, t.shape, 'PyTorch');
  return tf.tidy(() => {
    switch (kind) {
      case 'linear':
        return tf.transpose(t, [1, 0]);
      case 'conv2d':
        return tf.transpose(t, [2, 3, 1, 0]);
      case 'depthwise': {
        const [cm, one, kh, kw] = t.shape as [number, number, number, number];
        if (one !== 1) throw new ShapeError(`A depthwise weight needs shape [C·m, 1, kh, kw], got [${t.shape.join(', ')}]`);
        const m = ourShape ? ourShape[3]! : 1;
        if (ourShape && (ourShape.length !== 4 || ourShape[2]! * m !== cm)) {
          throw new ShapeError(`Depthwise weight [${t.shape.join(', ')}] does not fit our shape [${ourShape.join(', ')}]`);
        }
        // Output channel o = c·m + j, so splitting the last axis row-major as [C, m] is exact.
        return tf.reshape(tf.transpose(t, [2, 3, 1, 0]), [kh, kw, cm / m, m]);
      }
      case 'conv1d':
        return tf.transpose(t, [2, 1, 0]);
      case 'plain':
        return tf.clone(t);
    }
  });
}

/** Ours → official layout. Returns a new tensor the caller disposes. */
export function toPytorchLayout(kind: ParamKind, t: tf.Tensor): tf.Tensor {
  checkRank(kind, t.shape, 'our');
  return tf.tidy(() => {
    switch (kind) {
      case 'linear':
        return tf.transpose(t, [1, 0]);
      case 'conv2d':
        return tf.transpose(t, [3, 2, 0, 1]);
      case 'depthwise': {
        const [kh, kw, c, m] = t.shape as [number, number, number, number];
        return tf.transpose(tf.reshape(t, [kh, kw, 1, c * m]), [3, 2, 0, 1]);
      }
      case 'conv1d':
        return tf.transpose(t, [2, 1, 0]);
      case 'plain':
        return tf.clone(t);
    }
  });
}

/**
 * The default `minLoaded`: a non-strict load must fill at least half of the model's parameters (by
 * element count). A load below it is almost always the wrong checkpoint or the wrong model, and
 * would otherwise leave a mostly random model that looks converted.
 */
export const DEFAULT_MIN_LOADED = 0.5;

/** How much of a model a load fills: distinct tensors, and parameter elements. */
export interface LoadCoverage {
  /** Distinct parameters and buffers given a value (a tensor under two names counts once). */
  loadedTensors: number;
  totalTensors: number;
  /** Elements of the parameters (not buffers) given a value. */
  loadedElements: number;
  totalElements: number;
  /** loadedElements / totalElements (1 for a model without parameters). */
  fraction: number;
}

const percent = (f: number) => `${(100 * f).toFixed(1)}%`;

/** "loaded 12 of 230 tensors, 3.1% of the parameters" */
export function describeCoverage(c: LoadCoverage): string {
  return `loaded ${c.loadedTensors} of ${c.totalTensors} tensors, ${percent(c.fraction)} of the parameters (${c.loadedElements.toLocaleString('en-US')} of ${c.totalElements.toLocaleString('en-US')} elements)`;
}

/** What loading the given keys (ours, after any prefix removal) would fill of `model`. */
export function loadCoverage(model: Module | Map<string, StateEntry>, keys: Iterable<string>): LoadCoverage {
  const entries = model instanceof Map ? model : model.stateEntries();
  const given = new Set(keys);
  const loaded = new Set<tf.Variable>();
  const all = new Map<tf.Variable, StateEntry>();
  for (const [k, e] of entries) {
    all.set(e.variable, e);
    if (given.has(k)) loaded.add(e.variable);
  }
  let loadedElements = 0;
  let totalElements = 0;
  for (const [v, e] of all) {
    if (!e.isParameter) continue;
    totalElements += v.size;
    if (loaded.has(v)) loadedElements += v.size;
  }
  const fraction = totalElements === 0 ? (all.size === 0 || loaded.size === all.size ? 1 : loaded.size / all.size) : loadedElements / totalElements;
  return { loadedTensors: loaded.size, totalTensors: all.size, loadedElements, totalElements, fraction };
}

/**
 * A non-strict load that would fill less of the model than `minLoaded`: refused before any
 * parameter changes. `coverage` says how much would have been loaded.
 */
export class WeightCoverageError extends WeightLoadError {
  readonly coverage: LoadCoverage;
  readonly minLoaded: number;
  constructor(coverage: LoadCoverage, minLoaded: number, problems: WeightProblem[], context = 'state dict') {
    super(problems, context);
    this.coverage = coverage;
    this.minLoaded = minLoaded;
    const missing = problems.filter((p) => p.problem === 'missing').map((p) => p.key);
    const unexpected = problems.filter((p) => p.problem === 'unexpected').map((p) => p.key);
    const few = (keys: string[]) => `${keys.slice(0, 8).join(', ')}${keys.length > 8 ? `, … (${keys.length - 8} more)` : ''}`;
    this.message =
      `Cannot load ${context}: it would have ${describeCoverage(coverage)}, less than the minimum of ${percent(minLoaded)} ` +
      '(minLoaded) for a non-strict load; refusing rather than leave a mostly untrained model. No parameter was changed.' +
      (missing.length ? `\n  not in the checkpoint (${missing.length}): ${few(missing)}` : '') +
      (unexpected.length ? `\n  not in the model (${unexpected.length}): ${few(unexpected)}` : '');
  }
}

/** Validates a `minLoaded` option (a fraction in [0, 1]); undefined gives the default. */
export function checkMinLoaded(minLoaded: number | undefined): number {
  const m = minLoaded ?? DEFAULT_MIN_LOADED;
  if (typeof m !== 'number' || !(m >= 0 && m <= 1)) throw new ConfigError(`minLoaded must be a fraction between 0 and 1, got ${String(minLoaded)}`);
  return m;
}

/**
 * Throws `WeightCoverageError` when a non-strict load of `keys` would fill less than `minLoaded`
 * (default `DEFAULT_MIN_LOADED`) of the model's parameters. Strict loads fill everything or fail.
 */
export function assertLoadCoverage(
  model: Module | Map<string, StateEntry>,
  keys: Iterable<string>,
  options: { strict?: boolean; minLoaded?: number; unexpectedKeys?: readonly string[]; context?: string },
): LoadCoverage {
  const minLoaded = checkMinLoaded(options.minLoaded);
  const entries = model instanceof Map ? model : model.stateEntries();
  const given = [...keys];
  const coverage = loadCoverage(entries, given);
  if ((options.strict ?? true) || coverage.fraction >= minLoaded) return coverage;
  const got = new Set(given);
  const provided = new Set<tf.Variable>();
  for (const [k, e] of entries) if (got.has(k)) provided.add(e.variable);
  const problems: WeightProblem[] = [];
  for (const [k, e] of entries) if (!provided.has(e.variable)) problems.push({ key: k, problem: 'missing', expected: fmt(e.variable.shape) });
  for (const k of options.unexpectedKeys ?? []) problems.push({ key: k, problem: 'unexpected' });
  throw new WeightCoverageError(coverage, minLoaded, problems, options.context);
}

/**
 * `model.loadStateDict` (our layouts) with the non-strict coverage guard of `loadPytorchStateDict`:
 * mis-shaped keys are reported first (they are always errors), then a load filling less than
 * `minLoaded` of the parameters is refused. On any error no parameter has changed.
 */
export function loadOurStateDict(
  model: Module,
  stateDict: Record<string, tf.Tensor>,
  options: { strict?: boolean; minLoaded?: number; context?: string } = {},
): { missingKeys: string[]; unexpectedKeys: string[] } {
  const strict = options.strict ?? true;
  const entries = model.stateEntries();
  const keys = Object.keys(stateDict);
  const misfit = keys.some((k) => {
    const e = entries.get(k);
    const t = stateDict[k]!;
    return e !== undefined && (e.variable.rank !== t.rank || e.variable.shape.some((d, i) => d !== t.shape[i]));
  });
  // A mis-shaped key makes loadStateDict throw its full list (before changing anything).
  if (!misfit) assertLoadCoverage(entries, keys, { strict, minLoaded: options.minLoaded, unexpectedKeys: keys.filter((k) => !entries.has(k)), context: options.context });
  return model.loadStateDict(stateDict, { strict });
}

export interface PytorchLoadOptions {
  /** Report missing and unexpected keys as errors (default true). Mis-shaped keys are always errors. */
  strict?: boolean;
  /**
   * Non-strict loads only: the least fraction of the model's parameters (by element count) the
   * checkpoint must fill, else `WeightCoverageError` and nothing changes. Default 0.5
   * (`DEFAULT_MIN_LOADED`); 0 accepts anything.
   */
  minLoaded?: number;
  /** Keys (after prefix stripping) to skip silently; they are listed in `ignoredKeys`. */
  ignore?: (key: string) => boolean;
  /**
   * A prefix to remove from every key that has it. When not given, `module.` (DataParallel /
   * DistributedDataParallel checkpoints) is removed if every key starts with it and the model
   * itself has no `module.` names.
   */
  stripPrefix?: string;
}

export interface PytorchLoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
  ignoredKeys: string[];
  /**
   * The checkpoint's BatchNorm `num_batches_tracked` counters (skipped by the load: our BatchNorm
   * keeps none) by key, for the model's BatchNorms; pass them to `saveModelWeights`
   * (`batchCounters`) to write them back unchanged.
   */
  batchCounters: Record<string, number>;
}

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

function isBatchCounter(key: string): boolean {
  return key === 'num_batches_tracked' || key.endsWith('.num_batches_tracked');
}

/**
 * Loads an official PyTorch state dict (official keys and layouts) into `model`. Everything is
 * checked first against the official shapes; any problem (missing, unexpected, mis-shaped) throws
 * one `WeightLoadError` listing them all, and then no parameter has changed. `num_batches_tracked`
 * counters are skipped (our BatchNorm keeps none). A variable registered under two names is
 * satisfied by either key; if both are given, the model's first name wins. The input tensors stay
 * owned by the caller.
 */
export function loadPytorchStateDict(
  model: Module,
  tensors: Record<string, tf.Tensor> | Map<string, tf.Tensor>,
  options: PytorchLoadOptions = {},
): PytorchLoadResult {
  const strict = options.strict ?? true;
  const entries = model.stateEntries();
  const input = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);

  let prefix = options.stripPrefix;
  if (prefix === undefined) {
    const modelUsesIt = [...entries.keys()].some((k) => k.startsWith('module.'));
    if (!modelUsesIt && input.length > 0 && input.every(([k]) => k.startsWith('module.'))) prefix = 'module.';
  }

  const incoming = new Map<string, tf.Tensor>();
  const ignoredKeys: string[] = [];
  const unexpectedKeys: string[] = [];
  const problems: WeightProblem[] = [];
  const counters = new Map<string, tf.Tensor>();
  for (const [rawKey, t] of input) {
    const key = prefix && rawKey.startsWith(prefix) ? rawKey.slice(prefix.length) : rawKey;
    const e = entries.get(key);
    if ((!e && isBatchCounter(key)) || options.ignore?.(key)) {
      ignoredKeys.push(key);
      if (!e && isBatchCounter(key) && !options.ignore?.(key)) counters.set(key, t);
      continue;
    }
    if (!e) {
      unexpectedKeys.push(key);
      if (strict) problems.push({ key, problem: 'unexpected', got: `shape ${fmt(t.shape)}` });
      continue;
    }
    if (incoming.has(key)) {
      // Only possible when stripping maps two keys onto one name.
      problems.push({ key, problem: 'unexpected', got: `duplicate of '${key}' after removing prefix '${prefix}'` });
      continue;
    }
    const expected = pytorchShape(e.kind, e.variable.shape);
    if (expected.length !== t.rank || expected.some((d, i) => d !== t.shape[i])) {
      problems.push({ key, problem: 'shape', expected: fmt(expected), got: fmt(t.shape) });
    } else if (t.dtype === 'string' || e.variable.dtype === 'string') {
      if (t.dtype !== e.variable.dtype) problems.push({ key, problem: 'dtype', expected: e.variable.dtype, got: t.dtype });
    } else if (t.isDisposed) {
      problems.push({ key, problem: 'dtype', expected: e.variable.dtype, got: 'a disposed tensor' });
    }
    incoming.set(key, t);
  }

  const provided = new Set<tf.Variable>();
  for (const [key, e] of entries) if (incoming.has(key)) provided.add(e.variable);
  const missingKeys: string[] = [];
  for (const [key, e] of entries) {
    if (provided.has(e.variable)) continue;
    missingKeys.push(key);
    if (strict) problems.push({ key, problem: 'missing', expected: fmt(pytorchShape(e.kind, e.variable.shape)) });
  }
  if (problems.length) throw new WeightLoadError(problems, 'PyTorch state dict');
  assertLoadCoverage(entries, incoming.keys(), { strict, minLoaded: options.minLoaded, unexpectedKeys, context: 'PyTorch state dict' });
  const batchCounters = readBatchCounters(entries, counters);

  const done = new Set<tf.Variable>();
  for (const [key, e] of entries) {
    const t = incoming.get(key);
    if (!t || done.has(e.variable)) continue;
    done.add(e.variable);
    tf.tidy(() => {
      const converted = fromPytorchLayout(e.kind, t, e.variable.shape);
      e.variable.assign(converted.dtype === e.variable.dtype ? converted : tf.cast(converted, e.variable.dtype));
    });
  }
  return { missingKeys, unexpectedKeys, ignoredKeys, batchCounters };
}

/** The BatchNorm of a `…num_batches_tracked` key, if the model has it (its running statistics). */
function counterOwner(entries: Map<string, StateEntry>, key: string): boolean {
  const prefix = key.slice(0, -'num_batches_tracked'.length);
  return entries.has(`${prefix}running_mean`) && entries.has(`${prefix}running_var`);
}

function readBatchCounters(entries: Map<string, StateEntry>, counters: Map<string, tf.Tensor>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, t] of counters) {
    if (!counterOwner(entries, key) || t.isDisposed || t.size !== 1 || t.dtype === 'string') continue;
    const v = t.dataSync()[0]!;
    if (Number.isSafeInteger(v) && v >= 0) out[key] = v;
  }
  return out;
}

export interface ToPytorchOptions {
  /**
   * `num_batches_tracked` values by key (as `PytorchLoadResult.batchCounters` gives them); a
   * BatchNorm without one gets 0.
   */
  batchCounters?: Record<string, number>;
}

/**
 * The model's state dict under the official keys (every alias name) and layouts: new tensors the
 * caller disposes. A `num_batches_tracked` counter (int32; 0 unless `batchCounters` has it) is
 * added beside every `running_mean`/`running_var` pair so files load into the official code with
 * strict=True.
 */
export function toPytorchStateDict(model: Module, options: ToPytorchOptions = {}): Record<string, tf.Tensor> {
  const entries = model.stateEntries();
  const given = options.batchCounters ?? {};
  for (const [k, v] of Object.entries(given)) {
    if (!Number.isSafeInteger(v) || v < 0 || v > 2 ** 31 - 1) throw new ConfigError(`batchCounters['${k}'] must be an integer in [0, 2^31), got ${v}`);
  }
  const out: Record<string, tf.Tensor> = {};
  try {
    for (const [key, e] of entries) {
      out[key] = toPytorchLayout(e.kind, e.variable);
      if (!key.endsWith('running_var')) continue;
      const prefix = key.slice(0, -'running_var'.length);
      if ((prefix === '' || prefix.endsWith('.')) && entries.has(`${prefix}running_mean`) && !entries.has(`${prefix}num_batches_tracked`)) {
        const key = `${prefix}num_batches_tracked`;
        out[key] = tf.scalar(Object.prototype.hasOwnProperty.call(given, key) ? given[key]! : 0, 'int32');
      }
    }
  } catch (err) {
    for (const t of Object.values(out)) t.dispose();
    throw err;
  }
  return out;
}

/** A checkpoint made ready for a model by an architecture's adapter (see `loadAdaptedCheckpoint`). */
export interface AdaptedCheckpoint {
  /** The tensors to load (official keys and layouts unless said otherwise). */
  tensors: Map<string, tf.Tensor>;
  /** Tensors the adapter created (a stand-in classifier, a resampled table); disposed after loading. */
  created: tf.Tensor[];
  /** Keys left out because they cannot fit the model (a classifier for another class count). */
  dropped: string[];
  notes: string[];
}

/** The tensors as a Map, with a DataParallel `module.` prefix removed when every key has it. */
export function stripModulePrefix(tensors: Record<string, tf.Tensor> | Map<string, tf.Tensor>): Map<string, tf.Tensor> {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const strip = entries.length > 0 && entries.every(([k]) => k.startsWith('module.'));
  return new Map(entries.map(([k, t]) => [strip ? k.slice('module.'.length) : k, t]));
}

/**
 * Drops the checkpoint's classifier (every key under `<prefix>.`) from `tensors`, in place, and
 * puts the model's own (fresh) classifier under the same keys, so a strict load still checks
 * every other key. `layout` is the checkpoint's: official PyTorch layouts, or ours. The returned
 * `created` tensors belong to the caller.
 */
export function replaceClassifier(
  model: Module,
  tensors: Map<string, tf.Tensor>,
  prefix: string,
  layout: 'pytorch' | 'ours' = 'pytorch',
): { dropped: Array<{ key: string; shape: number[] }>; created: tf.Tensor[] } {
  const dropped: Array<{ key: string; shape: number[] }> = [];
  for (const [k, t] of [...tensors]) {
    if (!k.startsWith(`${prefix}.`)) continue;
    dropped.push({ key: k, shape: t.shape });
    tensors.delete(k);
  }
  const created: tf.Tensor[] = [];
  for (const [k, e] of model.stateEntries()) {
    if (!k.startsWith(`${prefix}.`)) continue;
    const t = layout === 'pytorch' ? toPytorchLayout(e.kind, e.variable) : tf.clone(e.variable);
    created.push(t);
    tensors.set(k, t);
  }
  return { dropped, created };
}

/**
 * Loads an adapted official checkpoint with `loadPytorchStateDict` (all or nothing), reports the
 * adapter's dropped keys among `ignoredKeys` and its notes, and disposes what the adapter created.
 */
export function loadAdaptedCheckpoint(
  model: Module,
  adapted: AdaptedCheckpoint,
  options: { strict?: boolean; minLoaded?: number } = {},
): PytorchLoadResult & { notes: string[] } {
  try {
    const res = loadPytorchStateDict(model, adapted.tensors, { strict: options.strict ?? true, minLoaded: options.minLoaded });
    return { ...res, ignoredKeys: [...res.ignoredKeys, ...adapted.dropped], notes: adapted.notes };
  } finally {
    for (const t of adapted.created) t.dispose();
  }
}
