import * as tf from '@tensorflow/tfjs-core';
import { Module } from '../../nn/module.js';
import { Conv2d } from '../../nn/conv.js';
import { Linear } from '../../nn/linear.js';
import type { FeatureInfo, VisionModel } from '../../registry/contract.js';

/**
 * A two-conv network with a non-linear head (mean of ReLU): the gradient reaching the last map
 * varies over space, so Grad-CAM has something to find. Seeded: the same weights every run.
 */
export class ToyConvNet extends Module implements VisionModel {
  readonly numClasses = 5;
  readonly numFeatures = 6;
  readonly featureInfo: FeatureInfo[] = [
    { numChs: 4, reduction: 2, module: 'stem' },
    { numChs: 6, reduction: 2, module: 'stage' },
  ];
  readonly stem = this.register('stem', new Conv2d(3, 4, 3, { stride: 2, padding: 1, seed: 11 }));
  readonly stage = this.register('stage', new Conv2d(4, 6, 3, { padding: 1, seed: 13 }));
  readonly head = this.register('head', new Linear(6, 5, { seed: 17 }));

  forwardFeatures(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => this.stage.forward(tf.relu(this.stem.forward(x))) as tf.Tensor4D);
  }
  forwardHead(f: tf.Tensor, o: { preLogits?: boolean } = {}): tf.Tensor2D {
    return tf.tidy(() => {
      const pooled = tf.mean(tf.relu(f), [1, 2]) as tf.Tensor2D;
      return o.preLogits ? pooled : (this.head.forward(pooled) as tf.Tensor2D);
    });
  }
  forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x)));
  }
  resetClassifier(): void {
    throw new Error('not needed');
  }
  forwardIntermediates(x: tf.Tensor4D): tf.Tensor4D[] {
    return tf.tidy(() => {
      const a = this.stem.forward(x) as tf.Tensor4D;
      return [a, this.stage.forward(tf.relu(a)) as tf.Tensor4D];
    });
  }
}

/** `softmax(x·xᵀ/√C)` over tokens, one head: a self-attention whose weights the test can recompute. */
export class ToyAttention extends Module {
  weights(x: tf.Tensor): tf.Tensor4D {
    return tf.tidy(() => {
      const c = x.shape[2]!;
      return tf.expandDims(tf.softmax(tf.div(tf.matMul(x as tf.Tensor3D, x as tf.Tensor3D, false, true), Math.sqrt(c))), 1) as tf.Tensor4D;
    });
  }
  forward(x: tf.Tensor): tf.Tensor3D {
    return tf.tidy(() => tf.add(x, tf.squeeze(tf.matMul(this.weights(x), tf.expandDims(x, 1)), [1])) as tf.Tensor3D);
  }
}

/** Patchify conv (stride 4) → `depth` attention layers → mean of tokens → Linear. */
export class ToyAttentionNet extends Module {
  readonly embed = this.register('embed', new Conv2d(3, 8, 4, { stride: 4, seed: 19 }));
  readonly blocks: ToyAttention[] = [];
  readonly head = this.register('head', new Linear(8, 3, { seed: 23 }));
  constructor(
    depth = 2,
    private readonly repeatFirst = false,
  ) {
    super();
    for (let i = 0; i < depth; i++) this.blocks.push(this.register(`attn${i}`, new ToyAttention()));
  }
  tokens(x: tf.Tensor4D): tf.Tensor3D {
    return tf.tidy(() => {
      const e = this.embed.forward(x) as tf.Tensor4D;
      const [b, h, w, c] = e.shape;
      return tf.reshape(e, [b, h * w, c]) as tf.Tensor3D;
    });
  }
  forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      let t = this.tokens(x);
      for (const blk of this.blocks) t = blk.forward(t);
      if (this.repeatFirst) t = this.blocks[0]!.forward(t);
      return this.head.forward(tf.mean(t, 1)) as tf.Tensor2D;
    });
  }
}
