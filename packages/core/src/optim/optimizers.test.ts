import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { setTestBackend } from '../testing/backend.js';
import { ConfigError } from '../errors.js';
import { maxRelErr, readOptimFixture } from './__fixtures__/reference.js';
import {
  Adam,
  AdamW,
  CosineAnnealingLR,
  LinearLR,
  SGD,
  SequentialLR,
  clipGradNorm,
  createOptimizer,
  type LRSchedule,
  type NamedVariable,
  type Optimizer,
  type ParamGroupInput,
} from './index.js';

interface Case {
  name: string;
  steps: number;
  clip: number | null;
  lrs: number[][];
  gradNorms: number[];
  losses: number[];
  trajectory: Array<Record<string, number[]>>;
  stateAfter: number | null;
  state: Record<string, Record<string, number[] | number>> | null;
}
const F = readOptimFixture<{
  shapes: Record<string, number[]>;
  names: string[];
  init: Record<string, number[]>;
  A: Record<string, number[]>;
  B: Record<string, number[]>;
  coupling: number;
  cases: Case[];
}>('optimizers');
const TOL = 1e-6;

beforeAll(async () => {
  await setTestBackend();
});

let live: Array<{ dispose(): void }> = [];
afterEach(() => {
  for (const x of live) x.dispose();
  live = [];
});

/** The fixture's parameters as variables, and its quadratic loss built from tf ops. */
function problem() {
  const params: NamedVariable[] = F.names.map((n) => [n, tf.variable(tf.tensor(F.init[n]!, F.shapes[n]!, 'float32'), true)]);
  for (const [, v] of params) live.push(v);
  const byName = Object.fromEntries(params);
  const consts = F.names.map((n) => [tf.tensor(F.A[n]!, F.shapes[n]!), tf.tensor(F.B[n]!, F.shapes[n]!)] as const);
  for (const [a, b] of consts) live.push(a, b);
  const loss = () =>
    tf.tidy(() => {
      let l = tf.scalar(0);
      F.names.forEach((n, i) => {
        const p = byName[n]!;
        const [a, b] = consts[i]!;
        l = tf.add(l, tf.add(tf.mul(0.5, tf.sum(tf.mul(tf.mul(a, p), p))), tf.sum(tf.mul(b, p))));
      });
      return tf.add(l, tf.mul(F.coupling, tf.mul(tf.sum(byName['stem.weight']!), tf.sum(byName['stem.bias']!)))) as tf.Scalar;
    });
  return { params, byName, loss };
}

const pick = (params: NamedVariable[], names: string[]) => params.filter(([n]) => names.includes(n));

/** How each fixture case is built with our API (mirrors optim_reference.py). */
const BUILD: Record<string, (p: NamedVariable[]) => { opt: Optimizer; schedule?: LRSchedule }> = {
  sgd: (p) => ({ opt: new SGD(p, { lr: 0.1 }) }),
  sgd_momentum_wd_dampening: (p) => ({ opt: new SGD(p, { lr: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 0.01 }) }),
  sgd_nesterov_wd: (p) => ({ opt: new SGD(p, { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 0.01 }) }),
  sgd_momentum_clip: (p) => ({ opt: new SGD(p, { lr: 0.05, momentum: 0.9 }) }),
  adam_l2: (p) => ({ opt: new Adam(p, { lr: 0.01, weightDecay: 0.01 }) }),
  adam_betas_eps: (p) => ({ opt: new Adam(p, { lr: 0.02, betas: [0.8, 0.99], eps: 1e-6 }) }),
  adamw: (p) => ({ opt: new AdamW(p, { lr: 0.01, weightDecay: 0.05 }) }),
  adamw_clip: (p) => ({ opt: new AdamW(p, { lr: 0.01, weightDecay: 0.05 }) }),
  adamw_groups: (p) => {
    const groups: ParamGroupInput[] = [
      { params: pick(p, ['stem.weight']), weightDecay: 0.05 },
      { params: pick(p, ['stem.bias', 'blocks.0.gamma', 'pos_embed']), weightDecay: 0, lr: 0.02 },
    ];
    return { opt: new AdamW(groups, { lr: 0.01, weightDecay: 0.05 }) };
  },
  adamw_cosine: (p) => ({ opt: new AdamW(p, { lr: 0.01, weightDecay: 0.05 }), schedule: new CosineAnnealingLR({ tMax: 8, etaMin: 1e-4 }) }),
  sgd_nesterov_clip_warmup_cosine: (p) => ({
    opt: new SGD(p, { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-3 }),
    schedule: new SequentialLR([new LinearLR({ startFactor: 0.25, endFactor: 1, totalIters: 3 }), new CosineAnnealingLR({ tMax: 5 })], [3]),
  }),
};

