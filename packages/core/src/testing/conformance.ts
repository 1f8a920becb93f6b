import * as tf from '@tensorflow/tfjs-core';
import { recomputeCount } from '../autodiff/checkpoint.js';
import { valueAndGrads } from '../autodiff/grad.js';
import { ShapeError } from '../errors.js';
import { withSeededRandom } from '../train/random.js';
import type { Module } from '../nn/module.js';
import { isVisionModel, type VisionModel } from '../registry/contract.js';
import { createModel, findExplainer, type CreateModelOptions } from '../registry/registry.js';
import { explain } from '../explain/explain.js';

/**
 * The checks every registered model must pass (DESIGN.md "The conformance suite"), as plain
 * functions that throw `ConformanceError`, so they run under any test runner; `describeConformance`
 * wraps them for vitest.
 */
export class ConformanceError extends Error {
  constructor(model: string, check: string, detail: string) {
    super(`[${model}] ${check}: ${detail}`);
    this.name = 'ConformanceError';
  }
}

export interface ConformanceSubject {
  name: string;
  build: () => Module;
  inputShape: [number, number, number, number];
  /** Parameters that legitimately get an all-zero gradient (e.g. a bias that softmax cancels). */
  zeroGradAllowed?: (paramName: string) => boolean;
}

function seededInput(shape: number[], seed = 1): tf.Tensor4D {
  return tf.randomNormal(shape as [number, number, number, number], 0, 1, 'float32', seed);
}

function asVision(name: string, m: Module): VisionModel {
  if (!isVisionModel(m)) {
    throw new ConformanceError(name, 'contract', 'model lacks forward/forwardFeatures/forwardHead/forwardIntermediates/featureInfo');
  }
  return m;
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

function allFinite(t: tf.Tensor): boolean {
  return tf.tidy(() => tf.all(tf.isFinite(t)).dataSync()[0] === 1);
}

/** Forward gives `[B, numClasses]` finite logits; pre-logits give `[B, numFeatures]`; head = forward. */
export function checkForward(s: ConformanceSubject, model: VisionModel): void {
  const [b] = s.inputShape;
  model.eval();
  tf.tidy(() => {
    const x = seededInput(s.inputShape);
    const y = model.forward(x);
    if (y.shape.length !== 2 || y.shape[0] !== b || y.shape[1] !== model.numClasses) {
      throw new ConformanceError(s.name, 'forward', `expected logits [${b}, ${model.numClasses}], got [${y.shape.join(', ')}]`);
    }
    if (!allFinite(y)) throw new ConformanceError(s.name, 'forward', 'logits are not finite');
    const feats = model.forwardFeatures(x);
    const pre = model.forwardHead(feats, { preLogits: true });
    if (pre.shape.length !== 2 || pre.shape[1] !== model.numFeatures) {
      throw new ConformanceError(s.name, 'forwardHead', `preLogits expected [${b}, ${model.numFeatures}], got [${pre.shape.join(', ')}]`);
    }
    const y2 = model.forwardHead(feats);
    const d = maxAbsDiff(y, y2);
    if (d > 1e-5) throw new ConformanceError(s.name, 'forwardHead', `forwardHead(forwardFeatures(x)) differs from forward(x) by ${d}`);
  });
}

/** Two eval passes on the same input are bit-identical. */
export function checkEvalDeterminism(s: ConformanceSubject, model: VisionModel): void {
  model.eval();
  tf.tidy(() => {
    const x = seededInput(s.inputShape, 2);
    const d = maxAbsDiff(model.forward(x), model.forward(x));
    if (d !== 0) throw new ConformanceError(s.name, 'eval determinism', `two eval passes differ by ${d}`);
  });
}

/** `forwardIntermediates` returns one NHWC map per `featureInfo` entry with matching channels and stride. */
export function checkFeatures(s: ConformanceSubject, model: VisionModel): void {
  const [b, h, w] = s.inputShape;
  model.eval();
  tf.tidy(() => {
    const x = seededInput(s.inputShape, 3);
    const maps = model.forwardIntermediates(x);
    if (maps.length !== model.featureInfo.length) {
      throw new ConformanceError(s.name, 'features', `featureInfo has ${model.featureInfo.length} entries, forwardIntermediates gave ${maps.length}`);
    }
    maps.forEach((m, i) => {
      const info = model.featureInfo[i]!;
      const okH = m.shape[1] === Math.floor(h / info.reduction) || m.shape[1] === Math.ceil(h / info.reduction);
      const okW = m.shape[2] === Math.floor(w / info.reduction) || m.shape[2] === Math.ceil(w / info.reduction);
      if (m.shape.length !== 4 || m.shape[0] !== b || m.shape[3] !== info.numChs || !okH || !okW) {
        throw new ConformanceError(
          s.name,
          'features',
          `stage ${i} (${info.module}): expected [${b}, ~${h / info.reduction}, ~${w / info.reduction}, ${info.numChs}], got [${m.shape.join(', ')}]`,
        );
      }
    });
    const last = model.forwardIntermediates(x, { indices: [-1] });
    if (last.length !== 1 || maxAbsDiff(last[0]!, maps[maps.length - 1]!) !== 0) {
      throw new ConformanceError(s.name, 'features', 'indices [-1] does not select the last stage');
    }
  });
}

/** In train mode every trainable parameter receives a finite gradient, non-zero unless allowed. */
export function checkGradients(s: ConformanceSubject, model: VisionModel): void {
  model.train();
  const named = model.namedParameters({ trainableOnly: true });
  const byId = new Map(named.map(([n, v]) => [v.name, n]));
  try {
    tf.tidy(() => {
      const x = seededInput(s.inputShape, 4);
      const probe = tf.randomNormal([s.inputShape[0], model.numClasses], 0, 1, 'float32', 5);
      const { grads } = tf.variableGrads(() => tf.sum(tf.mul(model.forward(x), probe)) as tf.Scalar, named.map(([, v]) => v));
      const problems: string[] = [];
      for (const [id, name] of byId) {
        const g = grads[id];
        if (!g) problems.push(`${name}: no gradient`);
        else if (!allFinite(g)) problems.push(`${name}: non-finite gradient`);
        else if (!(s.zeroGradAllowed?.(name) ?? false) && tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]!) === 0) {
          problems.push(`${name}: all-zero gradient`);
        }
      }
      if (problems.length) throw new ConformanceError(s.name, 'gradients', problems.join('; '));
    });
  } finally {
    model.eval();
  }
}

