import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Module } from '../nn/module.js';
import { compareTensors, GRAD_TOLERANCE, LOGITS_TOLERANCE, nchwToNhwc } from '../parity/compare.js';
import { runParity } from '../parity/parity.js';
import { getArchitecture } from '../registry/registry.js';
import { loadPytorchStateDict } from '../weights/convert.js';
import { loadSafetensorsFile, type LoadedSafetensors } from '../weights/io.js';
import { setTestBackend } from './backend.js';

/** One golden file (official-code outputs, README of shared/golden for the format). */
export interface GoldenCase {
  name: string;
  /** The `.safetensors` file. */
  file: string;
  /** Builds the model; default: the architecture adapter's `fromOfficialConfig` on the golden's `config` (and `overrides`). */
  build?: (metadata: Record<string, string>) => Module;
  /** The model's tensors named as the golden's `golden.features*`; default: the adapter's `officialFeatures`. */
  features?: (model: Module, x: tf.Tensor4D) => Record<string, tf.Tensor>;
  /** Also through `runParity` (what `vit parity` runs): default true; false for goldens that are not the official code's (a seed transcription). */
  runParity?: boolean;
}

export interface GoldenParityOptions {
  /** The architecture adapter's name (`cait`…). */
  arch: string;
  /** Case names (files `<fixtures>/<name>.safetensors`) or full cases. */
  cases: Array<string | GoldenCase>;
  /** Folder of the named cases (a `file:` URL or a path). */
  fixtures?: URL | string;
  /** Logits and features, scaled max-abs (default `LOGITS_TOLERANCE`). */
  tolerance?: number;
  /** Input gradient, norm-relative (default `GRAD_TOLERANCE`). */
  gradTolerance?: number;
  /** Smooth models (no ReLU kinks, PORTING.md): every gradient element within `gradTolerance` of max |ref| too. */
  gradElementwise?: boolean;
  /** The model's state-dict keys in the official order (the golden's `state_dict_order`, BatchNorm counters aside). */
  keyOrder?: boolean;
}

function caseOf(c: string | GoldenCase, fixtures: URL | string | undefined): GoldenCase {
  if (typeof c !== 'string') return c;
  if (fixtures === undefined) throw new Error(`describeGoldenParity: case '${c}' needs \`fixtures\``);
  const dir = typeof fixtures === 'string' ? fixtures : decodeURIComponent(fixtures.pathname);
  return { name: c, file: `${dir.replace(/\/$/, '')}/${c}.safetensors` };
}

const officialState = (f: LoadedSafetensors) => new Map([...f.tensors].filter(([k]) => !k.startsWith('golden.')));

/**
 * Golden parity of one architecture, one test per case: eval logits, train-mode logits (where the
 * golden has them, and they differ from eval), every feature, the input gradient, the official key
 * order, the same through `runParity`, no tensor left behind; plus an all-or-nothing load check. A
 * line per case reports the measured errors.
 */
