import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, WeightLoadError, type WeightProblem } from '../errors.js';
import { setModuleCheckpointing } from '../autodiff/checkpoint.js';
import { processWide } from '../process_wide.js';

/**
 * How a parameter's layout differs from PyTorch's. `weights/convert.ts` is the one place that
 * turns official layouts into ours; modules only declare the kind.
 * - `linear`:    ours `[in, out]`,          PyTorch `[out, in]`
 * - `conv2d`:    ours `[kh, kw, in/g, out]`, PyTorch `[out, in/g, kh, kw]`
 * - `depthwise`: ours `[kh, kw, C, m]`,     PyTorch `[C·m, 1, kh, kw]`
 * - `conv1d`:    ours `[k, in/g, out]`,     PyTorch `[out, in/g, k]`
 * - `plain`:     identical layouts (norm weights, biases, tokens, tables…)
 */
export type ParamKind = 'linear' | 'conv2d' | 'depthwise' | 'conv1d' | 'plain';

export interface ParameterOptions {
  kind?: ParamKind;
  trainable?: boolean;
  /** Exclude from weight decay (timm's `no_weight_decay`): tokens, position tables, LayerScale… */
  noWeightDecay?: boolean;
}

export interface BufferOptions {
  kind?: ParamKind;
  /** Non-persistent buffers are not part of the state dict (PyTorch's `persistent=False`). */
  persistent?: boolean;
}

/** A parameter or buffer slot as the module holds it. */
export interface StateEntry {
  variable: tf.Variable;
  kind: ParamKind;
  isParameter: boolean;
  noWeightDecay: boolean;
  persistent: boolean;
}

/** Shared by the CommonJS and ESM builds: TF.js has one variable namespace per process. */
const variableCounter = processWide('variableCounter', () => ({ n: 0 }));
/** TF.js variable names are global and must be unique; the dotted path stays the module's own naming. */
function uniqueVariableName(local: string): string {
  variableCounter.n += 1;
  return `vit_${variableCounter.n}_${local}`;
}

/** The element budget of a model being built by `buildWithinBudget` (null when unbounded). */
let budget: { limit: number; used: number; what: string; created: tf.Variable[] } | null = null;

function chargeBudget(name: string, init: tf.Tensor): void {
  if (!budget) return;
  budget.used += init.size;
  if (budget.used > budget.limit) {
    init.dispose();
    throw new ConfigError(
      `${budget.what} asks for a model with more than ${budget.limit.toLocaleString('en-US')} parameter and buffer elements (reached ${budget.used.toLocaleString('en-US')} at '${name}'); refusing to build it`,
    );
  }
}

/**
 * Runs `build` (a model constructor) refusing to allocate more than `maxElements` parameter and
 * buffer elements in all: a config from a file (a checkpoint's config.json) can ask for a model of
 * any size, and building one with `depth: 100000` takes minutes and gigabytes before anything can
 * check it. On refusal (a `ConfigError` naming `what`) every variable already built is disposed.
 */
export function buildWithinBudget<T>(maxElements: number, what: string, build: () => T): T {
  const outer = budget;
  const mine = { limit: maxElements, used: 0, what, created: [] as tf.Variable[] };
  budget = mine;
  try {
    return build();
  } catch (e) {
    for (const v of mine.created) if (!v.isDisposed) v.dispose();
    throw e;
  } finally {
    budget = outer;
    if (outer) {
      outer.used += mine.used;
      outer.created.push(...mine.created);
    }
  }
}

export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

export interface SummaryRow {
  name: string;
  type: string;
  outputShape: number[][];
  params: number;
}

export interface SummaryResult {
  rows: SummaryRow[];
  totalParams: number;
  trainableParams: number;
  nonTrainableParams: number;
  inputShape: number[];
  outputShape: number[][];
  /** The table as text, in the style of paddle.summary. */
  text: string;
  toString(): string;
}

/**
 * A PyTorch-like module on tfjs-core. Children registered with `register` give hierarchical names
 * (`blocks.3.attn.qkv.weight`) identical to the official state_dict keys.
 *
 * `forward` is pure tfjs ops and never disposes its inputs; callers wrap calls in `tf.tidy`.
 */
export abstract class Module {
  training = true;
  private readonly _params = new Map<string, StateEntry>();
  private readonly _buffers = new Map<string, StateEntry>();
  private readonly _modules = new Map<string, Module | null>();

  abstract forward(...args: any[]): any;

  /** The class name shown in summaries and errors. */
  get typeName(): string {
    return this.constructor.name;
  }

