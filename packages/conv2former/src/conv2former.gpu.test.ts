import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createModel, loadPytorchStateDict, loadSafetensorsFile } from '@vit/core';
import { compareTensors, nchwToNhwc, findGpuBackend } from '@vit/core/testing';
import { conv2formerFromOfficialConfig, conv2formerOfficialFeatures } from './index.js';

/**
 * The golden parity checks on the best GPU backend present: `tensorflow` from
 * @tensorflow/tfjs-node-gpu, else `webgpu` (navigator.gpu, or Dawn's `webgpu` package in Node).
 * Skipped, with the reason printed, where there is none. GPU float32 kernels reassociate sums, so
 * the tolerance is PORTING.md's GPU bound (1e-3), and each result is also compared with the cpu
 * backend's.
 */

const found = await findGpuBackend();
if (found.backend === null) console.log(`[conv2former gpu] skipped: ${found.reason}`);
else console.log(`[conv2former gpu] running on '${found.backend}' (${found.detail})`);

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

  for (const name of ['k7_d16', 'k11_d16']) {
    it(`${name}: logits (eval and train), features and input gradient`, async () => {
      const file = await loadSafetensorsFile(fixture(name));
      const model = conv2formerFromOfficialConfig(JSON.parse(file.metadata.config!));
      const g = (k: string) => file.tensors.get(k)!;
      try {
        loadPytorchStateDict(model, new Map([...file.tensors].filter(([k]) => !k.startsWith('golden.'))));
        model.eval();
        const res = tf.tidy(() => {
          const x = nchwToNhwc(g('golden.input')) as tf.Tensor4D;
          const logits = compareTensors(model.forward(x), g('golden.logits')).scaledMaxAbs;
          const feats = conv2formerOfficialFeatures(model, x);
          const features = Math.max(...Object.entries(feats).map(([k, t]) => compareTensors(t, nchwToNhwc(g(k))).scaledMaxAbs));
          const grad = tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(model.forward(inp as tf.Tensor4D), g('golden.probe'))))(x);
          return { logits, features, grad: compareTensors(grad, nchwToNhwc(g('golden.grad.input'))).normRel };
        });
        model.train();
        const train = tf.tidy(() => compareTensors(model.forward(nchwToNhwc(g('golden.input')) as tf.Tensor4D), g('golden.logits_train')).scaledMaxAbs);
        console.log(`[conv2former gpu] ${name} on ${tf.getBackend()}: ${JSON.stringify({ ...res, train })}`);
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
    const opts = { dims: [16, 32, 48, 64], depths: [1, 1, 2, 1], numClasses: 10 };
    const gpuModel = createModel('conv2former_n', opts);
    const cpuModel = await onCpu(() => createModel('conv2former_n', opts));
    try {
      await onCpu(() => cpuModel.loadStateDict(Object.fromEntries(Object.entries(gpuModel.stateDict()).map(([k, v]) => [k, tf.tensor(v.dataSync(), v.shape)]))));
      const data = tf.randomNormal([2, 64, 64, 3], 0, 1, 'float32', 3).dataSync();
      gpuModel.eval();
      const yg = tf.tidy(() => (gpuModel.forward(tf.tensor4d(data, [2, 64, 64, 3])) as tf.Tensor).dataSync());
      const yc = await onCpu(() => {
        cpuModel.eval();
        return tf.tidy(() => (cpuModel.forward(tf.tensor4d(data, [2, 64, 64, 3])) as tf.Tensor).dataSync());
      });
      const scale = Math.max(1, ...Array.from(yc, Math.abs));
      const err = Math.max(...Array.from(yg, (v, i) => Math.abs(v - yc[i]!))) / scale;
      console.log(`[conv2former gpu] conv2former_n (tiny) gpu vs cpu logits: ${err.toExponential(2)}`);
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
