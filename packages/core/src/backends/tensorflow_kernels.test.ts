import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { stockKernel } from './kernel_util.js';
import { installTensorflowKernels } from './tensorflow_kernels.js';
import { BATCH_NORM, BATCH_NORM_GRAD } from './wasm_norm.js';

// Our stride-1 conv gradients on tfjs-node against TensorFlow's own kernels. Runs where
// @tensorflow/tfjs-node loads (CI builds it from the local TensorFlow wheel); skips elsewhere.
// A variable specifier: tfjs-node is an optional peer, so its types may be absent at typecheck.
// oneDNN off (before libtensorflow starts): with it on only the 1×1 gradients are ours.
process.env.TF_ENABLE_ONEDNN_OPTS = '0';
const tfNodeSpec = '@tensorflow/tfjs-node';
const tfNode = await import(tfNodeSpec).then(
  () => null,
  (e: unknown) => `@tensorflow/tfjs-node is not available here (${String(e).split('\n')[0]})`,
);

describe.skipIf(tfNode !== null)('tensorflow backend conv gradient kernels', () => {
  it('match TensorFlow for stride-1 3×3 (same and valid, rectangular, odd sizes) and 1×1 (same and valid, as matrix products), and leave stride 2 to TF', async () => {
    await tf.setBackend('tensorflow');
    const ours = [tf.Conv2DBackpropInput, tf.Conv2DBackpropFilter, BATCH_NORM, BATCH_NORM_GRAD];
    expect(installTensorflowKernels()).toEqual(ours);
    expect(installTensorflowKernels()).toEqual(ours);
    const be = tf.backend();
    const cases: Array<[number[], number[], number, 'same' | 'valid']> = [
      [[2, 9, 7, 5], [3, 3, 5, 6], 1, 'same'],
      [[3, 8, 8, 4], [3, 3, 4, 8], 1, 'valid'],
      [[2, 6, 11, 3], [5, 3, 3, 2], 1, 'same'],
      [[2, 9, 9, 4], [3, 3, 4, 6], 2, 'same'],
      [[2, 8, 8, 4], [1, 1, 4, 6], 1, 'valid'],
      [[3, 5, 7, 9], [1, 1, 9, 4], 1, 'same'],
      [[2, 9, 9, 4], [1, 1, 4, 6], 2, 'same'],
    ];
    const before = tf.memory().numTensors;
    for (const [xs, ws, s, pad] of cases) {
      tf.tidy(() => {
        const x = tf.randomNormal(xs, 0, 1, 'float32', 1);
        const w = tf.randomNormal(ws, 0, 1, 'float32', 2);
        const dy = tf.randomNormal(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, s, pad).shape, 0, 1, 'float32', 3);
        const common = { strides: [s, s], pad, dataFormat: 'NHWC', dimRoundingMode: undefined };
        const run = (name: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, unknown>, stock: boolean) => {
          const k = stock ? stockKernel(name, 'tensorflow')! : tf.getKernel(name, 'tensorflow')!;
          const out = k.kernelFunc({ inputs, attrs: attrs as tf.NamedAttrMap, backend: be }) as tf.TensorInfo;
          // tfjs-node's kernels (and ours) return engine tensors already.
          return out instanceof tf.Tensor ? out : tf.engine().makeTensorFromTensorInfo(out);
        };
        for (const [name, inputs, attrs] of [
          [tf.Conv2DBackpropInput, { dy, filter: w }, { ...common, inputShape: xs }],
          [tf.Conv2DBackpropFilter, { x, dy }, { ...common, filterShape: ws }],
        ] as const) {
          const ours = run(name, inputs, attrs, false);
          const theirs = run(name, inputs, attrs, true);
          expect(ours.shape).toEqual(theirs.shape);
          const err = tf.max(tf.abs(tf.sub(ours, theirs))).dataSync()[0]! / Math.max(1, tf.max(tf.abs(theirs)).dataSync()[0]!);
          expect(err, `${name} ${xs} ${ws} s${s} ${pad}`).toBeLessThan(1e-5);
        }
      });
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('leaves 3×3 gradients to TensorFlow when its oneDNN kernels are asked for', async () => {
    await tf.setBackend('tensorflow');
    installTensorflowKernels();
    const x = tf.randomNormal([2, 6, 6, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const w = tf.randomNormal([3, 3, 3, 4], 0, 1, 'float32', 2) as tf.Tensor4D;
    const kernelsOf = () => tf.profile(() => tf.grad((xi: tf.Tensor) => tf.sum(tf.conv2d(xi as tf.Tensor4D, w, 1, 'same')))(x)).then((p) => p.kernelNames);
    try {
      // Ours writes dX as a padded forward conv of the flipped filter.
      expect(await kernelsOf()).toContain(tf.Reverse);
      process.env.TF_ENABLE_ONEDNN_OPTS = '1';
      expect(await kernelsOf()).not.toContain(tf.Reverse);
    } finally {
      process.env.TF_ENABLE_ONEDNN_OPTS = '0';
      tf.dispose([x, w]);
    }
  });
});
