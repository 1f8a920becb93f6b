import * as tf from '@tensorflow/tfjs-core';
import { Conv2d } from '../../nn/conv.js';
import { Linear } from '../../nn/linear.js';
import { Module } from '../../nn/module.js';
import { modelCard, pretrainedTag, registerModel, unregisterModel, type PretrainedSource } from '../../registry/registry.js';

/** A conv and a classifier: enough to exercise both official layouts (OIHW, [out, in]). */
export class TinyNet extends Module {
  readonly numClasses: number;
  stem = this.register('stem', new Conv2d(3, 4, 3, { stride: 2, padding: 1 }));
  head: Linear;
  constructor(numClasses = 5) {
    super();
    this.numClasses = numClasses;
    this.head = this.register('head', new Linear(4, numClasses));
  }
  forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => this.head.forward(tf.mean(tf.relu(this.stem.forward(x)), [1, 2])) as tf.Tensor2D);
  }
}

/** Registers `name` as a TinyNet whose card's pretrained tag lists `sources`. */
export function registerTiny(name: string, sources: PretrainedSource[]): void {
  unregisterModel(name);
  const card = modelCard({ name, arch: 'tiny', inputSize: [8, 8, 3], numClasses: 5, firstConv: 'stem', classifier: 'head', cropPct: 1 });
  registerModel(name, (o = {}) => new TinyNet((o.numClasses as number | undefined) ?? 5), {
    ...card,
    pretrained: [pretrainedTag(card, { tag: 'test', license: 'Apache-2.0', labels: '', sources })],
  });
}
