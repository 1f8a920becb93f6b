import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPytorchStateDict, loadSafetensorsFile, runParity, type LoadedSafetensors } from '@vit/core';
import { compareTensors, nchwToNhwc, setTestBackend } from '@vit/core/testing';
import { RegionViT, regionvitFromOfficialConfig, regionvitOfficialFeatures } from './index.js';

/**
 * Golden parity through the public loader. `ws4_3conv` and `ws2_1conv_4st` are the shared goldens
 * (official code, torch 1.13). The `x_*` cases come from the same official file (sha256 checked in
 * their metadata) run by `test/gen_goldens.py` on torch 2.13, to cover what the shared ones do not:
 * inputs that are not a multiple of the region size (padding + masks, both mask quirks), the 'linear'
 * stem, windows 3, 5 and 7 and per-stage windows, PEG, det_norm, a depth-0 stage, qkv_bias False,
 * qk_scale, per-stage mlp ratios, LayerNorm eps 1e-5, 'c' projections that widen, 's' projections,
 * in_chans 1 and 2, num_classes 0 (test/README.md).
 */
const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));

const CASES = ['ws4_3conv', 'ws2_1conv_4st', 'x_linear_ws3_peg_pad', 'x_det_3conv_ws2_pad', 'x_1conv_ws7_rightpad', 'x_mixed_ws_3conv', 'x_det_linear_p8_depth0'];

const GRAD_TOL = 1e-3;
// The agreed tolerance is 1e-4·max(1, max|ref|) (runParity below checks it); this port lands within
// ~1e-6 on cpu, so the direct checks use 1e-5 to keep slips visible.
const STRICT_TOL = 1e-5;

interface Measured {
  logits: number;
  features: number;
  gradNormRel: number;
  gradElem: number;
}
const report: Record<string, Measured> = {};

function stateOf(file: LoadedSafetensors): Map<string, tf.Tensor> {
  return new Map([...file.tensors].filter(([k]) => !k.startsWith('golden.')));
}

function checkCase(name: string, model: RegionViT, file: LoadedSafetensors): void {
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
    expect(logits.scaledMaxAbs, `${name} logits`).toBeLessThanOrEqual(STRICT_TOL);

    const feats = regionvitOfficialFeatures(model, x);
    const keys = [...file.tensors.keys()].filter((k) => k.startsWith('golden.features'));
    expect(keys.length).toBeGreaterThan(0);
    expect(Object.keys(feats).sort()).toEqual(keys.sort());
    for (const k of keys) {
      const c = compareTensors(feats[k]!, nchwToNhwc(g(k)));
      m.features = Math.max(m.features, c.scaledMaxAbs);
      expect(c.scaledMaxAbs, `${name} ${k}`).toBeLessThanOrEqual(STRICT_TOL);
    }

    const probe = g('golden.probe');
    const grad = tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(model.forward(inp as tf.Tensor4D), probe)))(x);
    const c = compareTensors(grad, nchwToNhwc(g('golden.grad.input')));
    m.gradNormRel = c.normRel;
    // Elementwise too (PORTING.md: RegionViT is smooth): every element within 1e-3 of max |ref|.
    m.gradElem = c.maxAbs / c.refMaxAbs;
    expect(c.normRel, `${name} grad norm-rel`).toBeLessThanOrEqual(GRAD_TOL);
    expect(m.gradElem, `${name} grad elementwise`).toBeLessThanOrEqual(GRAD_TOL);
  });
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
        `[regionvit parity] ${k}: logits ${m.logits.toExponential(2)}, features ${m.features.toExponential(2)}, ` +
          `grad norm-rel ${m.gradNormRel.toExponential(2)}, grad elem ${m.gradElem.toExponential(2)}`,
      );
    }
  });

  for (const name of CASES) {
    it(`${name}: logits, every stage feature (local and regional) and the input gradient`, async () => {
      const file = await loadSafetensorsFile(fixture(name));
      const before = tf.memory().numTensors;
      const model = regionvitFromOfficialConfig(JSON.parse(file.metadata.config!));
      try {
        checkCase(name, model, file);
      } finally {
        model.dispose();
        expect(tf.memory().numTensors).toBe(before);
        for (const t of file.tensors.values()) t.dispose();
      }
    });

    it(`${name}: passes core's runParity (the \`vit parity\` path) through the registered adapter`, async () => {
      const file = await loadSafetensorsFile(fixture(name));
      try {
        const res = runParity({ tensors: file.tensors, metadata: file.metadata });
        expect(res.errors).toEqual([]);
        expect(res.pass).toBe(true);
        expect(res.rows.map((r) => r.kind)).toEqual(expect.arrayContaining(['logits', 'feature', 'grad']));
      } finally {
        for (const t of file.tensors.values()) t.dispose();
      }
    });
  }
});