  /**
   * Registers a child module under `name`. The same module may be registered under several names
   * (RegionViT's `proj`/`proj_cls`): the state dict then has every name, `parameters()` each
   * variable once, as in PyTorch. `null` reserves a name that has no module (PyTorch `None`).
   */
  register<T extends Module | null>(name: string, module: T): T {
    if (!name || name.includes('.')) throw new ConfigError(`Invalid module name '${name}': must be non-empty and contain no '.'`);
    if (this._params.has(name) || this._buffers.has(name)) {
      throw new ConfigError(`Cannot register module '${name}' on ${this.typeName}: a parameter or buffer has that name`);
    }
    this._modules.set(name, module);
    return module;
  }

  /**
   * Adds a parameter initialised from `init`. Takes ownership of `init` (it is disposed), so an
   * initialiser can be passed directly without leaking.
   */
  addParameter(name: string, init: tf.Tensor, options: ParameterOptions = {}): tf.Variable {
    this.checkNewName(name, init);
    chargeBudget(name, init);
    const trainable = options.trainable ?? true;
    const variable = tf.variable(init, trainable, uniqueVariableName(name));
    init.dispose();
    budget?.created.push(variable);
    this._params.set(name, {
      variable,
      kind: options.kind ?? 'plain',
      isParameter: true,
      noWeightDecay: options.noWeightDecay ?? false,
      persistent: true,
    });
    return variable;
  }

  /** Adds a buffer (state that is not trained: BatchNorm running stats…). Takes ownership of `init`. */
  addBuffer(name: string, init: tf.Tensor, options: BufferOptions = {}): tf.Variable {
    this.checkNewName(name, init);
    chargeBudget(name, init);
    const variable = tf.variable(init, false, uniqueVariableName(name));
    init.dispose();
    budget?.created.push(variable);
    this._buffers.set(name, {
      variable,
      kind: options.kind ?? 'plain',
      isParameter: false,
      noWeightDecay: true,
      persistent: options.persistent ?? true,
    });
    return variable;
  }

  /** Ownership of `init` was passed in, so a refused name must still release it. */
  private checkNewName(name: string, init: tf.Tensor): void {
    try {
      this.checkName(name);
    } catch (e) {
      init.dispose();
      throw e;
    }
  }

  private checkName(name: string): void {
    if (!name || name.includes('.')) throw new ConfigError(`Invalid parameter name '${name}': must be non-empty and contain no '.'`);
    if (this._params.has(name) || this._buffers.has(name) || this._modules.has(name)) {
      throw new ConfigError(`${this.typeName} already has a member named '${name}'`);
    }
  }

  /** Direct children, in registration order (null slots skipped). */
  *namedChildren(): Generator<[string, Module]> {
    for (const [name, m] of this._modules) if (m) yield [name, m];
  }

  children(): Module[] {
    return [...this.namedChildren()].map(([, m]) => m);
  }

  /** This module and all descendants with their dotted names; a module registered twice is visited once. */
  namedModules(prefix = '', seen = new Set<Module>()): Array<[string, Module]> {
    if (seen.has(this)) return [];
    seen.add(this);
    const out: Array<[string, Module]> = [[prefix, this]];
    for (const [name, child] of this.namedChildren()) {
      out.push(...child.namedModules(prefix ? `${prefix}.${name}` : name, seen));
    }
    return out;
  }

  /** Every state slot under every name it has (aliases included), in registration order. */
  namedStateEntries(prefix = ''): Array<[string, StateEntry]> {
    const out: Array<[string, StateEntry]> = [];
    const join = (n: string) => (prefix ? `${prefix}.${n}` : n);
    for (const [n, e] of this._params) out.push([join(n), e]);
    for (const [n, e] of this._buffers) out.push([join(n), e]);
    for (const [n, child] of this.namedChildren()) out.push(...child.namedStateEntries(join(n)));
    return out;
  }

  /** Parameters with their dotted names, each variable once (first name wins), as PyTorch. */
  namedParameters(options: { trainableOnly?: boolean } = {}): Array<[string, tf.Variable]> {
    const seen = new Set<tf.Variable>();
    const out: Array<[string, tf.Variable]> = [];
    for (const [name, e] of this.namedStateEntries()) {
      if (!e.isParameter || seen.has(e.variable)) continue;
      if (options.trainableOnly && !e.variable.trainable) continue;
      seen.add(e.variable);
      out.push([name, e.variable]);
    }
    return out;
  }

  parameters(options: { trainableOnly?: boolean } = {}): tf.Variable[] {
    return this.namedParameters(options).map(([, v]) => v);
  }

  namedBuffers(): Array<[string, tf.Variable]> {
    const seen = new Set<tf.Variable>();
    const out: Array<[string, tf.Variable]> = [];
    for (const [name, e] of this.namedStateEntries()) {
      if (e.isParameter || seen.has(e.variable)) continue;
      seen.add(e.variable);
      out.push([name, e.variable]);
    }
    return out;
  }

  buffers(): tf.Variable[] {
    return this.namedBuffers().map(([, v]) => v);
  }

