/**
 * Weight files on disk (Node). `node:fs` comes through platform/index.ts, so importing this module
 * (and the weights index) stays harmless in a browser; there, fetch the bytes and use
 * `parseSafetensors` / `serializeSafetensors` directly.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError, FormatError, VitError, WeightLoadError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { requireNode, type NodeBuiltins } from '../platform/index.js';
import { WeightCoverageError, loadOurStateDict, loadPytorchStateDict, toPytorchStateDict, type PytorchLoadResult } from './convert.js';
import { serializePth } from './pth_write.js';
import {
  parseSafetensors,
  safetensorsToTensors,
  serializeSafetensors,
  type LoadedSafetensors,
  tensorToRawAsync,
  type ParsedSafetensors,
  type RawTensorInput,
  type SafetensorsDtype,
} from './safetensors.js';

/** Metadata `layout` value marking a file written in our layouts (`saveModelWeights(..., {format: 'ours'})`). */
export const OUR_LAYOUT = 'nhwc-vit';

/**
 * Metadata key of our-layout files holding the checkpoint's BatchNorm `num_batches_tracked`
 * counters (JSON `{key: count}`): our BatchNorm keeps none, and a file converted from PyTorch must
 * convert back with them unchanged.
 */
export const BATCH_COUNTERS_METADATA = 'num_batches_tracked';

/** The counters an our-layout file's metadata records (see `BATCH_COUNTERS_METADATA`); {} when none. */
export function batchCountersFromMetadata(metadata: Record<string, string>): Record<string, number> {
  const text = metadata[BATCH_COUNTERS_METADATA];
  if (text === undefined) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new FormatError(`metadata '${BATCH_COUNTERS_METADATA}' is not valid JSON`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new FormatError(`metadata '${BATCH_COUNTERS_METADATA}' must be a JSON object of counts`);
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(v)) {
    if (!k.endsWith('num_batches_tracked') || !Number.isSafeInteger(n) || (n as number) < 0 || (n as number) > 2 ** 31 - 1) {
      throw new FormatError(`metadata '${BATCH_COUNTERS_METADATA}' has an invalid entry '${k.slice(0, 80)}': ${JSON.stringify(n)?.slice(0, 20)}`);
    }
    out[k] = n as number;
  }
  return out;
}

// async: its callers were written for lazily imported node: modules and stay so.
async function node(): Promise<NodeBuiltins> {
  return requireNode('Weight file I/O', 'elsewhere read the bytes yourself and use parseSafetensors');
}

function ioError(action: string, file: string, err: unknown): VitError {
  const e = new VitError(`Cannot ${action} '${file}': ${(err as Error)?.message ?? String(err)}`, 'VIT_IO');
  (e as { cause?: unknown }).cause = err;
  return e;
}

