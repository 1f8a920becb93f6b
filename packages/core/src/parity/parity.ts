import * as tf from '@tensorflow/tfjs-core';
import { recomputeCount } from '../autodiff/checkpoint.js';
import { valueAndGradsOf } from '../autodiff/grad.js';
import { FormatError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { getArchitecture } from '../registry/registry.js';
import { compareTensors, GRAD_TOLERANCE, LOGITS_TOLERANCE, nchwToNhwc } from './compare.js';
import { loadPytorchStateDict } from '../weights/convert.js';

/** A golden reference case as read from its safetensors file (see shared/golden/README.md). */
export interface GoldenCase {
  tensors: Map<string, tf.Tensor>;
  metadata: Record<string, string>;
}

export interface ParityRow {
  /** Golden key compared (`golden.logits`, `golden.features.2`, `golden.grad.input`). */
  key: string;
  kind: 'logits' | 'logits_train' | 'feature' | 'grad';
  maxAbs: number;
  refMaxAbs: number;
  normRel: number;
  /** The number judged against `tolerance`: scaled max-abs for outputs, norm-relative for gradients. */
  error: number;
  tolerance: number;
  pass: boolean;
}

export interface ParityResult {
  arch: string;
  case: string;
  rows: ParityRow[];
  pass: boolean;
  /** Problems that are not tensor comparisons (a feature the model did not produce…). */
  errors: string[];
}

export interface ParityOptions {
  /** Tolerance on max|a − r| / max(1, max|r|) for logits and features (default 1e-4, CPU backends). */
  tolerance?: number;
  /** Tolerance on ‖g − r‖/‖r‖ for the input gradient (default 1e-3). */
  gradTolerance?: number;
  /** Build the model with activation checkpointing on (`setGradCheckpointing`): the input gradient then comes through recomputed blocks. */
  gradCheckpointing?: boolean;
}

function parseJson(metadata: Record<string, string>, key: string): unknown {
  const s = metadata[key];
  if (s === undefined) return undefined;
  try {
    return JSON.parse(s);
  } catch {
    throw new FormatError(`Golden metadata '${key}' is not valid JSON`);
  }
}

function required(g: GoldenCase, key: string): tf.Tensor {
  const t = g.tensors.get(key);
  if (!t) throw new FormatError(`Golden file has no '${key}' tensor`);
  return t;
}

/** A fresh result for a golden case, after checking that the file describes one (for runners that compute and compare apart). */
export function newParityResult(golden: GoldenCase): ParityResult {
  const arch = golden.metadata.arch;
  if (!arch) throw new FormatError("Golden file has no 'arch' metadata: not a golden reference case");
  return { arch, case: golden.metadata.case ?? '?', rows: [], pass: true, errors: [] };
}

/**
 * Builds the model a golden describes through its architecture's official adapter, loads the
 * golden's official state dict through the public loader, and returns the model's outputs under
 * the golden's keys, in order: eval logits, every stage feature, the input gradient, then the
 * train-mode logits (last: BatchNorm updates its running statistics there). Outputs are computed
 * on the current backend and belong to the caller; problems that are not errors of the whole run
 * (a missing feature) go to `result.errors`.
 */
export function parityOutputs(golden: GoldenCase, result: ParityResult, options: Pick<ParityOptions, 'gradCheckpointing'> = {}): Record<string, tf.Tensor> {
  const { metadata } = golden;
  const config = parseJson(metadata, 'config');
  if (!config || typeof config !== 'object') throw new FormatError("Golden file has no 'config' metadata (the official constructor kwargs)");
  const overrides = parseJson(metadata, 'overrides') as Record<string, unknown> | undefined;
  const adapter = getArchitecture(result.arch);
  const model: Module = adapter.fromOfficialConfig(config as Record<string, unknown>, { overrides });
  const recomputed = recomputeCount();
  try {
    if (options.gradCheckpointing) model.setGradCheckpointing(true);
    const state = new Map([...golden.tensors].filter(([k]) => !k.startsWith('golden.')));
    loadPytorchStateDict(model, state, { strict: true });
    model.eval();
    const inputNchw = required(golden, 'golden.input');
    const out = tf.tidy(() => {
      const o: Record<string, tf.Tensor> = {};
      const x = nchwToNhwc(inputNchw) as tf.Tensor4D;
      o['golden.logits'] = model.forward(x);
      const featureKeys = [...golden.tensors.keys()].filter((k) => k.startsWith('golden.features')).sort(naturalCompare);
      if (featureKeys.length) {
        if (!adapter.officialFeatures) {
          result.errors.push(`architecture '${result.arch}' does not expose officialFeatures`);
        } else {
          const feats = adapter.officialFeatures(model, x);
          for (const k of featureKeys) {
            if (feats[k]) o[k] = feats[k]!;
            else result.errors.push(`model produced no ${k}`);
          }
        }
      }
      const probe = golden.tensors.get('golden.probe');
      if (probe && golden.tensors.has('golden.grad.input')) {
        const g = valueAndGradsOf(() => tf.sum(tf.mul(model.forward(x as tf.Tensor4D), probe)), [x]);
        o['golden.grad.input'] = g.grads[0]!;
        if (options.gradCheckpointing && recomputeCount() === recomputed) result.errors.push('grad checkpointing was on but no block was recomputed');
      }
      return o;
    });
    if (golden.tensors.has('golden.logits_train')) {
      model.train();
      out['golden.logits_train'] = tf.tidy(() => model.forward(nchwToNhwc(inputNchw) as tf.Tensor4D));
      model.eval();
    }
    return out;
  } finally {
    model.dispose();
  }
}

/**
 * Compares one output (NHWC, as `parityOutputs` gives it) with the golden's reference under the
 * same key and records a row. A feature of the wrong shape is recorded as an error, not thrown.
 */
export function addParityRow(result: ParityResult, golden: GoldenCase, key: string, actual: tf.Tensor, options: ParityOptions = {}): void {
  const kind: ParityRow['kind'] =
    key === 'golden.logits' ? 'logits' : key === 'golden.logits_train' ? 'logits_train' : key === 'golden.grad.input' ? 'grad' : 'feature';
  const compare = () =>
    tf.tidy(() => {
      const c = compareTensors(actual, nchwToNhwc(required(golden, key)));
      const isGrad = kind === 'grad';
      const error = isGrad ? c.normRel : c.scaledMaxAbs;
      const tolerance = isGrad ? (options.gradTolerance ?? GRAD_TOLERANCE) : (options.tolerance ?? LOGITS_TOLERANCE);
      const row: ParityRow = { key, kind, maxAbs: c.maxAbs, refMaxAbs: c.refMaxAbs, normRel: c.normRel, error, tolerance, pass: error <= tolerance };
      result.rows.push(row);
      if (!row.pass) result.pass = false;
    });
  if (kind !== 'feature') return compare();
  try {
    compare();
  } catch (e) {
    result.errors.push(`${key}: ${(e as Error).message}`);
  }
}

/**
 * Builds the model a golden describes, loads its official weights through the public loader, and
 * compares logits (eval and train where present), every stage feature and the input gradient.
 */
export function runParity(golden: GoldenCase, options: ParityOptions = {}): ParityResult {
  const result = newParityResult(golden);
  const outputs = parityOutputs(golden, result, options);
  try {
    for (const [key, t] of Object.entries(outputs)) addParityRow(result, golden, key, t, options);
  } finally {
    tf.dispose(Object.values(outputs));
  }
  if (result.errors.length) result.pass = false;
  return result;
}

function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** One line per compared tensor. */
export function formatParityRow(r: ParityRow): string {
  const what = r.kind === 'grad' ? `grad_rel=${r.normRel.toExponential(2)}` : `max_abs=${r.maxAbs.toExponential(2)} (scaled ${r.error.toExponential(2)})`;
  return `${r.pass ? 'ok  ' : 'FAIL'} ${r.key.padEnd(28)} ${what}  tol=${r.tolerance.toExponential(0)}`;
}

/** The last line: `PASS|FAIL <arch>/<case> logits max_abs=… features … grad_rel=…`. */
export function formatParitySummary(res: ParityResult): string {
  const worst = (kind: ParityRow['kind']) => {
    const rows = res.rows.filter((r) => r.kind === kind);
    return rows.length ? Math.max(...rows.map((r) => (kind === 'grad' ? r.normRel : r.maxAbs))) : undefined;
  };
  const parts = [`${res.pass ? 'PASS' : 'FAIL'} ${res.arch}/${res.case}`];
  const l = worst('logits');
  if (l !== undefined) parts.push(`logits max_abs=${l.toExponential(2)}`);
  const lt = worst('logits_train');
  if (lt !== undefined) parts.push(`logits_train max_abs=${lt.toExponential(2)}`);
  const f = worst('feature');
  const nf = res.rows.filter((r) => r.kind === 'feature').length;
  if (f !== undefined) parts.push(`features(${nf}) max_abs=${f.toExponential(2)}`);
  const g = worst('grad');
  if (g !== undefined) parts.push(`grad_rel=${g.toExponential(2)}`);
  if (res.errors.length) parts.push(`errors: ${res.errors.join('; ')}`);
  return parts.join(' ');
}
