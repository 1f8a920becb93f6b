import * as tf from '@tensorflow/tfjs-core';
import { Conv2d } from '../../nn/conv.js';
import { Linear } from '../../nn/linear.js';
import { Module } from '../../nn/module.js';
import { values } from './kernel_harness.js';

/**
 * The work wasm_threads.test.ts runs on the threaded build (in its own process) and on the
 * single-threaded build (in a child process), compared value by value: convs and matMuls through
 * XNNPACK and through our kernels, and one SGD step of a small conv net.
 */

class SmallNet extends Module {
  readonly stem = this.register('stem', new Conv2d(3, 16, 3, { padding: 1, seed: 1 }));
  // Depthwise 5×5, multiplier 1, 16 channels: our SIMD kernels forward and backward.
  readonly dw = this.register('dw', new Conv2d(16, 16, 5, { padding: 2, groups: 16, seed: 2 }));
  readonly down = this.register('down', new Conv2d(16, 32, 3, { stride: 2, padding: 1, seed: 3 }));
  readonly head = this.register('head', new Linear(32, 10, { seed: 4 }));

  override forward(x: tf.Tensor): tf.Tensor {
    let y = tf.relu(this.stem.forward(x));
    y = tf.add(y, this.dw.forward(y));
    y = tf.relu(this.down.forward(y));
    return this.head.forward(tf.mean(y, [1, 2]));
  }
}

export interface WorkResult {
  /** Named outputs, as plain arrays (JSON-safe). */
  outputs: Record<string, number[]>;
  /** tf.memory().numTensors before and after all of it. */
  tensors: [number, number];
  /** The backend's data ids before and after. */
  dataIds: [number, number];
}

const t = (shape: number[], seed: number) => tf.tensor(values(shape, seed), shape);
const read = (x: tf.Tensor) => Array.from(x.dataSync());

export function runWork(): WorkResult {
  const backend = tf.backend() as unknown as { numDataIds(): number };
  const tensors0 = tf.memory().numTensors;
  const ids0 = backend.numDataIds();
  const outputs: Record<string, number[]> = {};
  tf.tidy(() => {
    const x = t([2, 16, 16, 8], 11);
    const w = t([3, 3, 8, 16], 12);
    outputs.conv = read(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'));
    const [, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same'))([x, w]);
    outputs.convFilterGrad = read(dw!);
    outputs.depthwise = read(tf.depthwiseConv2d(x as tf.Tensor4D, t([7, 7, 8, 1], 13) as tf.Tensor4D, 1, 'same'));
    outputs.matMul = read(tf.matMul(t([64, 96], 14), t([96, 80], 15)));
    outputs.batchedMatMul = read(tf.matMul(t([4, 33, 40], 16), t([4, 50, 40], 17), false, true));
    outputs.sumExp = read(tf.sum(tf.exp(x), [1, 2]));
  });
  // One SGD step: loss, then the updated parameters.
  const net = new SmallNet();
  const vars = net.parameters();
  const x = t([4, 16, 16, 3], 21);
  const labels = tf.tidy(() => tf.oneHot(tf.tensor1d([1, 4, 7, 9], 'int32'), 10).toFloat());
  const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(labels, net.forward(x)) as tf.Scalar, vars);
  outputs.loss = read(value);
  tf.tidy(() => {
    for (const v of vars) v.assign(tf.sub(v, tf.mul(grads[v.name]!, 0.1)));
  });
  outputs.stepped = vars.flatMap((v) => read(v));
  tf.dispose([value, x, labels, ...Object.values(grads)]);
  net.dispose();
  return { outputs, tensors: [tensors0, tf.memory().numTensors], dataIds: [ids0, backend.numDataIds()] };
}
