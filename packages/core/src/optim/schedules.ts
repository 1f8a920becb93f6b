import { ConfigError } from '../errors.js';

/** Serialisable description of a schedule, for checkpoints (`createSchedule` rebuilds it). */
export type ScheduleConfig =
  | { type: 'constant' }
  | { type: 'cosine'; tMax: number; etaMin: number }
  | { type: 'multistep'; milestones: number[]; gamma: number; stepsPerEpoch: number }
  | { type: 'linear'; startFactor: number; endFactor: number; totalIters: number }
  | { type: 'sequential'; schedules: ScheduleConfig[]; milestones: number[] };

/**
 * A learning-rate schedule: a pure function of the optimizer step (the number of steps already
 * taken) and a parameter group's base rate, so a resumed run needs nothing but the step. The
 * values equal PyTorch's schedulers stepped once per optimizer step.
 */
export interface LRSchedule {
  lr(step: number, baseLr: number): number;
  toConfig(): ScheduleConfig;
}

function int(what: string, v: number, min: number): void {
  if (!(Number.isInteger(v) && v >= min)) throw new ConfigError(`${what} must be an integer >= ${min}, got ${v}`);
}

/** The base rate throughout. */
export class ConstantLR implements LRSchedule {
  lr(_step: number, baseLr: number): number {
    return baseLr;
  }
  toConfig(): ScheduleConfig {
    return { type: 'constant' };
  }
}

/**
 * Cosine annealing from the base rate to `etaMin` over `tMax` steps (`CosineAnnealingLR`, Paddle's
 * `CosineAnnealingDecay`), stepped per optimizer step: the seeds use
 * `tMax = stepsPerEpoch × epochs`. Past `tMax` it continues the cosine (rising again), as PyTorch.
 */
export class CosineAnnealingLR implements LRSchedule {
  readonly tMax: number;
  readonly etaMin: number;
  constructor(options: { tMax: number; etaMin?: number }) {
    int('CosineAnnealingLR tMax', options.tMax, 1);
    this.tMax = options.tMax;
    this.etaMin = options.etaMin ?? 0;
    if (!(this.etaMin >= 0)) throw new ConfigError(`CosineAnnealingLR etaMin must be >= 0, got ${this.etaMin}`);
  }
  lr(step: number, baseLr: number): number {
    return this.etaMin + ((baseLr - this.etaMin) * (1 + Math.cos((Math.PI * step) / this.tMax))) / 2;
  }
  toConfig(): ScheduleConfig {
    return { type: 'cosine', tMax: this.tMax, etaMin: this.etaMin };
  }
}

/**
 * Multiply by `gamma` at each milestone (`MultiStepLR`). Milestones count epochs when
 * `stepsPerEpoch` is given (the rate changes at epoch boundaries, as seed 003's per-epoch
 * `MultiStepDecay`), else optimizer steps.
 */
export class MultiStepLR implements LRSchedule {
  readonly milestones: number[];
  readonly gamma: number;
  readonly stepsPerEpoch: number;
  constructor(options: { milestones: number[]; gamma?: number; stepsPerEpoch?: number }) {
    const { milestones, gamma = 0.1, stepsPerEpoch = 1 } = options;
    if (!Array.isArray(milestones)) throw new ConfigError('MultiStepLR milestones must be an array of integers');
    milestones.forEach((m, i) => {
      int(`MultiStepLR milestone ${i}`, m, 0);
      if (i > 0 && m < milestones[i - 1]!) throw new ConfigError(`MultiStepLR milestones must be non-decreasing, got [${milestones.join(', ')}]`);
    });
    int('MultiStepLR stepsPerEpoch', stepsPerEpoch, 1);
    if (!(gamma > 0)) throw new ConfigError(`MultiStepLR gamma must be > 0, got ${gamma}`);
    this.milestones = [...milestones];
    this.gamma = gamma;
    this.stepsPerEpoch = stepsPerEpoch;
  }
  lr(step: number, baseLr: number): number {
    const t = Math.floor(step / this.stepsPerEpoch);
    const passed = this.milestones.filter((m) => m <= t).length;
    // PyTorch multiplies step by step; the same product, rounded the same way.
    let lr = baseLr;
    for (let i = 0; i < passed; i++) lr *= this.gamma;
    return lr;
  }
  toConfig(): ScheduleConfig {
    return { type: 'multistep', milestones: [...this.milestones], gamma: this.gamma, stepsPerEpoch: this.stepsPerEpoch };
  }
}

