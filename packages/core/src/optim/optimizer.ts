import * as tf from '@tensorflow/tfjs-core';
import { valueAndGrads } from '../autodiff/grad.js';
import { ConfigError, VitError } from '../errors.js';
import { Module } from '../nn/module.js';
import { processWide } from '../process_wide.js';
import { paramGroupsWeightDecay, type WeightDecayGroupOptions } from './param_groups.js';
import type { LRSchedule } from './schedules.js';

/** A parameter with the name its state is saved under (a module's dotted name, or its position). */
export type NamedVariable = [string, tf.Variable];

/** A group of parameters sharing a learning rate and weight decay (PyTorch's `param_groups`). */
export interface ParamGroupInput {
  params: Array<tf.Variable | NamedVariable>;
  /** Learning rate of this group (default: the optimizer's). */
  lr?: number;
  /** Weight decay of this group (default: the optimizer's). */
  weightDecay?: number;
  /** A label for logs and checkpoints (default `group<i>`). */
  name?: string;
}

/**
 * What an optimizer optimises: a Module (its trainable parameters; by default split into timm's
 * decay / no-decay groups, see `groupNoDecay`), a list of variables, or explicit groups.
 */
export type OptimizerParams = Module | Array<tf.Variable | NamedVariable> | ParamGroupInput[];

export interface ParamGroup {
  name: string;
  params: Array<{ name: string; variable: tf.Variable }>;
  /** The learning rate the next `step` uses (schedules set it). */
  lr: number;
  /** The group's base learning rate, from which schedules compute `lr` (PyTorch's `initial_lr`). */
  initialLr: number;
  weightDecay: number;
}

export interface BaseOptimizerOptions {
  lr: number;
  weightDecay?: number;
  /**
   * Only when a Module is given: put norms, biases, 1-D parameters, tokens, position tables,
   * LayerScale gammas and the model's declared no-decay parameters in a group without weight decay
   * (timm's `param_groups_weight_decay`). Default true. Set false to decay every parameter, as
   * `torch.optim.X(model.parameters(), weight_decay=…)` and the seeds' Paddle optimizers do.
   */
  groupNoDecay?: boolean;
  /** Extra options for the grouping (extra no-decay names, name patterns). */
  grouping?: Omit<WeightDecayGroupOptions, 'weightDecay'>;
}

/** Serialisable description of an optimizer (type and hyper-parameters), for checkpoints. */
export type OptimizerConfig =
  | { type: 'sgd'; lr: number; momentum: number; dampening: number; nesterov: boolean; weightDecay: number; groupNoDecay: boolean }
  | { type: 'adam'; lr: number; betas: [number, number]; eps: number; weightDecay: number; groupNoDecay: boolean }
  | { type: 'adamw'; lr: number; betas: [number, number]; eps: number; weightDecay: number; groupNoDecay: boolean };

/** Gradients keyed by variable name (what `tf.variableGrads` returns) or by variable. */
export type Gradients = tf.NamedTensorMap | Map<tf.Variable, tf.Tensor>;

/** Per-parameter optimizer state: step count and named slot tensors (exp_avg, momentum_buffer…). */
export interface ParamState {
  step: number;
  slots: Map<string, tf.Variable>;
}

/** The optimizer's state as JSON plus tensors, for checkpoints (see `stateDict`). */
export interface OptimizerState {
  config: OptimizerConfig;
  /** Number of `step` calls so far. */
  stepCount: number;
  groups: Array<{ name: string; lr: number; initialLr: number; weightDecay: number; params: string[] }>;
  /** Per parameter name: its own step count (PyTorch keeps one per parameter). */
  params: Record<string, { step: number }>;
  /** Slot tensors keyed `<param name>.<slot>`. In `stateDict()` these are the live variables: read, do not dispose. */
  tensors: Record<string, tf.Tensor>;
}

/** Shared by the CommonJS and ESM builds, like `Module`'s variable names (TF.js's names are per process). */
const slotCounter = processWide('slotCounter', () => ({ n: 0 }));

/**
 * Base class of our optimizers, with PyTorch's semantics: parameter groups, lazily created state,
 * parameters without a gradient skipped (no state change, no decay), per-parameter step counts.
 * Updates run inside `tf.tidy` and write the parameters with `Variable.assign`.
 */