export function describeGoldenParity(options: GoldenParityOptions): void {
  const tol = options.tolerance ?? LOGITS_TOLERANCE;
  const gradTol = options.gradTolerance ?? GRAD_TOLERANCE;
  const cases = options.cases.map((c) => caseOf(c, options.fixtures));
  const report: string[] = [];

  describe(`golden parity (${options.arch}, official code)`, () => {
    beforeAll(async () => {
      await setTestBackend();
      await tf.ready();
    });
    afterAll(() => report.forEach((l) => console.log(l)));

    for (const c of cases) {
      it(`${c.name}: logits, every feature and the input gradient${c.runParity === false ? '' : ', and through runParity'}`, async () => {
        const file = await loadSafetensorsFile(c.file);
        const adapter = getArchitecture(options.arch);
        const before = tf.memory().numTensors;
        const model = c.build
          ? c.build(file.metadata)
          : adapter.fromOfficialConfig(JSON.parse(file.metadata.config!) as Record<string, unknown>, {
              overrides: file.metadata.overrides ? (JSON.parse(file.metadata.overrides) as Record<string, unknown>) : undefined,
            });
        const g = (k: string) => {
          const t = file.tensors.get(k);
          if (!t) throw new Error(`${c.name}: no ${k}`);
          return t;
        };
        const m = { logits: 0, train: undefined as number | undefined, features: 0, gradNormRel: 0, gradElem: 0 };
        try {
          loadPytorchStateDict(model, officialState(file), { strict: true });
          if (options.keyOrder && file.metadata.state_dict_order) {
            const order = (JSON.parse(file.metadata.state_dict_order) as string[]).filter((k) => !k.endsWith('num_batches_tracked'));
            expect(Object.keys(model.stateDict()), `${c.name} key order`).toEqual(order);
          }
          model.eval();
          tf.tidy(() => {
            const x = nchwToNhwc(g('golden.input')) as tf.Tensor4D;
            const logits = compareTensors(model.forward(x) as tf.Tensor, g('golden.logits'));
            m.logits = logits.scaledMaxAbs;
            expect(logits.scaledMaxAbs, `${c.name} logits`).toBeLessThanOrEqual(tol);

            const feats = (c.features ?? adapter.officialFeatures)?.(model, x) ?? {};
            const keys = [...file.tensors.keys()].filter((k) => k.startsWith('golden.features'));
            expect(keys.length, `${c.name}: the golden has features`).toBeGreaterThan(0);
            expect(Object.keys(feats).sort()).toEqual(keys.sort());
            for (const k of keys) {
              const f = compareTensors(feats[k]!, nchwToNhwc(g(k)));
              m.features = Math.max(m.features, f.scaledMaxAbs);
              expect(f.scaledMaxAbs, `${c.name} ${k}`).toBeLessThanOrEqual(tol);
            }

            const probe = g('golden.probe');
            const grad = tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(model.forward(inp as tf.Tensor4D) as tf.Tensor, probe)))(x);
            const gc = compareTensors(grad, nchwToNhwc(g('golden.grad.input')));
            m.gradNormRel = gc.normRel;
            m.gradElem = gc.refMaxAbs === 0 ? gc.maxAbs : gc.maxAbs / gc.refMaxAbs;
            if (gc.refMaxAbs === 0) {
              // The logits do not depend on the image (e.g. CaiT without class attention): exactly zero.
              expect(gc.maxAbs, `${c.name} grad (expected exactly zero)`).toBe(0);
            } else {
              expect(gc.normRel, `${c.name} grad norm-rel`).toBeLessThanOrEqual(gradTol);
              if (options.gradElementwise) expect(m.gradElem, `${c.name} grad elementwise`).toBeLessThanOrEqual(gradTol);
            }
          });
          const trainRef = file.tensors.get('golden.logits_train');
          if (trainRef) {
            model.train();
            tf.tidy(() => {
              const t = compareTensors(model.forward(nchwToNhwc(g('golden.input')) as tf.Tensor4D) as tf.Tensor, trainRef);
              m.train = t.scaledMaxAbs;
              expect(t.scaledMaxAbs, `${c.name} train-mode logits`).toBeLessThanOrEqual(tol);
            });
            model.eval();
          }
        } finally {
          model.dispose();
        }
        expect(tf.memory().numTensors, `${c.name}: tensors left`).toBe(before);
        try {
          if (c.runParity !== false) {
            const res = runParity({ tensors: file.tensors, metadata: file.metadata });
            expect(res.errors).toEqual([]);
            expect(res.pass).toBe(true);
            expect(res.rows.map((r) => r.kind)).toEqual(expect.arrayContaining(['logits', 'feature', 'grad', ...(file.tensors.has('golden.logits_train') ? ['logits_train'] : [])]));
          }
        } finally {
          for (const t of file.tensors.values()) t.dispose();
        }
        report.push(
          `[${options.arch} parity] ${c.name}: logits ${m.logits.toExponential(2)}` +
            (m.train !== undefined ? `, train ${m.train.toExponential(2)}` : '') +
            `, features ${m.features.toExponential(2)}, grad norm-rel ${m.gradNormRel.toExponential(2)}, grad elem ${m.gradElem.toExponential(2)}`,
        );
      });
    }

    it('the train-mode checks are not vacuous: some golden differs between train and eval (batch statistics)', async () => {
      let withTrain = 0;
      let differ = 0;
      for (const c of cases) {
        const file = await loadSafetensorsFile(c.file);
        try {
          const train = file.tensors.get('golden.logits_train');
          if (!train) continue;
          withTrain++;
          if (compareTensors(train, file.tensors.get('golden.logits')!).maxAbs > 1e-2) differ++;
        } finally {
          for (const t of file.tensors.values()) t.dispose();
        }
      }
      if (withTrain > 0) expect(differ).toBeGreaterThan(0);
    });

    it('a checkpoint missing one key changes no parameter (all-or-nothing load)', async () => {
      const c = cases.find((x) => x.runParity !== false) ?? cases[0]!;
      const file = await loadSafetensorsFile(c.file);
      const model = getArchitecture(options.arch).fromOfficialConfig(JSON.parse(file.metadata.config!) as Record<string, unknown>, {
        overrides: file.metadata.overrides ? (JSON.parse(file.metadata.overrides) as Record<string, unknown>) : undefined,
      });
      try {
        const state = officialState(file);
        const params = [...state.keys()].filter((k) => !k.endsWith('num_batches_tracked'));
        const missing = params[params.length - 1]!;
        state.delete(missing);
        const [watchKey, watch] = Object.entries(model.stateDict())[0]!;
        const kept = tf.clone(watch);
        expect(() => loadPytorchStateDict(model, state)).toThrow(new RegExp(missing.replace(/\./g, '\\.')));
        expect(compareTensors(model.stateDict()[watchKey]!, kept).maxAbs).toBe(0);
        kept.dispose();
      } finally {
        model.dispose();
        for (const t of file.tensors.values()) t.dispose();
      }
    });
  });
}
