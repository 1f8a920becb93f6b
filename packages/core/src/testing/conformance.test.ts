import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ShapeError } from '../errors.js';
import { Conv2d } from '../nn/conv.js';
import { Linear } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import { BatchNorm2d } from '../nn/norm.js';
import type { FeatureInfo } from '../registry/contract.js';
import { resolveIndices } from '../registry/contract.js';
import { registerArchitecture } from '../registry/registry.js';
import { featureInfoCamTargets } from '../explain/gradcam.js';
import { runConformance, type ConformanceSubject } from './conformance.js';
import { setTestBackend } from './backend.js';

interface Faults {
  leak?: boolean;
  unusedParam?: boolean;
  noValidation?: boolean;
  wrongFeatureChs?: boolean;
  nondeterministic?: boolean;
  /** No blocks for setGradCheckpointing. */
  noCheckpointUnits?: boolean;
  /** Its architecture's explainer names a Grad-CAM layer the model does not have. */
  badCamLayer?: boolean;
  /** The stem's BatchNorm-like running statistic is updated again when checkpointing recomputes it. */
  statsOnRecompute?: boolean;
}

/** A conv whose running mean (a buffer) is updated by every training forward, recomputed ones too. */
class ConvWithStats extends Conv2d {
  readonly seen: tf.Variable;
  constructor() {
    super(3, 4, 3, { stride: 2, padding: 1 });
    this.seen = this.addBuffer('seen', tf.zeros([4]));
  }
  override forward(x: tf.Tensor): tf.Tensor {
    const y = super.forward(x);
    if (this.training) this.seen.assign(tf.tidy(() => tf.add(tf.mul(this.seen, 0.9), tf.mul(tf.mean(y, [0, 1, 2]), 0.1))));
    return y;
  }
}

/** A two-stage conv net implementing the model contract, with switchable faults. */
class TinyNet extends Module {
  stem: Conv2d;
  bn: BatchNorm2d;
  stage2: Conv2d;
  head: Linear | null;
  numClasses: number;
  readonly numFeatures = 8;
  featureInfo: FeatureInfo[];
  constructor(
    numClasses = 3,
    readonly faults: Faults = {},
  ) {
    super();
    this.numClasses = numClasses;
    this.stem = this.register('stem', faults.statsOnRecompute ? new ConvWithStats() : new Conv2d(3, 4, 3, { stride: 2, padding: 1 }));
    this.bn = this.register('bn', new BatchNorm2d(4));
    this.stage2 = this.register('stage2', new Conv2d(4, 8, 3, { stride: 2, padding: 1 }));
    this.head = this.register('head', new Linear(8, numClasses));
    if (faults.unusedParam) this.addParameter('orphan', tf.ones([2]));
    this.featureInfo = [
      { numChs: 4, reduction: 2, module: 'bn' },
      { numChs: faults.wrongFeatureChs ? 5 : 8, reduction: 4, module: 'stage2' },
    ];
  }
  private stages(x: tf.Tensor4D): tf.Tensor4D[] {
    if (!this.faults.noValidation && (x.rank !== 4 || x.shape[3] !== 3)) {
      throw new ShapeError(`TinyNet expects NHWC input with 3 channels, got [${x.shape.join(', ')}]`);
    }
    // The faulty variant silently drops extra channels instead of refusing them.
    if (this.faults.noValidation && x.rank === 4) x = tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, 3]);
    const a = tf.relu(this.bn.forward(this.stem.forward(x))) as tf.Tensor4D;
    const b = tf.relu(this.stage2.forward(a)) as tf.Tensor4D;
    return [a, b];
  }
  forwardFeatures(x: tf.Tensor4D): tf.Tensor4D {
    return this.stages(x)[1]!;
  }
  forwardHead(f: tf.Tensor, o: { preLogits?: boolean } = {}): tf.Tensor2D {
    const pooled = tf.mean(f, [1, 2]) as tf.Tensor2D;
    if (o.preLogits || !this.head) return pooled;
    let y = this.head.forward(pooled) as tf.Tensor2D;
    if (this.faults.nondeterministic) y = tf.add(y, tf.randomUniform(y.shape, 0, 1e-3));
    return y;
  }
  forward(x: tf.Tensor4D): tf.Tensor2D {
    if (this.faults.leak) tf.keep(tf.zeros([1]));
    return this.forwardHead(this.forwardFeatures(x));
  }
  forwardIntermediates(x: tf.Tensor4D, o: { indices?: number[] } = {}): tf.Tensor4D[] {
    const all = this.stages(x);
    return resolveIndices(o.indices, all.length).map((i) => all[i]!);
  }
  protected override gradCheckpointUnits(): Module[] {
    return this.faults.noCheckpointUnits ? [] : [this.stem, this.stage2];
  }
  resetClassifier(n: number): void {
    this.head?.dispose();
    this.numClasses = n;
    this.head = this.register('head', n > 0 ? new Linear(8, n) : null);
  }
}

registerArchitecture({
  name: 'conformance-test-tiny',
  fromOfficialConfig: () => new TinyNet(),
  explainer: (m) =>
    m instanceof TinyNet ? { method: 'gradcam', camTargets: m.faults.badCamLayer ? [{ layer: 'stage3', reduction: 4 }] : featureInfoCamTargets(m.featureInfo) } : undefined,
});

const subject = (faults: Faults = {}): ConformanceSubject => ({ name: 'tiny', build: () => new TinyNet(3, faults), inputShape: [2, 8, 8, 3] });

describe('conformance suite', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it('passes a model that honours the contract, leaving no tensor behind', () => {
    const before = tf.memory().numTensors;
    expect(() => runConformance(subject())).not.toThrow();
    expect(tf.memory().numTensors).toBe(before);
  });

  it.each([
    ['leak', { leak: true }, /tensor leak/],
    ['unusedParam', { unusedParam: true }, /gradients: orphan: no gradient/],
    ['noValidation', { noValidation: true }, /input validation: wrong channels/],
    ['wrongFeatureChs', { wrongFeatureChs: true }, /features: stage 1 \(stage2\): expected \[2, ~2, ~2, 5\]/],
    ['nondeterministic', { nondeterministic: true }, /eval determinism|forwardHead/],
    ['noCheckpointUnits', { noCheckpointUnits: true }, /has no blocks to checkpoint/],
    ['badCamLayer', { badCamLayer: true }, /TinyNet has no module 'stage3'/],
    ['statsOnRecompute', { statsOnRecompute: true }, /grad checkpointing: buffer 0: differs by .*recomputed forward updated running statistics/],
  ] as const)('catches a model with fault %s', (_n, faults, msg) => {
    expect(() => runConformance(subject(faults))).toThrow(msg);
    // the suite disposes what it built even when a check fails (the leak fault leaks on purpose)
  });
});