export abstract class Optimizer {
  abstract readonly type: OptimizerConfig['type'];
  readonly paramGroups: ParamGroup[];
  /** Number of completed `step` calls. */
  stepCount = 0;
  protected readonly state = new Map<tf.Variable, ParamState>();
  private readonly scalars = new Map<number, tf.Scalar>();
  protected readonly groupNoDecay: boolean;
  /** The constructor's learning rate and weight decay (groups may override them). */
  protected readonly defaults: { lr: number; weightDecay: number };

  constructor(params: OptimizerParams, options: BaseOptimizerOptions) {
    const { lr, weightDecay = 0 } = options;
    checkNonNegative('learning rate', lr);
    checkNonNegative('weight decay', weightDecay);
    this.defaults = { lr, weightDecay };
    this.groupNoDecay = options.groupNoDecay ?? true;
    let inputs: ParamGroupInput[];
    // Duck-typed as well as instanceof, so a Module from another copy of @vit/core still works.
    if (params instanceof Module || (typeof params === 'object' && params !== null && !Array.isArray(params) && typeof (params as Module).namedParameters === 'function')) {
      inputs = this.groupNoDecay
        ? paramGroupsWeightDecay(params as Module, { ...options.grouping, weightDecay })
        : [{ name: 'all', params: (params as Module).namedParameters({ trainableOnly: true }) }];
    } else if (Array.isArray(params) && params.length > 0 && isGroupInput(params[0])) {
      inputs = params as ParamGroupInput[];
    } else if (Array.isArray(params)) {
      inputs = [{ params: params as Array<tf.Variable | NamedVariable> }];
    } else {
      throw new ConfigError('Optimizer params must be a Module, an array of variables or [name, variable] pairs, or an array of parameter groups');
    }
    const seen = new Map<tf.Variable, string>();
    const names = new Set<string>();
    this.paramGroups = inputs.map((g, gi) => {
      if (!g || !Array.isArray(g.params)) throw new ConfigError(`Parameter group ${gi} has no 'params' array`);
      const groupLr = g.lr ?? lr;
      const groupWd = g.weightDecay ?? weightDecay;
      checkNonNegative(`learning rate of group ${gi}`, groupLr);
      checkNonNegative(`weight decay of group ${gi}`, groupWd);
      const ps = g.params.map((p, pi) => {
        const [name, variable] = Array.isArray(p) ? p : [`${gi}.${pi}`, p];
        if (!(variable instanceof tf.Variable)) throw new ConfigError(`Parameter '${name}' of group ${gi} is not a tf.Variable`);
        if (variable.dtype !== 'float32') throw new ConfigError(`Parameter '${name}' is ${variable.dtype}; optimizers update float32 variables only`);
        const other = seen.get(variable);
        if (other !== undefined) throw new ConfigError(`Parameter '${name}' appears twice in the optimizer (also as '${other}')`);
        if (names.has(name)) throw new ConfigError(`Two parameters share the name '${name}'; names key the optimizer state`);
        seen.set(variable, name);
        names.add(name);
        return { name, variable };
      });
      return { name: g.name ?? `group${gi}`, params: ps, lr: groupLr, initialLr: groupLr, weightDecay: groupWd };
    });
  }

  /** The first group's current learning rate (the one logs show). */
  get lr(): number {
    return this.paramGroups[0]?.lr ?? 0;
  }

  /** Sets every group's learning rate from `schedule` at `step` (steps already taken) and its base rate. */
  applySchedule(schedule: LRSchedule, step: number): void {
    for (const g of this.paramGroups) g.lr = schedule.lr(step, g.initialLr);
  }

  /** The trainable parameters, in group order (frozen ones — `trainable = false` — are left out). */
  variables(): tf.Variable[] {
    return this.paramGroups.flatMap((g) => g.params.map((p) => p.variable)).filter((v) => v.trainable);
  }

  /** Named parameters in group order. */
  namedVariables(): NamedVariable[] {
    return this.paramGroups.flatMap((g) => g.params.map((p) => [p.name, p.variable] as NamedVariable));
  }

  /** The loss and its gradients over this optimizer's trainable parameters (`valueAndGrads`). The caller disposes the results. */
  computeGradients(loss: () => tf.Scalar): { value: tf.Scalar; grads: tf.NamedTensorMap } {
    return valueAndGrads(loss, this.variables());
  }

