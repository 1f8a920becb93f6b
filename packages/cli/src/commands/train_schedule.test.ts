import { describe, expect, it } from 'vitest';
import { RECIPES, type Recipe } from '../recipes.js';
import { scheduleFor } from './train.js';

const recipe = (over: Partial<Recipe>): Recipe => ({ ...RECIPES.default!, ...over });
const linear = (totalIters: number) => ({ type: 'linear', startFactor: 0.01, endFactor: 1, totalIters });

/**
 * `vit train`'s schedules as checkpoints record them (trainer.json): a run resumed by another
 * version must get the same rates, so these configs may not change.
 */
describe('vit train: the learning-rate schedule of a run', () => {
  it('cosine after a linear warm-up from 1% (the default recipe: one warm-up epoch)', () => {
    const s = scheduleFor(recipe({ sched: 'cosine', warmupEpochs: 1 }))({ stepsPerEpoch: 5, epochs: 2 });
    expect(s.toConfig()).toEqual({ type: 'sequential', schedules: [linear(5), { type: 'cosine', tMax: 5, etaMin: 0 }], milestones: [5] });
    expect([0, 5, 10].map((step) => s.lr(step, 2e-3))).toEqual([2e-5, 2e-3, 0]);
  });

  it('no warm-up: the main schedule alone', () => {
    expect(scheduleFor(recipe({ sched: 'cosine', warmupEpochs: 0 }))({ stepsPerEpoch: 5, epochs: 2 }).toConfig()).toEqual({ type: 'cosine', tMax: 10, etaMin: 0 });
    expect(scheduleFor(recipe({ sched: 'none', warmupEpochs: 0 }))({ stepsPerEpoch: 5, epochs: 2 }).toConfig()).toEqual({ type: 'constant' });
  });

  it('a warm-up longer than the run leaves one step of the main schedule', () => {
    const s = scheduleFor(recipe({ sched: 'cosine', warmupEpochs: 10 }))({ stepsPerEpoch: 5, epochs: 2 });
    expect(s.toConfig()).toEqual({ type: 'sequential', schedules: [linear(9), { type: 'cosine', tMax: 1, etaMin: 0 }], milestones: [9] });
  });

  it('multi-step (epoch milestones) and constant after a warm-up of a fraction of an epoch (rounded to steps)', () => {
    const multistep = scheduleFor(recipe({ sched: 'multistep', milestones: [1], gamma: 0.5, warmupEpochs: 0.5 }))({ stepsPerEpoch: 5, epochs: 2 });
    expect(multistep.toConfig()).toEqual({ type: 'sequential', schedules: [linear(3), { type: 'multistep', milestones: [1], gamma: 0.5, stepsPerEpoch: 5 }], milestones: [3] });
    const constant = scheduleFor(recipe({ sched: 'none', warmupEpochs: 0.5 }))({ stepsPerEpoch: 4, epochs: 1 });
    expect(constant.toConfig()).toEqual({ type: 'sequential', schedules: [linear(2), { type: 'constant' }], milestones: [2] });
  });
});
