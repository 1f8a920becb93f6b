import '@tensorflow/tfjs';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import '@vit/conv2former';
import '@vit/mrla';
import { runProcess, setTestBackend } from '@vit/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testBackend as backend, tinyConv2Former as tiny, vit } from '../__fixtures__/vit.js';
import { EXIT } from '../exit-codes.js';


describe('vit train: --accum-steps, --micro-batch, --grad-checkpointing, running out of memory', () => {
  let dir = '';
  beforeAll(async () => {
    await setTestBackend();
    dir = mkdtempSync(join(tmpdir(), 'vit-train-mem-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('trains with accumulation and checkpointing, records both in the run and keeps them on --resume', async () => {
    const run = join(dir, 'run');
    const r = await vit('train', ...tiny, '--data', 'synthetic:40', '--img-size', '16', '--batch-size', '20', '--epochs', '1', '--accum-steps', '2', '--grad-checkpointing', '--backend', backend, '--out', run, '--no-plots');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/steps of 20 \(2 micro-batches each\)/);
    expect(r.out).toMatch(/grad checkpointing/);
    const cli = JSON.parse(readFileSync(join(run, 'last', 'config.json'), 'utf8')).meta.cli;
    expect(cli).toMatchObject({ 'accum-steps': 2, 'micro-batch': 'auto', 'grad-checkpointing': true });
    const again = await vit('train', '--out', run, '--resume', '--epochs', '2', '--backend', backend, '--no-plots');
    expect(again.code, again.err).toBe(0);
    expect(again.out).toMatch(/\(2 micro-batches each\).*grad checkpointing/s);
  });

  it('rejects bad values with usage errors', async () => {
    const base = [...tiny, '--data', 'synthetic', '--backend', backend];
    expect((await vit('train', ...base, '--accum-steps', '0')).err).toMatch(/--accum-steps expects a positive integer, got '0'/);
    expect((await vit('train', ...base, '--micro-batch', 'lots')).err).toMatch(/--micro-batch expects a positive integer, got 'lots'/);
    expect((await vit('train', ...base, '--accum-steps', '2.5')).code).toBe(EXIT.USAGE);
  });

  it('vit bench --grad-checkpointing times the checkpointed training step and reports what a step adds', async () => {
    const r = await vit('bench', '--model', 'conv2former_nano', '--batch', '2', '--runs', '1', '--warmup', '0', '--train', '--grad-checkpointing', '--json', '--backend', backend);
    expect(r.code, r.err).toBe(0);
    const res = JSON.parse(r.out).results[0];
    expect(res.gradCheckpointing).toBe(true);
    expect(res.train.stepBytes).toBeGreaterThan(0);
    expect(res.train.stepBytes).toBeLessThan(res.train.peakBytes);
    expect((await vit('bench', '--model', 'conv2former_nano', '--grad-checkpointing')).err).toMatch(/--grad-checkpointing applies to the training step: add --train/);
  });

  it('out of memory on wasm: exit code 5, what ran out and what to try, and the new run folder removed', async () => {
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const out = join(dir, 'oom');
    // A 2048-channel stride-1 stem at 192 px and --micro-batch off: 2.25 GiB per activation, so the
    // heap is full at the stem's second map (the allocation that fails is an ordinary one, not a
    // wrap-around). At 128 px (1 GiB maps) the fused BatchNorm kernel keeps few enough of them that
    // the step fits and runs for minutes.
    const r = await runProcess(
      join(root, '..', '..', 'node_modules', '.bin', 'vite-node'),
      ['-c', 'vitest.config.ts', 'src/bin.ts', '--', 'train', '--model', 'resnet10_mrlal_nano', '--model-opts', '{"stemWidth": 2048}', '--data', 'synthetic:20', '--batch-size', '8', '--img-size', '192', '--epochs', '1', '--micro-batch', 'off', '--backend', 'wasm', '--out', out],
      { cwd: root, timeout: 300_000 },
    );
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(EXIT.MEMORY);
    expect(r.stderr).toMatch(/vit train: Out of memory: a training step at batch size 8 did not fit in the wasm backend's 4 GiB heap/);
    expect(r.stderr).toMatch(/Try: .*--accum-steps N.*--grad-checkpointing.*--backend tensorflow/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(existsSync(out)).toBe(false);
  });
});
