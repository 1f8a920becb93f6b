import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';

/**
 * Gradients tfjs 4.22 lacks or gets wrong, registered with `tf.registerGradient` (process-wide,
 * every backend). Each is written with differentiable tfjs ops, so second derivatives work too.
 *  - StridedSlice: dy scattered back to the sliced positions (zero-insert for strides, reverse for
 *    negative strides, pad to the input's extent).
 *  - GatherNd: scatterND(indices, dy). ScatterNd: gatherND(dy, indices).
 *  - GatherV2: tfjs returns the int32 indices as their own "gradient", which throws ("must have
 *    'float32' dtype") as soon as the indices are computed from trainable values (bilinear or
 *    deformable sampling); they get a float zero gradient instead.
 *  - Range, and the integer inputs above: no gradient (zeros), instead of "gradient function not
 *    found".
 *  - DepthToSpace: its inverse, space-to-depth, by reshape/transpose.
 *  - TopK: dy scattered to the selected positions.
 *  - Einsum (1 or 2 operands): einsum of dy with the other operand, broadcast over summed-out axes.
 */

type GradMap = Record<string, () => tf.Tensor>;

const zerosFor = (t: tf.Tensor) => () => tf.zeros(t.shape, 'float32');

// ---------------------------------------------------------------------------------------------

/** Zeros inserted between elements along `axis` so element j lands at j·step. */
function spreadAxis(g: tf.Tensor, axis: number, step: number): tf.Tensor {
  if (step === 1 || g.shape[axis] === 0) return g;
  const shape = g.shape;
  const pre = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const len = shape[axis]!;
  const post = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const padded = tf.pad(tf.reshape(g, [pre, len, 1, post]), [
    [0, 0],
    [0, 0],
    [0, step - 1],
    [0, 0],
  ]);
  const flat = tf.slice(tf.reshape(padded, [pre, len * step, post]), [0, 0, 0], [pre, (len - 1) * step + 1, post]);
  return tf.reshape(flat, [...shape.slice(0, axis), (len - 1) * step + 1, ...shape.slice(axis + 1)]);
}

/** The gradient of x[begin:end:strides] (dense, canonical per-axis spec from `sliceInfo`). */
export function stridedSliceGrad(dy: tf.Tensor, xShape: number[], begin: number[], end: number[], strides: number[]): tf.Tensor {
  const lens = xShape.map((_, i) => {
    const s = strides[i]!;
    return Math.max(0, s > 0 ? Math.ceil((end[i]! - begin[i]!) / s) : Math.ceil((begin[i]! - end[i]!) / -s));
  });
  if (lens.some((l) => l === 0)) return tf.zeros(xShape, dy.dtype);
  let g = tf.reshape(dy, lens);
  const paddings: Array<[number, number]> = [];
  for (let i = 0; i < xShape.length; i++) {
    const s = strides[i]!;
    const len = lens[i]!;
    let start = begin[i]!;
    if (s < 0) {
      // Reversed so positions ascend: the first is the last element taken.
      g = tf.reverse(g, i);
      start = begin[i]! + (len - 1) * s;
    }
    g = spreadAxis(g, i, Math.abs(s));
    const extent = (len - 1) * Math.abs(s) + 1;
    paddings.push([start, xShape[i]! - start - extent]);
  }
  return paddings.some(([a, b]) => a !== 0 || b !== 0) ? tf.pad(g, paddings) : g;
}

const stridedSliceGradConfig: tf.GradConfig = {
  kernelName: tf.StridedSlice,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved as tf.Tensor[];
    const a = attrs as unknown as tf.StridedSliceAttrs;
    const info = tf.slice_util.sliceInfo(x!.shape, a.begin, a.end, a.strides, a.beginMask, a.endMask, a.ellipsisMask, a.newAxisMask, a.shrinkAxisMask);
    return { x: () => stridedSliceGrad(dy as tf.Tensor, x!.shape, info.begin, info.end, info.strides) };
  },
};

// ---------------------------------------------------------------------------------------------

const gatherNdGradConfig: tf.GradConfig = {
  kernelName: tf.GatherNd,
  inputsToSave: ['params', 'indices'],
  gradFunc: (dy, saved) => {
    const [params, indices] = saved as tf.Tensor[];
    return { params: () => tf.scatterND(indices!, dy as tf.Tensor, params!.shape), indices: zerosFor(indices!) };
  },
};

