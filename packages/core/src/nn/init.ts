import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import type { ParamKind } from './module.js';

/**
 * Tensor factories for parameter initialisation, following `torch.nn.init` / timm. Every random
 * factory takes an optional `seed`; without one it draws from `Math.random`. The returned tensor is
 * a fresh one: hand it straight to `addParameter` (which takes ownership) or to `assignInit`.
 */

export type Shape = readonly number[];

export interface SeedOption {
  seed?: number;
}

export type Nonlinearity =
  | 'linear'
  | 'conv1d'
  | 'conv2d'
  | 'conv3d'
  | 'sigmoid'
  | 'tanh'
  | 'relu'
  | 'leaky_relu'
  | 'selu';

/** `torch.nn.init.calculate_gain`. */
export function calculateGain(nonlinearity: Nonlinearity, param?: number): number {
  switch (nonlinearity) {
    case 'linear':
    case 'conv1d':
    case 'conv2d':
    case 'conv3d':
    case 'sigmoid':
      return 1;
    case 'tanh':
      return 5 / 3;
    case 'relu':
      return Math.SQRT2;
    case 'leaky_relu': {
      const slope = param ?? 0.01;
      return Math.sqrt(2 / (1 + slope * slope));
    }
    case 'selu':
      return 3 / 4;
    default:
      throw new ConfigError(`Unsupported nonlinearity '${String(nonlinearity)}'`);
  }
}

export interface Fans {
  fanIn: number;
  fanOut: number;
}

/**
 * PyTorch's `_calculate_fan_in_and_fan_out` for a parameter stored in OUR layout of `kind`.
 * PyTorch does not divide fan_out by groups, so neither do we (depthwise fan_out = C·m·kh·kw).
 */
export function computeFans(shape: Shape, kind: ParamKind): Fans {
  const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);
  switch (kind) {
    case 'linear':
      if (shape.length !== 2) throw new ConfigError(`linear weight must be [in, out], got [${shape.join(', ')}]`);
      return { fanIn: shape[0]!, fanOut: shape[1]! };
    case 'conv2d': {
      if (shape.length !== 4) throw new ConfigError(`conv2d weight must be [kh, kw, in/g, out], got [${shape.join(', ')}]`);
      const rf = shape[0]! * shape[1]!;
      return { fanIn: rf * shape[2]!, fanOut: rf * shape[3]! };
    }
    case 'depthwise': {
      if (shape.length !== 4) throw new ConfigError(`depthwise weight must be [kh, kw, C, m], got [${shape.join(', ')}]`);
      const rf = shape[0]! * shape[1]!;
      return { fanIn: rf, fanOut: rf * shape[2]! * shape[3]! };
    }
    case 'conv1d':
      if (shape.length !== 3) throw new ConfigError(`conv1d weight must be [k, in/g, out], got [${shape.join(', ')}]`);
      return { fanIn: shape[0]! * shape[1]!, fanOut: shape[0]! * shape[2]! };
    case 'plain':
    default: {
      // PyTorch's rule for an OIHW-like tensor: dim 1 is "in", dim 0 is "out", the rest receptive field.
      if (shape.length < 2) throw new ConfigError(`Fan in and fan out need at least 2 dimensions, got [${shape.join(', ')}]`);
      const rf = prod(shape.slice(2));
      return { fanIn: shape[1]! * rf, fanOut: shape[0]! * rf };
    }
  }
}