/** Reads and parses a safetensors file (see `parseSafetensors`); format errors name the file. */
export async function readSafetensorsFile(file: string): Promise<ParsedSafetensors> {
  const { fs } = await node();
  let buf: Uint8Array;
  try {
    buf = await fs.promises.readFile(file);
  } catch (err) {
    throw ioError('read', file, err);
  }
  try {
    return parseSafetensors(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
  } catch (err) {
    if (err instanceof FormatError) throw new FormatError(`${file}: ${err.message}`);
    throw err;
  }
}

export type { LoadedSafetensors };

/** Reads a safetensors file into TF.js tensors. */
export async function loadSafetensorsFile(file: string): Promise<LoadedSafetensors> {
  return safetensorsToTensors(await readSafetensorsFile(file));
}

/**
 * Writes `data` to `file` atomically: a temporary file beside it (`<file>.tmp-<pid>-<random>`) is
 * written, fsynced and renamed over the target, so readers see the old file or the new one, never a
 * partial one. On failure the temporary file is removed and an existing file is left as it was.
 */
export async function writeFileAtomic(file: string, data: Uint8Array | string): Promise<void> {
  const { fs, path } = await node();
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  let handle: Awaited<ReturnType<NodeBuiltins['fs']['promises']['open']>> | undefined;
  try {
    handle = await fs.promises.open(tmp, 'wx', 0o644);
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fs.promises.rename(tmp, file);
  } catch (err) {
    if (handle) await handle.close().catch(() => undefined);
    await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    throw ioError('write', file, err);
  }
  // Make the rename itself durable. Directories cannot be fsynced everywhere (Windows): best effort.
  try {
    const dir = await fs.promises.open(path.dirname(path.resolve(file)), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch {
    // The file is complete and in place; only durability across a power loss is less certain.
  }
}

export interface SaveSafetensorsOptions {
  /** File dtype per key, overriding the defaults (float32 → F32, int32 → I64, bool → BOOL). */
  dtypes?: Record<string, SafetensorsDtype>;
  /** File dtype for every float32 tensor not named in `dtypes` (e.g. 'F16' or 'BF16' to halve the size). */
  floatDtype?: 'F32' | 'F16' | 'BF16';
}

/**
 * Writes tensors to a safetensors file atomically (see `writeFileAtomic`). The tensors are only
 * read; nothing is written when a tensor or the metadata cannot be serialised.
 */
export async function saveSafetensorsFile(
  file: string,
  tensors: Record<string, tf.Tensor> | Map<string, tf.Tensor>,
  metadata?: Record<string, string>,
  options: SaveSafetensorsOptions = {},
): Promise<void> {
  await writeFileAtomic(file, serializeSafetensors(await rawTensors(tensors, options), metadata));
}

/** Every tensor's bytes in the dtype `options` choose for it, in order (a FormatError names the tensor). */
async function rawTensors(tensors: Record<string, tf.Tensor> | Map<string, tf.Tensor>, options: SaveSafetensorsOptions): Promise<Map<string, RawTensorInput>> {
  const items = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const raws = new Map<string, RawTensorInput>();
  for (const [key, t] of items) {
    const dtype = options.dtypes?.[key] ?? (t.dtype === 'float32' ? options.floatDtype : undefined);
    try {
      raws.set(key, await tensorToRawAsync(t, dtype));
    } catch (err) {
      if (err instanceof FormatError) throw new FormatError(`Cannot write '${key}': ${err.message}`);
      throw err;
    }
  }
  return raws;
}

/**
 * Writes tensors as a `torch.save(state_dict)` file (zip format; see `serializePth`) atomically, in
 * the given order and with the same dtype choices as `saveSafetensorsFile`. A .pth has no place for
 * metadata.
 */
export async function savePthFile(file: string, tensors: Record<string, tf.Tensor> | Map<string, tf.Tensor>, options: SaveSafetensorsOptions = {}): Promise<void> {
  await writeFileAtomic(file, serializePth(await rawTensors(tensors, options)));
}

export interface SaveModelWeightsOptions extends SaveSafetensorsOptions {
  /**
   * 'ours' (default): our layouts, marked with metadata `layout: 'nhwc-vit'`, fastest to load back.
   * 'pytorch': official keys and layouts (with `num_batches_tracked`), loadable by the official code.
   */
  format?: 'ours' | 'pytorch';
  /**
   * 'safetensors' (default), or 'pth': a `torch.save(state_dict)` zip file that
   * `torch.load(weights_only=True)` reads (official layout only; no metadata).
   */
  container?: 'safetensors' | 'pth';
  /** Extra metadata strings (model name, config JSON, library version…). */
  metadata?: Record<string, string>;
  /**
   * BatchNorm `num_batches_tracked` counters by official key (`LoadModelWeightsResult.batchCounters`,
   * `PytorchLoadResult.batchCounters`): written as the counters in the official layout, kept in the
   * metadata (`num_batches_tracked`) in ours, so conversions to and from PyTorch lose nothing.
   */
  batchCounters?: Record<string, number>;
}

/** Saves a model's parameters and persistent buffers (every alias name) to a safetensors (or .pth) file. */
export async function saveModelWeights(model: Module, file: string, options: SaveModelWeightsOptions = {}): Promise<void> {
  const format = options.format ?? 'ours';
  const container = options.container ?? 'safetensors';
  if (format !== 'ours' && format !== 'pytorch') throw new VitError(`Unknown weight format '${String(format)}'; use 'ours' or 'pytorch'`, 'VIT_CONFIG');
  if (container !== 'safetensors' && container !== 'pth') throw new ConfigError(`Unknown weight container '${String(container)}'; use 'safetensors' or 'pth'`);
  if (container === 'pth' && format !== 'pytorch') throw new ConfigError("A .pth file holds the official PyTorch layout: use format 'pytorch'");
  const counters = options.batchCounters ?? {};
  if (format === 'ours') {
    const metadata: Record<string, string> = { ...options.metadata, layout: OUR_LAYOUT };
    delete metadata[BATCH_COUNTERS_METADATA];
    if (Object.keys(counters).length) metadata[BATCH_COUNTERS_METADATA] = JSON.stringify(counters);
    await saveSafetensorsFile(file, model.stateDict(), metadata, options);
    return;
  }
  const sd = toPytorchStateDict(model, { batchCounters: counters });
  try {
    if (container === 'pth') await savePthFile(file, sd, options);
    // 'format: pt' is what Hugging Face tools expect of PyTorch-layout safetensors files.
    else await saveSafetensorsFile(file, sd, { ...options.metadata, format: 'pt', layout: 'pytorch' }, options);
  } finally {
    for (const t of Object.values(sd)) t.dispose();
  }
}

export interface LoadModelWeightsOptions {
  /** Missing and unexpected keys are errors (default true). Mis-shaped keys always are. */
  strict?: boolean;
  /** Skip the golden-case entries (`golden.input`, `golden.logits`…) of the reference files. Default false. */
  ignoreGolden?: boolean;
  /** Further keys to skip (listed in `ignoredKeys`). */
  ignore?: (key: string) => boolean;
  /** Passed to `loadPytorchStateDict` for official-layout files. */
  stripPrefix?: string;
  /** Non-strict loads: the least fraction of the parameters (by elements) the file must fill (default 0.5; see `loadPytorchStateDict`). */
  minLoaded?: number;
}

export interface LoadModelWeightsResult extends PytorchLoadResult {
  /** Which layout the file was in: ours (metadata `layout: 'nhwc-vit'`) or the official PyTorch one. */
  layout: 'ours' | 'pytorch';
  metadata: Record<string, string>;
}

/**
 * Loads a safetensors file into `model`, detecting the layout from the metadata. Checked as a whole
 * first: on any problem one `WeightLoadError` names the file and lists them all, and no parameter
 * has changed.
 */
export async function loadModelWeights(model: Module, file: string, options: LoadModelWeightsOptions = {}): Promise<LoadModelWeightsResult> {
  const strict = options.strict ?? true;
  const ignore = (key: string) => (options.ignoreGolden === true && key.startsWith('golden.')) || (options.ignore?.(key) ?? false);
  const { tensors, metadata } = await loadSafetensorsFile(file);
  const layout = metadata.layout === OUR_LAYOUT ? 'ours' : 'pytorch';
  try {
    if (layout === 'ours') {
      const sd: Record<string, tf.Tensor> = {};
      const ignoredKeys: string[] = [];
      for (const [key, t] of tensors) {
        if (ignore(key)) ignoredKeys.push(key);
        else sd[key] = t;
      }
      const batchCounters = batchCountersFromMetadata(metadata);
      const r = loadOurStateDict(model, sd, { strict, minLoaded: options.minLoaded });
      return { ...r, ignoredKeys, layout, metadata, batchCounters };
    }
    const r = loadPytorchStateDict(model, tensors, { strict, ignore, stripPrefix: options.stripPrefix, minLoaded: options.minLoaded });
    return { ...r, layout, metadata };
  } catch (err) {
    const context = `'${file}' (${layout} layout)`;
    if (err instanceof WeightCoverageError) throw new WeightCoverageError(err.coverage, err.minLoaded, err.problems, context);
    if (err instanceof WeightLoadError) throw new WeightLoadError(err.problems, context);
    throw err;
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}
