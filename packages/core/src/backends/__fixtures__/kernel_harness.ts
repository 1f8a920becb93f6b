import * as tf from '@tensorflow/tfjs-core';

/**
 * Runs one kernel on a named backend from plain arrays and returns plain arrays, so a case can be
 * computed on stock cpu (the reference) and on a backend with our kernels in the same process.
 */
export interface KernelInput {
  shape: number[];
  values: Float32Array | Int32Array;
  dtype?: 'float32' | 'int32';
}

export interface KernelOutput {
  shape: number[];
  values: Float32Array;
}

export async function runOn(backend: string, kernel: string, inputs: Record<string, KernelInput>, attrs: Record<string, unknown>): Promise<KernelOutput> {
  if (tf.getBackend() !== backend) await tf.setBackend(backend);
  return tf.tidy(() => {
    const ins: Record<string, tf.Tensor> = {};
    for (const [k, v] of Object.entries(inputs)) ins[k] = tf.tensor(v.values, v.shape, v.dtype ?? 'float32');
    const out = tf.engine().runKernel(kernel, ins as unknown as tf.NamedTensorMap, attrs as tf.NamedAttrMap) as tf.Tensor;
    return { shape: out.shape, values: Float32Array.from(out.dataSync()) };
  });
}

/** Deterministic, non-symmetric test values in [−1, 1). */
export function values(shape: number[], seed = 1): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  let s = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s ^ (s >>> 15), 2246822507) + 0x9e3779b9) | 0;
    v[i] = ((s >>> 8) / (1 << 24)) * 2 - 1;
  }
  return v;
}

export function input(shape: number[], seed = 1): KernelInput {
  return { shape, values: values(shape, seed) };
}

/** max |a − r| / max(1, max |r|), after checking the shapes agree. */
export function scaledError(actual: KernelOutput, reference: KernelOutput): number {
  if (actual.shape.join(',') !== reference.shape.join(',')) {
    throw new Error(`shape mismatch: got [${actual.shape.join(',')}], reference [${reference.shape.join(',')}]`);
  }
  let maxAbs = 0;
  let refMax = 0;
  for (let i = 0; i < reference.values.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(actual.values[i]! - reference.values[i]!));
    refMax = Math.max(refMax, Math.abs(reference.values[i]!));
  }
  if (!Number.isFinite(maxAbs)) return Infinity;
  return maxAbs / Math.max(1, refMax);
}

/** The number of live data buffers of the current backend (what a leaking kernel would grow). */
export function numDataIds(): number {
  return (tf.backend() as unknown as { numDataIds(): number }).numDataIds();
}

/**
 * Direct loops over the definition of depthwise conv (filter [kh, kw, C, m], output channel
 * c·m + q): the reference where tfjs's own cpu kernels are wrong (they ignore `dilations`).
 */
export function depthwiseGradLoops(
  xShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  strides: number,
  dilations: number,
  pad: 'same' | 'valid' | number | number[][],
): { filterGrad(x: Float32Array, dy: Float32Array): KernelOutput; inputGrad(dy: Float32Array, w: Float32Array): KernelOutput } {
  const info = tf.backend_util.computeConv2DInfo(xShape, filterShape, strides, dilations, pad as 'same', undefined, true, 'channelsLast');
  const [n, h, wd, c] = xShape;
  const [kh, kw, , m] = filterShape;
  const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const { top, left } = info.padInfo;
  const each = (f: (xi: number, dyi: number, wi: number) => void) => {
    for (let b = 0; b < n; b++)
      for (let i = 0; i < oh; i++)
        for (let j = 0; j < ow; j++)
          for (let a = 0; a < kh; a++)
            for (let e = 0; e < kw; e++) {
              const y = i * sh + a * dh - top;
              const x = j * sw + e * dw - left;
              if (y < 0 || y >= h || x < 0 || x >= wd) continue;
              for (let ch = 0; ch < c; ch++)
                for (let q = 0; q < m; q++) f(((b * h + y) * wd + x) * c + ch, ((b * oh + i) * ow + j) * c * m + ch * m + q, ((a * kw + e) * c + ch) * m + q);
            }
  };
  return {
    filterGrad(x, dy) {
      const out = new Float32Array(kh * kw * c * m);
      each((xi, dyi, wi) => (out[wi]! += x[xi]! * dy[dyi]!));
      return { shape: [kh, kw, c, m], values: out };
    },
    inputGrad(dy, w) {
      const out = new Float32Array(n * h * wd * c);
      each((xi, dyi, wi) => (out[xi]! += dy[dyi]! * w[wi]!));
      return { shape: [...xShape], values: out };
    },
  };
}
