// The Trainer on the data package's DataLoader: shuffling, a random transform and MixUp/CutMix
// (soft targets) — and a mid-epoch resume through all of it that still ends bit-identical.
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTestBackend } from '../testing/backend.js';
import { DataLoader, Mixup, RandomHorizontalFlip, synthetic } from '../data/index.js';
import { SoftTargetCrossEntropy } from '../losses/index.js';
import { AdamW, warmupCosine } from '../optim/index.js';
import { TinyConvNet, bitEqual, snapshot } from './__fixtures__/toy.js';
import { ModelCheckpoint, Trainer, type Callback } from './index.js';

let root: string;
beforeAll(async () => {
  await setTestBackend();
  root = mkdtempSync(join(tmpdir(), 'vit-train-int-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const data = () => synthetic({ length: 64, numClasses: 4, imageShape: [8, 8, 3], seed: 5 });
const norm = { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
const trainLoader = () =>
  new DataLoader(data(), {
    batchSize: 8,
    shuffle: true,
    seed: 3,
    dropLast: true,
    transform: new RandomHorizontalFlip(),
    ...norm,
    batchTransform: new Mixup({ mixupAlpha: 0.4, cutmixAlpha: 1, labelSmoothing: 0.1 }),
  });
const valLoader = () => new DataLoader(data(), { batchSize: 16, ...norm });
const net = (seed: number) => new TinyConvNet(3, 6, 4, { seed, dropout: 0.2 });

function build(model: TinyConvNet, callbacks: Callback[] = []) {
  return new Trainer({
    model,
    optimizer: new AdamW(model, { lr: 1e-2, weightDecay: 0.05 }),
    loss: new SoftTargetCrossEntropy(),
    schedule: ({ stepsPerEpoch, epochs }) => warmupCosine({ warmupSteps: 2, totalSteps: stepsPerEpoch * epochs }),
    seed: 8,
    callbacks,
  });
}

describe('Trainer + DataLoader', () => {
  it('MixUp/CutMix soft targets through the loader, resumed mid-epoch, end bit-identical to the uninterrupted run', async () => {
    const before = tf.memory().numTensors;
    const a = net(2);
    const ta = build(a);
    const ra = await ta.fit(trainLoader(), { epochs: 3, validation: valLoader() });
    expect(ra.steps).toBe(24);
    const reference = snapshot(a);

    const dir = join(root, 'run');
    const b = net(2);
    const crash: Callback = {
      onBatchEnd: (_t, s) => {
        // A hard crash (what an aborted wasm instance throws): nothing is saved after it, so the run
        // resumes from its last periodic checkpoint.
        if (s.step === 13) throw new Error('Aborted(): crash');
      },
    };
    const tb = build(b, [new ModelCheckpoint({ dir, monitor: 'valAcc', everySteps: 3 }), crash]);
    await expect(tb.fit(trainLoader(), { epochs: 3, validation: valLoader() })).rejects.toThrow('crash');
    const c = net(77); // another init: everything comes from the checkpoint
    const tc = await Trainer.fromCheckpoint(join(dir, 'last'), { model: c });
    expect([tc.epoch, tc.batch, tc.step]).toEqual([1, 4, 12]); // mid-epoch 1
    const rc = await tc.fit(trainLoader(), { epochs: 3, validation: valLoader() });
    expect(bitEqual(snapshot(c), reference)).toBe(true);
    expect(rc.history.epochs.map((r) => [r.trainLoss, r.trainAcc, r.valLoss, r.valAcc])).toEqual(
      ra.history.epochs.map((r) => [r.trainLoss, r.trainAcc, r.valLoss, r.valAcc]),
    );
    for (const t of [ta, tb, tc]) t.optimizer.dispose();
    for (const m of [a, b, c]) m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
