/**
 * Training checkpoints: one directory per checkpoint, switched into place atomically.
 *
 *   <dir>/model.safetensors      weights in our layouts (loadable with loadModelWeights / `vit`)
 *   <dir>/optimizer.safetensors  optimizer slot tensors; its metadata `state` holds the JSON part
 *   <dir>/trainer.json           trainer state: epoch, batch, step, RNG, running sums, history, callbacks
 *   <dir>/config.json            model name and options, optimizer/loss/schedule configs, library version
 *
 * Every file is written with `writeFileAtomic` into a staging directory beside the target
 * (`.<name>.tmp-…`); the switch renames the previous checkpoint to `.<name>.old`, renames the
 * staging directory to `<name>`, then removes the old one. A crash at any point leaves a complete
 * checkpoint at `<name>` or, between the two renames, at `.<name>.old` — `loadCheckpoint` and the
 * next `saveCheckpoint` both recover it. `node:fs` is imported lazily (Node only).
 */
import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError, FormatError, VitError } from '../errors.js';
import type { LossConfig } from '../losses/index.js';
import type { Module } from '../nn/module.js';
import type { Optimizer, OptimizerConfig, OptimizerState } from '../optim/index.js';
import type { ScheduleConfig } from '../optim/schedules.js';
import { VERSION } from '../version.js';
import { exists, nodeApi, type NodeApi } from '../data/node.js';
import { loadSafetensorsFile, saveModelWeights, saveSafetensorsFile, writeFileAtomic } from '../weights/io.js';

export const CHECKPOINT_FORMAT = 'vit-checkpoint';
export const CHECKPOINT_FORMAT_VERSION = 1;
export const CHECKPOINT_FILES = {
  weights: 'model.safetensors',
  optimizer: 'optimizer.safetensors',
  trainer: 'trainer.json',
  config: 'config.json',
} as const;

/** config.json: what built the run (enough for `Trainer.fromCheckpoint` to rebuild it). */
export interface CheckpointConfig {
  format: typeof CHECKPOINT_FORMAT;
  formatVersion: number;
  library: '@vit/core';
  version: string;
  createdAt: string;
  /** Registered model name (`createModel(modelName, modelOptions)` rebuilds the model). */
  modelName?: string;
  modelOptions?: Record<string, unknown>;
  /** Class names of the training data, when known. */
  classNames?: string[];
  optimizer?: OptimizerConfig;
  loss?: LossConfig;
  schedule?: ScheduleConfig | null;
  clipGradNorm?: number | null;
  seed?: number;
  epoch?: number;
  step?: number;
  /** Anything else the caller records (dataset, command-line options…). */
  meta?: Record<string, unknown>;
}

export type CheckpointConfigInput = Omit<CheckpointConfig, 'format' | 'formatVersion' | 'library' | 'version' | 'createdAt'>;

export interface CheckpointContent {
  model: Module;
  optimizer?: Optimizer;
  /** JSON-serialisable trainer state (trainer.json). */
  trainer?: unknown;
  config?: CheckpointConfigInput;
}

/** Points in a save where a test can simulate a crash (`SaveCheckpointOptions.onStage`). */
export type CheckpointStage = 'staging' | 'weights-written' | 'files-written' | 'old-moved' | 'new-installed' | 'done';

export interface SaveCheckpointOptions {
  /** Called at each stage of the save (for crash tests); may be async. */
  onStage?: (stage: CheckpointStage) => void | Promise<void>;
}

type NodeFs = NodeApi['fs'];
type NodePath = NodeApi['path'];

const node = () => nodeApi('Checkpoints', '');

function siblings(path: NodePath, dir: string): { parent: string; base: string; old: string; stagingPrefix: string } {
  const abs = path.resolve(dir);
  const parent = path.dirname(abs);
  const base = path.basename(abs);
  return { parent, base, old: path.join(parent, `.${base}.old`), stagingPrefix: `.${base}.tmp-` };
}

