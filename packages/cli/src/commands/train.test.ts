import '@tensorflow/tfjs';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import '@vit/conv2former';
import '@vit/cait';
import { setTestBackend } from '@vit/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testBackend as backend, tinyConv2Former as tiny, vit } from '../__fixtures__/vit.js';
import { bundledFashionMnistDir, loadData } from '../data.js';


describe('vit train / eval / predict', () => {
  let dir = '';
  beforeAll(async () => {
    await setTestBackend();
    dir = mkdtempSync(join(tmpdir(), 'vit-train-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('trains, writes the run folder, evaluates, predicts and resumes', async () => {
    const run = join(dir, 'run');
    const before = tf.memory().numTensors;
    const common = [...tiny, '--data', 'synthetic:60', '--img-size', '16', '--batch-size', '20', '--lr', '3e-3', '--crop-padding', '0', '--flip', '0.25', '--backend', backend, '--out', run];
    const r = await vit('train', ...common, '--epochs', '2');
    expect(r.err).not.toMatch(/Error/);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/epoch 1\/2 \| train loss/);
    expect(r.out).toMatch(/epoch 2\/2 \| train loss/);
    expect(r.out).toMatch(/val top-1 \d+\.\d\d%/);
    for (const f of ['best/model.safetensors', 'final/model.safetensors', 'last/trainer.json', 'history.json', 'curves.png', 'curves.svg', 'confusion.png', 'predictions.png', 'summary.json']) {
      expect(existsSync(join(run, f)), f).toBe(true);
    }
    const summary = JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8'));
    expect(summary.epochs).toBe(2);
    expect(summary.valTop1).toBeGreaterThanOrEqual(0);
    expect(summary.params).toBeGreaterThan(1000);
    expect(summary.command['crop-padding']).toBe(0);
    expect(summary.command.flip).toBe(0.25);
    const history = JSON.parse(readFileSync(join(run, 'history.json'), 'utf8'));
    expect(history.epochs).toHaveLength(2);
    expect(tf.memory().numTensors).toBe(before);

    const ev = await vit('eval', '--checkpoint', join(run, 'final'), '--data', 'synthetic:60', '--backend', backend, '--json');
    expect(ev.code).toBe(0);
    const evj = JSON.parse(ev.out);
    // The final checkpoint evaluated by `vit eval` must reproduce the run's own final evaluation.
    expect(evj.top1).toBeCloseTo(summary.valTop1, 6);
    expect(evj.loss).toBeCloseTo(summary.valLoss, 4);

    const png = join(dir, 'x.png');
    await sharp({ create: { width: 20, height: 24, channels: 3, background: '#808080' } }).png().toFile(png);
    const p = await vit('predict', '--checkpoint', run, png, '--top-k', '3', '--backend', backend, '--json');
    expect(p.code).toBe(0);
    const pj = JSON.parse(p.out);
    expect(pj.predictions[0].top).toHaveLength(3);
    const probs = pj.predictions[0].top.map((t: { probability: number }) => t.probability);
    expect(probs[0]).toBeGreaterThanOrEqual(probs[1]);
    expect(pj.predictions[0].top[0].name).toMatch(/^class/);

    // A finished run continues to a larger epoch count with --resume (the flags come from its config).
    const again = await vit('train', '--out', run, '--resume', '--epochs', '3', '--backend', backend, '--no-plots');
    expect(again.code).toBe(0);
    expect(again.out).toMatch(/epoch 3\/3/);
    expect(again.out).not.toMatch(/epoch 1\/3/);
    expect(JSON.parse(readFileSync(join(run, 'history.json'), 'utf8')).epochs).toHaveLength(3);
    const resumed = JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8'));
    expect([resumed.command['crop-padding'], resumed.command.flip]).toEqual([0, 0.25]);
    expect(tf.memory().numTensors).toBe(before);
  }, 120_000);

  it('rejects bad flags and inputs with the right exit codes', async () => {
    expect((await vit('train', '--data', 'synthetic')).code).toBe(2);
    expect((await vit('train', '--model', 'conv2former_nn', '--data', 'synthetic')).err).toMatch(/conv2former_n/);
    expect((await vit('train', ...tiny, '--data', 'imagenet')).err).toMatch(/unknown data spec 'imagenet'/);
    expect((await vit('train', ...tiny, '--data', 'synthetic', '--recipe', 'fast')).err).toMatch(/unknown recipe 'fast'/);
    expect((await vit('train', ...tiny, '--data', 'synthetic', '--epochs', '0')).err).toMatch(/--epochs expects a positive integer/);
    expect((await vit('train', ...tiny, '--data', 'synthetic', '--flip', '1.5')).err).toMatch(/--flip expects a probability in \[0, 1\], got '1.5'/);
    expect((await vit('train', ...tiny, '--data', 'synthetic', '--crop-padding=-2')).err).toMatch(/--crop-padding expects an integer ≥ 0, got '-2'/);
    expect((await vit('train', ...tiny, '--data', 'synthetic', '--model-opts', '{dims')).err).toMatch(/--model-opts expects a JSON object/);
    expect((await vit('train', '--resume')).err).toMatch(/--resume needs --out/);
    expect((await vit('train', '--out', join(dir, 'nothing'), '--resume')).err).toMatch(/nothing to resume/);
    const badDir = await vit('train', ...tiny, '--data', `fashion-mnist:${join(dir, 'missing')}`, '--backend', backend);
    expect(badDir.code).not.toBe(0);
    expect(badDir.err).toMatch(/missing/);
    expect((await vit('eval', '--checkpoint', dir, '--data', 'synthetic')).err).toMatch(/is not a checkpoint/);
    expect((await vit('predict', '--checkpoint', dir)).err).toMatch(/at least one image/);
  });

  it('is reproducible: the same command and --seed give the same weights; another seed does not', async () => {
    const run = async (name: string, seed: string) => {
      const out = join(dir, name);
      const r = await vit('train', ...tiny, '--data', 'synthetic:40', '--img-size', '16', '--batch-size', '20', '--epochs', '1', '--seed', seed, '--backend', backend, '--out', out, '--no-plots');
      expect(r.code).toBe(0);
      return readFileSync(join(out, 'final', 'model.safetensors'));
    };
    const a = await run('seed-a', '3');
    const b = await run('seed-b', '3');
    const c = await run('seed-c', '4');
    expect(Buffer.compare(a, b)).toBe(0);
    expect(Buffer.compare(a, c)).not.toBe(0);
  }, 60_000);

  it('finds the bundled Fashion-MNIST subset', async () => {
    const bundled = bundledFashionMnistDir();
    expect(bundled).not.toBeNull();
    const d = await loadData('fashion-mnist:bundled', { imageSize: 28, channels: 1, seed: 0 });
    expect(d.train.length).toBe(5000);
    expect(d.val.length).toBe(1000);
    expect(d.classNames[9]).toBe('Ankle boot');
  });
});

describe('vit bench', () => {
  beforeAll(async () => {
    await setTestBackend();
  });
  it('measures forward and training images/s as JSON', async () => {
    const before = tf.memory().numTensors;
    const r = await vit('bench', '--model', 'cait_nano', '--batch', '2', '--runs', '1', '--warmup', '0', '--train', '--json', '--backend', backend);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.results).toHaveLength(1);
    expect(j.results[0].model).toBe('cait_nano');
    expect(j.results[0].forwardImagesPerSec).toBeGreaterThan(0);
    expect(j.results[0].trainImagesPerSec).toBeGreaterThan(0);
    expect(j.results[0].peakBytes).toBeGreaterThan(0);
    expect(tf.memory().numTensors).toBe(before);
    expect((await vit('bench', '--model', 'nothing_*')).err).toMatch(/no registered model matches/);
    expect((await vit('bench')).code).toBe(2);
  });

  it("--opt adamw times the training step `vit train` runs; bad or misplaced --opt is a usage error", async () => {
    const before = tf.memory().numTensors;
    const r = await vit('bench', '--model', 'cait_nano', '--batch', '2', '--runs', '1', '--warmup', '0', '--train', '--opt', 'adamw', '--json', '--backend', backend);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.optimizer).toBe('adamw');
    expect(j.results[0].train.leakedTensors).toBe(0);
    expect(j.results[0].trainImagesPerSec).toBeGreaterThan(0);
    expect(tf.memory().numTensors).toBe(before);
    const text = await vit('bench', '--model', 'cait_nano', '--batch', '1', '--runs', '1', '--warmup', '0', '--train', '--opt', 'adamw', '--backend', backend);
    expect(text.out).toMatch(/train \(adamw\) [\d.]+ img\/s/);
    const bad = await vit('bench', '--model', 'cait_nano', '--train', '--opt', 'lamb');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--opt expects sgd or adamw, got 'lamb'/);
    expect((await vit('bench', '--model', 'cait_nano', '--opt', 'adamw')).err).toMatch(/add --train/);
  });
});
