import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPytorchStateDict, loadSafetensorsFile, runParity, type LoadedSafetensors } from '@vit/core';
import { compareTensors, GRAD_TOLERANCE, LOGITS_TOLERANCE, nchwToNhwc, setTestBackend } from '@vit/core/testing';
import { mrlaFromOfficialConfig, mrlaOfficialFeatures, ResNetMRLA } from './index.js';

/**
 * Golden parity against the official PyTorch ResNet_mrlal (see test/fixtures, copied from
 * shared/golden/mrla): eval logits, train-mode logits (BatchNorm batch statistics), every stage
 * feature and the input gradient, through core's public loader.
 */
const CASES = ['e1_w16', 'e1_g2_w8'] as const;
const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));

function get(g: LoadedSafetensors, key: string): tf.Tensor {
  const t = g.tensors.get(key);
  if (!t) throw new Error(`golden has no ${key}`);
  return t;
}

describe.each(CASES)('golden parity %s', (name) => {
  let golden: LoadedSafetensors;
  let model: ResNetMRLA;
  let before: number;

  beforeAll(async () => {
    await setTestBackend();
    golden = await loadSafetensorsFile(fixture(name));
    before = tf.memory().numTensors;
    const config = JSON.parse(golden.metadata.config!) as Record<string, unknown>;
    const overrides = JSON.parse(golden.metadata.overrides ?? '{}') as Record<string, unknown>;
    model = mrlaFromOfficialConfig(config, { overrides });
    const state = new Map([...golden.tensors].filter(([k]) => !k.startsWith('golden.')));
    loadPytorchStateDict(model, state, { strict: true });
  });

  afterAll(() => {
    model.dispose();
    // Everything the model made (and every forward pass) is gone; only the golden's tensors remain.
    expect(tf.memory().numTensors).toBe(before);
    for (const t of golden.tensors.values()) t.dispose();
  });

  it('builds the official key set exactly', () => {
    const order = JSON.parse(golden.metadata.state_dict_order!) as string[];
    const ours = Object.keys(model.stateDict());
    expect(ours).toEqual(order.filter((k) => !k.endsWith('num_batches_tracked')));
  });

  it('eval logits and every stage feature', () => {
    model.eval();
    const n0 = tf.memory().numTensors;
    tf.tidy(() => {
      const x = nchwToNhwc(get(golden, 'golden.input')) as tf.Tensor4D;
      const c = compareTensors(model.forward(x), get(golden, 'golden.logits'));
      console.log(`[${name}] logits max_abs=${c.maxAbs.toExponential(2)} (max|ref| ${c.refMaxAbs.toFixed(3)})`);
      expect(c.scaledMaxAbs).toBeLessThanOrEqual(LOGITS_TOLERANCE);
      const feats = mrlaOfficialFeatures(model, x);
      const keys = [...golden.tensors.keys()].filter((k) => k.startsWith('golden.features.'));
      expect(keys.length).toBe(4);
      for (const k of keys) {
        const f = compareTensors(feats[k]!, nchwToNhwc(get(golden, k)));
        console.log(`[${name}] ${k} max_abs=${f.maxAbs.toExponential(2)} (max|ref| ${f.refMaxAbs.toFixed(3)})`);
        expect(f.scaledMaxAbs).toBeLessThanOrEqual(LOGITS_TOLERANCE);
      }
    });
    expect(tf.memory().numTensors).toBe(n0);
  });

  it('input gradient (norm-relative, ReLU kinks)', () => {
    model.eval();
    const n0 = tf.memory().numTensors;
    tf.tidy(() => {
      const x = nchwToNhwc(get(golden, 'golden.input')) as tf.Tensor4D;
      const probe = get(golden, 'golden.probe');
      const g = tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(model.forward(inp as tf.Tensor4D), probe)))(x);
      const c = compareTensors(g, nchwToNhwc(get(golden, 'golden.grad.input')));
      console.log(`[${name}] grad norm_rel=${c.normRel.toExponential(2)} max_abs=${c.maxAbs.toExponential(2)} (max|ref| ${c.refMaxAbs.toExponential(2)})`);
      expect(c.normRel).toBeLessThanOrEqual(GRAD_TOLERANCE);
    });
    expect(tf.memory().numTensors).toBe(n0);
  });

  it('train-mode logits use BatchNorm batch statistics', () => {
    const n0 = tf.memory().numTensors;
    model.train();
    try {
      tf.tidy(() => {
        const x = nchwToNhwc(get(golden, 'golden.input')) as tf.Tensor4D;
        const c = compareTensors(model.forward(x), get(golden, 'golden.logits_train'));
        console.log(`[${name}] logits_train max_abs=${c.maxAbs.toExponential(2)} (max|ref| ${c.refMaxAbs.toFixed(3)})`);
        expect(c.scaledMaxAbs).toBeLessThanOrEqual(LOGITS_TOLERANCE);
      });
    } finally {
      model.eval();
    }
    expect(tf.memory().numTensors).toBe(n0);
  });

  it('passes core runParity (what `vit parity` runs) through the registered adapter', () => {
    const res = runParity({ tensors: golden.tensors, metadata: golden.metadata });
    expect(res.errors).toEqual([]);
    expect(res.rows.map((r) => r.kind).sort()).toEqual(['feature', 'feature', 'feature', 'feature', 'grad', 'logits', 'logits_train']);
    for (const r of res.rows) expect(r.pass, `${r.key}: ${r.error} > ${r.tolerance}`).toBe(true);
  });
});