/** A readable config.json of our format; a config.json that is not JSON is a corrupt checkpoint, not "no checkpoint". */
async function isCheckpointDir(fs: NodeFs, path: NodePath, dir: string): Promise<boolean> {
  const file = path.join(dir, CHECKPOINT_FILES.config);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return false;
  }
  let cfg: { format?: unknown };
  try {
    cfg = JSON.parse(text) as { format?: unknown };
  } catch (err) {
    throw new FormatError(`${file}: invalid JSON (${(err as Error).message}); the checkpoint is corrupt`);
  }
  return typeof cfg === 'object' && cfg !== null && cfg.format === CHECKPOINT_FORMAT;
}

async function fsyncDir(fs: NodeFs, dir: string): Promise<void> {
  try {
    const h = await fs.open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    // Not everywhere (Windows); the renames are done, only durability across power loss is weaker.
  }
}

/**
 * Finishes or undoes an interrupted switch at `dir`: a lone `.<name>.old` is the last complete
 * checkpoint and goes back into place; an `.old` beside a complete `<name>` is stale; staging
 * directories of crashed saves are removed.
 */
async function recover(fs: NodeFs, path: NodePath, dir: string): Promise<void> {
  const { parent, old, stagingPrefix } = siblings(path, dir);
  const target = path.resolve(dir);
  const hasTarget = await exists(target);
  if (!hasTarget && (await exists(old))) await fs.rename(old, target);
  else if (hasTarget && (await exists(old))) await fs.rm(old, { recursive: true, force: true });
  let names: string[] = [];
  try {
    names = await fs.readdir(parent);
  } catch {
    return;
  }
  for (const n of names) if (n.startsWith(stagingPrefix)) await fs.rm(path.join(parent, n), { recursive: true, force: true });
}

/**
 * Writes a checkpoint directory atomically (see the file comment). Refuses to replace a directory
 * that is not a checkpoint. Tensors are only read.
 */
