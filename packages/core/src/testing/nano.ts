import * as tf from '@tensorflow/tfjs-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { explain } from '../explain/explain.js';
import { loadPretrained } from '../pretrained/pretrained.js';
import { explanationFocus, fashionMnistProbe, type FashionMnistProbe } from './explain.js';
import type { Module } from '../nn/module.js';
import { createModel, getModelCard } from '../registry/registry.js';
import type { VisionModel } from '../registry/contract.js';
import { setTestBackend } from './backend.js';

/** The card note every `*_nano` variant carries. */
export const NANO_NOTE =
  'Defined by @vit for 32×32 small-image datasets (Fashion-MNIST, CIFAR) and quick experiments; not from the paper. Results: docs/results.md.';

export interface DescribeNanoVariantOptions {
  /** Registered name (`conv2former_nano`). */
  name: string;
  /** Exact parameter count with its 10 classes; the built model and the card must state it. */
  paramCount: number;
  /** The count the package's variant table records, when it has one (checked to equal `paramCount`). */
  tableParamCount?: number;
  /** Parameters that legitimately get no gradient at 32×32 (dotted names, in `namedParameters` order). */
  zeroGrad?: string[];
  /** Why 28×28 inputs (Fashion-MNIST before resizing) run; adds a test that they give [1, 10] logits. */
  runsAt28?: string;
  /** More tests for the same variant (e.g. its behaviour on 28×28 inputs), under the same leak check. */
  extraTests?: () => void;
}

/**
 * The shared tests of a `*_nano` variant: an unofficial 32×32, 10-class card; the exact parameter
 * count; a training step at [2, 32, 32, 3] with finite logits and gradients, the expected set of
 * gradient-free parameters, and a lower loss after one Adam step. No tensor may leak.
 */
export function describeNanoVariant(o: DescribeNanoVariantOptions): void {
  type Net = VisionModel & Module;
  const zeroGrad = o.zeroGrad ?? [];
  describe(o.name, () => {
    let startTensors = 0;
    beforeAll(async () => {
      await setTestBackend();
      startTensors = tf.memory().numTensors;
    });
    afterEach(() => {
      expect(tf.memory().numTensors).toBe(startTensors);
    });

    it('has an unofficial 32×32, 10-class card with no top-1', () => {
      expect(getModelCard(o.name)).toMatchObject({
        inputSize: [32, 32, 3],
        numClasses: 10,
        official: false,
        cropPct: 1,
        interpolation: 'bilinear',
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        notes: NANO_NOTE,
      });
      expect(getModelCard(o.name).top1).toBeUndefined();
    });

    it(`the card states the built model's exact parameter count: ${o.paramCount.toLocaleString('en-US')}`, () => {
      const m = createModel<Net>(o.name);
      try {
        expect(m.numParams()).toBe(o.paramCount);
        expect(getModelCard(o.name).paramCount).toBe(o.paramCount);
        if (o.tableParamCount !== undefined) expect(o.tableParamCount).toBe(o.paramCount);
      } finally {
        m.dispose();
      }
    });

    it('trains: forward at [2, 32, 32, 3] to finite 10-class logits, finite gradients, one Adam step lowers the loss', () => {
      const m = createModel<Net>(o.name, { dropPathRate: 0 });
      const opt = tf.train.adam(1e-3);
      const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
      const y = tf.tidy(() => tf.oneHot(tf.tensor1d([3, 7], 'int32'), 10));
      try {
        m.train();
        const named = m.namedParameters();
        const loss = () => tf.losses.softmaxCrossEntropy(y, m.forward(x)) as tf.Scalar;
        const l0 = tf.tidy(() => {
          const logits = m.forward(x);
          expect(logits.shape).toEqual([2, 10]);
          expect(Number.isFinite(tf.sum(logits).dataSync()[0]!)).toBe(true);
          return tf.losses.softmaxCrossEntropy(y, logits).dataSync()[0]!;
        });
        const { value, grads } = tf.variableGrads(loss, named.map(([, v]) => v));
        const zero: string[] = [];
        for (const [name, v] of named) {
          const [finite, nonZero] = tf.tidy(() => [tf.all(tf.isFinite(grads[v.name]!)), tf.any(tf.notEqual(grads[v.name]!, 0))].map((t) => t.dataSync()[0] === 1));
          expect(finite, name).toBe(true);
          if (!nonZero) zero.push(name);
        }
        expect(zero).toEqual(zeroGrad);
        opt.applyGradients(named.map(([, v]) => ({ name: v.name, tensor: grads[v.name]! })));
        tf.dispose([value, grads]);
        const l1 = tf.tidy(() => loss().dataSync()[0]!);
        expect(l1).toBeLessThan(l0);
      } finally {
        tf.dispose([x, y]);
        opt.dispose();
        m.dispose();
      }
    });

    if (o.runsAt28) {
      it(`28×28 inputs (Fashion-MNIST before resizing) run (${o.runsAt28})`, () => {
        const m = createModel<Net>(o.name);
        try {
          m.eval();
          tf.tidy(() => {
            expect(m.forward(tf.zeros([1, 28, 28, 3]) as tf.Tensor4D).shape).toEqual([1, 10]);
          });
        } finally {
          m.dispose();
        }
      });
    }

    o.extraTests?.();
  });
}

export interface DescribeExplanationFocusOptions {
  /** A `*_nano` variant with `fashion_mnist` weights. */
  name: string;
  /** Folder with the Fashion-MNIST IDX files (the CLI's bundled subset). */
  dataDir: string;
  methods: Array<'gradcam' | 'rollout'>;
  /** The garment's mean map value over the empty background's must exceed this (over all images). */
  minRatio: number;
}

/**
 * The sanity check of an explanation on trained weights: on the first 4 Fashion-MNIST test images
 * of every class, the map of the trained nano model is higher on the garment than on the empty
 * background around it (averaged over the images, and in most of them).
 */
export function describeExplanationFocus(o: DescribeExplanationFocusOptions): void {
  describe(`${o.name} (fashion_mnist weights) explains Fashion-MNIST`, () => {
    let model: Module;
    let probe: FashionMnistProbe;
    beforeAll(async () => {
      await setTestBackend();
      model = (await loadPretrained(o.name, { tag: 'fashion_mnist' })).model;
      probe = await fashionMnistProbe(o.dataDir);
    });
    afterAll(() => {
      model?.dispose();
      probe?.x.dispose();
    });
    for (const method of o.methods) {
      it(`${method}: more of the map on the garments than on the empty background (40 test images)`, async () => {
        // A long synchronous pass starves vitest's worker RPC: yield first.
        await new Promise<void>((r) => setTimeout(r, 0));
        const before = tf.memory().numTensors;
        const r = explain(model, probe.x, { method });
        const f = explanationFocus(r.map, probe);
        tf.dispose([r.map, r.logits]);
        expect(tf.memory().numTensors).toBe(before);
        expect(f.images).toBeGreaterThanOrEqual(30);
        expect(f.object / f.empty, `garment ${f.object.toFixed(3)}, empty ${f.empty.toFixed(3)}`).toBeGreaterThan(o.minRatio);
        expect(f.wins, `the garment is ahead in ${f.wins} of ${f.images} images`).toBeGreaterThan(f.images / 2);
      });
    }
  });
}