/**
 * `setGradCheckpointing(true)` changes no gradient (the recomputed blocks run the same kernels;
 * random draws are replayed, so this runs with whatever dropout the variant has), leaves the
 * BatchNorm running statistics as one plain step does, and `setGradCheckpointing(false)` restores
 * the plain forward.
 */
export function checkGradCheckpointing(s: ConformanceSubject, model: VisionModel): void {
  const named = model.namedParameters({ trainableOnly: true });
  const buffersBefore = model.buffers().map((b) => b.clone());
  model.train();
  const step = (): { grads: tf.Tensor[]; buffers: tf.Tensor[] } => {
    for (const [b, v] of model.buffers().map((b, i) => [b, buffersBefore[i]!] as const)) b.assign(v);
    return withSeededRandom(11, () =>
      tf.tidy(() => {
        const x = seededInput(s.inputShape, 8);
        const probe = tf.randomNormal([s.inputShape[0], model.numClasses], 0, 1, 'float32', 9);
        const { value, grads } = valueAndGrads(() => tf.sum(tf.mul(model.forward(x), probe)) as tf.Scalar, named.map(([, v]) => v));
        return { grads: [value, ...named.map(([, v]) => grads[v.name] ?? tf.zeros(v.shape))], buffers: model.buffers().map((b) => b.clone()) };
      }),
    );
  };
  try {
    const plain = step();
    model.setGradCheckpointing(true);
    if (!model.gradCheckpointing) throw new ConformanceError(s.name, 'grad checkpointing', 'gradCheckpointing is false after setGradCheckpointing(true)');
    const runs = recomputeCount();
    const ckpt = step();
    const recomputed = recomputeCount() - runs;
    model.setGradCheckpointing(false);
    const problems: string[] = [];
    const names = ['loss', ...named.map(([n]) => n)];
    plain.grads.forEach((g, i) => {
      const d = maxAbsDiff(g, ckpt.grads[i]!);
      const scale = Math.max(1, tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]!));
      if (!(d <= 1e-6 * scale)) problems.push(`${names[i]}: differs by ${d}`);
    });
    plain.buffers.forEach((b, i) => {
      // To rounding: the checkpointed step's first forward runs off the tape, where Linear and Conv2d
      // take the fused kernels (bias inside the product on wasm: 1e-9 apart). A second update of the
      // running statistics moves them by momentum·(batch statistic − running), orders larger.
      const d = maxAbsDiff(b, ckpt.buffers[i]!);
      const scale = Math.max(1, tf.tidy(() => tf.max(tf.abs(b)).dataSync()[0]!));
      if (!(d <= 1e-6 * scale)) problems.push(`buffer ${i}: differs by ${d} (a recomputed forward updated running statistics?)`);
    });
    tf.dispose([...plain.grads, ...plain.buffers, ...ckpt.grads, ...ckpt.buffers]);
    if (model.gradCheckpointing) problems.push('gradCheckpointing is still true after setGradCheckpointing(false)');
    if (recomputed === 0) problems.push('no block was recomputed in the backward pass');
    if (problems.length) throw new ConformanceError(s.name, 'grad checkpointing', problems.join('; '));
  } finally {
    model.setGradCheckpointing(false);
    for (const [b, v] of model.buffers().map((b, i) => [b, buffersBefore[i]!] as const)) b.assign(v);
    tf.dispose(buffersBefore);
    model.eval();
  }
}