export async function saveCheckpoint(dir: string, content: CheckpointContent, options: SaveCheckpointOptions = {}): Promise<void> {
  const { fs, path } = await node();
  const stage = async (s: CheckpointStage) => {
    if (options.onStage) await options.onStage(s);
  };
  const target = path.resolve(dir);
  const { parent, old, stagingPrefix } = siblings(path, dir);
  await fs.mkdir(parent, { recursive: true });
  await recover(fs, path, dir);
  if (await exists(target)) {
    const entries = await fs.readdir(target);
    if (entries.length > 0 && !(await isCheckpointDir(fs, path, target))) {
      throw new ConfigError(`Refusing to replace '${target}': it is not a ${CHECKPOINT_FORMAT} directory (no config.json of that format)`);
    }
  }
  const staging = path.join(parent, `${stagingPrefix}${typeof process !== 'undefined' ? process.pid : 0}-${Math.random().toString(36).slice(2, 10)}`);
  await fs.mkdir(staging);
  try {
    await stage('staging');
    const cfg: CheckpointConfig = {
      format: CHECKPOINT_FORMAT,
      formatVersion: CHECKPOINT_FORMAT_VERSION,
      library: '@vit/core',
      version: VERSION,
      createdAt: new Date().toISOString(),
      ...content.config,
    };
    await saveModelWeights(content.model, path.join(staging, CHECKPOINT_FILES.weights), {
      metadata: { library: '@vit/core', version: VERSION, ...(cfg.modelName ? { model: cfg.modelName } : {}) },
    });
    await stage('weights-written');
    if (content.optimizer) {
      const { tensors, ...json } = content.optimizer.stateDict();
      await saveSafetensorsFile(path.join(staging, CHECKPOINT_FILES.optimizer), tensors, { state: JSON.stringify(json) });
    }
    if (content.trainer !== undefined) await writeFileAtomic(path.join(staging, CHECKPOINT_FILES.trainer), JSON.stringify(content.trainer));
    // config.json last: its presence marks a complete checkpoint directory.
    await writeFileAtomic(path.join(staging, CHECKPOINT_FILES.config), `${JSON.stringify(cfg, null, 2)}\n`);
    await fsyncDir(fs, staging);
    await stage('files-written');
  } catch (err) {
    await fs.rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
  // The switch. Between the two renames only `.<name>.old` holds a checkpoint; `recover` handles it.
  const hadTarget = await exists(target);
  if (hadTarget) {
    await fs.rename(target, old);
    await stage('old-moved');
  }
  await fs.rename(staging, target);
  await fsyncDir(fs, parent);
  await stage('new-installed');
  if (hadTarget) await fs.rm(old, { recursive: true, force: true });
  await stage('done');
}

export interface LoadedCheckpoint {
  /** The directory actually read (`.<name>.old` when a switch was interrupted). */
  dir: string;
  config: CheckpointConfig;
  /** trainer.json, or null when the checkpoint has none. */
  trainer: unknown;
  /** Model tensors in our layouts (owned by this object until `dispose`). */
  weights: Map<string, tf.Tensor>;
  /** Optimizer state with its tensors, or null. */
  optimizer: OptimizerState | null;
  /** Releases the tensors. */
  dispose(): void;
}

/** Where the checkpoint `dir` actually is (itself, or its `.old` twin after an interrupted switch), or null. */
export async function resolveCheckpointDir(dir: string): Promise<string | null> {
  const { fs, path } = await node();
  const target = path.resolve(dir);
  if (await isCheckpointDir(fs, path, target)) return target;
  const { old } = siblings(path, dir);
  if (await isCheckpointDir(fs, path, old)) return old;
  return null;
}

/** Reads a checkpoint directory written by `saveCheckpoint`. Errors name the file and the problem. */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const { fs, path } = await node();
  const where = await resolveCheckpointDir(dir);
  if (!where) throw new VitError(`No checkpoint at '${path.resolve(dir)}' (expected a directory with ${CHECKPOINT_FILES.config} of format '${CHECKPOINT_FORMAT}')`, 'VIT_IO');
  const readJson = async (name: string, required: boolean): Promise<unknown> => {
    const file = path.join(where, name);
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      if (!required && (err as { code?: string }).code === 'ENOENT') return null;
      throw new VitError(`Cannot read '${file}': ${(err as Error).message}`, 'VIT_IO');
    }
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new FormatError(`${file}: invalid JSON (${(err as Error).message})`);
    }
  };
  const config = (await readJson(CHECKPOINT_FILES.config, true)) as CheckpointConfig;
  if (!(config.formatVersion <= CHECKPOINT_FORMAT_VERSION)) {
    throw new FormatError(`${path.join(where, CHECKPOINT_FILES.config)}: checkpoint format version ${config.formatVersion} is newer than this library reads (${CHECKPOINT_FORMAT_VERSION}); upgrade @vit/core`);
  }
  const trainer = await readJson(CHECKPOINT_FILES.trainer, false);
  const weights = (await loadSafetensorsFile(path.join(where, CHECKPOINT_FILES.weights))).tensors;
  let optimizer: OptimizerState | null = null;
  const optFile = path.join(where, CHECKPOINT_FILES.optimizer);
  if (await exists(optFile)) {
    try {
      const { tensors, metadata } = await loadSafetensorsFile(optFile);
      let json: Omit<OptimizerState, 'tensors'>;
      try {
        json = JSON.parse(metadata.state ?? '') as Omit<OptimizerState, 'tensors'>;
      } catch {
        for (const t of tensors.values()) t.dispose();
        throw new FormatError(`${optFile}: metadata 'state' is missing or not JSON`);
      }
      optimizer = { ...json, tensors: Object.fromEntries(tensors) };
    } catch (err) {
      for (const t of weights.values()) t.dispose();
      throw err;
    }
  }
  return {
    dir: where,
    config,
    trainer,
    weights,
    optimizer,
    dispose() {
      for (const t of weights.values()) t.dispose();
      if (optimizer) for (const t of Object.values(optimizer.tensors)) t.dispose();
    },
  };
}
