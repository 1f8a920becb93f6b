/**
 * Training a nano model in the page: core's DataLoader over the bundled subset (resized to the
 * card's input, grey repeated to RGB, normalised), core's Trainer with AdamW, stopped after the
 * steps asked for. Every step reports its loss and throughput; the test split is evaluated at the end.
 */
import { AdamW, DataLoader, Resize, Trainer, createModel, getModelCard, type ArrayDataset, type EvalResult, type FitStatus, type Module } from '@vit/core';

export interface TrainSettings {
  model: string;
  steps: number;
  batchSize: number;
  lr: number;
  seed?: number;
}

export interface StepPoint {
  step: number;
  loss: number;
  /** Images per second of this step, data loading included. */
  imagesPerSecond: number;
}

export interface TrainOutcome {
  model: Module;
  points: StepPoint[];
  status: FitStatus;
  test: EvalResult;
}

function loader(data: ArrayDataset, name: string, batchSize: number, train: boolean, seed: number): DataLoader {
  const card = getModelCard(name);
  return new DataLoader(data, {
    batchSize,
    shuffle: train,
    dropLast: train,
    seed,
    transform: new Resize([card.inputSize[0], card.inputSize[1]], card.interpolation),
    channels: card.inputSize[2],
    mean: card.mean,
    std: card.std,
  });
}

/** Trains `settings.model` from scratch; `onStep` sees every step (the page draws the curve there). */
export async function trainNano(
  data: { train: ArrayDataset; test: ArrayDataset },
  settings: TrainSettings,
  hooks: { onStep?: (p: StepPoint) => void; signal?: AbortSignal } = {},
): Promise<TrainOutcome> {
  const seed = settings.seed ?? 0;
  const model = createModel(settings.model);
  const optimizer = new AdamW(model, { lr: settings.lr, weightDecay: 0.05 });
  try {
    const points: StepPoint[] = [];
    let last = performance.now();
    const trainer = new Trainer({
      model,
      optimizer,
      seed,
      callbacks: [
        {
          onEpochStart: () => {
            last = performance.now();
          },
          onBatchEnd: async (t, info) => {
            const now = performance.now();
            const p = { step: info.step, loss: info.loss, imagesPerSecond: info.batchSize / ((now - last) / 1000) };
            points.push(p);
            hooks.onStep?.(p);
            if (info.step >= settings.steps) t.stop(`${settings.steps} steps done`);
            // Steps are synchronous: give the page a turn to paint the curve.
            await new Promise((r) => setTimeout(r, 0));
            last = performance.now();
          },
        },
      ],
    });
    const train = loader(data.train, settings.model, settings.batchSize, true, seed);
    const fit = await trainer.fit(train, { epochs: Math.ceil(settings.steps / train.numBatches), signal: hooks.signal });
    if (fit.status === 'failed' || fit.status === 'diverged') throw new Error(fit.message ?? `training ${fit.status}`);
    const test = await trainer.evaluate(loader(data.test, settings.model, 50, false, seed));
    model.eval();
    return { model, points, status: fit.status, test };
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    optimizer.dispose();
  }
}
