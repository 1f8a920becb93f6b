import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTestBackend } from '../testing/backend.js';
import { ConfigError, FormatError, ShapeError } from '../errors.js';
import type { BatchSource } from '../data/types.js';
import { LabelSmoothingCrossEntropy, SoftTargetCrossEntropy } from '../losses/index.js';
import { AdamW, CosineAnnealingLR, SGD, warmupCosine } from '../optim/index.js';
import { Linear, Module } from '../nn/index.js';
import { modelCard, registerModel, unregisterModel } from '../registry/registry.js';
import { TinyConvNet, TinyMlp, bitEqual, snapshot, toySource } from './__fixtures__/toy.js';
import {
  EarlyStopping,
  HistoryWriter,
  ModelCheckpoint,
  NonFiniteLossError,
  ProgressBar,
  Trainer,
  loadCheckpoint,
  type Callback,
  type EpochRecord,
} from './index.js';

let root: string;
beforeAll(async () => {
  await setTestBackend();
  root = mkdtempSync(join(tmpdir(), 'vit-trainer-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SHAPE: [number, number, number] = [4, 4, 2];
const mlpSource = (seed = 0) => toySource({ n: 96, classes: 4, shape: SHAPE, batchSize: 12, seed });
const mlp = (dropout = 0) => new TinyMlp(32, 16, 4, { seed: 5, dropout });

function adamw(model: Module, lr = 1e-2) {
  return new AdamW(model, { lr, weightDecay: 0.05 });
}

/** Epoch records without the timing fields (which differ between runs). */
const metricsOnly = (h: EpochRecord[]) => h.map(({ seconds: _s, trainImagesPerSecond: _t, valImagesPerSecond: _v, ...rest }) => rest);

describe('Trainer.fit', () => {
  it("refuses to start without tfjs's gradients, naming the import that registers them, and changes nothing", async () => {
    // What a program that imports only @tensorflow/tfjs-core sees: tfjs keeps gradients in a global registry.
    const registry = (globalThis as unknown as { _tfGlobals: Map<string, Map<string, tf.GradConfig>> })._tfGlobals.get('gradRegistry')!;
    const realDiv = registry.get(tf.RealDiv)!;
    expect(realDiv).toBeDefined();
    const model = mlp();
    const before = snapshot(model);
    const trainer = new Trainer({ model, optimizer: adamw(model) });
    registry.delete(tf.RealDiv);
    try {
      await expect(trainer.fit(mlpSource(), { epochs: 1 })).rejects.toThrow(/none for RealDiv.*import '@tensorflow\/tfjs'/);
    } finally {
      registry.set(tf.RealDiv, realDiv);
    }
    expect(bitEqual(snapshot(model), before)).toBe(true);
    expect(trainer.step).toBe(0);
    const res = await trainer.fit(mlpSource(), { epochs: 1 });
    expect(res.status).toBe('completed');
    model.dispose();
  });

  it('fits a tiny MLP on synthetic data to ~100% training accuracy, with schedule and label smoothing', async () => {
    const model = mlp();
    const train = mlpSource();
    const trainer = new Trainer({
      model,
      optimizer: adamw(model, 2e-2),
      loss: new LabelSmoothingCrossEntropy(0.1),
      schedule: ({ stepsPerEpoch, epochs }) => warmupCosine({ warmupSteps: stepsPerEpoch, totalSteps: stepsPerEpoch * epochs }),
      logEvery: 4,
    });
    const res = await trainer.fit(train, { epochs: 8, validation: mlpSource() });
    expect(res.status).toBe('completed');
    expect(res.steps).toBe(8 * 8);
    const h = res.history.epochs;
    expect(h).toHaveLength(8);
    expect(h[0]!.trainLoss).toBeGreaterThan(h[7]!.trainLoss);
    expect(h[7]!.trainAcc).toBeGreaterThanOrEqual(0.98);
    expect(h[7]!.valAcc).toBeGreaterThanOrEqual(0.98);
    expect(h[7]!.valTop5).toBe(1); // 4 classes: top-5 is every class
    expect(res.history.steps.map((s) => s.step)).toEqual(Array.from({ length: 16 }, (_, i) => 4 * (i + 1)));
    // The warm-up: lr rises over the first epoch, then the cosine brings it to ~0 at the end.
    expect(res.history.steps[0]!.lr).toBeLessThan(res.history.steps[1]!.lr);
    expect(h[7]!.lr).toBeLessThan(2e-2 * 0.01);
    const ev = await trainer.evaluate(train, { returnPredictions: true });
    expect(ev.top1).toBeGreaterThanOrEqual(0.98);
    expect(ev.numExamples).toBe(96);
    expect(ev.imagesPerSecond).toBeGreaterThan(0);
    expect(ev.confusion!.flat().reduce((a, b) => a + b, 0)).toBe(96);
    expect(ev.confusion!.reduce((s, row, i) => s + row[i]!, 0)).toBe(Math.round(ev.top1 * 96));
    console.log(`tiny MLP: epoch losses ${h.map((r) => r.trainLoss.toFixed(3)).join(' ')}; final train acc ${h[7]!.trainAcc}, eval top1 ${ev.top1}`);
    model.dispose();
    trainer.optimizer.dispose();
  });

  it('trains a tiny conv net (conv + BatchNorm + dropout) with soft targets and SGD', async () => {
    const model = new TinyConvNet(2, 8, 4, { dropout: 0.1 });
    const train = toySource({ n: 64, classes: 4, shape: [6, 6, 2], batchSize: 16, softTargets: 0.1 });
    const trainer = new Trainer({ model, optimizer: new SGD(model, { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-4 }), loss: new SoftTargetCrossEntropy(), clipGradNorm: 5 });
    const res = await trainer.fit(train, { epochs: 10 });
    const last = res.history.epochs.at(-1)!;
    console.log(`tiny conv net: train loss ${res.history.epochs[0]!.trainLoss.toFixed(3)} -> ${last.trainLoss.toFixed(3)}, acc ${last.trainAcc}`);
    expect(last.trainAcc).toBeGreaterThanOrEqual(0.95);
    expect(model.training).toBe(true); // mode restored
    const ev = await trainer.evaluate(train);
    expect(ev.top1).toBeGreaterThanOrEqual(0.95);
    model.dispose();
    trainer.optimizer.dispose();
  });

  it('same seed, same run: identical weights bit for bit; another trainer seed changes the dropout draws', async () => {
    const run = async (seed: number) => {
      const model = mlp(0.3);
      const trainer = new Trainer({ model, optimizer: adamw(model), seed });
      await trainer.fit(mlpSource(), { epochs: 2 });
      const s = snapshot(model);
      model.dispose();
      trainer.optimizer.dispose();
      return s;
    };
    const a = await run(11);
    const b = await run(11);
    const c = await run(12);
    expect(bitEqual(a, b)).toBe(true);
    expect(bitEqual(a, c)).toBe(false);
  });

  it('leaks no tensor across steps, epochs, evaluation and prediction', async () => {
    const model = new TinyConvNet(2, 4, 3, { dropout: 0.2 });
    const train = toySource({ n: 30, classes: 3, shape: [4, 4, 2], batchSize: 3 });
    const counts: number[] = [];
    const probe: Callback = { onBatchEnd: () => void counts.push(tf.memory().numTensors) };
    const trainer = new Trainer({ model, optimizer: adamw(model), callbacks: [probe], clipGradNorm: 1 });
    await trainer.fit(train, { epochs: 1 }); // creates the optimizer state
    const after1 = tf.memory().numTensors;
    await trainer.fit(train, { epochs: 13, validation: train });
    await trainer.predict(train);
    const images = tf.zeros([5, 4, 4, 2]) as tf.Tensor4D;
    await trainer.predict(images, { batchSize: 2, topK: 2 });
    images.dispose();
    expect(counts.length).toBe(130);
    const steady = counts.slice(10);
    expect(Math.max(...steady) - Math.min(...steady)).toBe(0);
    expect(tf.memory().numTensors).toBe(after1);
    console.log(`leak test: ${counts.length} steps, tensors per step ${steady[0]} (min ${Math.min(...steady)}, max ${Math.max(...steady)}), after ${after1} -> ${tf.memory().numTensors}`);
    trainer.optimizer.dispose();
    model.dispose();
  });

  it('predict returns top-k classes with sorted probabilities and the labels of a source', async () => {
    const model = mlp();
    const trainer = new Trainer({ model, optimizer: adamw(model) });
    const src = mlpSource();
    const p = await trainer.predict(src, { topK: 3 });
    expect(p.k).toBe(3);
    expect(p.classes).toHaveLength(96);
    expect(p.labels).toHaveLength(96);
    expect(p.classNames).toEqual(['class0', 'class1', 'class2', 'class3']);
    for (const row of p.probabilities) {
      expect(row[0]!).toBeGreaterThanOrEqual(row[1]!);
      expect(row[1]!).toBeGreaterThanOrEqual(row[2]!);
      expect(row.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(1 + 1e-6);
    }
    const all = await trainer.predict(tf.zeros([2, 4, 4, 2]) as tf.Tensor4D, { topK: 10 });
    expect(all.k).toBe(4);
    expect(all.classNames).toBeUndefined();
    // A pretrained tag's label set names the classes of a tensor input too.
    const one = tf.zeros([1, 4, 4, 2]) as tf.Tensor4D;
    const named = await trainer.predict(one, { topK: 1, classNames: ['a', 'b', 'c', 'd'] });
    one.dispose();
    expect(named.classNames![named.classes[0]![0]!]).toMatch(/^[abcd]$/);
    expect((await trainer.predict(src, { topK: 1, classNames: ['w', 'x', 'y', 'z'] })).classNames).toEqual(['w', 'x', 'y', 'z']);
    for (const row of all.probabilities) expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    model.dispose();
    trainer.optimizer.dispose();
  });

  it('rejects a model that does not return [batch, classes] logits, naming the shapes', async () => {
    class Bad extends Module {
      readonly w = this.addParameter('w', tf.ones([1]));
      forward(x: tf.Tensor): tf.Tensor {
        return tf.mul(x, this.w);
      }
    }
    const model = new Bad();
    const trainer = new Trainer({ model, optimizer: new SGD(model, { lr: 0.1 }) });
    // (A forward that throws inside tf.variableGrads leaves the tape's saved copies of its inputs
    // behind — a TF.js limitation on this error path, which ends training anyway.)
    await expect(trainer.fit(mlpSource(), { epochs: 1 })).rejects.toThrow(ShapeError);
    await expect(trainer.fit(mlpSource(), { epochs: 1 })).rejects.toThrow(/logits \[12, classes\] for a batch of 12; got shape \[12, 4, 4, 2\]/);
    const wide = new TinyMlp(32, 4, 7);
    const t2 = new Trainer({ model: wide, optimizer: new SGD(wide, { lr: 0.1 }) });
    await expect(t2.evaluate(toySource({ n: 12, classes: 4, shape: SHAPE, batchSize: 4, softTargets: 0 }))).rejects.toThrow(/outputs 7 classes but the data has 4/);
    model.dispose();
    wide.dispose();
  });

  it('early stopping stops when the monitored metric stalls, and says why', async () => {
    const model = mlp();
    // lr 0: the loss cannot improve (minDelta absorbs summation-order noise between epochs' batchings).
    const es = new EarlyStopping({ monitor: 'trainLoss', patience: 2, minDelta: 1e-5 });
    const trainer = new Trainer({ model, optimizer: new SGD(model, { lr: 0 }), callbacks: [es] });
    const res = await trainer.fit(mlpSource(), { epochs: 10 });
    expect(res.status).toBe('stopped');
    expect(res.epochs).toBe(3);
    expect(res.message).toMatch(/early stopping: trainLoss has not improved .* for 2 epochs/);
    await expect(new Trainer({ model, optimizer: new SGD(model, { lr: 0 }), callbacks: [new EarlyStopping()] }).fit(mlpSource(), { epochs: 1 })).rejects.toThrow(
      /monitors 'valLoss' but fit has no validation set/,
    );
    model.dispose();
  });
});

describe('Trainer callbacks', () => {
  it('progress: plain lines off a TTY (items/s, ETA, loss, lr), an in-place bar on a TTY', async () => {
    const model = mlp();
    let plain = '';
    let tty = '';
    let quiet = '';
    const trainer = new Trainer({
      model,
      optimizer: adamw(model),
      callbacks: [
        new ProgressBar({ stream: { write: (s: string) => (plain += s) } }),
        new ProgressBar({ stream: { write: (s: string) => (tty += s), isTTY: true, columns: 200 } }),
        new ProgressBar({ stream: { write: (s: string) => (quiet += s) }, epochLines: false }),
      ],
    });
    await trainer.fit(mlpSource(), { epochs: 2, validation: mlpSource() });
    const lines = plain.trim().split('\n');
    expect(plain).not.toMatch(/\r|\x1b/);
    expect(lines).toHaveLength(2 * (8 + 1)); // one line per batch (8 batches → every 1) + an epoch line
    expect(lines[0]).toMatch(/^epoch 1\/2 step 1\/8 \(13%\) [\d.]+ img\/s ETA \d+:\d\d loss \d\.\d{4} acc [\d.]+% lr 1\.00e-2$/);
    expect(lines[8]).toMatch(/^epoch 1\/2 \| train loss \d\.\d{4} acc [\d.]+% \| val loss \d\.\d{4} acc [\d.]+% top5 100\.00% \| lr 1\.00e-2 \| [\d.]+s [\d.]+ img\/s \(eval [\d.]+ img\/s\)$/);
    expect(tty).toMatch(/\r\x1b\[2Kepoch 1\/2 \[=*>? *\] 3\/8 /);
    expect(tty.split('\n')).toHaveLength(3); // only the two epoch lines end with a newline
    // epochLines: false (vit train prints them on stdout): the step lines only.
    expect(quiet.trim().split('\n')).toEqual(lines.filter((l) => !l.includes(' | ')));
    model.dispose();
    trainer.optimizer.dispose();
  });

  it('history.json holds the per-epoch metrics and the sampled step losses', async () => {
    const model = mlp();
    const file = join(root, 'new-run', 'history.json'); // the folder does not exist yet
    const trainer = new Trainer({ model, optimizer: adamw(model), callbacks: [new HistoryWriter(file)], logEvery: 5 });
    await trainer.fit(mlpSource(), { epochs: 2, validation: mlpSource() });
    const h = JSON.parse(readFileSync(file, 'utf8'));
    expect(h).toEqual(JSON.parse(JSON.stringify(trainer.history)));
    expect(h.epochs).toHaveLength(2);
    expect(Object.keys(h.epochs[0]).sort()).toEqual(['epoch', 'lr', 'seconds', 'step', 'trainAcc', 'trainImagesPerSecond', 'trainLoss', 'valAcc', 'valImagesPerSecond', 'valLoss', 'valTop5']);
    expect(h.steps.map((s: { step: number }) => s.step)).toEqual([5, 10, 15]);
    model.dispose();
    trainer.optimizer.dispose();
  });
});

describe('checkpoints and resume', () => {
  const EPOCHS = 3;
  const source = () => toySource({ n: 48, classes: 3, shape: [6, 6, 2], batchSize: 8, seed: 4 });
  const conv = () => new TinyConvNet(2, 6, 3, { seed: 9, dropout: 0.25 });
  const build = (model: Module, callbacks: Callback[] = []) =>
    new Trainer({
      model,
      optimizer: new AdamW(model, { lr: 5e-3, weightDecay: 0.05 }),
      loss: new LabelSmoothingCrossEntropy(0.1),
      schedule: new CosineAnnealingLR({ tMax: 6 * EPOCHS }),
      clipGradNorm: 2,
      seed: 21,
      callbacks,
    });

  let reference: { weights: Record<string, Float32Array>; history: EpochRecord[] };
  beforeAll(async () => {
    const model = conv();
    const t = build(model);
    await t.fit(source(), { epochs: EPOCHS, validation: source() });
    reference = { weights: snapshot(model), history: t.history.epochs };
    model.dispose();
    t.optimizer.dispose();
  });

  it('a run killed mid-epoch and resumed from its last periodic checkpoint ends bit-identical to the uninterrupted run', async () => {
    const dir = join(root, 'run-crash');
    const crash: Callback = {
      onBatchEnd: (_t, s) => {
        // An abort (what a dead wasm instance throws): nothing can be saved after it, so the
        // run resumes from its last periodic checkpoint.
        if (s.step === 10) throw new Error('Aborted(): simulated crash at step 10');
      },
    };
    const model = conv();
    const first = build(model, [new ModelCheckpoint({ dir, monitor: 'valAcc', everySteps: 4 }), crash]);
    await expect(first.fit(source(), { epochs: EPOCHS, validation: source() })).rejects.toThrow(/simulated crash/);
    model.dispose();
    first.optimizer.dispose();
    // Periodic saves at steps 4 and 8 (mid-epoch 1, 6 batches per epoch) and at the end of epoch 0.
    const ck = await loadCheckpoint(join(dir, 'last'));
    const saved = ck.trainer as { state: { step: number; epoch: number; batch: number } };
    expect([saved.state.step, saved.state.epoch, saved.state.batch]).toEqual([8, 1, 2]);
    ck.dispose();

    const fresh = conv();
    const resumed = await Trainer.fromCheckpoint(join(dir, 'last'), { model: fresh, callbacks: [new ModelCheckpoint({ dir, monitor: 'valAcc' })] });
    expect([resumed.epoch, resumed.batch, resumed.step]).toEqual([1, 2, 8]);
    const res = await resumed.fit(source(), { epochs: EPOCHS, validation: source() });
    expect(res.status).toBe('completed');
    expect(bitEqual(snapshot(fresh), reference.weights)).toBe(true);
    expect(metricsOnly(res.history.epochs)).toEqual(metricsOnly(reference.history));
    expect(existsSync(join(dir, 'final', 'model.safetensors'))).toBe(true);
    fresh.dispose();
    resumed.optimizer.dispose();
  });

  it('an error between steps (a corrupt image met by the data source) saves last/ there; the resumed run is bit-identical', async () => {
    const dir = join(root, 'run-bad-data');
    // The source fails on epoch 1's fourth batch, as a file that became unreadable would.
    const failing = (): BatchSource => {
      const src = source();
      return {
        numBatches: src.numBatches,
        numExamples: src.numExamples,
        numClasses: src.numClasses,
        classNames: src.classNames,
        epoch(e, opts) {
          const it = src.epoch(e, opts)[Symbol.asyncIterator]();
          let b = opts?.startBatch ?? 0;
          return {
            [Symbol.asyncIterator]: () => ({
              next: async () => {
                if (e === 1 && b === 3) throw new FormatError('/data/cat/7.png: cannot decode image (simulated)');
                b += 1;
                return it.next();
              },
              return: async () => (await it.return?.()) ?? { done: true, value: undefined },
            }),
          };
        },
      };
    };
    const model = conv();
    const first = build(model, [new ModelCheckpoint({ dir, monitor: 'valAcc' })]);
    const err = (await first.fit(failing(), { epochs: EPOCHS, validation: source() }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toMatch(/7\.png: cannot decode image \(simulated\) \(The run was saved to '.*run-bad-data\/last' at epoch 2, batch 3: it can resume from there\.\)/);
    model.dispose();
    first.optimizer.dispose();
    const ck = await loadCheckpoint(join(dir, 'last'));
    const saved = ck.trainer as { state: { step: number; epoch: number; batch: number } };
    expect([saved.state.step, saved.state.epoch, saved.state.batch]).toEqual([9, 1, 3]);
    ck.dispose();

    const fresh = conv();
    const resumed = await Trainer.fromCheckpoint(join(dir, 'last'), { model: fresh });
    const res = await resumed.fit(source(), { epochs: EPOCHS, validation: source() });
    expect(res.status).toBe('completed');
    expect(bitEqual(snapshot(fresh), reference.weights)).toBe(true);
    expect(metricsOnly(res.history.epochs)).toEqual(metricsOnly(reference.history));
    fresh.dispose();
    resumed.optimizer.dispose();
  });

  it('a failure inside an optimizer update saves nothing; a later fit that fails between steps still saves last/', async () => {
    const dir = join(root, 'run-update-failure');
    class Flaky extends SGD {
      fail = true;
      override step(grads: tf.NamedTensorMap): void {
        if (this.fail) {
          this.fail = false;
          throw new Error('simulated failure inside the update');
        }
        super.step(grads);
      }
    }
    let armed = false;
    // Fails before the next fit's first step, so no successful step clears the flag first.
    const bad: Callback = {
      onEpochStart: () => {
        if (armed) throw new Error('between steps');
      },
    };
    const model = conv();
    const optimizer = new Flaky(model, { lr: 0.1 });
    const t = new Trainer({ model, optimizer, seed: 1, callbacks: [new ModelCheckpoint({ dir, monitor: 'valAcc' }), bad] });
    await expect(t.fit(source(), { epochs: 1, validation: source() })).rejects.toThrow(/inside the update$/);
    expect(existsSync(join(dir, 'last'))).toBe(false);
    // The same trainer again: this failure is between steps, so last/ is saved.
    armed = true;
    await expect(t.fit(source(), { epochs: 1, validation: source() })).rejects.toThrow(/between steps \(The run was saved to '.*run-update-failure\/last'/);
    expect(existsSync(join(dir, 'last', 'model.safetensors'))).toBe(true);
    model.dispose();
    optimizer.dispose();
  });

  it('an interrupted run (AbortSignal) saves last and resumes exactly, rebuilding the model from the registry', async () => {
    const name = 'test_tiny_convnet_resume';
    registerModel(name, (o) => new TinyConvNet(2, 6, (o?.numClasses as number) ?? 3, { seed: 99, dropout: 0.25 }), modelCard({ name, arch: 'test', firstConv: 'conv', classifier: 'head' }));
    try {
      const dir = join(root, 'run-abort');
      const ac = new AbortController();
      const abortAt: Callback = { onBatchEnd: (_t, s) => void (s.step === 9 && ac.abort()) };
      const model = conv();
      const first = new Trainer({ ...optionsOf(build(model)), modelName: name, modelOptions: { numClasses: 3 }, callbacks: [new ModelCheckpoint({ dir, monitor: 'valAcc' }), abortAt] });
      const r1 = await first.fit(source(), { epochs: EPOCHS, validation: source(), signal: ac.signal });
      expect(r1.status).toBe('interrupted');
      expect(r1.steps).toBe(9);
      model.dispose();
      first.optimizer.dispose();
      const resumed = await Trainer.fromCheckpoint(join(dir, 'last'));
      expect(resumed.model).toBeInstanceOf(TinyConvNet);
      expect(resumed.optimizer).toBeInstanceOf(AdamW);
      expect(resumed.optimizer.paramGroups.map((g) => g.name)).toEqual(['decay', 'no_decay']);
      expect(resumed.step).toBe(9);
      await resumed.fit(source(), { epochs: EPOCHS, validation: source() });
      expect(bitEqual(snapshot(resumed.model), reference.weights)).toBe(true);
      resumed.model.dispose();
      resumed.optimizer.dispose();
    } finally {
      unregisterModel(name);
    }
  });

  it('best/last/final: best follows the monitored metric; the checkpoint holds config and state', async () => {
    const dir = join(root, 'run-best');
    const model = conv();
    const cb = new ModelCheckpoint({ dir, monitor: 'valLoss' });
    const t = new Trainer({ ...optionsOf(build(model)), modelName: 'my_net', meta: { dataset: 'toy' }, callbacks: [cb] });
    await t.fit(source(), { epochs: EPOCHS, validation: source() });
    const losses = t.history.epochs.map((r) => r.valLoss!);
    const bestEpoch = losses.indexOf(Math.min(...losses));
    expect(cb.bestEpoch).toBe(bestEpoch);
    const best = await loadCheckpoint(join(dir, 'best'));
    expect(best.config).toMatchObject({ format: 'vit-checkpoint', library: '@vit/core', modelName: 'my_net', epoch: bestEpoch + 1, meta: { dataset: 'toy' } });
    expect(best.config.optimizer).toMatchObject({ type: 'adamw', lr: 5e-3, weightDecay: 0.05 });
    expect(best.config.schedule).toEqual({ type: 'cosine', tMax: 18, etaMin: 0 });
    expect(best.config.classNames).toEqual(['class0', 'class1', 'class2']);
    best.dispose();
    const fin = await loadCheckpoint(join(dir, 'final'));
    const w = fin.weights.get('conv.weight')!;
    expect(Array.from(w.dataSync())).toEqual(Array.from(model.conv.weight.dataSync()));
    expect(Object.keys(fin.optimizer!.tensors)).toContain('conv.weight.exp_avg');
    fin.dispose();
    model.dispose();
    t.optimizer.dispose();
  });

  it('NaN guard: stops with a clear error, keeps finite weights and the last good checkpoint', async () => {
    const dir = join(root, 'run-nan');
    const model = new TinyConvNet(2, 4, 4, { dropout: 0.1 }); // BatchNorm: its running stats see the NaN batch
    const t = new Trainer({ model, optimizer: adamw(model), callbacks: [new ModelCheckpoint({ dir, monitor: 'trainLoss' })] });
    const src = toySource({ n: 96, classes: 4, shape: SHAPE, batchSize: 12, nanAtBatch: { epoch: 1, batch: 3 } });
    let atStep11: Record<string, Float32Array> = {};
    t.addCallback({ onBatchEnd: (_t, s) => void (s.step === 11 && (atStep11 = snapshot(model))) });
    const err = await t.fit(src, { epochs: 3 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteLossError);
    const e = err as NonFiniteLossError;
    expect(e.message).toMatch(/Training stopped: the loss is NaN at epoch 1, batch 3, step 12\. That update was not applied: parameters and buffers are those after step 11\./);
    expect(e.message).toMatch(/The last good checkpoint is '.*run-nan\/last'/);
    expect(e.step).toBe(12);
    expect(bitEqual(snapshot(model), atStep11)).toBe(true); // running_mean/var rolled back too
    expect(existsSync(join(dir, 'final'))).toBe(false);
    const last = await loadCheckpoint(join(dir, 'last'));
    expect((last.trainer as { state: { step: number } }).state.step).toBe(8);
    for (const w of last.weights.values()) expect(Array.from(w.dataSync()).every(Number.isFinite)).toBe(true);
    last.dispose();
    model.dispose();
    t.optimizer.dispose();
  });
});

/** The options a trainer was built with (to build a variant of it). */
function optionsOf(t: Trainer) {
  return { model: t.model, optimizer: t.optimizer, loss: t.loss, schedule: t.schedule, clipGradNorm: t.clipGradNorm, seed: t.seed };
}

describe('a checkpoint whose config.json asks for more than its weights hold', () => {
  /** `hidden` Linear layers of width 16: the options decide the size, as a real architecture's depth does. */
  class Deep extends Module {
    constructor(depth: number) {
      super();
      for (let i = 0; i < depth; i++) this.register(`l${i}`, new Linear(16, 16));
      this.register('head', new Linear(16, 3));
    }
    forward(x: tf.Tensor): tf.Tensor2D {
      return tf.tidy(() => {
        let h = tf.reshape(x, [x.shape[0]!, -1]).slice([0, 0], [-1, 16]);
        for (const [name, m] of this.namedChildren()) if (name !== 'head') h = (m as Linear).forward(h);
        return ([...this.namedChildren()].find(([n]) => n === 'head')![1] as Linear).forward(h) as tf.Tensor2D;
      });
    }
  }

  it('is refused while the model is being built (depth 100000 takes milliseconds, not minutes), leaking nothing', async () => {
    const name = 'test_deep_budget';
    registerModel(name, (o) => new Deep((o?.depth as number) ?? 2), modelCard({ name, arch: 'test', firstConv: 'l0', classifier: 'head' }));
    try {
      const dir = join(root, 'crafted');
      const model = new Deep(2);
      const t = new Trainer({ model, optimizer: new SGD(model, { lr: 0.1 }), modelName: name, modelOptions: { depth: 2 } });
      await t.saveCheckpoint(dir);
      model.dispose();
      t.optimizer.dispose();
      const cfgFile = join(dir, 'config.json');
      const cfg = JSON.parse(readFileSync(cfgFile, 'utf8'));
      writeFileSync(cfgFile, JSON.stringify({ ...cfg, modelOptions: { depth: 100000 } }));
      const before = tf.memory().numTensors;
      const t0 = Date.now();
      const err = (await Trainer.fromCheckpoint(dir).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(ConfigError);
      expect(err.message).toMatch(/config\.json of checkpoint .*crafted.*test_deep_budget, options \{"depth":100000\}\) — its weights hold 595 elements — asks for a model with more than 1,049,171 parameter and buffer elements/);
      expect(Date.now() - t0).toBeLessThan(30_000);
      expect(tf.memory().numTensors).toBe(before);
      // The budget is generous for what the weights hold: the real config still loads.
      writeFileSync(cfgFile, JSON.stringify(cfg));
      const ok = await Trainer.fromCheckpoint(dir);
      expect(ok.model.numParams()).toBe(595);
      ok.model.dispose();
      ok.optimizer.dispose();
    } finally {
      unregisterModel(name);
    }
  });

  it('a config.json that is not JSON is a corrupt checkpoint, not "no checkpoint"', async () => {
    const dir = join(root, 'badjson');
    const model = new TinyMlp(4, 4, 2);
    const t = new Trainer({ model, optimizer: new SGD(model, { lr: 0.1 }) });
    await t.saveCheckpoint(dir);
    model.dispose();
    t.optimizer.dispose();
    writeFileSync(join(dir, 'config.json'), '{"format": "vit-checkpoint", trunc');
    await expect(loadCheckpoint(dir)).rejects.toThrow(FormatError);
    await expect(loadCheckpoint(dir)).rejects.toThrow(/badjson\/config\.json: invalid JSON .*the checkpoint is corrupt/);
  });
});
