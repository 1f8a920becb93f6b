import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPytorchStateDict, loadSafetensorsFile, type LoadedSafetensors } from '@vit/core';
import { compareTensors, describeGoldenParity, nchwToNhwc, setTestBackend } from '@vit/core/testing';
import {
  LITv2,
  litv2FromOfficialConfig,
  type LITv2Options,
} from './index.js';

/**
 * Golden parity through the public loader and core's `runParity` (the `vit parity` path).
 * `r16_a05` and `p2_r16_mlp2` are the shared goldens (official code, torch 1.13); the `x_*` cases
 * come from the same official files with torch 2.13 (see test/README.md); `seed_dcnv2_small` is
 * the seed's DCNv2 token merging, `det_pad_38x53` the official detection backbone's size handling.
 */
const file = (dir: string, name: string) => fileURLToPath(new URL(`../test/${dir}/${name}.safetensors`, import.meta.url));

const OFFICIAL = ['r16_a05', 'p2_r16_mlp2', 'x_lofi_only_floor_3st', 'x_hifi_only_ws4_msa_early', 'x_ws0_msa_depth0_5st', 'x_1stage_p3_a075', 'x_nondiv_img_3hf'];
const TOL = 1e-4;
const GRAD_TOL = 1e-3;

const report: string[] = [];
const dispose = (f: LoadedSafetensors) => {
  for (const t of f.tensors.values()) t.dispose();
};
const stateOf = (f: LoadedSafetensors) => new Map([...f.tensors].filter(([k]) => !k.startsWith('golden.')));
const get = (f: LoadedSafetensors, k: string) => {
  const t = f.tensors.get(k);
  if (!t) throw new Error(`no ${k}`);
  return t;
};

beforeAll(async () => {
  await setTestBackend();
  await tf.ready();
});
afterAll(() => {
  for (const line of report) console.log(line);
});

describeGoldenParity({
  arch: 'litv2',
  cases: [
    ...OFFICIAL.map((name) => ({ name, file: file('fixtures', name) })),
    {
      // The seed's DCNv2 token merging (a PyTorch transcription, not official code): stage outputs as tokens.
      name: 'seed_dcnv2_small',
      file: file('seed', 'seed_dcnv2_small'),
      build: (metadata) => new LITv2(JSON.parse(metadata.config!) as LITv2Options),
      features: (model, x) => Object.fromEntries((model as LITv2).forwardStages(x).map((o, i) => [`golden.features.${i}`, tf.reshape(o, [o.shape[0], -1, o.shape[3]])])),
      runParity: false,
    },
  ],
});

describe('parity is not vacuous', () => {
  it('a wrong computation fails: perturbing one DTM offset bias breaks parity', async () => {
    const f = await loadSafetensorsFile(file('fixtures', 'r16_a05'));
    const model = litv2FromOfficialConfig(JSON.parse(f.metadata.config!));
    try {
      const state = stateOf(f);
      const key = 'layers.1.downsample.dconv.conv_offset.bias';
      state.set(key, tf.add(state.get(key)!, tf.tensor1d([0, 0, 0, 0, 0, 0, 0.25, 0])));
      loadPytorchStateDict(model, state);
      model.eval();
      const logits = tf.tidy(() => model.forward(nchwToNhwc(get(f, 'golden.input')) as tf.Tensor4D));
      expect(compareTensors(logits, get(f, 'golden.logits')).scaledMaxAbs).toBeGreaterThan(TOL);
      logits.dispose();
      state.get(key)!.dispose();
    } finally {
      model.dispose();
      dispose(f);
    }
  });
});

describe('padInputs against the official detection backbone', () => {
  it('det_pad_38x53: non-square, non-divisible input; every stage map and the input gradient', async () => {
    const f = await loadSafetensorsFile(file('detection', 'det_pad_38x53'));
    const model = new LITv2(JSON.parse(f.metadata.config!) as LITv2Options);
    const before = tf.memory().numTensors;
    try {
      loadPytorchStateDict(model, stateOf(f), { strict: true });
      model.eval();
      tf.tidy(() => {
        const x = nchwToNhwc(get(f, 'golden.input')) as tf.Tensor4D;
        const maps = model.forwardIntermediates(x);
        let feat = 0;
        maps.forEach((m, i) => {
          const c = compareTensors(m, nchwToNhwc(get(f, `golden.features.${i}`)));
          feat = Math.max(feat, c.scaledMaxAbs);
          expect(c.scaledMaxAbs, `stage ${i}`).toBeLessThanOrEqual(TOL);
        });
        expect(maps.map((m) => m.shape.slice(1, 3))).toEqual([
          [10, 14],
          [5, 7],
          [2, 3],
          [1, 1],
        ]);
        const probe = nchwToNhwc(get(f, 'golden.probe'));
        const g = tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(model.forwardIntermediates(inp as tf.Tensor4D, { indices: [-1] })[0]!, probe)))(x);
        const gc = compareTensors(g, nchwToNhwc(get(f, 'golden.grad.input')));
        expect(gc.normRel).toBeLessThanOrEqual(GRAD_TOL);
        report.push(`[litv2 parity] det_pad_38x53 (padInputs): stage maps ${feat.toExponential(2)}, grad norm-rel ${gc.normRel.toExponential(2)}`);
      });
      // The classifier default refuses this input with a ShapeError naming the problem.
      const strict = new LITv2({ ...(JSON.parse(f.metadata.config!) as LITv2Options), padInputs: false });
      expect(() => tf.tidy(() => strict.forward(tf.zeros([1, 38, 53, 3])))).toThrow(/square token grid/);
      strict.dispose();
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      model.dispose();
      dispose(f);
    }
  });
});
