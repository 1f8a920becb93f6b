import * as tf from '@tensorflow/tfjs-core';

/**
 * Plumbing for kernels written in terms of other kernels of the same backend. A replacement kernel
 * calls the backend's own kernel functions directly (`getKernel(name, backend).kernelFunc`), not
 * `tf.engine().runKernel`: that keeps the engine's tape, profiler and tensor counts out of it and
 * costs nothing per call. Every intermediate is a `TensorInfo` holding one reference on its
 * `dataId` (reshapes share data and take a reference), so a `Scope` disposes each one once.
 */

export type Info = tf.TensorInfo;
type Attrs = Record<string, unknown>;

/** The part of a tfjs `KernelBackend` every replacement kernel uses. */
export interface BackendLike {
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
  incRef(dataId: tf.DataId): void;
}

/** Kernel configs we replaced, so a replacement can still call the original (`stock`). */
const stock = new Map<string, tf.KernelConfig>();
const key = (name: string, backend: string) => `${backend}/${name}`;

export function rememberStock(config: tf.KernelConfig): void {
  stock.set(key(config.kernelName, config.backendName), config);
}

export function forgetStock(name: string, backend: string): tf.KernelConfig | undefined {
  const c = stock.get(key(name, backend));
  stock.delete(key(name, backend));
  return c;
}

/** The kernel tfjs shipped for `name` on `backend` (ours replaced it, or nothing did). */
export function stockKernel(name: string, backend: string): tf.KernelConfig | undefined {
  return stock.get(key(name, backend)) ?? tf.getKernel(name, backend);
}

/** Runs the kernel tfjs shipped for `name` on `backend`: where a replacement falls back to it. */
export function runStock(name: string, backend: string, args: Parameters<tf.KernelFunc>[0]): Info | Info[] {
  const k = stockKernel(name, backend);
  if (!k) throw new Error(`kernel '${name}' is not registered for backend '${backend}'`);
  return k.kernelFunc(args) as Info | Info[];
}

export class Scope {
  private readonly temps: Info[] = [];

  constructor(readonly backend: BackendLike, readonly backendName: string) {}

  /** Runs the kernel registered now (ours where we replaced it) or, with `stockOnly`, tfjs's own. */
  run(name: string, inputs: Record<string, Info>, attrs: Attrs = {}, stockOnly = false): Info {
    const config = stockOnly ? stockKernel(name, this.backendName) : tf.getKernel(name, this.backendName);
    if (!config) throw new Error(`kernel '${name}' is not registered for backend '${this.backendName}'`);
    const out = config.kernelFunc({ inputs, backend: this.backend, attrs: attrs as tf.NamedAttrMap });
    if (Array.isArray(out)) throw new Error(`kernel '${name}' returned several outputs where one was expected`);
    this.temps.push(out);
    return out;
  }

  /** Activations a fused conv/matmul kernel may carry (tfjs's `backend_util.Activation`). */
  static readonly FUSED_ACTIVATIONS: ReadonlySet<string> = new Set(['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu', 'prelu']);

  /** The epilogue of a fused conv/matmul: `+ bias`, then the activation, as separate kernels. */
  biasAndActivation(y: Info, bias: Info | undefined, activation: string | undefined, prelu: Info | undefined, leakyreluAlpha: number | undefined, kernel: string): Info {
    if (bias) y = this.run('Add', { a: y, b: bias });
    switch (activation ?? 'linear') {
      case 'linear':
        return y;
      case 'relu':
        return this.run('Relu', { x: y });
      case 'relu6':
        return this.run('Relu6', { x: y });
      case 'elu':
        return this.run('Elu', { x: y });
      case 'sigmoid':
        return this.run('Sigmoid', { x: y });
      case 'leakyrelu':
        return this.run('LeakyRelu', { x: y }, { alpha: leakyreluAlpha ?? 0.2 });
      case 'prelu':
        return this.run('Prelu', { x: y, alpha: prelu! });
      default:
        throw new Error(`${kernel}: unknown activation '${String(activation)}'`);
    }
  }

  /** Adopts a TensorInfo made outside `run` (e.g. `makeOutput`) so it is disposed with the rest. */
  adopt(info: Info): Info {
    this.temps.push(info);
    return info;
  }

  reshape(x: Info, shape: number[]): Info {
    if (sameShape(x.shape, shape) && this.owns(x)) return x;
    return this.run('Reshape', { x }, { shape });
  }

