import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatParityRow, loadPytorchStateDict, loadSafetensorsFile, runParity, type LoadedSafetensors } from '@vit/core';
import { compareTensors, nchwToNhwc, setTestBackend } from '@vit/core/testing';
import { LITv2, litv2FromOfficialConfig, type LITv2Options } from './index.js';

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

describe('golden parity (official classification code) through runParity', () => {
  for (const name of OFFICIAL) {
    it(`${name}: eval/train logits, every stage output and the input gradient`, async () => {
      const f = await loadSafetensorsFile(file('fixtures', name));
      const before = tf.memory().numTensors;
      try {
        const res = runParity({ tensors: f.tensors, metadata: f.metadata });
        const detail = res.rows.map(formatParityRow).concat(res.errors).join('\n');
        expect(res.errors, detail).toEqual([]);
        expect(res.pass, detail).toBe(true);
        const kinds = res.rows.map((r) => r.kind);
        expect(kinds).toEqual(expect.arrayContaining(['logits', 'logits_train', 'feature', 'grad']));
        expect(kinds.filter((k) => k === 'feature').length).toBe(JSON.parse(f.metadata.config!).depths.length);
        const worst = (k: string) => Math.max(...res.rows.filter((r) => r.kind === k).map((r) => r.error));
        report.push(
          `[litv2 parity] ${name}: logits ${worst('logits').toExponential(2)}, train ${worst('logits_train').toExponential(2)}, features ${worst('feature').toExponential(2)}, grad norm-rel ${worst('grad').toExponential(2)}`,
        );
        expect(tf.memory().numTensors).toBe(before);
      } finally {
        dispose(f);
      }
    });
  }

  it('train-mode logits really differ from eval (BatchNorm batch statistics), so that check is not vacuous', async () => {
    const f = await loadSafetensorsFile(file('fixtures', 'r16_a05'));
    try {
      expect(compareTensors(get(f, 'golden.logits_train'), get(f, 'golden.logits')).maxAbs).toBeGreaterThan(1e-2);
    } finally {
      dispose(f);
    }
  });

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

describe("the seed's DCNv2 token merging", () => {
  it('seed_dcnv2_small: logits (eval/train), stage outputs and input gradient of the PyTorch transcription', async () => {
    const f = await loadSafetensorsFile(file('seed', 'seed_dcnv2_small'));
    const model = new LITv2(JSON.parse(f.metadata.config!) as LITv2Options);
    const before = tf.memory().numTensors;
    try {
      expect(Object.keys(model.stateDict())).toEqual(expect.arrayContaining(['layers.0.downsample.offset.weight', 'layers.0.downsample.mask.bias', 'layers.2.downsample.dconv.weight']));
      loadPytorchStateDict(model, stateOf(f), { strict: true });
      model.eval();
      let line = '[litv2 parity] seed_dcnv2_small:';
      tf.tidy(() => {
        const x = nchwToNhwc(get(f, 'golden.input')) as tf.Tensor4D;
        const logits = compareTensors(model.forward(x), get(f, 'golden.logits'));
        expect(logits.scaledMaxAbs).toBeLessThanOrEqual(TOL);
        const outs = model.forwardStages(x);
        let feat = 0;
        outs.forEach((o, i) => {
          const c = compareTensors(tf.reshape(o, [o.shape[0], -1, o.shape[3]]), get(f, `golden.features.${i}`));
          feat = Math.max(feat, c.scaledMaxAbs);
          expect(c.scaledMaxAbs, `stage ${i}`).toBeLessThanOrEqual(TOL);
        });
        const probe = get(f, 'golden.probe');
        const g = tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(model.forward(inp as tf.Tensor4D), probe)))(x);
        const gc = compareTensors(g, nchwToNhwc(get(f, 'golden.grad.input')));
        expect(gc.normRel).toBeLessThanOrEqual(GRAD_TOL);
        line += ` logits ${logits.scaledMaxAbs.toExponential(2)}, features ${feat.toExponential(2)}, grad norm-rel ${gc.normRel.toExponential(2)}`;
      });
      model.train();
      tf.tidy(() => {
        const c = compareTensors(model.forward(nchwToNhwc(get(f, 'golden.input')) as tf.Tensor4D), get(f, 'golden.logits_train'));
        expect(c.scaledMaxAbs).toBeLessThanOrEqual(TOL);
        line += `, train ${c.scaledMaxAbs.toExponential(2)}`;
      });
      report.push(line);
      expect(tf.memory().numTensors).toBe(before);
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
