// Child process of accumulate.test.ts: training steps on wasm whose activations outgrow the 4 GiB
// heap, one by a single 4.3 GB request (which wasm32's malloc would wrap to a small buffer), one
// by filling the heap with 1 GiB tensors. Prints "RESULT <error class>: <message>" for each, then
// "AFTER <1 + 2>" computed on the same backend (a refused allocation leaves it usable).
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
  constructor(readonly copies: number) {
    super();
  }
  override forward(x: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => {
      // [2, 8, 8, 2] tiled 2048² → 4.3 GB, larger than the whole heap; 1024² → 1 GiB, kept by each
      // product for the backward pass until the heap is full.
      let big = tf.tile(x, [1, this.copies, this.copies, 1]);
      for (let i = 0; i < 5; i++) big = tf.mul(big, big);
      return this.head.forward(tf.mean(big, [1, 2])) as tf.Tensor2D;
    });
  }
}

await selectBackend('wasm', { quiet: true });
for (const copies of [2048, 1024]) {
  const model = new Huge(copies);
  const trainer = new Trainer({ model, optimizer: new SGD(model, { lr: 0.1 }), microBatch: 'off' });
  try {
    await trainer.fit(toySource({ n: 4, classes: 4, shape: [8, 8, 2], batchSize: 2, seed: 1 }), { epochs: 1 });
    console.log('RESULT no error');
  } catch (e) {
    console.log(`RESULT ${(e as Error).name}: ${(e as Error).message}`);
  }
  model.dispose();
}
console.log(`AFTER ${tf.add(tf.scalar(1), tf.scalar(2)).dataSync()[0]}`);
