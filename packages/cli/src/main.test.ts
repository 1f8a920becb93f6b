import '@tensorflow/tfjs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Linear, Module, ShapeError, modelCard, registerArchitecture, registerModel, saveSafetensorsFile } from '@vit/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from './main.js';
import { setTestBackend } from '@vit/core/testing';

/** A stand-in "official" model: logits = flatten_NCHW(x) · Wᵀ + b, feature 0 = relu(x). */
class ToyNet extends Module {
  fc: Linear;
  constructor(
    readonly size: number,
    readonly numClasses: number,
  ) {
    super();
    this.fc = this.register('fc', new Linear(3 * size * size, numClasses));
  }
  forward(x: tf.Tensor4D): tf.Tensor2D {
    if (x.rank !== 4 || x.shape[3] !== 3) throw new ShapeError(`expected NHWC with 3 channels, got [${x.shape}]`);
    const nchw = tf.transpose(x, [0, 3, 1, 2]);
    return this.fc.forward(tf.reshape(nchw, [x.shape[0], -1])) as tf.Tensor2D;
  }
}

registerModel('clitoy_small', (o = {}) => new ToyNet(4, (o.numClasses as number) ?? 5), modelCard({ name: 'clitoy_small', arch: 'clitoy', inputSize: [4, 4, 3], numClasses: 5, firstConv: 'fc', classifier: 'fc', paramCount: 245 }));
registerArchitecture({
  name: 'clitoy',
  fromOfficialConfig: (kw) => new ToyNet(kw.img_size as number, kw.num_classes as number),
  officialFeatures: (_m, x) => ({ 'golden.features.0': tf.relu(x) }),
});

/** Writes a golden computed with plain loops, independent of the library's layers. */
async function writeGolden(path: string, tamper = false): Promise<void> {
  const B = 2, C = 3, S = 4, K = 5, D = C * S * S;
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  const W = Array.from({ length: K * D }, rnd); // [out, in] as PyTorch
  const b = Array.from({ length: K }, rnd);
  const x = Array.from({ length: B * D }, rnd); // NCHW
  const probe = Array.from({ length: B * K }, rnd);
  const logits = new Float32Array(B * K);
  const grad = new Float32Array(B * D);
  for (let n = 0; n < B; n++)
    for (let k = 0; k < K; k++) {
      let s = b[k]!;
      for (let d = 0; d < D; d++) s += W[k * D + d]! * x[n * D + d]!;
      logits[n * K + k] = s + (tamper ? 0.01 : 0);
      for (let d = 0; d < D; d++) grad[n * D + d]! += probe[n * K + k]! * W[k * D + d]!;
    }
  const tensors = {
    'fc.weight': tf.tensor2d(W, [K, D]),
    'fc.bias': tf.tensor1d(b),
    'golden.input': tf.tensor4d(x, [B, C, S, S]),
    'golden.logits': tf.tensor2d(logits, [B, K]),
    'golden.probe': tf.tensor2d(probe, [B, K]),
    'golden.grad.input': tf.tensor4d(grad, [B, C, S, S]),
    'golden.features.0': tf.relu(tf.tensor4d(x, [B, C, S, S])),
  };
  await saveSafetensorsFile(path, tensors, { arch: 'clitoy', case: 'tiny', config: JSON.stringify({ img_size: S, num_classes: K }) });
  tf.dispose(Object.values(tensors));
}

