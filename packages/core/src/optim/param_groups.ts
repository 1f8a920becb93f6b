import type * as tf from '@tensorflow/tfjs-core';
import type { Module } from '../nn/module.js';
import type { ParamGroupInput } from './optimizer.js';

/**
 * Parameter names excluded from weight decay even when they are not 1-D and not declared by the
 * model: class/distillation/register tokens, absolute position embeddings, relative-position
 * tables, LayerScale gammas. Matched against the last segment of the dotted name.
 */
export const DEFAULT_NO_DECAY_PATTERNS: readonly RegExp[] = [
  /^(cls|dist|reg|mask)_token$/,
  /^(absolute_)?pos_embed(_\w+)?$/,
  /^relative_position_bias_table$/,
  /^rel_pos_[hw]$/,
  /^gamma(_\d+)?$/,
  /^layer_scale(_\d+)?$/,
];

export interface WeightDecayGroupOptions {
  /** Weight decay of the decayed group. */
  weightDecay: number;
  /**
   * More names to exclude, exact or with `*` wildcards (timm's `no_weight_decay_list`). A model
   * method `noWeightDecay(): Iterable<string>` (timm's `model.no_weight_decay()`) is honoured too.
   */
  noWeightDecay?: Iterable<string>;
  /** Last-segment name patterns excluded by default (`DEFAULT_NO_DECAY_PATTERNS`); `[]` turns them off. */
  patterns?: readonly RegExp[];
}

export type NoDecayReason = 'declared' | 'listed' | 'ndim<=1' | 'bias' | 'pattern';

export interface WeightDecayDecision {
  name: string;
  variable: tf.Variable;
  decay: boolean;
  /** Why a parameter is not decayed (undefined for decayed ones). */
  reason?: NoDecayReason;
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}

/**
 * Which trainable parameters get weight decay, and why not: timm's rule (no decay for parameters
 * of rank ≤ 1 — biases, norm weights, LayerScale vectors — and names ending in `.bias`), plus the
 * parameters the model declared with `noWeightDecay` (`addParameter(…, {noWeightDecay: true})`,
 * any alias), names listed in `noWeightDecay` or returned by a `model.noWeightDecay()` method, and
 * `patterns`. Frozen parameters are left out, as timm does.
 */
export function weightDecayPlan(model: Module, options: Omit<WeightDecayGroupOptions, 'weightDecay'> = {}): WeightDecayDecision[] {
  const declared = new Set<tf.Variable>();
  for (const [, e] of model.namedStateEntries()) if (e.isParameter && e.noWeightDecay) declared.add(e.variable);
  const listed = [...(options.noWeightDecay ?? [])];
  const own = (model as unknown as { noWeightDecay?: unknown }).noWeightDecay;
  if (typeof own === 'function') listed.push(...(own.call(model) as Iterable<string>));
  const listedRe = listed.map(globToRegExp);
  const patterns = options.patterns ?? DEFAULT_NO_DECAY_PATTERNS;
  return model.namedParameters({ trainableOnly: true }).map(([name, variable]) => {
    const last = name.slice(name.lastIndexOf('.') + 1);
    let reason: NoDecayReason | undefined;
    if (declared.has(variable)) reason = 'declared';
    else if (listedRe.some((r) => r.test(name))) reason = 'listed';
    else if (variable.rank <= 1) reason = 'ndim<=1';
    else if (name.endsWith('.bias') || name === 'bias') reason = 'bias';
    else if (patterns.some((r) => r.test(last))) reason = 'pattern';
    return { name, variable, decay: reason === undefined, reason };
  });
}

/**
 * timm's `param_groups_weight_decay`: two groups, `decay` (with `weightDecay`) and `no_decay`
 * (weight decay 0), split by `weightDecayPlan`. Pass the result to any optimizer.
 */
export function paramGroupsWeightDecay(model: Module, options: WeightDecayGroupOptions): ParamGroupInput[] {
  const plan = weightDecayPlan(model, options);
  return [
    { name: 'decay', weightDecay: options.weightDecay, params: plan.filter((d) => d.decay).map((d) => [d.name, d.variable]) },
    { name: 'no_decay', weightDecay: 0, params: plan.filter((d) => !d.decay).map((d) => [d.name, d.variable]) },
  ];
}
