import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPytorchStateDict, loadSafetensorsFile, runParity, type LoadedSafetensors } from '@vit/core';
import { compareTensors, nchwToNhwc, setTestBackend } from '@vit/core/testing';
import { Conv2Former, conv2formerFromOfficialConfig, conv2formerOfficialFeatures, type Conv2FormerOptions } from './index.js';

/**
 * Golden parity through the public loader. `k7_d16` and `k11_d16` are the shared goldens (official
 * code, torch 1.13). `odd_rect_k5` (odd, rectangular 45×71 input, in_chans 2, kernel 5, mixed mlp
 * ratios) and `five_dims_k3` (5 entries in dims, which the official forward cuts to 4 stages,
 * longer depths, ignored kwargs) were produced the same way from the sha256-identical official file
 * with torch 2.13 on CPU; `seed_cifar_small` from a PyTorch transcription of the seed's Paddle model.
 */
const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));
// Not an official-code golden (so kept out of test/fixtures, which `vit parity` runs as a folder).
const seedFixture = fileURLToPath(new URL('../test/seed/seed_cifar_small.safetensors', import.meta.url));

const TOL = 1e-4;
const GRAD_TOL = 1e-3;

interface Measured {
  logits: number;
  logitsTrain?: number;
  features: number;
  gradNormRel: number;
  gradElem: number;
}
const report: Record<string, Measured> = {};

function stateOf(file: LoadedSafetensors): Map<string, tf.Tensor> {
  return new Map([...file.tensors].filter(([k]) => !k.startsWith('golden.')));
}

function checkCase(name: string, model: Conv2Former, file: LoadedSafetensors, features: (x: tf.Tensor4D) => Record<string, tf.Tensor>): void {
  const g = (k: string) => {
    const t = file.tensors.get(k);
    if (!t) throw new Error(`${name}: no ${k}`);
    return t;
  };
  loadPytorchStateDict(model, stateOf(file), { strict: true });
  model.eval();
  const m: Measured = { logits: 0, features: 0, gradNormRel: 0, gradElem: 0 };
  tf.tidy(() => {
    const x = nchwToNhwc(g('golden.input')) as tf.Tensor4D;
    const logits = compareTensors(model.forward(x), g('golden.logits'));
    m.logits = logits.scaledMaxAbs;
    expect(logits.scaledMaxAbs, `${name} logits`).toBeLessThanOrEqual(TOL);

    const feats = features(x);
    const keys = [...file.tensors.keys()].filter((k) => k.startsWith('golden.features.'));
    expect(keys.length).toBeGreaterThan(0);
    expect(Object.keys(feats).sort()).toEqual(keys.sort());
    for (const k of keys) {
      const c = compareTensors(feats[k]!, nchwToNhwc(g(k)));
      m.features = Math.max(m.features, c.scaledMaxAbs);
      expect(c.scaledMaxAbs, `${name} ${k}`).toBeLessThanOrEqual(TOL);
    }

    const probe = g('golden.probe');
    const grad = tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(model.forward(inp as tf.Tensor4D), probe)))(x);
    const c = compareTensors(grad, nchwToNhwc(g('golden.grad.input')));
    m.gradNormRel = c.normRel;
    // Elementwise as well (PORTING.md: Conv2Former is smooth, no ReLU kinks): every element within
    // 1e-3 of the largest reference magnitude.
    m.gradElem = c.maxAbs / c.refMaxAbs;
    expect(c.normRel, `${name} grad norm-rel`).toBeLessThanOrEqual(GRAD_TOL);
    expect(m.gradElem, `${name} grad elementwise`).toBeLessThanOrEqual(GRAD_TOL);
  });
  const trainRef = file.tensors.get('golden.logits_train');
  if (trainRef) {
    model.train();
    tf.tidy(() => {
      const c = compareTensors(model.forward(nchwToNhwc(g('golden.input')) as tf.Tensor4D), trainRef);
      m.logitsTrain = c.scaledMaxAbs;
      expect(c.scaledMaxAbs, `${name} train-mode logits`).toBeLessThanOrEqual(TOL);
      // Train and eval really differ (batch statistics), so the check above is not vacuous.
      expect(compareTensors(trainRef, g('golden.logits')).maxAbs).toBeGreaterThan(1e-2);
    });
    model.eval();
  }
  report[name] = m;
}