async function vit(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('vit', () => {
  let dir = '';
  beforeAll(async () => {
    await setTestBackend();
    dir = mkdtempSync(join(tmpdir(), 'vit-cli-'));
    await writeGolden(join(dir, 'good.safetensors'));
    await writeGolden(join(dir, 'bad.safetensors'), true);
    writeFileSync(join(dir, 'corrupt.safetensors'), Buffer.from([1, 2, 3]));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prints help and version, refuses unknown commands and flags with exit 2', async () => {
    const h = await vit('--help');
    expect(h.code).toBe(0);
    expect(h.out).toMatch(/parity/);
    expect(h.out).toMatch(/Exit codes/);
    expect((await vit('parity', '--help')).out).toMatch(/Examples:/);
    expect((await vit('--version')).out).toMatch(/^\d+\.\d+\.\d+/);
    const u = await vit('frobnicate');
    expect(u.code).toBe(2);
    expect(u.err).toMatch(/unknown command 'frobnicate'/);
    const f = await vit('models', '--bogus');
    expect(f.code).toBe(2);
    expect(f.err).toMatch(/Unknown option '--bogus'/);
  });

  it('lists models as a table and as JSON', async () => {
    const t = await vit('models', 'clitoy_*');
    expect(t.code).toBe(0);
    expect(t.out).toMatch(/clitoy_small\s+0\.00M\s+4x4/);
    const j = await vit('models', 'clitoy_*', '--json');
    expect(JSON.parse(j.out)[0]).toMatchObject({ name: 'clitoy_small', paramCount: 245 });
    expect((await vit('models', 'nothing_matches_*')).code).toBe(1);
  });

  it('summarises a model, and suggests names for a typo', async () => {
    const s = await vit('summary', 'clitoy_small', '--json');
    expect(s.code).toBe(0);
    const j = JSON.parse(s.out);
    expect(j).toMatchObject({ model: 'clitoy_small', params: 245, outputShape: [[1, 5]] });
    expect(j.layers[0]).toMatchObject({ name: 'fc', type: 'Linear', params: 245 });
    const text = await vit('summary', 'clitoy_small');
    expect(text.out).toMatch(/Total params: 245/);
    const typo = await vit('summary', 'clitoy_smal');
    expect(typo.code).toBe(2);
    expect(typo.err).toMatch(/Did you mean: clitoy_small/);
    expect((await vit('summary', 'clitoy_small', '--input', 'x')).code).toBe(2);
  });

  it('parity passes on a faithful golden and fails on a tampered one', async () => {
    const ok = await vit('parity', join(dir, 'good.safetensors'));
    expect(ok.code).toBe(0);
    const last = ok.out.trim().split('\n').at(-1)!;
    expect(last).toMatch(/^PASS clitoy\/tiny logits max_abs=\S+ features\(1\) max_abs=\S+ grad_rel=\S+$/);
    expect(ok.out).toMatch(/ok\s+golden\.grad\.input/);
    const bad = await vit('parity', join(dir, 'bad.safetensors'), '--json');
    expect(bad.code).toBe(1);
    const res = JSON.parse(bad.out);
    expect(res.pass).toBe(false);
    expect(res.rows.find((r: { key: string }) => r.key === 'golden.logits').pass).toBe(false);
    expect(res.rows.find((r: { key: string }) => r.key === 'golden.grad.input').pass).toBe(true);
  });

  it('parity reports missing and corrupt files with exit 3 and bad backends with exit 2', async () => {
    expect((await vit('parity', join(dir, 'missing.safetensors'))).code).toBe(3);
    const c = await vit('parity', join(dir, 'corrupt.safetensors'));
    expect(c.code).toBe(3);
    expect(c.err).toMatch(/safetensors|bytes/i);
    expect((await vit('parity', join(dir, 'good.safetensors'), '--backend', 'gpu9000')).code).toBe(2);
    expect((await vit('parity')).code).toBe(2);
  });

  it.each([
    ['cait', 'cait'],
    ['conv2former', 'conv2former'],
    ['mrla', 'mrla'],
    ['hilo', 'litv2'],
    ['regionvit', 'regionvit'],
  ])('parity passes on the official goldens of @vit/%s', async (pkg, arch) => {
    const dir = fileURLToPath(new URL(`../../${pkg}/test/fixtures`, import.meta.url));
    const r = await vit('parity', dir);
    const summaries = r.out.split('\n').filter((l) => /^(PASS|FAIL) /.test(l));
    expect(summaries.length).toBeGreaterThanOrEqual(2);
    expect(summaries.every((l) => l.startsWith(`PASS ${arch}/`))).toBe(true);
    expect(r.code).toBe(0);
  });
});

