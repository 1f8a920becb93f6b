// Child process of accumulate.test.ts: a training step on wasm whose activations outgrow the 4 GiB
// heap. Prints "RESULT <error class>: <message>".
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../../backend.js';
import { Linear, Module } from '../../nn/index.js';
import { SGD } from '../../optim/index.js';
import { Trainer } from '../trainer.js';
import { toySource } from './toy.js';

class Huge extends Module {
  readonly head = this.register('head', new Linear(2, 4, { seed: 1 }));
  override forward(x: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => {
      // [2, 8, 8, 2] → 4.3 GB: an activation larger than the whole 4 GiB heap.
      const big = tf.mul(tf.tile(x, [1, 2048, 2048, 1]), 2);
      return this.head.forward(tf.mean(big, [1, 2])) as tf.Tensor2D;
    });
  }
}

await selectBackend('wasm', { quiet: true });
const model = new Huge();
const trainer = new Trainer({ model, optimizer: new SGD(model, { lr: 0.1 }), microBatch: 'off' });
try {
  await trainer.fit(toySource({ n: 4, classes: 4, shape: [8, 8, 2], batchSize: 2, seed: 1 }), { epochs: 1 });
  console.log('RESULT no error');
} catch (e) {
  console.log(`RESULT ${(e as Error).name}: ${(e as Error).message}`);
}