  /** Names of parameters excluded from weight decay by declaration (see `ParameterOptions`). */
  noWeightDecayNames(): string[] {
    return this.namedStateEntries()
      .filter(([, e]) => e.isParameter && e.noWeightDecay)
      .map(([n]) => n);
  }

  /**
   * Parameters and persistent buffers by dotted name, in our (NHWC) layouts. Every alias appears.
   * The tensors are the module's own variables: read them, do not dispose them.
   */
  stateDict(): Record<string, tf.Tensor> {
    const out: Record<string, tf.Tensor> = {};
    for (const [name, e] of this.namedStateEntries()) if (e.persistent) out[name] = e.variable;
    return out;
  }

  /** Persistent state entries by name (every alias), for the weight converters. */
  stateEntries(): Map<string, StateEntry> {
    return new Map(this.namedStateEntries().filter(([, e]) => e.persistent));
  }

  /**
   * Loads a state dict in our layouts. Everything is checked first; on any missing (strict),
   * unexpected (strict) or mis-shaped key one `WeightLoadError` lists them all and no parameter
   * changes. A variable registered under several names is satisfied by any of them.
   */
  loadStateDict(stateDict: Record<string, tf.Tensor>, options: { strict?: boolean } = {}): LoadResult {
    const strict = options.strict ?? true;
    const entries = this.stateEntries();
    const problems: WeightProblem[] = [];
    const unexpectedKeys: string[] = [];
    for (const [key, t] of Object.entries(stateDict)) {
      const e = entries.get(key);
      if (!e) {
        unexpectedKeys.push(key);
        if (strict) problems.push({ key, problem: 'unexpected', got: `shape [${t.shape.join(', ')}]` });
        continue;
      }
      if (!shapesEqual(e.variable.shape, t.shape)) {
        problems.push({ key, problem: 'shape', expected: `[${e.variable.shape.join(', ')}]`, got: `[${t.shape.join(', ')}]` });
      } else if ((t.dtype === 'string') !== (e.variable.dtype === 'string')) {
        problems.push({ key, problem: 'dtype', expected: e.variable.dtype, got: t.dtype });
      }
    }
    const provided = new Set<tf.Variable>();
    for (const [key, e] of entries) if (key in stateDict) provided.add(e.variable);
    const missingKeys: string[] = [];
    for (const [key, e] of entries) {
      if (!provided.has(e.variable)) {
        missingKeys.push(key);
        if (strict) problems.push({ key, problem: 'missing', expected: `[${e.variable.shape.join(', ')}]` });
      }
    }
    if (problems.length) throw new WeightLoadError(problems);
    const done = new Set<tf.Variable>();
    for (const [key, e] of entries) {
      const t = stateDict[key];
      if (!t || done.has(e.variable)) continue;
      done.add(e.variable);
      tf.tidy(() => e.variable.assign(t.dtype === e.variable.dtype ? t : tf.cast(t, e.variable.dtype)));
    }
    return { missingKeys, unexpectedKeys };
  }