/** A fresh model loaded with this one's state dict gives identical outputs. */
export function checkStateDictRoundTrip(s: ConformanceSubject, model: VisionModel): void {
  const other = asVision(s.name, s.build());
  try {
    other.loadStateDict(model.stateDict());
    model.eval();
    other.eval();
    tf.tidy(() => {
      const x = seededInput(s.inputShape, 6);
      const d = maxAbsDiff(model.forward(x), other.forward(x));
      if (d !== 0) throw new ConformanceError(s.name, 'state dict round trip', `outputs differ by ${d}`);
    });
  } finally {
    other.dispose();
  }
}

/** Wrong channel count or rank is refused with a ShapeError, not a tfjs internal error. */
export function checkInputValidation(s: ConformanceSubject, model: VisionModel): void {
  const [b, h, w, c] = s.inputShape;
  const bad: Array<[string, number[]]> = [
    ['wrong channels', [b, h, w, c + 1]],
    ['rank 3', [h, w, c]],
  ];
  for (const [what, shape] of bad) {
    let err: unknown;
    tf.tidy(() => {
      try {
        model.forward(tf.zeros(shape) as unknown as tf.Tensor4D);
      } catch (e) {
        err = e;
      }
    });
    if (!(err instanceof ShapeError)) {
      throw new ConformanceError(s.name, 'input validation', `${what} ${JSON.stringify(shape)}: expected a ShapeError, got ${err ? String(err) : 'no error'}`);
    }
  }
}

/** `resetClassifier(n)` changes the logits width; 0 gives pre-logits. */
export function checkResetClassifier(s: ConformanceSubject): void {
  const model = asVision(s.name, s.build());
  try {
    model.eval();
    for (const n of [7, 0]) {
      model.resetClassifier(n);
      tf.tidy(() => {
        const y = model.forward(seededInput(s.inputShape, 7));
        const want = n === 0 ? model.numFeatures : n;
        if (y.shape[1] !== want) throw new ConformanceError(s.name, 'resetClassifier', `resetClassifier(${n}) gave width ${y.shape[1]}, expected ${want}`);
      });
    }
  } finally {
    model.dispose();
  }
}