/** mulberry32: small, fast, good enough for initialisation; deterministic per seed. */
function makeRng(seed?: number): () => number {
  if (seed === undefined) return Math.random;
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Complementary error function, Numerical Recipes' Chebyshev fit (relative error < 1.2e-7). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

function normCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

/** Inverse standard-normal CDF: Acklam's rational approximation plus one Halley step. */
function normIcdf(p: number): number {
  if (p <= 0) return -Infinity;
  if (p >= 1) return Infinity;
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const plow = 0.02425;
  let x: number;
  if (p < plow) {
    const q = Math.sqrt(-2 * Math.log(p));
    x = (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  } else if (p <= 1 - plow) {
    const q = p - 0.5;
    const r = q * q;
    x =
      ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) /
      (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
  } else {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    x = -(((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  const e = normCdf(x) - p;
  const u = e * Math.sqrt(2 * Math.PI) * Math.exp((x * x) / 2);
  return x - u / (1 + (x * u) / 2);
}

function size(shape: Shape): number {
  return shape.reduce((a, b) => a * b, 1);
}

export interface TruncNormalOptions extends SeedOption {
  mean?: number;
  std?: number;
  /** Absolute lower bound (timm's `a`, NOT in units of std). */
  a?: number;
  /** Absolute upper bound (timm's `b`). */
  b?: number;
}

/**
 * timm's `trunc_normal_`: N(mean, std²) truncated to the ABSOLUTE interval [a, b] (default ±2, so
 * with std 0.02 it is effectively untruncated). Inverse-CDF sampling as timm does, so narrow or
 * far-off intervals cost the same as wide ones.
 */
export function truncNormal(shape: Shape, options: TruncNormalOptions = {}): tf.Tensor {
  const { mean = 0, std = 1, a = -2, b = 2, seed } = options;
  if (!(std >= 0)) throw new ConfigError(`truncNormal: std must be >= 0, got ${std}`);
  if (!(a < b)) throw new ConfigError(`truncNormal: need a < b, got a=${a}, b=${b}`);
  const rng = makeRng(seed);
  const n = size(shape);
  const out = new Float32Array(n);
  if (std === 0) {
    out.fill(Math.min(Math.max(mean, a), b));
  } else {
    const lo = normCdf((a - mean) / std);
    const hi = normCdf((b - mean) / std);
    if (hi - lo > 0.25) {
      // Rejection from Box–Muller pairs: ~10x faster than the inverse CDF (it matters for
      // 50M-parameter models) and exact; expected draws per value are 1/(hi-lo) ≤ 4.
      let i = 0;
      while (i < n) {
        const r = Math.sqrt(-2 * Math.log(1 - rng()));
        const t = 2 * Math.PI * rng();
        const v1 = mean + std * r * Math.cos(t);
        const v2 = mean + std * r * Math.sin(t);
        if (v1 >= a && v1 <= b) out[i++] = v1;
        if (i < n && v2 >= a && v2 <= b) out[i++] = v2;
      }
    } else {
      for (let i = 0; i < n; i++) {
        const v = mean + std * normIcdf(lo + (hi - lo) * rng());
        out[i] = Math.min(Math.max(v, a), b);
      }
    }
  }
  return tf.tensor(out, shape as number[], 'float32');
}

export interface UniformOptions extends SeedOption {
  low?: number;
  high?: number;
}

/** U(low, high), default U(0, 1). */
export function uniform(shape: Shape, options: UniformOptions = {}): tf.Tensor {
  const { low = 0, high = 1, seed } = options;
  return tf.randomUniform(shape as number[], low, high, 'float32', seed);
}

export interface NormalOptions extends SeedOption {
  mean?: number;
  std?: number;
}

/** N(mean, std²), default N(0, 1). */
export function normal(shape: Shape, options: NormalOptions = {}): tf.Tensor {
  const { mean = 0, std = 1, seed } = options;
  return tf.randomNormal(shape as number[], mean, std, 'float32', seed);
}

export interface XavierOptions extends SeedOption {
  gain?: number;
}

/** `xavier_uniform_`: U(−g·√(6/(fanIn+fanOut)), +…). */
export function xavierUniform(shape: Shape, fanIn: number, fanOut: number, options: XavierOptions = {}): tf.Tensor {
  const bound = (options.gain ?? 1) * Math.sqrt(6 / (fanIn + fanOut));
  return tf.randomUniform(shape as number[], -bound, bound, 'float32', options.seed);
}

/** `xavier_normal_`: N(0, g²·2/(fanIn+fanOut)). */
export function xavierNormal(shape: Shape, fanIn: number, fanOut: number, options: XavierOptions = {}): tf.Tensor {
  const std = (options.gain ?? 1) * Math.sqrt(2 / (fanIn + fanOut));
  return tf.randomNormal(shape as number[], 0, std, 'float32', options.seed);
}

export interface KaimingOptions extends SeedOption {
  /** Negative slope of the leaky ReLU after this layer (PyTorch default 0). */
  a?: number;
  mode?: 'fan_in' | 'fan_out';
  nonlinearity?: Nonlinearity;
}

function kaimingStd(fan: number | Fans, options: KaimingOptions): number {
  const { a = 0, mode = 'fan_in', nonlinearity = 'leaky_relu' } = options;
  let f: number;
  if (typeof fan === 'number') {
    if (mode === 'fan_out') throw new ConfigError("kaiming init with mode 'fan_out' needs { fanIn, fanOut } (e.g. computeFans(shape, kind)), got a single number");
    f = fan;
  } else {
    f = mode === 'fan_in' ? fan.fanIn : fan.fanOut;
  }
  if (!(f > 0)) throw new ConfigError(`kaiming init needs a positive fan, got ${f}`);
  return calculateGain(nonlinearity, a) / Math.sqrt(f);
}

/**
 * `kaiming_uniform_`: U(−b, b) with b = gain·√(3/fan). `fan` is fan_in as a number, or both fans
 * (`computeFans`) so that `mode` can pick. PyTorch's default Linear/Conv init is
 * `kaimingUniform(shape, fanIn, { a: Math.sqrt(5) })`, i.e. U(−1/√fanIn, 1/√fanIn).
 */
export function kaimingUniform(shape: Shape, fan: number | Fans, options: KaimingOptions = {}): tf.Tensor {
  const bound = Math.sqrt(3) * kaimingStd(fan, options);
  return tf.randomUniform(shape as number[], -bound, bound, 'float32', options.seed);
}

/** `kaiming_normal_`: N(0, (gain/√fan)²). */
export function kaimingNormal(shape: Shape, fan: number | Fans, options: KaimingOptions = {}): tf.Tensor {
  return tf.randomNormal(shape as number[], 0, kaimingStd(fan, options), 'float32', options.seed);
}

export function constant(shape: Shape, value: number): tf.Tensor {
  return tf.fill(shape as number[], value, 'float32');
}

export function zeros(shape: Shape): tf.Tensor {
  return tf.zeros(shape as number[], 'float32');
}

export function ones(shape: Shape): tf.Tensor {
  return tf.ones(shape as number[], 'float32');
}

/**
 * Re-initialises a parameter in place (timm's `_init_weights` style) and disposes `init`, so
 * `assignInit(m.weight, truncNormal(m.weight.shape, { std: 0.02 }))` leaks nothing.
 */
export function assignInit(variable: tf.Variable, init: tf.Tensor): void {
  try {
    if (variable.shape.length !== init.shape.length || variable.shape.some((d, i) => d !== init.shape[i])) {
      throw new ConfigError(`assignInit: expected shape [${variable.shape.join(', ')}], got [${init.shape.join(', ')}]`);
    }
    if (init.dtype === variable.dtype) {
      variable.assign(init);
    } else {
      const cast = tf.cast(init, variable.dtype);
      variable.assign(cast);
      cast.dispose();
    }
  } finally {
    init.dispose();
  }
}