  transpose(x: Info, perm: number[]): Info {
    return this.run('Transpose', { x }, { perm });
  }

  pad(x: Info, paddings: Array<[number, number]>, constantValue = 0): Info {
    if (paddings.every(([a, b]) => a === 0 && b === 0)) return x;
    return this.run('PadV2', { x }, { paddings, constantValue });
  }

  slice(x: Info, begin: number[], size: number[]): Info {
    if (begin.every((b) => b === 0) && sameShape(size, x.shape)) return x;
    return this.run('Slice', { x }, { begin, size });
  }

  /** Pads where `pairs` are positive and crops where they are negative. */
  padOrCrop(x: Info, pairs: Array<[number, number]>): Info {
    const begin = pairs.map(([b]) => Math.max(0, -b));
    const size = x.shape.map((d, i) => d - begin[i]! - Math.max(0, -pairs[i]![1]));
    const cropped = this.slice(x, begin, size);
    return this.pad(
      cropped,
      pairs.map(([b, a]) => [Math.max(0, b), Math.max(0, a)] as [number, number]),
    );
  }

  reverse(x: Info, dims: number[]): Info {
    return this.run('Reverse', { x }, { dims });
  }

  sum(x: Info, axis: number[]): Info {
    return this.run('Sum', { x }, { axis, keepDims: false });
  }

  /**
   * Inserts `s − 1` zeros between neighbours along axes 1 and 2 of an NHWC tensor (the transposed
   * conv's input), as reshape → pad → reshape → crop: no scatter kernel needed.
   */
  dilateSpatial(x: Info, sh: number, sw: number): Info {
    if (sh === 1 && sw === 1) return x;
    const [n, h, w, c] = x.shape as [number, number, number, number];
    const six = this.reshape(x, [n, h, 1, w, 1, c]);
    const padded = this.pad(six, [
      [0, 0],
      [0, 0],
      [0, sh - 1],
      [0, 0],
      [0, sw - 1],
      [0, 0],
    ]);
    const flat = this.reshape(padded, [n, h * sh, w * sw, c]);
    return this.slice(flat, [0, 0, 0, 0], [n, (h - 1) * sh + 1, (w - 1) * sw + 1, c]);
  }

  private owns(x: Info): boolean {
    return this.temps.includes(x);
  }

  /** Disposes every intermediate except `result`, which the caller (the engine) takes over. */
  end(result: Info): Info {
    let kept = false;
    for (const t of this.temps) {
      if (!kept && t === result) {
        kept = true;
        continue;
      }
      this.backend.disposeData(t.dataId);
    }
    this.temps.length = 0;
    // An input passed through unchanged (a no-op pad or slice): the output takes a reference, as
    // tfjs's own Identity and Reshape do.
    if (!kept) this.backend.incRef(result.dataId);
    return result;
  }

  disposeAll(): void {
    for (const t of this.temps) this.backend.disposeData(t.dataId);
    this.temps.length = 0;
  }
}

/** Runs `f` in a scope: intermediates are freed whether it returns or throws. */
export function scoped(backend: unknown, backendName: string, f: (s: Scope) => Info): Info {
  const s = new Scope(backend as BackendLike, backendName);
  let result: Info;
  try {
    result = f(s);
  } catch (e) {
    s.disposeAll();
    throw e;
  }
  return s.end(result);
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

const fusedReady = new WeakMap<object, Map<string, boolean>>();

/**
 * Whether the current backend runs our fused kernels `names`: wasm with them registered and their
 * SIMD modules loading there (`available`, checked once per backend instance), or tensorflow
 * (tfjs-node) with them registered (`installTensorflowKernels`: training BatchNorm). Ops with a
 * fused kernel (exact GELU, LayerNorm, training BatchNorm) run their composed form everywhere else.
 */
export function fusedKernelsReady(names: readonly string[], available: (backend: unknown) => boolean): boolean {
  if (tf.getBackend() === 'tensorflow') return names.every((n) => !!tf.getKernel(n, 'tensorflow'));
  if (tf.getBackend() !== 'wasm' || names.some((n) => !tf.getKernel(n, 'wasm'))) return false;
  const backend = tf.backend() as object;
  let m = fusedReady.get(backend);
  if (!m) fusedReady.set(backend, (m = new Map()));
  const key = names.join(',');
  let ok = m.get(key);
  if (ok === undefined) m.set(key, (ok = available(backend)));
  return ok;
}
