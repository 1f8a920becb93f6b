import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { Module } from './module.js';

function normIndex(i: number, n: number, what: string): number {
  const j = i < 0 ? n + i : i;
  if (!Number.isInteger(j) || j < 0 || j >= n) throw new ConfigError(`${what} index ${i} is out of range for length ${n}`);
  return j;
}

/** Returns its input unchanged (PyTorch `nn.Identity`; no parameters, no state-dict keys). */
export class Identity extends Module {
  override forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
}

/**
 * Modules applied one after another. Children are named '0', '1', … as in PyTorch, so a
 * `downsample_layers.0.2.running_mean`-style key resolves exactly.
 */
export class Sequential extends Module implements Iterable<Module> {
  private readonly items: Module[] = [];

  constructor(...modules: Module[]) {
    super();
    for (const m of modules) this.append(m);
  }

  get length(): number {
    return this.items.length;
  }

  /** The i-th module; negative indices count from the end, as in Python. */
  at(i: number): Module {
    return this.items[normIndex(i, this.items.length, 'Sequential')]!;
  }

  append(module: Module): this {
    this.register(String(this.items.length), module);
    this.items.push(module);
    return this;
  }

  [Symbol.iterator](): Iterator<Module> {
    return this.items[Symbol.iterator]();
  }

  override forward(x: tf.Tensor): tf.Tensor {
    let y = x;
    for (const m of this.items) y = m.forward(y);
    return y;
  }
}

/** A list of modules with PyTorch's '0', '1', … names; not callable itself. */
export class ModuleList<T extends Module = Module> extends Module implements Iterable<T> {
  private readonly items: T[] = [];

  constructor(modules: Iterable<T> = []) {
    super();
    for (const m of modules) this.append(m);
  }

  get length(): number {
    return this.items.length;
  }

  at(i: number): T {
    return this.items[normIndex(i, this.items.length, 'ModuleList')]!;
  }

  append(module: T): this {
    this.register(String(this.items.length), module);
    this.items.push(module);
    return this;
  }

  [Symbol.iterator](): Iterator<T> {
    return this.items[Symbol.iterator]();
  }

  /** The modules as a plain array (a copy). */
  toArray(): T[] {
    return [...this.items];
  }

  override forward(..._args: unknown[]): never {
    throw new ConfigError('ModuleList has no forward: iterate over it (for (const m of list)) and call each module');
  }
}
