import * as tf from '@tensorflow/tfjs-core';
import { VitError } from '../errors.js';

/**
 * Reverse-mode autodiff with the memory behaviour of PyTorch's, on tfjs's own tape.
 *
 * tfjs's `tf.variableGrads`/`tf.grads` keep, until the whole backward pass ends, (1) every tensor
 * each kernel saved for its gradient, even for inputs that need no gradient and for kernels whose
 * gradient needs only shapes (Add, Reshape, Pad, Concat…), and (2) every intermediate gradient it
 * computed. A training step's peak was therefore "all activations + all their gradients", 2–3×
 * PyTorch's (docs/performance.md). This runs the same forward, the same tape and the same
 * registered gradient functions, and differs only in what it keeps:
 *  - while the forward records, a node's saved tensors that its backward will not read are
 *    released at once: all of them when no input leads back to `xs`; for shape-only gradients,
 *    the tensor itself (a stub with its shape stays); for products (Multiply, BatchMatMul, convs),
 *    the operand only the other operand's gradient would read, when that other needs none;
 *  - the backward walk frees each node's saved tensors and its outputs' gradients as soon as the
 *    node is done, and each partial gradient once it is summed.
 * Values and gradients are the same kernels' results as tfjs's (tests compare them bit for bit).
 * Nested use (a gradient inside a gradient function: activation checkpointing) works; a call
 * while another tape is recording (higher-order gradients) falls back to tfjs's own engine.
 */

interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  gradient?: (dys: Array<tf.Tensor | null>) => Record<string, () => tf.Tensor>;
  saved?: Array<tf.Tensor | ShapeStub>;
}

/** Stands in for a released saved tensor whose gradient function reads only its shape. */
interface ShapeStub {
  readonly shape: number[];
  readonly rank: number;
  readonly size: number;
  readonly dtype: tf.DataType;
  readonly isStub: true;
  dispose(): void;
}

interface EngineInternals {
  state: {
    activeTape: TapeNode[] | null;
    gradientDepth: number;
    kernelDepth: number;
  };
  startTape(): void;
  endTape(): void;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  tidy<T extends tf.TensorContainer>(nameOrFn: string | (() => T), fn?: () => T): T;
  startScope(name?: string): void;
  endScope(result?: tf.TensorContainer): void;
}

const engine = () => tf.engine() as unknown as EngineInternals;

const stub = (t: tf.Tensor | ShapeStub): ShapeStub => ({ shape: t.shape.slice(), rank: t.shape.length, size: t.size, dtype: t.dtype, isStub: true, dispose() {} });

const isStub = (t: tf.Tensor | ShapeStub): t is ShapeStub => (t as ShapeStub).isStub === true;

/** Kernels whose registered gradient reads only the shapes of what it saved (checked against tfjs 4.22's gradFuncs). */
const SHAPE_ONLY = new Set<string>([tf.Add, tf.Sub, tf.AddN, tf.Reshape, tf.ExpandDims, tf.PadV2, tf.Slice, tf.Concat, tf.Mean, tf.Sum, tf.Pack]);

/**
 * Kernels saving `[a, b]` (in this order, as the named inputs) where a's gradient reads only b's
 * values and b's only a's (plus shapes).
 */
const PRODUCTS: Record<string, [string, string]> = {
  [tf.Multiply]: ['a', 'b'],
  [tf.BatchMatMul]: ['a', 'b'],
  [tf.Conv2D]: ['x', 'filter'],
  [tf.DepthwiseConv2dNative]: ['x', 'filter'],
};

/** Releases saved tensor i of a node, leaving its shape. */
function release(saved: Array<tf.Tensor | ShapeStub>, i: number): void {
  const t = saved[i]!;
  if (isStub(t)) return;
  saved[i] = stub(t);
  t.dispose();
}

/**
 * The tape our forward records into: an array whose `push` (tfjs's `addTapeNode`) drops what the
 * backward will not need, knowing which tensors lead back to `xs`.
 */
