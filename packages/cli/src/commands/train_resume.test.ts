import '@tensorflow/tfjs';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@vit/conv2former';
import { setTestBackend } from '@vit/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { microConv2Former as micro, testBackend as backend, vit } from '../__fixtures__/vit.js';
import { EXIT } from '../exit-codes.js';
import { recipeNames } from '../recipes.js';

/**
 * `vit train` interrupted (a real SIGINT, delivered while a chosen step's progress line is written)
 * and resumed must end with the same bytes as the same command run through: for every recipe and
 * for every flag that changes what a step does. 2 epochs × 5 steps of 4 images at 8 px, on a
 * Conv2Former small enough that a case takes seconds on the cpu backend (microConv2Former).
 */
const base = [...micro, '--data', 'synthetic:20', '--img-size', '8', '--batch-size', '4', '--epochs', '2', '--no-plots', '--backend', backend];

const cases: Array<{ name: string; args: string[]; stopAt: string }> = [
  ...recipeNames().map((r) => ({ name: `recipe ${r}`, args: ['--recipe', r], stopAt: 'epoch 2/2 step 1/5' })),
  // The default recipe stopped mid-epoch 1, and exactly at the end of epoch 1 (before its validation is saved).
  { name: 'default, mid-epoch 1', args: [], stopAt: 'epoch 1/2 step 2/5' },
  { name: 'default, at an epoch end', args: [], stopAt: 'epoch 1/2 step 5/5' },
  { name: 'sgd + multistep + warm-up', args: ['--opt', 'sgd', '--momentum', '0.8', '--sched', 'multistep', '--warmup', '0.5'], stopAt: 'epoch 1/2 step 3/5' },
  { name: 'adam, no schedule, clipped', args: ['--opt', 'adam', '--sched', 'none', '--clip-grad', '0.5', '--weight-decay', '0'], stopAt: 'epoch 2/2 step 2/5' },
  { name: 'mixup + cutmix', args: ['--mixup', '0.8', '--cutmix', '1.0'], stopAt: 'epoch 2/2 step 1/5' },
  { name: 'drop path + label smoothing 0', args: ['--drop-path', '0.2', '--label-smoothing', '0'], stopAt: 'epoch 2/2 step 3/5' },
  { name: 'crop padding + no flip + seed', args: ['--crop-padding', '3', '--flip', '0', '--seed', '7'], stopAt: 'epoch 1/2 step 2/5' },
  { name: 'accumulation + micro-batch cap', args: ['--accum-steps', '2', '--micro-batch', '2'], stopAt: 'epoch 2/2 step 1/5' },
  { name: 'gradient checkpointing', args: ['--grad-checkpointing', '--lr', '3e-3'], stopAt: 'epoch 2/2 step 2/5' },
];

/** Runs `vit train` and sends this process a SIGINT while the progress line `stopAt` is written. */
async function trainInterrupted(args: string[], stopAt: string): Promise<{ code: number; sent: boolean; out: string }> {
  const write = process.stderr.write;
  let sent = false;
  process.stderr.write = function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]): boolean {
    if (!sent && String(chunk).includes(stopAt)) {
      sent = true;
      process.emit('SIGINT');
    }
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof process.stderr.write;
  try {
    const r = await vit('train', ...args);
    return { code: r.code, sent, out: r.out + r.err };
  } finally {
    process.stderr.write = write;
  }
}

function epochs(run: string): unknown[] {
  const h = JSON.parse(readFileSync(join(run, 'history.json'), 'utf8')) as { epochs: Array<Record<string, number>> };
  // Timings differ between runs; everything else must not.
  return h.epochs.map(({ seconds: _s, trainImagesPerSecond: _t, valImagesPerSecond: _v, ...rest }) => rest);
}

describe('vit train --resume reproduces the uninterrupted run bit for bit', () => {
  let dir = '';
  beforeAll(async () => {
    await setTestBackend();
    dir = mkdtempSync(join(tmpdir(), 'vit-resume-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(cases)('$name', async ({ name, args, stopAt }) => {
    const before = tf.memory().numTensors;
    const slug = name.replace(/[^a-z0-9]+/gi, '_');
    const whole = join(dir, `${slug}-whole`);
    const cut = join(dir, `${slug}-cut`);
    const through = await vit('train', ...base, ...args, '--out', whole);
    expect(through.code, through.err).toBe(EXIT.OK);

    const stopped = await trainInterrupted([...base, ...args, '--out', cut], stopAt);
    expect(stopped.sent, `no progress line '${stopAt}'`).toBe(true);
    expect(stopped.code, stopped.out).toBe(EXIT.INTERRUPTED);
    expect(stopped.out).toMatch(/interrupted; continue with: vit train --out .* --resume/);

    // Resumed with nothing but --out (and the backend: a per-machine choice, not part of the run).
    const resumed = await vit('train', '--out', cut, '--resume', '--backend', backend);
    expect(resumed.code, resumed.err).toBe(EXIT.OK);
    for (const f of ['final/model.safetensors', 'final/optimizer.safetensors', 'best/model.safetensors']) {
      expect(Buffer.compare(readFileSync(join(cut, f)), readFileSync(join(whole, f))), f).toBe(0);
    }
    expect(epochs(cut)).toEqual(epochs(whole));
    const summary = (run: string) => {
      const { wallSeconds: _w, trainImagesPerSecond: _t, evalImagesPerSecond: _e, ...rest } = JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8'));
      return rest;
    };
    expect(summary(cut)).toEqual(summary(whole));
    expect(tf.memory().numTensors).toBe(before);
  }, 180_000);
});