const scatterNdGradConfig: tf.GradConfig = {
  kernelName: tf.ScatterNd,
  inputsToSave: ['indices'],
  gradFunc: (dy, saved) => {
    const [indices] = saved as tf.Tensor[];
    return { updates: () => tf.gatherND(dy as tf.Tensor, indices!), indices: zerosFor(indices!) };
  },
};

const rangeGradConfig: tf.GradConfig = { kernelName: tf.Range, gradFunc: () => ({}) };

// ---------------------------------------------------------------------------------------------

const depthToSpaceGradConfig: tf.GradConfig = {
  kernelName: tf.DepthToSpace,
  gradFunc: (dy, _saved, attrs) => {
    const { blockSize: b, dataFormat } = attrs as unknown as tf.DepthToSpaceAttrs;
    return {
      x: () => {
        let g = dy as tf.Tensor4D;
        if (dataFormat === 'NCHW') g = tf.transpose(g, [0, 2, 3, 1]);
        const [n, hb, wb, c] = g.shape;
        const h = hb / b;
        const w = wb / b;
        // Forward: x [n,h,w,(i·b + j)·c + k] → y [n, h·b + i, w·b + j, k]. Undo it.
        const six = tf.reshape(g, [n, h, b, w, b, c]);
        let dx: tf.Tensor = tf.reshape(tf.transpose(six, [0, 1, 3, 2, 4, 5]), [n, h, w, b * b * c]);
        if (dataFormat === 'NCHW') dx = tf.transpose(dx, [0, 3, 1, 2]);
        return dx;
      },
    };
  },
};

const topKGradConfig: tf.GradConfig = {
  kernelName: tf.TopK,
  inputsToSave: ['x'],
  outputsToSave: [false, true],
  gradFunc: (dys, saved) => {
    const [x, indices] = saved as tf.Tensor[];
    const dValues = (Array.isArray(dys) ? dys[0] : dys) as tf.Tensor;
    return {
      x: () => {
        const n = x!.shape[x!.rank - 1]!;
        const k = indices!.shape[indices!.rank - 1]!;
        const rows = x!.size / n;
        // Flat position of every selected element: row·n + index.
        const base = tf.mul(tf.range(0, rows, 1, 'int32'), tf.scalar(n, 'int32'));
        const flat = tf.reshape(tf.add(tf.reshape(indices!, [rows, k]), tf.reshape(base, [rows, 1])), [rows * k, 1]);
        return tf.reshape(tf.scatterND(flat, tf.reshape(dValues, [rows * k]), [rows * n]), x!.shape);
      },
    };
  },
};

// ---------------------------------------------------------------------------------------------

function parseEinsum(equation: string, numOperands: number): { inputs: string[]; output: string } {
  const eq = equation.replace(/\s/g, '');
  const [lhs, rhs] = eq.split('->') as [string, string | undefined];
  const inputs = lhs.split(',');
  if (inputs.length !== numOperands || eq.includes('.')) throw new Error(`Einsum gradient: unsupported equation '${equation}'`);
  let output = rhs;
  if (output === undefined) {
    // Implicit mode: letters that appear once, alphabetically.
    const counts = new Map<string, number>();
    for (const ch of inputs.join('')) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    output = [...counts]
      .filter(([, n]) => n === 1)
      .map(([ch]) => ch)
      .sort()
      .join('');
  }
  return { inputs, output };
}

/** Gradient for operand `spec` given the other operands: einsum to the letters it can get, then broadcast. */
function einsumOperandGrad(dy: tf.Tensor, output: string, others: Array<{ spec: string; t: tf.Tensor }>, spec: string, shape: number[]): tf.Tensor {
  const available = new Set([...output, ...others.flatMap((o) => [...o.spec])]);
  const kept = [...spec].filter((ch) => available.has(ch)).join('');
  let g: tf.Tensor;
  if (others.length === 0) {
    // One operand: the output letters, summed where the operand lacks them, in the operand's order.
    const sumAxes = [...output].map((ch, i) => (kept.includes(ch) ? -1 : i)).filter((i) => i >= 0);
    const reduced = sumAxes.length ? tf.sum(dy, sumAxes) : dy;
    const order = [...output].filter((ch) => kept.includes(ch));
    g =
      order.length > 1
        ? tf.transpose(
            reduced,
            [...kept].map((ch) => order.indexOf(ch)),
          )
        : reduced;
  } else {
    g = tf.einsum(`${output},${others.map((o) => o.spec).join(',')}->${kept}`, dy, ...others.map((o) => o.t));
  }
  if (kept.length === spec.length) return g;
  // Letters only this operand has were summed away in the forward pass: the gradient is constant along them.
  const expanded = tf.reshape(
    g,
    [...spec].map((ch, i) => (kept.includes(ch) ? shape[i]! : 1)),
  );
  return tf.broadcastTo(expanded, shape);
}

