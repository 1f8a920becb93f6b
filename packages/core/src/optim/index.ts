export {
  Optimizer,
  type BaseOptimizerOptions,
  type Gradients,
  type NamedVariable,
  type OptimizerConfig,
  type OptimizerParams,
  type OptimizerState,
  type ParamGroup,
  type ParamGroupInput,
  type ParamState,
} from './optimizer.js';
export { SGD, type SGDOptions } from './sgd.js';
export { Adam, AdamW, type AdamOptions } from './adam.js';
export { clipGradNorm, globalNorm } from './clip.js';
export {
  DEFAULT_NO_DECAY_PATTERNS,
  paramGroupsWeightDecay,
  weightDecayPlan,
  type NoDecayReason,
  type WeightDecayDecision,
  type WeightDecayGroupOptions,
} from './param_groups.js';
export {
  ConstantLR,
  CosineAnnealingLR,
  LinearLR,
  MultiStepLR,
  SequentialLR,
  createSchedule,
  warmupCosine,
  type LRSchedule,
  type ScheduleConfig,
} from './schedules.js';
export { OPTIMIZER_TYPES, createOptimizer, restoreOptimizer } from './factory.js';
