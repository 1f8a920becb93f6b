import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, Conv2d, loadPytorchStateDict, measurePeakBytes, ShapeError, valueAndGradsOf } from '@vit/core';
import { gatedDepthwise, MRLALightLayer, MRLAModule, mrlaKernelSize } from './index.js';
import { setTestBackend } from '@vit/core/testing';

/** Deterministic pseudo-random values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/**
 * mrla_light_layer written as plain loops over NCHW arrays from the official formulas, independent
 * of the tfjs implementation: y = avgpool(x); Q/K = conv1d(y) (pad (k−1)/2); per head
 * a = sigmoid(Σ Q·K / √(C/heads)); out = a · depthwise3×3(x).
 */
function referenceLayer(
  x: Float32Array, // NCHW
  [b, c, h, w]: number[],
  wq: Float32Array,
  wk: Float32Array,
  wv: Float32Array, // [C,1,3,3]
  heads: number,
): Float32Array {
  const k = wq.length;
  const pad = (k - 1) / 2;
  const d = c / heads;
  const out = new Float32Array(b * c * h * w);
  for (let n = 0; n < b; n++) {
    const y = new Float64Array(c);
    for (let ch = 0; ch < c; ch++) {
      let s = 0;
      for (let i = 0; i < h * w; i++) s += x[(n * c + ch) * h * w + i]!;
      y[ch] = s / (h * w);
    }
    const conv = (wt: Float32Array) =>
      Array.from({ length: c }, (_, ch) => {
        let s = 0;
        for (let t = 0; t < k; t++) {
          const j = ch + t - pad;
          if (j >= 0 && j < c) s += wt[t]! * y[j]!;
        }
        return s;
      });
    const q = conv(wq);
    const kk = conv(wk);
    for (let hd = 0; hd < heads; hd++) {
      let dot = 0;
      for (let i = 0; i < d; i++) dot += q[hd * d + i]! * kk[hd * d + i]!;
      const a = 1 / (1 + Math.exp(-dot / Math.sqrt(c / heads)));
      for (let i = 0; i < d; i++) {
        const ch = hd * d + i;
        for (let r = 0; r < h; r++) {
          for (let col = 0; col < w; col++) {
            let v = 0;
            for (let dr = -1; dr <= 1; dr++) {
              for (let dc = -1; dc <= 1; dc++) {
                const rr = r + dr;
                const cc = col + dc;
                if (rr >= 0 && rr < h && cc >= 0 && cc < w) v += wv[ch * 9 + (dr + 1) * 3 + (dc + 1)]! * x[((n * c + ch) * h + rr) * w + cc]!;
              }
            }
            out[((n * c + ch) * h + r) * w + col] = a * v;
          }
        }
      }
    }
  }
  return out;
}