const einsumGradConfig: tf.GradConfig = {
  kernelName: tf.Einsum,
  saveAllInputs: true,
  gradFunc: (dy, saved, attrs) => {
    const ts = saved as tf.Tensor[];
    const { inputs, output } = parseEinsum((attrs as unknown as tf.EinsumAttrs).equation, ts.length);
    const grads: GradMap = {};
    ts.forEach((t, i) => {
      const others = ts.map((o, j) => ({ spec: inputs[j]!, t: o })).filter((_, j) => j !== i);
      grads[i] = () => einsumOperandGrad(dy as tf.Tensor, output, others, inputs[i]!, t.shape);
    });
    return grads;
  },
};

// ---------------------------------------------------------------------------------------------

/** Our wrapper around tfjs's GatherV2 gradient, once registered. */
let gatherFix: tf.GradConfig | undefined;

function gatherV2Fix(original: tf.GradConfig): tf.GradConfig {
  return {
    kernelName: tf.GatherV2,
    inputsToSave: original.inputsToSave,
    outputsToSave: original.outputsToSave,
    saveAllInputs: original.saveAllInputs,
    gradFunc: (dy, saved, attrs) => {
      const g = original.gradFunc(dy, saved, attrs) as GradMap;
      const indices = (saved as tf.Tensor[])[1]!;
      return { ...g, indices: zerosFor(indices) };
    },
  };
}

const FIXES: tf.GradConfig[] = [
  stridedSliceGradConfig,
  gatherNdGradConfig,
  scatterNdGradConfig,
  rangeGradConfig,
  depthToSpaceGradConfig,
  topKGradConfig,
  einsumGradConfig,
];

/** Kernel names whose gradient `installGradientFixes` provides. */
export const GRADIENT_FIXES: readonly string[] = [...FIXES.map((f) => f.kernelName), tf.GatherV2];

/**
 * Registers the gradients above where tfjs has none, and the GatherV2 fix (idempotent). Call after `import '@tensorflow/tfjs'` (which
 * registers tfjs's own gradients): the GatherV2 fix wraps tfjs's gradient, and a later import of
 * the union would overwrite these. Returns the kernel names whose gradient is now ours.
 */
export function installGradientFixes(): string[] {
  const done: string[] = [];
  for (const f of FIXES) {
    const current = tf.getGradient(f.kernelName);
    // A tfjs that ships its own gradient keeps it.
    if (current === undefined) tf.registerGradient(f);
    if (tf.getGradient(f.kernelName) === f) done.push(f.kernelName);
  }
  const current = tf.getGradient(tf.GatherV2);
  if (current && current !== gatherFix) {
    gatherFix = gatherV2Fix(current);
    tf.registerGradient(gatherFix);
  }
  if (gatherFix && tf.getGradient(tf.GatherV2) === gatherFix) done.push(tf.GatherV2);
  return done;
}

/** Kernels whose gradient every model here needs; tfjs registers them in `@tensorflow/tfjs`, not in tfjs-core. */
const CORE_GRADIENTS: readonly string[] = [tf.Add, tf.Multiply, tf.RealDiv, tf.Sum, tf.Mean, tf.Reshape, tf.Conv2D, tf.BatchMatMul, tf.Exp];

/**
 * Throws when tfjs's own gradients are not registered: importing only `@tensorflow/tfjs-core`
 * (plus a backend) gives a working forward pass but no backward one, and tfjs's error ("gradient
 * function not found for RealDiv") does not say what to import. `lookup` is for tests.
 */
export function requireTfjsGradients(lookup: (kernelName: string) => tf.GradConfig | undefined = tf.getGradient): void {
  const missing = CORE_GRADIENTS.filter((k) => lookup(k) === undefined);
  if (missing.length > 0) {
    throw new ConfigError(
      `tfjs's gradients are not registered (none for ${missing.join(', ')}), so nothing can be trained. ` +
        "Add `import '@tensorflow/tfjs'` (or '@tensorflow/tfjs-node') before training: @tensorflow/tfjs-core alone registers no gradients.",
    );
  }
}