/** Linear ramp of the factor from `startFactor` to `endFactor` over `totalIters` steps (`LinearLR`): the usual warm-up. */
export class LinearLR implements LRSchedule {
  readonly startFactor: number;
  readonly endFactor: number;
  readonly totalIters: number;
  constructor(options: { startFactor?: number; endFactor?: number; totalIters: number }) {
    const { startFactor = 1 / 3, endFactor = 1, totalIters } = options;
    if (!(startFactor > 0 && startFactor <= 1)) throw new ConfigError(`LinearLR startFactor must be in (0, 1], got ${startFactor}`);
    if (!(endFactor >= 0 && endFactor <= 1)) throw new ConfigError(`LinearLR endFactor must be in [0, 1], got ${endFactor}`);
    int('LinearLR totalIters', totalIters, 1);
    this.startFactor = startFactor;
    this.endFactor = endFactor;
    this.totalIters = totalIters;
  }
  lr(step: number, baseLr: number): number {
    const t = Math.min(step, this.totalIters);
    return baseLr * (this.startFactor + ((this.endFactor - this.startFactor) * t) / this.totalIters);
  }
  toConfig(): ScheduleConfig {
    return { type: 'linear', startFactor: this.startFactor, endFactor: this.endFactor, totalIters: this.totalIters };
  }
}

/**
 * Runs `schedules[i]` from `milestones[i−1]` on, each seeing steps counted from its own start
 * (`SequentialLR`): `new SequentialLR([warmup, cosine], [warmupSteps])`.
 */
export class SequentialLR implements LRSchedule {
  readonly schedules: LRSchedule[];
  readonly milestones: number[];
  constructor(schedules: LRSchedule[], milestones: number[]) {
    if (schedules.length === 0 || milestones.length !== schedules.length - 1) {
      throw new ConfigError(`SequentialLR needs one milestone fewer than schedules, got ${schedules.length} schedules and ${milestones.length} milestones`);
    }
    milestones.forEach((m, i) => {
      int(`SequentialLR milestone ${i}`, m, 1);
      if (i > 0 && m <= milestones[i - 1]!) throw new ConfigError(`SequentialLR milestones must increase, got [${milestones.join(', ')}]`);
    });
    this.schedules = [...schedules];
    this.milestones = [...milestones];
  }
  lr(step: number, baseLr: number): number {
    let i = 0;
    while (i < this.milestones.length && step >= this.milestones[i]!) i++;
    const start = i === 0 ? 0 : this.milestones[i - 1]!;
    return this.schedules[i]!.lr(step - start, baseLr);
  }
  toConfig(): ScheduleConfig {
    return { type: 'sequential', schedules: this.schedules.map((s) => s.toConfig()), milestones: [...this.milestones] };
  }
}

/**
 * Linear warm-up from `warmupStartFactor × base` for `warmupSteps`, then cosine annealing to
 * `etaMin` over the remaining `totalSteps − warmupSteps` (the common ViT recipe).
 */
export function warmupCosine(options: { totalSteps: number; warmupSteps: number; warmupStartFactor?: number; etaMin?: number }): LRSchedule {
  const { totalSteps, warmupSteps, warmupStartFactor = 0.01, etaMin = 0 } = options;
  int('warmupCosine totalSteps', totalSteps, 1);
  int('warmupCosine warmupSteps', warmupSteps, 0);
  if (warmupSteps >= totalSteps) throw new ConfigError(`warmupCosine warmupSteps (${warmupSteps}) must be below totalSteps (${totalSteps})`);
  const cosine = new CosineAnnealingLR({ tMax: totalSteps - warmupSteps, etaMin });
  if (warmupSteps === 0) return cosine;
  return new SequentialLR([new LinearLR({ startFactor: warmupStartFactor, totalIters: warmupSteps }), cosine], [warmupSteps]);
}

/** Rebuilds a schedule from its `toConfig()`. */
export function createSchedule(config: ScheduleConfig): LRSchedule {
  switch (config?.type) {
    case 'constant':
      return new ConstantLR();
    case 'cosine':
      return new CosineAnnealingLR(config);
    case 'multistep':
      return new MultiStepLR(config);
    case 'linear':
      return new LinearLR(config);
    case 'sequential':
      return new SequentialLR(config.schedules.map(createSchedule), config.milestones);
    default:
      throw new ConfigError(`Unknown LR schedule '${String((config as { type?: unknown })?.type)}'; expected constant, cosine, multistep, linear or sequential`);
  }
}