class PruningTape extends Array<TapeNode> {
  /** Ids of tensors computed from `xs` (the forward half of tfjs's getFilteredNodesXToY). */
  readonly fromX = new Set<number>();
  static override get [Symbol.species]() {
    return Array;
  }
  override push(...nodes: TapeNode[]): number {
    for (const node of nodes) this.prune(node);
    return super.push(...nodes);
  }
  /** Data ids that some earlier node's saved tensors hold (a cheap over-approximation: never removed). */
  private readonly savedBefore = new Set<object>();
  private prune(node: TapeNode): void {
    this.pruneSaved(node);
    for (const s of node.saved ?? []) if (!isStub(s)) this.savedBefore.add(s.dataId);
  }
  private pruneSaved(node: TapeNode): void {
    const names = Object.keys(node.inputs);
    const needs = (name: string) => {
      const t = node.inputs[name];
      return t !== undefined && this.fromX.has(t.id);
    };
    const any = names.some(needs);
    if (any) for (const o of node.outputs) this.fromX.add(o.id);
    const saved = node.saved;
    if (!saved || saved.length === 0) return;
    if (!any) {
      for (let i = 0; i < saved.length; i++) release(saved, i);
      return;
    }
    if (SHAPE_ONLY.has(node.kernelName)) {
      for (let i = 0; i < saved.length; i++) release(saved, i);
      return;
    }
    if (node.kernelName === tf.Relu && saved.length === 1 && node.outputs.length === 1 && !isStub(saved[0]!) && !this.savedBefore.has((saved[0] as tf.Tensor).dataId)) {
      // relu' is step(x) = step(relu(x)): keep the output (what the next layer keeps anyway)
      // instead of the input, unless an earlier node keeps that input already.
      const e = engine();
      e.state.kernelDepth++;
      let y: tf.Tensor;
      try {
        y = tf.keep(node.outputs[0]!.clone());
        saved[0]!.dispose();
        saved[0] = y;
      } finally {
        e.state.kernelDepth--;
      }
      // dy·sign(y) is dy·step(x) (y ≥ 0; NaN stays NaN) in two kernels; tfjs-node composes Step from five.
      node.gradient = (dys) => ({ x: () => tf.mul(dys[0]!, tf.sign(y)) });
      return;
    }
    const pair = PRODUCTS[node.kernelName];
    if (pair && saved.length === 2) {
      const [a, b] = pair;
      // a's gradient reads b; b's reads a. Keep a tensor only if the other operand needs a gradient,
      // and never release one that is the same data as the other (x·x).
      const same = (saved[0] as tf.Tensor).dataId === (saved[1] as tf.Tensor).dataId;
      if (!needs(a) && !same) release(saved, 1);
      if (!needs(b) && !same) release(saved, 0);
    }
  }
}

export interface GradsResult {
  value: tf.Tensor;
  grads: Array<tf.Tensor | null>;
}

/**
 * `f()` and the gradients of its value with respect to `xs` (null for an x the value does not
 * depend on), computed with the memory behaviour described at the top of this file. `dy` weights
 * the value (default ones). Call it inside `tf.tidy` or dispose the results.
 */
export function valueAndGradsOf(f: () => tf.Tensor, xs: tf.Tensor[], dy?: tf.Tensor): GradsResult {
  const e = engine();
  if (e.state.gradientDepth > 0 || e.state.kernelDepth > 0) {
    // Another tape is recording (a second-order gradient): leave it to tfjs.
    if (xs.length === 0) throw new VitError('valueAndGrads: no tensors to differentiate with respect to', 'VIT_GRAD');
    const { value, grads } = tf.engine().gradients(f, xs, dy, true);
    return { value, grads: grads.map((g) => g ?? null) };
  }
  const r = vjp(
    () => {
      const y = f();
      if (!(y instanceof tf.Tensor)) throw new VitError('valueAndGrads: f() must return a tensor', 'VIT_GRAD');
      return [y];
    },
    xs,
    dy ? [dy] : undefined,
  );
  return { value: r.values[0]!, grads: r.grads };
}