describe('optimizers against torch.optim (tools/fixtures/optim_reference.py)', () => {
  it('covers every fixture case', () => {
    expect(F.cases.map((c) => c.name).sort()).toEqual(Object.keys(BUILD).sort());
  });

  for (const c of F.cases) {
    it(`${c.name}: ${c.steps} steps, every parameter after every step within ${TOL} relative`, () => {
      const { params, byName, loss } = problem();
      const { opt, schedule } = BUILD[c.name]!(params);
      live.push(opt);
      let worst = 0;
      let before = -1;
      for (let s = 0; s < c.steps; s++) {
        if (s === 2) before = tf.memory().numTensors;
        if (schedule) opt.applySchedule(schedule, s);
        expect(opt.paramGroups.map((g) => g.lr).every((lr, i) => Math.abs(lr - c.lrs[s]![i]!) <= 1e-12 * Math.max(1, c.lrs[s]![i]!))).toBe(true);
        const { value, grads } = opt.computeGradients(loss);
        expect(Math.abs(value.dataSync()[0]! - c.losses[s]!) / Math.abs(c.losses[s]!)).toBeLessThan(TOL);
        let used = grads;
        if (c.clip !== null) {
          const clipped = clipGradNorm(grads, c.clip);
          expect(Math.abs(clipped.totalNorm.dataSync()[0]! - c.gradNorms[s]!) / c.gradNorms[s]!).toBeLessThan(TOL);
          clipped.totalNorm.dispose();
          tf.dispose(grads);
          used = clipped.grads;
        }
        opt.step(used);
        tf.dispose([value, ...Object.values(used)]);
        for (const n of F.names) worst = Math.max(worst, maxRelErr(byName[n]!.dataSync(), c.trajectory[s]![n]!));
        if (c.stateAfter === s + 1) {
          for (const n of F.names) {
            const st = opt.paramState(byName[n]!)!;
            for (const [slot, ref] of Object.entries(c.state![n]!)) {
              if (slot === 'step') expect(st.step).toBe(ref);
              else worst = Math.max(worst, maxRelErr(st.slots.get(slot)!.dataSync(), ref as number[]));
            }
          }
        }
      }
      // Optimizer state is created on the first step; after that a step leaves no tensor behind.
      expect(tf.memory().numTensors).toBe(before);
      if (process.env.VIT_PRINT_ERR) console.log(`${c.name}: worst ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(TOL);
    });
  }

  it('a state dict restored into a fresh optimizer continues on the PyTorch trajectory', () => {
    for (const name of ['sgd_momentum_wd_dampening', 'adam_l2', 'adamw']) {
      const c = F.cases.find((x) => x.name === name)!;
      const a = problem();
      const optA = BUILD[name]!(a.params).opt;
      live.push(optA);
      for (let s = 0; s < c.stateAfter!; s++) tf.dispose(optA.minimize(a.loss));
      // Copy the parameters and state into a second problem, as a checkpoint round trip would.
      const b = problem();
      for (const n of F.names) b.byName[n]!.assign(a.byName[n]!);
      const optB = BUILD[name]!(b.params).opt;
      live.push(optB);
      const sd = optA.stateDict();
      const copy = { ...JSON.parse(JSON.stringify({ ...sd, tensors: {} })), tensors: Object.fromEntries(Object.entries(sd.tensors).map(([k, t]) => [k, t.clone()])) };
      optB.loadStateDict(copy);
      tf.dispose(Object.values(copy.tensors));
      optA.dispose();
      expect(optB.stepCount).toBe(c.stateAfter);
      let worst = 0;
      for (let s = c.stateAfter!; s < c.steps; s++) {
        tf.dispose(optB.minimize(b.loss));
        for (const n of F.names) worst = Math.max(worst, maxRelErr(b.byName[n]!.dataSync(), c.trajectory[s]![n]!));
      }
      expect(worst).toBeLessThan(TOL);
    }
  });
});

describe('optimizer behaviour', () => {
  it('skips parameters without a gradient and frozen ones (no state, no decay), like PyTorch', () => {
    const used = tf.variable(tf.ones([2]));
    const unused = tf.variable(tf.ones([2]));
    const frozen = tf.variable(tf.ones([2]));
    live.push(used, unused, frozen);
    const opt = new AdamW([['used', used], ['unused', unused], ['frozen', frozen]], { lr: 0.1, weightDecay: 0.5 });
    live.push(opt);
    frozen.trainable = false;
    expect(opt.variables()).toEqual([used, unused]);
    tf.dispose(opt.minimize(() => tf.sum(tf.mul(used, 3)) as tf.Scalar));
    expect(Array.from(unused.dataSync())).toEqual([1, 1]);
    expect(Array.from(frozen.dataSync())).toEqual([1, 1]);
    expect(opt.paramState(unused)).toBeUndefined();
    expect(opt.paramState(used)!.step).toBe(1);
    // First AdamW step: p·(1 − lr·wd) − lr·sign(g) (bias-corrected moments give ±1 up to eps).
    for (const v of used.dataSync()) expect(v).toBeCloseTo(1 * (1 - 0.05) - 0.1, 6);
  });

  it('dispose frees the state tensors and leaves an optimizer that starts afresh', () => {
    const a = tf.variable(tf.ones([3]));
    const b = tf.variable(tf.ones([2, 2]));
    live.push(a, b);
    const opt = new AdamW([['a', a], ['b', b]], { lr: 0.1 });
    const loss = () => tf.add(tf.sum(tf.square(a)), tf.sum(b)) as tf.Scalar;
    const before = tf.memory().numTensors;
    tf.dispose(opt.minimize(loss));
    expect(tf.memory().numTensors).toBe(before + 4); // exp_avg and exp_avg_sq of each
    opt.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(opt.paramState(a)).toBeUndefined();
    expect(opt.stepCount).toBe(0);
    expect(Object.keys(opt.stateDict().tensors)).toEqual([]);
    tf.dispose(opt.minimize(loss));
    expect(opt.paramState(a)!.step).toBe(1);
    opt.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('validates its inputs and its state', () => {
    const v = tf.variable(tf.zeros([2, 2]));
    live.push(v);
    expect(() => new SGD([v], { lr: -1 })).toThrow(ConfigError);
    expect(() => new SGD([v], { lr: 0.1, nesterov: true })).toThrow(/Nesterov momentum requires momentum > 0/);
    expect(() => new SGD([v, v], { lr: 0.1 })).toThrow(/appears twice/);
    expect(() => new Adam([v], { lr: 0.1, betas: [1, 0.9] })).toThrow(/beta1 must be in \[0, 1\)/);
    expect(() => createOptimizer([v], { type: 'lamb' as 'sgd', lr: 1 })).toThrow(/Unknown optimizer 'lamb'/);
    const opt = new Adam([['w', v]], { lr: 0.1 });
    live.push(opt);
    tf.dispose(opt.minimize(() => tf.sum(tf.square(v)) as tf.Scalar));
    const sd = opt.stateDict();
    const bad = { ...sd, tensors: { 'w.exp_avg': tf.zeros([3]), 'x.exp_avg': tf.zeros([2, 2]), 'w.momentum': tf.zeros([2, 2]) } };
    const before = Array.from(opt.paramState(v)!.slots.get('exp_avg')!.dataSync());
    expect(() => new SGD([['w', v]], { lr: 1 }).loadStateDict(sd)).toThrow(/optimizer type is 'adam', this one is 'sgd'/);
    const err = (() => {
      try {
        opt.loadStateDict(bad);
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    })();
    expect(err).toMatch(/shape \[3\], parameter has \[2, 2\]/);
    expect(err).toMatch(/'x.exp_avg' belongs to no parameter/);
    expect(err).toMatch(/'momentum' is not a adam state slot/);
    expect(Array.from(opt.paramState(v)!.slots.get('exp_avg')!.dataSync())).toEqual(before);
    tf.dispose(Object.values(bad.tensors));
  });

  it('toConfig round-trips through createOptimizer', () => {
    const v = tf.variable(tf.zeros([2]));
    live.push(v);
    for (const opt of [
      new SGD([v], { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-4 }),
      new Adam([v], { lr: 1e-3, betas: [0.8, 0.9], eps: 1e-7, weightDecay: 1e-5 }),
      new AdamW([v], { lr: 1e-3 }),
    ]) {
      const again = createOptimizer([v], opt.toConfig());
      expect(again.toConfig()).toEqual(opt.toConfig());
      expect(again.constructor).toBe(opt.constructor);
    }
    expect(new AdamW([v], { lr: 1 }).toConfig()).toMatchObject({ weightDecay: 0.01 }); // PyTorch's default
  });
});
