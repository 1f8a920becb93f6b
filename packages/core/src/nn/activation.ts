import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { Module } from './module.js';
import { fusedKernelsReady } from '../backends/kernel_util.js';
import { GELU_ERF, GELU_ERF_GRAD, geluWasmAvailable } from '../backends/wasm_copy.js';

export type GeluApproximate = 'none' | 'tanh';

/**
 * GELU. `'none'` is the exact 0.5·x·(1 + erf(x/√2)) that every official model here uses; the tanh
 * form differs by ~1e-3 and would break golden parity, so it is opt-in.
 */
export function gelu(x: tf.Tensor, approximate: GeluApproximate = 'none'): tf.Tensor {
  return tf.tidy(() => {
    if (approximate === 'tanh') {
      const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
      return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
    }
    if (approximate !== 'none') throw new ConfigError(`GELU approximate must be 'none' or 'tanh', got '${String(approximate)}'`);
    return geluErf(x);
  });
}

/**
 * Exact GELU as one differentiable op: the composed form (4 kernels) keeps x, x/√2, erf(·)+1 and
 * 0.5·x for its backward pass; this keeps x alone and computes dx = dy·(Φ(x) + x·φ(x)) from it.
 * The forward runs the composed form's kernels, so values are bit-identical to it.
 */
export function geluErf(x: tf.Tensor): tf.Tensor {
  const fused = x.dtype === 'float32' && fusedKernelsReady([GELU_ERF, GELU_ERF_GRAD], geluWasmAvailable);
  const op = tf.customGrad(((xi: tf.Tensor, save: tf.GradSaveFunc) => {
    save([xi]);
    return {
      // On wasm one SIMD kernel computes the same float32 operations (wasm_unary.ts).
      value: fused ? (tf.engine().runKernel(GELU_ERF, { x: xi }) as tf.Tensor) : tf.mul(tf.mul(0.5, xi), tf.add(1, tf.erf(tf.mul(xi, Math.SQRT1_2)))),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const s = saved[0]!;
        if (fused) return tf.engine().runKernel(GELU_ERF_GRAD, { x: s, dy }) as tf.Tensor;
        // Each factor in a scope of its own: the backward pass holds 2–3 temporaries of x's size
        // at a time, not the 11 one scope would keep to its end.
        const cdf = tf.tidy(() => tf.mul(0.5, tf.add(1, tf.erf(tf.mul(s, Math.SQRT1_2)))));
        const xpdf = tf.tidy(() => tf.mul(s, tf.mul(INV_SQRT_2PI, tf.exp(tf.mul(-0.5, tf.square(s))))));
        const slope = tf.add(cdf, xpdf);
        tf.dispose([cdf, xpdf]);
        const dx = tf.mul(dy, slope);
        slope.dispose();
        return dx;
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x);
}

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

export class GELU extends Module {
  readonly approximate: GeluApproximate;
  constructor(options: { approximate?: GeluApproximate } = {}) {
    super();
    this.approximate = options.approximate ?? 'none';
    if (this.approximate !== 'none' && this.approximate !== 'tanh') {
      throw new ConfigError(`GELU approximate must be 'none' or 'tanh', got '${String(this.approximate)}'`);
    }
  }
  override forward(x: tf.Tensor): tf.Tensor {
    return gelu(x, this.approximate);
  }
}

export class ReLU extends Module {
  override forward(x: tf.Tensor): tf.Tensor {
    return tf.relu(x);
  }
}

export class Sigmoid extends Module {
  override forward(x: tf.Tensor): tf.Tensor {
    return tf.sigmoid(x);
  }
}

export class Tanh extends Module {
  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tanh(x);
  }
}

/** x·sigmoid(x) (a.k.a. Swish). */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

export class SiLU extends Module {
  override forward(x: tf.Tensor): tf.Tensor {
    return silu(x);
  }
}

/** Softmax along any axis (tfjs's own only supports the last one, so others go through a transpose). */
export function softmax(x: tf.Tensor, axis = -1): tf.Tensor {
  const rank = x.rank;
  const ax = axis < 0 ? rank + axis : axis;
  if (ax < 0 || ax >= rank) throw new ConfigError(`softmax axis ${axis} is out of range for a rank-${rank} tensor`);
  if (ax === rank - 1) return tf.softmax(x);
  return tf.tidy(() => {
    const perm = [...Array(rank).keys()];
    perm[ax] = rank - 1;
    perm[rank - 1] = ax;
    // A swap of two axes is its own inverse.
    return tf.transpose(tf.softmax(tf.transpose(x, perm)), perm);
  });
}

export class Softmax extends Module {
  constructor(readonly axis = -1) {
    super();
  }
  override forward(x: tf.Tensor): tf.Tensor {
    return softmax(x, this.axis);
  }
}