/**
 * The vector-Jacobian product of a function with several outputs: `f()`'s values and the
 * gradients of Σᵢ⟨valuesᵢ, dysᵢ⟩ with respect to `xs` (dys default to ones). Same memory
 * behaviour as `valueAndGradsOf`; no other tape may be recording.
 */
export function vjp(f: () => tf.Tensor[], xs: tf.Tensor[], dys?: tf.Tensor[]): { values: tf.Tensor[]; grads: Array<tf.Tensor | null> } {
  if (xs.length === 0) throw new VitError('valueAndGrads: no tensors to differentiate with respect to', 'VIT_GRAD');
  const e = engine();
  if (e.state.gradientDepth > 0 || e.state.kernelDepth > 0) throw new VitError('vjp cannot run while another gradient tape is recording', 'VIT_GRAD');
  const tape = new PruningTape();
  for (const x of xs) tape.fromX.add(x.id);
  // Inside the backward pass of tfjs's own `gradients` (a customGrad or checkpoint recomputing),
  // its finished tape is still active and read at the end to free what it saved: put it back.
  const outerTape = e.state.activeTape;
  const ys = e.scopedRun(
    () => {
      e.startTape();
      e.state.activeTape = tape;
    },
    () => e.endTape(),
    () => e.tidy('forward', f),
  );
  e.state.activeTape = outerTape;
  try {
    if (!Array.isArray(ys) || ys.some((y) => !(y instanceof tf.Tensor))) throw new VitError('vjp: f() must return an array of tensors', 'VIT_GRAD');
    if (dys !== undefined) {
      if (dys.length !== ys.length) throw new VitError(`vjp: ${ys.length} outputs but ${dys.length} dys`, 'VIT_GRAD');
      dys.forEach((d, i) => {
        const y = ys[i]!;
        if (d.dtype !== 'float32' || !tf.util.arraysEqual(d.shape, y.shape)) {
          throw new VitError(`valueAndGrads: dy must be float32 of the value's shape [${y.shape.join(', ')}], got ${d.dtype} [${d.shape.join(', ')}]`, 'VIT_GRAD');
        }
      });
    }
    const nodes = filterToY(tape, ys);
    const backward = () => ({ values: ys, grads: backprop(nodes, ys, xs, dys) });
    return e.tidy('backward', backward as unknown as () => tf.TensorContainer) as unknown as { values: tf.Tensor[]; grads: Array<tf.Tensor | null> };
  } catch (err) {
    if (Array.isArray(ys)) tf.dispose(ys.filter((y) => y instanceof tf.Tensor));
    throw err;
  } finally {
    for (const node of tape) for (const s of node.saved ?? []) s.dispose();
  }
}

/** Like `tf.variableGrads`: the value of `f` and its gradients keyed by variable name (every variable, or `vars`). */
export function valueAndGrads(f: () => tf.Scalar, vars?: tf.Variable[]): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  const vs = vars ?? Object.values(tf.engine().registeredVariables).filter((v) => v.trainable);
  const { value, grads } = valueAndGradsOf(f, vs);
  if (value.rank !== 0) {
    tf.dispose([value, ...grads.filter((g): g is tf.Tensor => g !== null)]);
    throw new VitError(`valueAndGrads: f() must return a scalar, got rank ${value.rank}`, 'VIT_GRAD');
  }
  const out: tf.NamedTensorMap = {};
  vs.forEach((v, i) => {
    const g = grads[i];
    if (g) out[v.name] = g;
  });
  return { value: value as tf.Scalar, grads: out };
}