describe('MRLA-light', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it('kernel-size rule of the official code', () => {
    const table: Array<[number, number]> = [
      [8, 3],
      [16, 3],
      [32, 3],
      [64, 3],
      [128, 5],
      [256, 5],
      [512, 5],
      [1024, 5],
      [2048, 7],
      [96, 3],
      [4096, 7],
    ];
    for (const [c, k] of table) expect(mrlaKernelSize(c), `C=${c}`).toBe(k);
  });

  it('heads of 32 channels; refuses sizes the official view() cannot split', () => {
    const l = new MRLALightLayer(128, { dimPerhead: 32 });
    expect(l.heads).toBe(4);
    expect(l.kSize).toBe(5);
    expect(l.normFact).toBeCloseTo(1 / Math.sqrt(32), 12);
    l.dispose();
    expect(() => new MRLALightLayer(16, { dimPerhead: 32 })).toThrow(ConfigError);
    expect(() => new MRLALightLayer(100, { dimPerhead: 32 })).toThrow(/3 equal heads/);
    expect(() => new MRLALightLayer(64)).toThrow(ConfigError);
    const m = new MRLAModule(96);
    expect((m.mrla as MRLALightLayer).heads).toBe(3);
    expect(m.lambda_t.shape).toEqual([96, 1, 1]);
    m.dispose();
  });

  it('official keys and layouts', () => {
    const m = new MRLAModule(64);
    expect(Object.entries(m.stateDict()).map(([k, v]) => [k, v.shape])).toEqual([
      ['lambda_t', [64, 1, 1]],
      ['mrla.Wq.weight', [3, 1, 1]],
      ['mrla.Wk.weight', [3, 1, 1]],
      ['mrla.Wv.weight', [3, 3, 64, 1]],
    ]);
    m.dispose();
  });

  for (const [c, heads, h, w] of [
    [64, 2, 5, 7],
    [96, 3, 4, 4],
    [32, 1, 1, 1],
  ] as const) {
    it(`matches a loop implementation of the official formulas (C=${c}, ${heads} heads, ${h}x${w})`, () => {
      const b = 2;
      const before = tf.memory().numTensors;
      const m = new MRLAModule(c);
      const k = mrlaKernelSize(c);
      const wq = values(k, 1);
      const wk = values(k, 2);
      const wv = values(c * 9, 3);
      const lam = values(c, 4);
      const xs = values(b * c * h * w, 5);
      const os = values(b * c * h * w, 6);
      const weights = {
        lambda_t: tf.tensor3d(lam, [c, 1, 1]),
        'mrla.Wq.weight': tf.tensor3d(wq.map((v) => v * 2), [1, 1, k]),
        'mrla.Wk.weight': tf.tensor3d(wk.map((v) => v * 2), [1, 1, k]),
        'mrla.Wv.weight': tf.tensor4d(wv, [c, 1, 3, 3]),
      };
      loadPytorchStateDict(m, weights);
      Object.values(weights).forEach((t) => t.dispose());
      const ref = referenceLayer(xs, [b, c, h, w], wq.map((v) => v * 2), wk.map((v) => v * 2), wv, heads);
      // o_t = mrla_light(x_t) + lambda_t * o_{t-1}
      for (let i = 0; i < ref.length; i++) ref[i] = ref[i]! + lam[Math.floor(i / (h * w)) % c]! * os[i]!;
      const got = tf.tidy(() => {
        const x = tf.transpose(tf.tensor4d(xs, [b, c, h, w]), [0, 2, 3, 1]) as tf.Tensor4D;
        const o = tf.transpose(tf.tensor4d(os, [b, c, h, w]), [0, 2, 3, 1]) as tf.Tensor4D;
        return tf.transpose(m.forward(x, o), [0, 3, 1, 2]).dataSync() as Float32Array;
      });
      let maxErr = 0;
      for (let i = 0; i < ref.length; i++) maxErr = Math.max(maxErr, Math.abs(got[i]! - ref[i]!));
      expect(maxErr).toBeLessThan(2e-5);
      m.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('checks its inputs', () => {
    const m = new MRLAModule(32);
    tf.tidy(() => {
      expect(() => m.forward(tf.zeros([1, 4, 4, 16]) as tf.Tensor4D, tf.zeros([1, 4, 4, 16]) as tf.Tensor4D)).toThrow(ShapeError);
      expect(() => m.forward(tf.zeros([1, 4, 4, 32]) as tf.Tensor4D, tf.zeros([1, 2, 2, 32]) as tf.Tensor4D)).toThrow(/same shape/);
      expect(() => (m.mrla as MRLALightLayer).forward(tf.zeros([4, 4, 32]) as unknown as tf.Tensor4D)).toThrow(ShapeError);
    });
    m.dispose();
  });

  // The fused op against the composition it replaced: Wv(x) reshaped per head, times the gate.
  const composed = (x: tf.Tensor4D, conv: Conv2d, gate: tf.Tensor, heads: number) => {
    const [b, h, w, c] = x.shape;
    return tf.reshape(tf.mul(tf.reshape(conv.forward(x), [b, h, w, heads, c / heads]), gate), [b, h, w, c]);
  };

  it('gatedDepthwise: the value of the composed form and its gradients (x, Wv, gate) to float precision, no tensor left', async () => {
    const before = tf.memory().numTensors;
    const conv = new Conv2d(12, 12, 3, { padding: 1, groups: 12, bias: false });
    const x = tf.tensor4d(values(3 * 5 * 7 * 12, 7), [3, 5, 7, 12]);
    const gate = tf.tensor(values(3 * 3, 8), [3, 1, 1, 3, 1]);
    const dy = tf.tensor4d(values(3 * 5 * 7 * 12, 9), [3, 5, 7, 12]);
    const loss = (f: typeof composed) => () => tf.sum(tf.mul(f(x, conv, gate, 3), dy));
    const xs = [x, conv.weight, gate];
    const a = valueAndGradsOf(loss(gatedDepthwise), xs);
    const r = valueAndGradsOf(loss(composed), xs);
    // tfjs's own autodiff through the op gives the same gradients as ours.
    const e = tf.engine().gradients(loss(gatedDepthwise), xs);
    expect(tf.tidy(() => tf.equal(gatedDepthwise(x, conv, gate, 3), composed(x, conv, gate, 3)).all().dataSync()[0])).toBe(1);
    for (let i = 0; i < xs.length; i++) {
      const ga = a.grads[i]!;
      const gr = r.grads[i]!;
      expect(ga.shape).toEqual(xs[i]!.shape);
      const scale = Math.max(1, tf.tidy(() => tf.max(tf.abs(gr)).dataSync()[0]!));
      expect(tf.tidy(() => tf.max(tf.abs(tf.sub(ga, gr))).dataSync()[0]!) / scale).toBeLessThan(2e-6);
      expect(tf.tidy(() => tf.max(tf.abs(tf.sub(ga, e.grads[i]!))).dataSync()[0]!)).toBe(0);
    }
    tf.dispose([a.value, r.value, e.value, ...e.grads, x, gate, dy, ...[...a.grads, ...r.grads].filter((g): g is tf.Tensor => g !== null)]);
    conv.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('gatedDepthwise keeps x, not Wv(x), for the backward pass; refuses a conv with bias and a gate of the wrong size', async () => {
    // Counted in tfjs's buffers: on tfjs-node every reshape is a new handle, so count on cpu there.
    const suite = tf.getBackend();
    if (suite === 'tensorflow') await tf.setBackend('cpu');
    const conv = new Conv2d(64, 64, 3, { padding: 1, groups: 64, bias: false });
    const x = tf.tensor4d(values(8 * 16 * 16 * 64, 10), [8, 16, 16, 64]);
    const gate = tf.tensor(values(8 * 2, 11), [8, 1, 1, 2, 1]);
    const mapBytes = x.size * 4;
    // x is kept by the conv either way; the composed form also keeps Wv(x) for the gate's gradient.
    const peak = async (f: typeof composed) =>
      (
        await measurePeakBytes(() => {
          const { value, grads } = valueAndGradsOf(() => tf.sum(tf.square(f(x, conv, gate, 2))), [x, conv.weight, gate]);
          tf.dispose([value, ...grads.filter((g): g is tf.Tensor => g !== null)]);
        })
      ).peakBytes;
    const fused = await peak(gatedDepthwise);
    const comp = await peak(composed);
    expect(comp - fused).toBeGreaterThanOrEqual(0.9 * mapBytes);
    expect(() => gatedDepthwise(x, new Conv2d(64, 64, 3, { padding: 1, groups: 64 }), gate, 2)).toThrow(/without bias/);
    expect(() => gatedDepthwise(x, conv, gate, 4)).toThrow(/gate of 8×4 values, got shape \[8,1,1,2,1\]/);
    tf.dispose([x, gate]);
    conv.dispose();
    await tf.setBackend(suite);
  });
});