/**
 * `explain()` gives `[B, H, W]` finite maps in [0, 1] with each method the model offers (Grad-CAM
 * always, on the layer its architecture names; rollout where it exposes global attention), and
 * leaves the model's mode as it was.
 */
export function checkExplain(s: ConformanceSubject, model: VisionModel): void {
  const [b, h, w] = s.inputShape;
  const explainer = findExplainer(model);
  const methods = explainer?.attention ? (['gradcam', 'rollout'] as const) : (['gradcam'] as const);
  model.train();
  try {
    tf.tidy(() => {
      const x = seededInput(s.inputShape, 10);
      for (const method of methods) {
        const r = explain(model, x, { method });
        const where = `${method}${r.layer ? ` on '${r.layer}'` : ''}`;
        if (r.map.rank !== 3 || r.map.shape[0] !== b || r.map.shape[1] !== h || r.map.shape[2] !== w) {
          throw new ConformanceError(s.name, 'explain', `${where}: expected maps [${b}, ${h}, ${w}], got [${r.map.shape.join(', ')}]`);
        }
        const [lo, hi] = [tf.min(r.map).dataSync()[0]!, tf.max(r.map).dataSync()[0]!];
        if (!allFinite(r.map) || lo < 0 || hi > 1) throw new ConformanceError(s.name, 'explain', `${where}: map values outside [0, 1] (${lo}..${hi})`);
        if (method === 'gradcam' && explainer?.camTargets?.length && r.layer === 'forwardFeatures') {
          throw new ConformanceError(s.name, 'explain', "Grad-CAM fell back to forwardFeatures although the model's explainer names layers");
        }
        if (r.classIndex.length !== b) throw new ConformanceError(s.name, 'explain', `${where}: ${r.classIndex.length} classes for ${b} images`);
      }
    });
    if (!model.training) throw new ConformanceError(s.name, 'explain', 'explain left the model in eval mode');
  } finally {
    model.eval();
  }
}

/** Runs every check on one subject; returns nothing, throws on the first failing check. */
export function runConformance(s: ConformanceSubject): void {
  const before = tf.memory().numTensors;
  const model = asVision(s.name, s.build());
  const afterBuild = tf.memory().numTensors;
  try {
    checkForward(s, model);
    checkEvalDeterminism(s, model);
    checkFeatures(s, model);
    checkStateDictRoundTrip(s, model);
    checkInputValidation(s, model);
    checkGradients(s, model);
    checkGradCheckpointing(s, model);
    checkExplain(s, model);
    const leaked = tf.memory().numTensors - afterBuild;
    if (leaked !== 0) throw new ConformanceError(s.name, 'tensor leak', `${leaked} tensors left after the checks`);
  } finally {
    model.dispose();
  }
  checkResetClassifier(s);
  const left = tf.memory().numTensors - before;
  if (left !== 0) throw new ConformanceError(s.name, 'tensor leak', `${left} tensors left after dispose()`);
}

export interface DescribeConformanceOptions {
  /** Registered model names. */
  models: string[];
  /** Options that shrink a variant so it runs in seconds on the cpu backend. */
  createOptions?: (name: string) => CreateModelOptions;
  /** NHWC input shape with batch for a variant (after shrinking). */
  inputShape: (name: string) => [number, number, number, number];
  zeroGradAllowed?: (name: string, param: string) => boolean;
  /** Backend to run on; default 'cpu'. */
  backend?: string;
}

/** Subjects for registered models, for use with `runConformance` outside vitest. */
export function registeredSubjects(o: DescribeConformanceOptions): ConformanceSubject[] {
  return o.models.map((name) => ({
    name,
    build: () => createModel(name, o.createOptions?.(name) ?? {}),
    inputShape: o.inputShape(name),
    zeroGradAllowed: o.zeroGradAllowed ? (p: string) => o.zeroGradAllowed!(name, p) : undefined,
  }));
}