  /** Sets training mode here and in every descendant. */
  train(mode = true): this {
    this.training = mode;
    for (const c of this.children()) c.train(mode);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Freezes (or unfreezes) every parameter: frozen variables get no gradient from optimizers. */
  requiresGrad(flag: boolean): this {
    for (const [, e] of this.namedStateEntries()) if (e.isParameter) e.variable.trainable = flag;
    return this;
  }

  /** Number of parameter elements, each shared variable counted once (PyTorch's `sum(p.numel())`). */
  /**
   * Activation checkpointing, timm's `set_grad_checkpointing`: each of `gradCheckpointUnits()`
   * (a model's blocks) runs its forward without keeping intermediates for the backward pass, which
   * recomputes them (`@vit/core` `checkpoint`). Gradients are unchanged; a training step then holds
   * one tensor per block instead of all of every block's, for about one more forward pass of work.
   */
  setGradCheckpointing(enable = true): this {
    const units = this.gradCheckpointUnits();
    if (units.length === 0) throw new ConfigError(`${this.typeName} has no blocks to checkpoint (it does not override gradCheckpointUnits())`);
    setModuleCheckpointing(units, enable);
    this.gradCheckpointingOn = enable;
    return this;
  }

  /** Whether `setGradCheckpointing(true)` is in effect. */
  get gradCheckpointing(): boolean {
    return this.gradCheckpointingOn;
  }

  private gradCheckpointingOn = false;

  /** The modules `setGradCheckpointing` recomputes (a model's blocks); none by default. */
  protected gradCheckpointUnits(): Module[] {
    return [];
  }

  numParams(options: { trainableOnly?: boolean } = {}): number {
    return this.parameters(options).reduce((s, v) => s + v.size, 0);
  }

  /** Calls `fn` on every module, children first (PyTorch's `apply`), for custom initialisation. */
  apply(fn: (m: Module, name: string) => void): this {
    const mods = this.namedModules();
    for (let i = mods.length - 1; i >= 0; i--) fn(mods[i]![1], mods[i]![0]);
    return this;
  }

  /** Disposes every parameter and buffer of this module and its descendants. */
  dispose(): void {
    const seen = new Set<tf.Variable>();
    for (const [, e] of this.namedStateEntries()) {
      if (seen.has(e.variable)) continue;
      seen.add(e.variable);
      e.variable.dispose();
    }
  }

  /**
   * A layer table like paddle.summary: each module call in execution order with its output shape
   * and its own parameter count, then totals. Runs one forward pass in eval mode on zeros of
   * `inputShape` (NHWC, batch included) and restores the previous mode.
   */
  summary(inputShape: number[]): SummaryResult {
    const rows: SummaryRow[] = [];
    const mods = this.namedModules();
    const originals: Array<[Module, unknown]> = [];
    for (const [name, m] of mods) {
      const own = [...m._params.values()].reduce((s, e) => s + e.variable.size, 0);
      const fwd = m.forward;
      originals.push([m, Object.prototype.hasOwnProperty.call(m, 'forward') ? fwd : undefined]);
      const wrapped = (...args: unknown[]) => {
        const row: SummaryRow = { name: name || '(model)', type: m.typeName, outputShape: [], params: own };
        rows.push(row);
        const out = fwd.apply(m, args);
        row.outputShape = collectShapes(out);
        return out;
      };
      (m as { forward: unknown }).forward = wrapped;
    }
    const wasTraining = this.training;
    this.eval();
    let outputShape: number[][] = [];
    try {
      tf.tidy(() => {
        const x = tf.zeros(inputShape);
        const out = this.forward(x);
        outputShape = collectShapes(out);
      });
    } finally {
      for (const [m, own] of originals) {
        if (own === undefined) delete (m as { forward?: unknown }).forward;
        else (m as { forward: unknown }).forward = own;
      }
      this.train(wasTraining);
    }
    // The root call is the whole model: keep it out of the table, its totals are the footer.
    const body = rows.filter((r) => r.name !== '(model)');
    const totalParams = this.numParams();
    const trainableParams = this.numParams({ trainableOnly: true });
    const text = formatSummary(body, totalParams, trainableParams, inputShape, outputShape);
    return {
      rows: body,
      totalParams,
      trainableParams,
      nonTrainableParams: totalParams - trainableParams,
      inputShape,
      outputShape,
      text,
      toString: () => text,
    };
  }
}

function shapesEqual(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function collectShapes(out: unknown): number[][] {
  if (out instanceof tf.Tensor) return [out.shape.slice()];
  if (Array.isArray(out)) return out.flatMap((o) => collectShapes(o));
  if (out && typeof out === 'object') return Object.values(out).flatMap((o) => collectShapes(o));
  return [];
}

function formatSummary(rows: SummaryRow[], total: number, trainable: number, inputShape: number[], outputShape: number[][]): string {
  const fmtShape = (s: number[][]) => s.map((x) => `[${x.join(', ')}]`).join(', ');
  const cells = rows.map((r) => [`${r.name} (${r.type})`, fmtShape(r.outputShape), r.params.toLocaleString('en-US')]);
  const head = ['Layer (type)', 'Output Shape', 'Param #'];
  const w = [0, 1, 2].map((i) => Math.max(head[i]!.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => ` ${c[0]!.padEnd(w[0]!)}   ${c[1]!.padEnd(w[1]!)}   ${c[2]!.padStart(w[2]!)}`;
  const width = w[0]! + w[1]! + w[2]! + 7;
  const bytes = (n: number) => ((n * 4) / 1024 / 1024).toFixed(2);
  const inputSize = inputShape.reduce((a, b) => a * b, 1);
  const act = rows.reduce((s, r) => s + r.outputShape.reduce((a, sh) => a + sh.reduce((x, y) => x * y, 1), 0), 0);
  return [
    '-'.repeat(width),
    line(head),
    '='.repeat(width),
    ...cells.map(line),
    '='.repeat(width),
    `Total params: ${total.toLocaleString('en-US')}`,
    `Trainable params: ${trainable.toLocaleString('en-US')}`,
    `Non-trainable params: ${(total - trainable).toLocaleString('en-US')}`,
    '-'.repeat(width),
    `Input shape: [${inputShape.join(', ')}]   Output shape: ${fmtShape(outputShape)}`,
    `Input size (MB): ${bytes(inputSize)}`,
    `Forward/backward pass size (MB): ${bytes(act * 2)}`,
    `Params size (MB): ${bytes(total)}`,
    '-'.repeat(width),
  ].join('\n');
}