  /**
   * One step from `grads`: parameters without a gradient are skipped, as in PyTorch. Does not
   * dispose `grads`.
   */
  step(grads: Gradients): void {
    const lookup = (v: tf.Variable): tf.Tensor | undefined => (grads instanceof Map ? grads.get(v) : grads[v.name]);
    try {
      for (const group of this.paramGroups) {
        for (const { name, variable } of group.params) {
          const g = lookup(variable);
          if (!g || !variable.trainable) continue;
          if (g.dtype !== 'float32' || !sameShape(g.shape, variable.shape)) {
            throw new VitError(`Gradient for '${name}' is ${g.dtype} [${g.shape.join(', ')}], expected float32 [${variable.shape.join(', ')}]`, 'VIT_OPTIM');
          }
          let st = this.state.get(variable);
          if (!st) {
            st = { step: 0, slots: new Map() };
            this.state.set(variable, st);
          }
          st.step += 1;
          // One tidy per parameter frees its intermediates before the next one starts.
          tf.tidy(() => this.update(variable, g, group, st));
        }
      }
    } finally {
      tf.dispose([...this.scalars.values()]);
      this.scalars.clear();
    }
    this.stepCount += 1;
  }

  /** Computes the loss's gradients and steps; returns the loss (the caller disposes it). */
  minimize(loss: () => tf.Scalar): tf.Scalar {
    const { value, grads } = this.computeGradients(loss);
    try {
      this.step(grads);
    } finally {
      tf.dispose(grads);
    }
    return value;
  }

  /** Updates one parameter (called inside a tidy, with the state's step already incremented). */
  protected abstract update(param: tf.Variable, grad: tf.Tensor, group: ParamGroup, state: ParamState): void;

  abstract toConfig(): OptimizerConfig;

  /**
   * A float32 scalar shared by every parameter of the current step (`tf.mul(x, 0.9)` would upload a
   * new scalar per call: with ~150 parameters that was a quarter of AdamW's step on wasm).
   */
  protected scalar(value: number): tf.Scalar {
    let s = this.scalars.get(value);
    if (!s) {
      s = tf.keep(tf.scalar(value, 'float32'));
      this.scalars.set(value, s);
    }
    return s;
  }

  /** A state slot of `param`, created as zeros (or from `init`) on first use. */
  protected slot(state: ParamState, name: string, param: tf.Variable, init?: () => tf.Tensor): tf.Variable {
    let v = state.slots.get(name);
    if (!v) {
      slotCounter.n += 1;
      v = tf.variable(init ? init() : tf.zerosLike(param), false, `vit_optim_${slotCounter.n}_${name}`);
      state.slots.set(name, v);
    }
    return v;
  }

  /** The state of one parameter (undefined before its first step). */
  paramState(variable: tf.Variable): Readonly<ParamState> | undefined {
    return this.state.get(variable);
  }

  /**
   * The optimizer's state: hyper-parameters, groups (with parameter names), step counts and slot
   * tensors. The tensors are the optimizer's own variables; a checkpoint writer reads them.
   */
  stateDict(): OptimizerState {
    const tensors: Record<string, tf.Tensor> = {};
    const params: Record<string, { step: number }> = {};
    for (const g of this.paramGroups) {
      for (const { name, variable } of g.params) {
        const st = this.state.get(variable);
        if (!st) continue;
        params[name] = { step: st.step };
        for (const [slot, v] of st.slots) tensors[`${name}.${slot}`] = v;
      }
    }
    return {
      config: this.toConfig(),
      stepCount: this.stepCount,
      groups: this.paramGroups.map((g) => ({
        name: g.name,
        lr: g.lr,
        initialLr: g.initialLr,
        weightDecay: g.weightDecay,
        params: g.params.map((p) => p.name),
      })),
      params,
      tensors,
    };
  }

