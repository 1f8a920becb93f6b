import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { readOptimFixture } from './__fixtures__/reference.js';
import { ConstantLR, CosineAnnealingLR, LinearLR, MultiStepLR, SequentialLR, createSchedule, warmupCosine, type LRSchedule } from './index.js';

const F = readOptimFixture<Record<string, any>>('schedules');
const BASE: number = F.base;

function worstRel(s: LRSchedule, ref: number[]): number {
  return Math.max(...ref.map((r, i) => Math.abs(s.lr(i, BASE) - r) / Math.max(Math.abs(r), 1e-12 * BASE)));
}

describe('LR schedules against torch.optim.lr_scheduler (tools/fixtures/optim_reference.py)', () => {
  it('per-step cosine annealing, through T_max and past it', () => {
    const c = F.cosine;
    expect(c.values.length).toBeGreaterThan(c.tMax);
    // Relative to the base rate where PyTorch's recursive form reaches ~0 at T_max.
    const s = new CosineAnnealingLR({ tMax: c.tMax });
    const worst = Math.max(...c.values.map((r: number, i: number) => Math.abs(s.lr(i, BASE) - r) / BASE));
    expect(worst).toBeLessThan(1e-9);
    expect(worstRel(new CosineAnnealingLR({ tMax: F.cosine_eta_min.tMax, etaMin: F.cosine_eta_min.etaMin }), F.cosine_eta_min.values)).toBeLessThan(1e-9);
  });

  it('multi-step per epoch (seed 003) expanded to optimizer steps', () => {
    const m = F.multistep_epochs;
    const s = new MultiStepLR({ milestones: m.milestones, gamma: m.gamma, stepsPerEpoch: m.stepsPerEpoch });
    const perStep = (m.epochValues as number[]).flatMap((v) => Array<number>(m.stepsPerEpoch).fill(v));
    // PyTorch multiplies by gamma step by step: the same float products, exactly.
    perStep.forEach((v, i) => expect(s.lr(i, BASE)).toBe(v));
  });

  it('linear warm-up, and warm-up then cosine (SequentialLR)', () => {
    const w = F.linear_warmup;
    expect(worstRel(new LinearLR({ startFactor: w.startFactor, endFactor: w.endFactor, totalIters: w.totalIters }), w.values)).toBeLessThan(1e-12);
    const wc = F.warmup_cosine;
    const composed = new SequentialLR(
      [new LinearLR({ startFactor: wc.startFactor, totalIters: wc.warmup }), new CosineAnnealingLR({ tMax: wc.tMax, etaMin: wc.etaMin })],
      [wc.warmup],
    );
    expect(worstRel(composed, wc.values)).toBeLessThan(1e-9);
    const helper = warmupCosine({ warmupSteps: wc.warmup, totalSteps: wc.warmup + wc.tMax, warmupStartFactor: wc.startFactor, etaMin: wc.etaMin });
    expect(worstRel(helper, wc.values)).toBeLessThan(1e-9);
  });

  it('scales with each group base rate, and round-trips through createSchedule', () => {
    const s = warmupCosine({ warmupSteps: 3, totalSteps: 10, etaMin: 0 });
    expect(s.lr(5, 2)).toBeCloseTo(2 * s.lr(5, 1), 12);
    for (const sch of [new ConstantLR(), s, new MultiStepLR({ milestones: [1, 2], stepsPerEpoch: 3 })]) {
      const again = createSchedule(JSON.parse(JSON.stringify(sch.toConfig())));
      for (let i = 0; i < 12; i++) expect(again.lr(i, 0.3)).toBe(sch.lr(i, 0.3));
    }
  });

  it('rejects bad configurations', () => {
    expect(() => new CosineAnnealingLR({ tMax: 0 })).toThrow(ConfigError);
    expect(() => new MultiStepLR({ milestones: [5, 2] })).toThrow(/non-decreasing/);
    expect(() => new SequentialLR([new ConstantLR()], [3])).toThrow(/one milestone fewer/);
    expect(() => warmupCosine({ warmupSteps: 10, totalSteps: 10 })).toThrow(/below totalSteps/);
    expect(() => createSchedule({ type: 'poly' } as never)).toThrow(/Unknown LR schedule 'poly'/);
  });
});
