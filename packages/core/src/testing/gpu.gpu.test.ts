import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installNodeWebGPU } from '../backends/dawn.js';
import { compareTensors } from '../parity/compare.js';
import { checkGpuRequirement, findGpuBackend, type FoundGpuBackend } from './gpu.js';
import { readAndDispose, withBackend } from './gpu_suite.js';

// The kernels our architectures use, forward and backward, on the GPU backend against cpu.
// Parameters are plain tensors (not variables) so both backends get the same values.
type Params = Record<string, tf.Tensor>;
function makeParams(): Params {
  const r = (shape: number[], seed: number, s = 0.3) => tf.mul(tf.randomNormal(shape, 0, 1, 'float32', seed), s);
  return tf.tidy(() => ({ x: r([2, 9, 9, 3], 1, 1), w1: r([3, 3, 3, 8], 2), dw: r([7, 7, 8, 1], 3), wq: r([8, 24], 4), w2: r([8, 5], 5), g: r([8], 6) }));
}
function net(p: Params): tf.Scalar {
  // conv 3×3 stride 2 with explicit symmetric padding, as our Conv2d does
  const c = tf.conv2d(tf.pad(p.x as tf.Tensor4D, [[0, 0], [1, 1], [1, 1], [0, 0]]), p.w1 as tf.Tensor4D, 2, 'valid');
  const d = tf.depthwiseConv2d(tf.pad(c, [[0, 0], [3, 3], [3, 3], [0, 0]]), p.dw as tf.Tensor4D, 1, 'valid');
  const { mean, variance } = tf.moments(d, -1, true);
  const n = tf.mul(tf.div(tf.sub(d, mean), tf.sqrt(tf.add(variance, 1e-5))), p.g!);
  const t = tf.reshape(n, [2, 25, 8]);
  // attention with 2 heads of 4: [B, N, 3, h, d] (5-D) → [3, B, h, N, d]
  const qkv = tf.transpose(tf.reshape(tf.matMul(tf.reshape(t, [50, 8]), p.wq as tf.Tensor2D), [2, 25, 3, 2, 4]), [2, 0, 3, 1, 4]);
  const [q, k, v] = tf.unstack(qkv);
  const a = tf.softmax(tf.mul(tf.matMul(q!, k!, false, true), 0.5));
  const o = tf.reshape(tf.transpose(tf.matMul(a, v!), [0, 2, 1, 3]), [2, 25, 8]);
  const gelu = tf.mul(tf.mul(o, 0.5), tf.add(1, tf.erf(tf.div(o, Math.SQRT2))));
  const pooled = tf.mean(tf.gather(gelu, tf.tensor1d([0, 3, 7, 24], 'int32'), 1), 1);
  return tf.sum(tf.mul(tf.logSoftmax(tf.matMul(pooled as tf.Tensor2D, p.w2 as tf.Tensor2D)), tf.range(1, 6)));
}

describe('GPU backend selection and kernels', () => {
  let found: FoundGpuBackend = { backend: null, reason: 'not probed' };
  beforeAll(async () => {
    found = await findGpuBackend();
    console.log(found.backend === null ? `[core gpu] skipped: ${found.reason}` : `[core gpu] running on '${found.backend}' (${found.detail})`);
    checkGpuRequirement(found);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('installNodeWebGPU probes once and says why when it finds nothing', async () => {
    const a = await installNodeWebGPU();
    const b = await installNodeWebGPU();
    expect(b).toBe(a);
    if (a.ok) {
      expect(a.adapter.length).toBeGreaterThan(0);
      // A plain requestAdapter() (what tfjs-backend-webgpu calls) must get the adapter, also on the GLES path.
      const gpu = (globalThis as unknown as { navigator: { gpu: { requestAdapter(): Promise<unknown> } } }).navigator.gpu;
      expect(await gpu.requestAdapter()).not.toBeNull();
    } else {
      expect(a.reason).toMatch(/webgpu|adapter|Dawn/);
    }
  });

  it('findGpuBackend makes its backend current and is stable across calls', async (ctx) => {
    if (found.backend === null) ctx.skip();
    await tf.setBackend('cpu');
    const again = await findGpuBackend();
    expect(again).toBe(found);
    expect(tf.getBackend()).toBe(found.backend);
  });

  it('conv, depthwise, norm, attention, gather forward and gradients match cpu', async (ctx) => {
    if (found.backend === null) ctx.skip();
    await findGpuBackend();
    const run = () => {
      const p = makeParams();
      const names = Object.keys(p);
      const { value, grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => net(Object.fromEntries(names.map((k, i) => [k, xs[i]!]))))(names.map((k) => p[k]!));
      tf.dispose(Object.values(p));
      return { loss: value, ...Object.fromEntries(grads.map((g, i) => [`d${names[i]}`, g])) };
    };
    const before = tf.memory().numTensors;
    const gpu = await readAndDispose(run());
    expect(tf.memory().numTensors).toBe(before);
    const cpu = await withBackend('cpu', () => readAndDispose(run()));
    await withBackend('cpu', () =>
      tf.tidy(() => {
        for (const k of Object.keys(cpu)) {
          const c = compareTensors(tf.tensor(gpu[k]!.data, gpu[k]!.shape), tf.tensor(cpu[k]!.data, cpu[k]!.shape));
          console.log(`[core gpu] ${k.padEnd(5)} max_abs=${c.maxAbs.toExponential(2)} rel=${c.normRel.toExponential(2)}`);
          expect(c.refMaxAbs, `${k} is all zeros on cpu`).toBeGreaterThan(0);
          expect(c.normRel, k).toBeLessThan(1e-4);
        }
      }),
    );
  });
});
