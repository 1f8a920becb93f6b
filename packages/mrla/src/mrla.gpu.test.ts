import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createModel, loadPytorchStateDict, loadSafetensorsFile, type Module } from '@vit/core';
import { compareTensors, nchwToNhwc, findGpuBackend } from '@vit/core/testing';
import { fromOfficialConfig, officialFeatures } from './index.js';

/**
 * The golden parity checks on the best GPU backend present: `tensorflow` from
 * @tensorflow/tfjs-node-gpu, else `webgpu` (navigator.gpu, or Dawn's `webgpu` package in Node).
 * Skipped, with the reason printed, where there is none. GPU float32 kernels reassociate sums, so
 * outputs use a 1e-3 bound (scaled max-abs), the input gradient 1e-3 norm-relative; a registered
 * variant is also compared with the cpu backend.
 */

const found = await findGpuBackend();
if (found.backend === null) console.log(`[mrla gpu] skipped: ${found.reason}`);
else console.log(`[mrla gpu] running on '${found.backend}' (${found.detail})`);

const GPU_TOL = 1e-3;
const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));

async function onCpu<T>(fn: () => T): Promise<T> {
  const gpu = tf.getBackend();
  await tf.setBackend('cpu');
  try {
    return fn();
  } finally {
    await tf.setBackend(gpu);
  }
}

describe.skipIf(found.backend === null)('golden parity on the GPU backend', () => {
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  for (const name of ['e1_w16', 'e1_g2_w8']) {
    it(`${name}: logits (eval and train), features and input gradient`, async () => {
      const file = await loadSafetensorsFile(fixture(name));
      const model = fromOfficialConfig(JSON.parse(file.metadata.config!), { overrides: JSON.parse(file.metadata.overrides ?? '{}') });
      const g = (k: string) => file.tensors.get(k)!;
      try {
        loadPytorchStateDict(model, new Map([...file.tensors].filter(([k]) => !k.startsWith('golden.'))));
        model.eval();
        const res = tf.tidy(() => {
          const x = nchwToNhwc(g('golden.input')) as tf.Tensor4D;
          const logits = compareTensors(model.forward(x), g('golden.logits')).scaledMaxAbs;
          const feats = officialFeatures(model, x);
          const features = Math.max(...Object.entries(feats).map(([k, t]) => compareTensors(t, nchwToNhwc(g(k))).scaledMaxAbs));
          const grad = tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(model.forward(inp as tf.Tensor4D), g('golden.probe'))))(x);
          return { logits, features, grad: compareTensors(grad, nchwToNhwc(g('golden.grad.input'))).normRel };
        });
        model.train();
        const train = tf.tidy(() => compareTensors(model.forward(nchwToNhwc(g('golden.input')) as tf.Tensor4D), g('golden.logits_train')).scaledMaxAbs);
        console.log(`[mrla gpu] ${name} on ${tf.getBackend()}: ${JSON.stringify({ ...res, train })}`);
        expect(res.logits).toBeLessThanOrEqual(GPU_TOL);
        expect(res.features).toBeLessThanOrEqual(GPU_TOL);
        expect(res.grad).toBeLessThanOrEqual(GPU_TOL);
        expect(train).toBeLessThanOrEqual(GPU_TOL);
      } finally {
        model.dispose();
        for (const t of file.tensors.values()) t.dispose();
      }
    });
  }

  it("a registered variant's logits agree with the cpu backend", async () => {
    const opts = { layers: [1, 1, 1, 1], widths: [32, 32, 64, 64], stemWidth: 16, expansion: 1, widthPerGroup: 32, numClasses: 10 };
    const gpuModel = createModel('resnet50_mrlal', opts) as Module;
    const cpuModel = await onCpu(() => createModel('resnet50_mrlal', opts) as Module);
    try {
      const state = Object.fromEntries(Object.entries(gpuModel.stateDict()).map(([k, v]) => [k, { data: v.dataSync(), shape: v.shape }]));
      await onCpu(() => {
        const sd = Object.fromEntries(Object.entries(state).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]));
        cpuModel.loadStateDict(sd);
        for (const t of Object.values(sd)) t.dispose();
      });
      const data = tf.tidy(() => tf.randomNormal([2, 64, 48, 3], 0, 1, 'float32', 3).dataSync());
      gpuModel.eval();
      const yg = tf.tidy(() => (gpuModel.forward(tf.tensor4d(data, [2, 64, 48, 3])) as tf.Tensor).dataSync());
      const yc = await onCpu(() => {
        cpuModel.eval();
        return tf.tidy(() => (cpuModel.forward(tf.tensor4d(data, [2, 64, 48, 3])) as tf.Tensor).dataSync());
      });
      const scale = Math.max(1, ...Array.from(yc, Math.abs));
      const err = Math.max(...Array.from(yg, (v, i) => Math.abs(v - yc[i]!))) / scale;
      console.log(`[mrla gpu] resnet50_mrlal (tiny) gpu vs cpu logits: ${err.toExponential(2)}`);
      expect(err).toBeLessThanOrEqual(GPU_TOL);
    } finally {
      gpuModel.dispose();
      await onCpu(() => cpuModel.dispose());
    }
  });
});

describe.skipIf(found.backend !== null)('no GPU backend', () => {
  it('is skipped with a printed reason', () => {
    expect(found.backend).toBeNull();
  });
});
