import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  Trainer,
  createModel,
  createOptimizer,
  getModelCard,
  loadModelWeights,
  loadPthFile,
  loadPytorchStateDict,
  resolveCheckpointDir,
  type Module,
} from '@vit/core';
import { UsageError } from './exit-codes.js';

/** A model ready for evaluation or prediction, with what its training run recorded. */
export interface LoadedModel {
  trainer: Trainer;
  modelName: string;
  imgSize: number;
  channels: 1 | 3;
  mean: readonly number[];
  std: readonly number[];
  cropPct: number;
  classNames: readonly string[] | undefined;
  source: string;
  dispose(): void;
}

/** A run folder means its best checkpoint (then final, then last). */
async function checkpointDir(dir: string): Promise<string> {
  const abs = resolve(dir);
  if (await resolveCheckpointDir(abs)) return abs;
  for (const sub of ['best', 'final', 'last']) {
    if (existsSync(join(abs, sub)) || existsSync(join(abs, `.${sub}.old`))) {
      if (await resolveCheckpointDir(join(abs, sub))) return join(abs, sub);
    }
  }
  throw new UsageError(`${abs} is not a checkpoint: expected a folder written by \`vit train\` (with config.json), or a run folder holding best/, final/ or last/`);
}

/**
 * `--checkpoint DIR` (a `vit train` checkpoint or run folder), or `--model NAME --weights FILE`
 * (our safetensors, PyTorch-layout safetensors, or an official .pth).
 */
export async function loadForInference(values: Record<string, unknown>): Promise<LoadedModel> {
  const ckFlag = values.checkpoint as string | undefined;
  const name = values.model as string | undefined;
  const weights = values.weights as string | undefined;
  if (ckFlag && (name || weights)) throw new UsageError('give either --checkpoint, or --model with --weights, not both');
  if (ckFlag) {
    const dir = await checkpointDir(ckFlag);
    const trainer = await Trainer.fromCheckpoint(dir);
    const meta = (trainer.meta ?? {}) as Record<string, unknown>;
    const modelName = trainer.modelName ?? 'model';
    const card = trainer.modelName ? getModelCard(trainer.modelName) : undefined;
    return {
      trainer,
      modelName,
      imgSize: (meta.imgSize as number | undefined) ?? card?.inputSize[0] ?? 224,
      channels: ((meta.channels as number | undefined) ?? card?.inputSize[2] ?? 3) === 1 ? 1 : 3,
      mean: (meta.mean as number[] | undefined) ?? card?.mean ?? [0.485, 0.456, 0.406],
      std: (meta.std as number[] | undefined) ?? card?.std ?? [0.229, 0.224, 0.225],
      cropPct: (meta.cropPct as number | undefined) ?? card?.cropPct ?? 1,
      classNames: meta.classNames as string[] | undefined,
      source: dir,
      dispose: () => {
        trainer.model.dispose();
        trainer.optimizer.dispose();
      },
    };
  }
  if (!name) throw new UsageError('give --checkpoint DIR (from `vit train`), or --model NAME with --weights FILE');
  const card = getModelCard(name);
  const numClasses = values['num-classes'] === undefined ? undefined : Number(values['num-classes']);
  if (numClasses !== undefined && !(Number.isInteger(numClasses) && numClasses > 0)) throw new UsageError(`--num-classes expects a positive integer, got '${String(values['num-classes'])}'`);
  const model = createModel(name, numClasses ? { numClasses } : {}) as Module;
  try {
    if (weights) {
      const file = resolve(weights);
      if (/\.(pth|pt|bin|ckpt)$/i.test(file)) {
        const { tensors } = await loadPthFile(file);
        try {
          loadPytorchStateDict(model, tensors, { strict: true });
        } finally {
          for (const t of tensors.values()) t.dispose();
        }
      } else {
        await loadModelWeights(model, file, { strict: true });
      }
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  model.eval();
  // The Trainer runs evaluate/predict; a plain SGD with no state is all it needs here.
  const trainer = new Trainer({ model, optimizer: createOptimizer(model, { type: 'sgd', lr: 0 }), modelName: name });
  return {
    trainer,
    modelName: name,
    imgSize: card.inputSize[0],
    channels: card.inputSize[2] === 1 ? 1 : 3,
    mean: card.mean,
    std: card.std,
    cropPct: card.cropPct,
    classNames: undefined,
    source: weights ? resolve(weights) : `${name} (random weights)`,
    dispose: () => {
      model.dispose();
      trainer.optimizer.dispose();
    },
  };
}
