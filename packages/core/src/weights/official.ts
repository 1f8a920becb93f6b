/**
 * The one path official weights take into a model (timm's `checkpoint_filter_fn` +
 * `load_state_dict`): the architecture adapter's filter readies the state dict, then
 * `loadPytorchStateDict` loads it all or nothing. `vit convert`, `vit predict --weights` and
 * pretrained loading all call `loadOfficialCheckpoint`.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';
import { getArchitecture, listArchitectures } from '../registry/registry.js';
import { loadAdaptedCheckpoint, replaceClassifier, stripModulePrefix, type AdaptedCheckpoint, type PytorchLoadResult } from './convert.js';

/**
 * What every architecture needs: a DataParallel `module.` prefix removed, and the classifier
 * (`<classifier>.*`) dropped when its class count differs from the model's — the model's fresh
 * classifier stands in under the same keys, so a strict load still checks every other key.
 */
export function defaultCheckpointFilter(model: Module, tensors: Map<string, tf.Tensor> | Record<string, tf.Tensor>, classifier = 'head'): AdaptedCheckpoint {
  const out = stripModulePrefix(tensors);
  const created: tf.Tensor[] = [];
  const dropped: string[] = [];
  const notes: string[] = [];
  const w = out.get(`${classifier}.weight`);
  const classes = (model as { numClasses?: unknown }).numClasses;
  if (w && typeof classes === 'number' && (classes === 0 || w.rank < 1 || w.shape[0] !== classes)) {
    const swap = replaceClassifier(model, out, classifier);
    created.push(...swap.created);
    dropped.push(...swap.dropped.map((d) => d.key));
    notes.push(`classifier dropped: the checkpoint has ${w.shape[0]} classes, the model ${classes}; ${classifier} keeps its fresh init`);
  }
  return { tensors: out, created, dropped, notes };
}

export interface OfficialLoadOptions {
  /** The architecture whose adapter filters the checkpoint (`cait`, `regionvit`…); absent or unregistered: `defaultCheckpointFilter`. */
  arch?: string;
  /** The classifier's dotted name for the default filter (the card's `classifier`; default `head`). */
  classifier?: string;
  strict?: boolean;
  minLoaded?: number;
}

/** The adapter's filter applied to an official state dict (keys and layouts of the official code). */
export function filterOfficialCheckpoint(model: Module, tensors: Map<string, tf.Tensor> | Record<string, tf.Tensor>, options: Pick<OfficialLoadOptions, 'arch' | 'classifier'> = {}): AdaptedCheckpoint {
  const adapter = options.arch && listArchitectures().includes(options.arch) ? getArchitecture(options.arch) : undefined;
  if (adapter?.filterCheckpoint) return adapter.filterCheckpoint(model, stripModulePrefix(tensors));
  return defaultCheckpointFilter(model, tensors, options.classifier);
}

/**
 * Loads an official state dict into `model` through its architecture's checkpoint filter. All or
 * nothing: on any problem one `WeightLoadError` lists them all and no parameter changes. The
 * caller keeps (and disposes) `tensors`; what the filter created is disposed here.
 */
export function loadOfficialCheckpoint(
  model: Module,
  tensors: Map<string, tf.Tensor> | Record<string, tf.Tensor>,
  options: OfficialLoadOptions = {},
): PytorchLoadResult & { notes: string[] } {
  return loadAdaptedCheckpoint(model, filterOfficialCheckpoint(model, tensors, options), { strict: options.strict, minLoaded: options.minLoaded });
}