/** The nodes of `tape` on a path from a tensor computed from xs to one of ys, in order (tfjs's backward filter). */
function filterToY(tape: PruningTape, ys: tf.Tensor[]): TapeNode[] {
  const leadsToY = new Set<number>(ys.map((y) => y.id));
  const keep: boolean[] = new Array(tape.length).fill(false);
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (!node.outputs.some((o) => leadsToY.has(o.id))) continue;
    if (!node.outputs.some((o) => tape.fromX.has(o.id))) continue;
    keep[i] = true;
    for (const t of Object.values(node.inputs)) leadsToY.add(t.id);
  }
  const out: TapeNode[] = [];
  for (let i = 0; i < tape.length; i++) {
    if (!keep[i]) continue;
    const node = tape[i]!;
    const inputs: Record<string, tf.Tensor> = {};
    for (const [name, t] of Object.entries(node.inputs)) if (tape.fromX.has(t.id)) inputs[name] = t;
    out.push({ ...node, inputs });
  }
  return out;
}

function backprop(nodes: TapeNode[], ys: tf.Tensor[], xs: tf.Tensor[], dys?: tf.Tensor[]): Array<tf.Tensor | null> {
  const e = engine();
  const xIds = new Set(xs.map((x) => x.id));
  const acc = new Map<number, tf.Tensor>();
  // The caller's dys are not ours to free.
  const given = new Set<tf.Tensor>(dys ?? []);
  ys.forEach((y, i) => {
    const seed = dys?.[i] ?? tf.onesLike(y);
    const cur = acc.get(y.id);
    acc.set(y.id, cur ? tf.add(cur, seed) : seed);
  });
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i]!;
    if (!node.gradient) throw new VitError(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`, 'VIT_GRAD');
    const dys = node.outputs.map((o) => acc.get(o.id) ?? null);
    const names = Object.keys(node.inputs);
    // One scope per node: what the gradient function makes besides the input gradients (customGrad
    // computes them eagerly; tfjs's zero dys for unused outputs) is freed here, not at the end.
    e.startScope(`grad ${node.kernelName}`);
    let dxs: tf.Tensor[];
    try {
      const fns = node.gradient(dys);
      dxs = names.map((name) => {
        const fn = fns[name];
        if (!fn) throw new VitError(`Cannot backprop through input ${name} of ${node.kernelName}. Available gradients found: ${Object.keys(fns)}.`, 'VIT_GRAD');
        return fn();
      });
    } catch (err) {
      e.endScope();
      throw err;
    }
    e.endScope(dxs);
    // A gradient function may hand the same tensor to two inputs (or pass dy through): each stored
    // gradient must be its own tensor, since each is freed on its own schedule.
    const made = new Set<tf.Tensor>();
    dxs = dxs.map((dx) => {
      if (made.has(dx)) return dx.clone();
      made.add(dx);
      return dx;
    });
    // This node's outputs have all their consumers behind us: their gradients are done with.
    for (const o of node.outputs) {
      const g = acc.get(o.id);
      if (!g || xIds.has(o.id)) continue;
      acc.delete(o.id);
      if (!made.has(g) && !given.has(g)) g.dispose();
    }
    for (const s of node.saved ?? []) s.dispose();
    names.forEach((name, j) => {
      const dx = dxs[j]!;
      const x = node.inputs[name]!;
      if (dx.dtype !== 'float32') {
        throw new VitError(`Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have 'float32' dtype, but has '${dx.dtype}'`, 'VIT_GRAD');
      }
      if (!tf.util.arraysEqual(dx.shape, x.shape)) {
        throw new VitError(
          `Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`,
          'VIT_GRAD',
        );
      }
      const cur = acc.get(x.id);
      if (cur === undefined) {
        acc.set(x.id, dx);
      } else {
        acc.set(x.id, tf.add(cur, dx));
        if (!given.has(cur)) cur.dispose();
        dx.dispose();
      }
    });
  }
  return xs.map((x) => {
    const g = acc.get(x.id);
    // A gradient that is one of the caller's dys (x is an output) is returned as its own tensor.
    return g === undefined ? null : given.has(g) ? g.clone() : g;
  });
}