describe('golden parity (official code)', () => {
  beforeAll(async () => {
    await setTestBackend();
    await tf.ready();
  });
  afterAll(() => {
    for (const [k, m] of Object.entries(report)) {
      console.log(
        `[conv2former parity] ${k}: logits ${m.logits.toExponential(2)}` +
          (m.logitsTrain !== undefined ? `, train ${m.logitsTrain.toExponential(2)}` : '') +
          `, features ${m.features.toExponential(2)}, grad norm-rel ${m.gradNormRel.toExponential(2)}, grad elem ${m.gradElem.toExponential(2)}`,
      );
    }
  });

  for (const name of ['k7_d16', 'k11_d16', 'odd_rect_k5', 'five_dims_k3']) {
    it(`${name}: eval/train logits, every stage feature and the input gradient`, async () => {
      const file = await loadSafetensorsFile(fixture(name));
      const before = tf.memory().numTensors;
      const model = conv2formerFromOfficialConfig(JSON.parse(file.metadata.config!));
      try {
        checkCase(name, model, file, (x) => conv2formerOfficialFeatures(model, x));
      } finally {
        model.dispose();
        expect(tf.memory().numTensors).toBe(before);
        for (const t of file.tensors.values()) t.dispose();
      }
    });
  }

  for (const name of ['k7_d16', 'k11_d16', 'odd_rect_k5', 'five_dims_k3']) {
    it(`${name}: passes core's runParity (the \`vit parity\` path) through the registered adapter`, async () => {
      const file = await loadSafetensorsFile(fixture(name));
      try {
        const res = runParity({ tensors: file.tensors, metadata: file.metadata });
        expect(res.errors).toEqual([]);
        expect(res.pass).toBe(true);
        expect(res.rows.map((r) => r.kind)).toEqual(expect.arrayContaining(['logits', 'logits_train', 'feature', 'grad']));
      } finally {
        for (const t of file.tensors.values()) t.dispose();
      }
    });
  }

  it("seed_cifar_small: the seed's options (1×1 stem, GroupNorm downsampling, no layer scale, LN head)", async () => {
    const file = await loadSafetensorsFile(seedFixture);
    const config = JSON.parse(file.metadata.config!) as Conv2FormerOptions;
    const model = new Conv2Former(config);
    try {
      expect(Object.keys(model.stateDict()).some((k) => k.includes('layer_scale'))).toBe(false);
      checkCase('seed_cifar_small', model, file, (x) => Object.fromEntries(model.forwardIntermediates(x).map((t, i) => [`golden.features.${i}`, t])));
    } finally {
      model.dispose();
      for (const t of file.tensors.values()) t.dispose();
    }
  });

  it('leaves the golden weights untouched when a key is missing (all-or-nothing load)', async () => {
    const file = await loadSafetensorsFile(fixture('k7_d16'));
    const model = conv2formerFromOfficialConfig(JSON.parse(file.metadata.config!));
    try {
      const state = stateOf(file);
      state.delete('stages.0.0.layer_scale_1');
      const before = tf.tidy(() => model.stages.at(0).stateDict()['0.attn.v.weight']!.clone());
      expect(() => loadPytorchStateDict(model, state)).toThrow(/stages\.0\.0\.layer_scale_1/);
      const after = model.stages.at(0).stateDict()['0.attn.v.weight']!;
      expect(compareTensors(after, before).maxAbs).toBe(0);
      before.dispose();
    } finally {
      model.dispose();
      for (const t of file.tensors.values()) t.dispose();
    }
  });
});