  /**
   * Restores a `stateDict()`: the same optimizer type, the same groups with the same parameter
   * names, slot tensors of the right shapes. Everything is checked first; on any problem one error
   * lists them all and nothing has changed. The tensors are copied (the caller keeps ownership).
   */
  loadStateDict(sd: Omit<OptimizerState, 'config'> & { config?: OptimizerConfig }): void {
    const problems: string[] = [];
    if (sd.config && sd.config.type !== this.type) problems.push(`optimizer type is '${sd.config.type}', this one is '${this.type}'`);
    if (!Array.isArray(sd.groups) || sd.groups.length !== this.paramGroups.length) {
      problems.push(`${sd.groups?.length ?? 0} parameter groups saved, this optimizer has ${this.paramGroups.length}`);
    } else {
      sd.groups.forEach((sg, i) => {
        const g = this.paramGroups[i]!;
        const want = g.params.map((p) => p.name);
        if (sg.params.length !== want.length || sg.params.some((n, j) => n !== want[j])) {
          const missing = want.filter((n) => !sg.params.includes(n));
          const extra = sg.params.filter((n) => !want.includes(n));
          problems.push(
            `group ${i} ('${g.name}') holds different parameters` +
              (missing.length ? `; not in the saved state: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? '…' : ''}` : '') +
              (extra.length ? `; saved but unknown here: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? '…' : ''}` : '') +
              (!missing.length && !extra.length ? ' (same names, different order)' : ''),
          );
        }
      });
    }
    const byName = new Map(this.namedVariables());
    const slotsFor = new Map<string, Map<string, tf.Tensor>>();
    for (const [key, t] of Object.entries(sd.tensors ?? {})) {
      const dot = key.lastIndexOf('.');
      const pname = key.slice(0, dot);
      const slot = key.slice(dot + 1);
      const v = byName.get(pname);
      if (dot <= 0 || !v) {
        problems.push(`state tensor '${key}' belongs to no parameter of this optimizer`);
        continue;
      }
      if (!this.slotNames().includes(slot)) {
        problems.push(`state tensor '${key}': '${slot}' is not a ${this.type} state slot (${this.slotNames().join(', ')})`);
        continue;
      }
      if (!sameShape(t.shape, v.shape)) problems.push(`state tensor '${key}' has shape [${t.shape.join(', ')}], parameter has [${v.shape.join(', ')}]`);
      if (!slotsFor.has(pname)) slotsFor.set(pname, new Map());
      slotsFor.get(pname)!.set(slot, t);
    }
    for (const [pname, st] of Object.entries(sd.params ?? {})) {
      if (!byName.has(pname)) problems.push(`step count for unknown parameter '${pname}'`);
      else if (!(Number.isInteger(st.step) && st.step >= 0)) problems.push(`step count of '${pname}' is ${st.step}`);
    }
    if (problems.length) throw new VitError(`Cannot load optimizer state (${problems.length} problem${problems.length > 1 ? 's' : ''}); nothing was changed:\n  ${problems.join('\n  ')}`, 'VIT_OPTIM');

    this.dispose();
    sd.groups.forEach((sg, i) => {
      const g = this.paramGroups[i]!;
      g.lr = sg.lr;
      g.initialLr = sg.initialLr;
      g.weightDecay = sg.weightDecay;
    });
    tf.tidy(() => {
      for (const [pname, st] of Object.entries(sd.params ?? {})) {
        const variable = byName.get(pname)!;
        const ps: ParamState = { step: st.step, slots: new Map() };
        for (const [slot, t] of slotsFor.get(pname) ?? []) this.slot(ps, slot, variable, () => tf.cast(t, 'float32'));
        this.state.set(variable, ps);
      }
    });
    this.stepCount = sd.stepCount ?? 0;
  }

  /** The slot names this optimizer keeps per parameter. */
  protected abstract slotNames(): string[];

  /**
   * Disposes the optimizer's state tensors (not the parameters) and forgets the step counts. The
   * optimizer can still step afterwards, starting from fresh state.
   */
  dispose(): void {
    for (const st of this.state.values()) for (const v of st.slots.values()) v.dispose();
    this.state.clear();
    this.stepCount = 0;
  }
}

function isGroupInput(x: unknown): x is ParamGroupInput {
  return typeof x === 'object' && x !== null && !(x instanceof tf.Variable) && !Array.isArray(x) && 'params' in x;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export function checkNonNegative(what: string, v: number): void {
  if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0)) throw new ConfigError(`Optimizer ${what} must be a finite number >= 0, got ${v}`);
}
