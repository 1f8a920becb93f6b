import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { Optimizer, checkNonNegative, type BaseOptimizerOptions, type OptimizerConfig, type OptimizerParams, type ParamGroup, type ParamState } from './optimizer.js';

export interface AdamOptions extends BaseOptimizerOptions {
  betas?: [number, number];
  eps?: number;
}

/** Adam's moment updates and step, in `torch.optim.adam`'s single-tensor order of operations. */
abstract class AdamBase extends Optimizer {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;

  constructor(params: OptimizerParams, options: AdamOptions) {
    super(params, options);
    const [beta1, beta2] = options.betas ?? [0.9, 0.999];
    for (const [n, b] of [['beta1', beta1], ['beta2', beta2]] as const) {
      if (!(b >= 0 && b < 1)) throw new ConfigError(`Adam ${n} must be in [0, 1), got ${b}`);
    }
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = options.eps ?? 1e-8;
    checkNonNegative('eps', this.eps);
  }

  protected adamStep(p: tf.Variable, g: tf.Tensor, lr: number, st: ParamState): void {
    const m = this.slot(st, 'exp_avg', p);
    const v = this.slot(st, 'exp_avg_sq', p);
    const k = (x: number) => this.scalar(x);
    // exp_avg.lerp_(grad, 1 − β1): torch's lerp switches formula at weight 0.5.
    const w = 1 - this.beta1;
    m.assign(w < 0.5 ? tf.add(m, tf.mul(tf.sub(g, m), k(w))) : tf.sub(g, tf.mul(tf.sub(g, m), k(1 - w))));
    v.assign(tf.add(tf.mul(v, k(this.beta2)), tf.mul(tf.mul(g, g), k(1 - this.beta2))));
    const bc1 = 1 - Math.pow(this.beta1, st.step);
    const bc2 = 1 - Math.pow(this.beta2, st.step);
    const stepSize = lr / bc1;
    const denom = tf.add(tf.div(tf.sqrt(v), k(Math.sqrt(bc2))), k(this.eps));
    p.assign(tf.sub(p, tf.mul(tf.div(m, denom), k(stepSize))));
  }

  protected slotNames(): string[] {
    return ['exp_avg', 'exp_avg_sq'];
  }

  protected adamConfig<T extends 'adam' | 'adamw'>(type: T) {
    return {
      type,
      lr: this.defaults.lr,
      betas: [this.beta1, this.beta2] as [number, number],
      eps: this.eps,
      weightDecay: this.defaults.weightDecay,
      groupNoDecay: this.groupNoDecay,
    };
  }
}

/**
 * `torch.optim.Adam` with its L2 `weight_decay` (added to the gradient before the moments). This
 * is what the seeds' `paddle.optimizer.Adam(weight_decay=1e-5)` does (Paddle's eps placement is
 * algebraically the same). Prefer AdamW for decoupled decay.
 */
export class Adam extends AdamBase {
  readonly type = 'adam' as const;

  constructor(params: OptimizerParams, options: AdamOptions) {
    super(params, options);
  }

  protected update(p: tf.Variable, g: tf.Tensor, group: ParamGroup, st: ParamState): void {
    const grad = group.weightDecay !== 0 ? tf.add(g, tf.mul(p, this.scalar(group.weightDecay))) : g;
    this.adamStep(p, grad, group.lr, st);
  }

  toConfig(): OptimizerConfig {
    return this.adamConfig('adam');
  }
}

/**
 * `torch.optim.AdamW`: decoupled weight decay `p ← p·(1 − lr·wd)` before the Adam step. PyTorch's
 * default weight decay is 0.01.
 */
export class AdamW extends AdamBase {
  readonly type = 'adamw' as const;

  constructor(params: OptimizerParams, options: AdamOptions) {
    super(params, { ...options, weightDecay: options.weightDecay ?? 0.01 });
  }

  protected update(p: tf.Variable, g: tf.Tensor, group: ParamGroup, st: ParamState): void {
    if (group.weightDecay !== 0) p.assign(tf.mul(p, this.scalar(1 - group.lr * group.weightDecay)));
    this.adamStep(p, g, group.lr, st);
  }

  toConfig(): OptimizerConfig {
    return this.adamConfig('adamw');
  }
}
