import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { Optimizer, checkNonNegative, type BaseOptimizerOptions, type OptimizerConfig, type OptimizerParams, type ParamGroup, type ParamState } from './optimizer.js';

export interface SGDOptions extends BaseOptimizerOptions {
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
}

/**
 * `torch.optim.SGD`, exactly: L2 weight decay added to the gradient, momentum buffer initialised to
 * the first gradient (not to zero), `buf = μ·buf + (1−dampening)·g`, Nesterov `g + μ·buf`.
 * With dampening 0 this is also Paddle's `Momentum` (seed 003's optimizer; its default μ is 0.9).
 */
export class SGD extends Optimizer {
  readonly type = 'sgd' as const;
  readonly momentum: number;
  readonly dampening: number;
  readonly nesterov: boolean;

  constructor(params: OptimizerParams, options: SGDOptions) {
    super(params, options);
    const { momentum = 0, dampening = 0, nesterov = false } = options;
    checkNonNegative('momentum', momentum);
    checkNonNegative('dampening', dampening);
    if (nesterov && (momentum <= 0 || dampening !== 0)) throw new ConfigError('SGD Nesterov momentum requires momentum > 0 and dampening 0 (as PyTorch)');
    this.momentum = momentum;
    this.dampening = dampening;
    this.nesterov = nesterov;
  }

  protected update(p: tf.Variable, g: tf.Tensor, group: ParamGroup, st: ParamState): void {
    let d = g;
    if (group.weightDecay !== 0) d = tf.add(d, tf.mul(p, this.scalar(group.weightDecay)));
    if (this.momentum !== 0) {
      const first = !st.slots.has('momentum_buffer');
      const buf = this.slot(st, 'momentum_buffer', p, () => tf.clone(d));
      if (!first) buf.assign(tf.add(tf.mul(buf, this.scalar(this.momentum)), tf.mul(d, this.scalar(1 - this.dampening))));
      d = this.nesterov ? tf.add(d, tf.mul(buf, this.scalar(this.momentum))) : buf;
    }
    p.assign(tf.sub(p, tf.mul(d, this.scalar(group.lr))));
  }

  protected slotNames(): string[] {
    return ['momentum_buffer'];
  }

  toConfig(): OptimizerConfig {
    return {
      type: 'sgd',
      lr: this.defaults.lr,
      momentum: this.momentum,
      dampening: this.dampening,
      nesterov: this.nesterov,
      weightDecay: this.defaults.weightDecay,
      groupNoDecay: this.groupNoDecay,
    };
  }
}
