import { ConfigError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { Adam, AdamW } from './adam.js';
import type { NamedVariable, Optimizer, OptimizerConfig, OptimizerParams, OptimizerState, ParamGroupInput } from './optimizer.js';
import { SGD } from './sgd.js';

/** Every optimizer `createOptimizer` builds (`vit train --opt`). */
export const OPTIMIZER_TYPES = ['adamw', 'adam', 'sgd'] as const satisfies ReadonlyArray<OptimizerConfig['type']>;

/** Builds an optimizer from a config (`toConfig()`, or hand-written: `{type: 'adamw', lr: 1e-3, …}`). */
export function createOptimizer(params: OptimizerParams, config: Partial<OptimizerConfig> & { type: OptimizerConfig['type']; lr: number }): Optimizer {
  switch (config?.type) {
    case 'sgd':
      return new SGD(params, config);
    case 'adam':
      return new Adam(params, config);
    case 'adamw':
      return new AdamW(params, config);
    default:
      throw new ConfigError(`Unknown optimizer '${String((config as { type?: unknown })?.type)}'; expected ${OPTIMIZER_TYPES.join(', ')}`);
  }
}

/**
 * Rebuilds the optimizer a checkpoint was written from: its type and hyper-parameters, the same
 * parameter groups by name (whatever rule made them), then its state. Throws, naming the
 * parameters, when the model does not hold the saved ones.
 */
export function restoreOptimizer(model: Module, state: OptimizerState): Optimizer {
  const byName = new Map<string, NamedVariable>(model.namedParameters().map((p) => [p[0], p]));
  const missing: string[] = [];
  const groups: ParamGroupInput[] = state.groups.map((g) => ({
    name: g.name,
    lr: g.initialLr,
    weightDecay: g.weightDecay,
    params: g.params.flatMap((n) => {
      const p = byName.get(n);
      if (!p) missing.push(n);
      return p ? [p] : [];
    }),
  }));
  if (missing.length) {
    throw new ConfigError(`The optimizer state names ${missing.length} parameter(s) the model does not have: ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? '…' : ''}`);
  }
  const opt = createOptimizer(groups, state.config);
  try {
    opt.loadStateDict(state);
  } catch (e) {
    opt.dispose();
    throw e;
  }
  return opt;
}
