/**
 * Models for prediction: a nano variant with its Fashion-MNIST weights (core's loadPretrained:
 * fetch + Cache API, checked against the card's SHA-256), or any registered model with a weights
 * file the user picks. Images go through the card's evaluation transform (core's CenterCrop with
 * the crop fraction, then the mean/std).
 */
import '@vit/cait';
import '@vit/conv2former';
import '@vit/hilo';
import '@vit/mrla';
import '@vit/regionvit';
import * as tf from '@tensorflow/tfjs-core';
import {
  CenterCrop,
  Compose,
  IMAGENET_1K_CLASSES,
  Normalize,
  RepeatChannels,
  Rng,
  createModel,
  getModelCard,
  grayscaleOf,
  hasPretrained,
  labelSet,
  listModels,
  loadPretrained,
  loadPretrainedBytes,
  topK,
  type FloatImage,
  type Module,
  type TopKEntry,
} from '@vit/core';

/** Every registered model, those with downloadable weights (the nano variants) first. */
export function modelChoices(): { name: string; pretrained: boolean }[] {
  return listModels()
    .map((name) => ({ name, pretrained: hasPretrained(getModelCard(name)) }))
    .sort((a, b) => Number(b.pretrained) - Number(a.pretrained) || a.name.localeCompare(b.name));
}

export interface LoadedModel {
  name: string;
  model: Module;
  /** Output class names, when known. */
  classNames: readonly string[] | undefined;
  /** Side, mean/std, crop fraction and interpolation of the model's input. */
  input: { size: [number, number]; mean: readonly number[]; std: readonly number[]; cropPct: number; interpolation: 'bilinear' | 'bicubic' | 'nearest' };
  /** Grey inputs repeated to RGB (the Fashion-MNIST weights). */
  grey: boolean;
  source: string;
  notes: string[];
}

const GREY_LABEL_SETS = new Set(['fashion-mnist', 'mnist']);

/** A nano variant with its published weights. */
export async function loadNano(name: string): Promise<LoadedModel> {
  const r = await loadPretrained(name);
  const t = r.tag;
  return {
    name,
    model: r.model,
    classNames: r.classNames,
    input: { size: [t.inputSize[0], t.inputSize[1]], mean: t.mean, std: t.std, cropPct: t.cropPct, interpolation: t.interpolation },
    grey: GREY_LABEL_SETS.has(t.labels),
    source: `${r.source}${r.fromCache ? ' (browser cache)' : ''}`,
    notes: r.notes,
  };
}

/**
 * Any registered model with a weights file (ours or official safetensors, or an uncompressed
 * .pth) through the same loader the pretrained path uses. Class names: the card's label set,
 * ImageNet-1k for a 1000-class head, else none.
 */
export async function loadWithWeights(name: string, file: File): Promise<LoadedModel> {
  const card = getModelCard(name);
  const bytes = new Uint8Array(await file.arrayBuffer());
  const model = createModel(name);
  try {
    const r = loadPretrainedBytes(model, bytes, { card, what: file.name });
    model.eval();
    const labels = card.pretrained?.[0]?.labels;
    const classNames = labels ? labelSet(labels) : card.numClasses === 1000 ? IMAGENET_1K_CLASSES : undefined;
    return {
      name,
      model,
      classNames,
      input: { size: [card.inputSize[0], card.inputSize[1]], mean: card.mean, std: card.std, cropPct: card.cropPct, interpolation: card.interpolation },
      grey: labels !== undefined && GREY_LABEL_SETS.has(labels),
      source: file.name,
      notes: r.notes,
    };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** RGBA pixels (a canvas's ImageData) as an RGB float image in [0, 1]. */
export function rgbaToFloat(pixels: { data: ArrayLike<number>; width: number; height: number }): FloatImage {
  const n = pixels.width * pixels.height;
  const data = new Float32Array(n * 3);
  for (let p = 0; p < n; p++) for (let c = 0; c < 3; c++) data[p * 3 + c] = pixels.data[p * 4 + c]! / 255;
  return { data, height: pixels.height, width: pixels.width, channels: 3 };
}

/**
 * The model's view of an image: grey (optionally inverted: Fashion-MNIST is light on dark) for a
 * grey model, then the card's eval crop/resize. Returns the [0, 1] view (for drawing) and the
 * normalised NHWC batch of one.
 */
export function preprocess(m: LoadedModel, image: FloatImage, options: { invert?: boolean } = {}): { view: FloatImage; x: tf.Tensor4D } {
  let img = image;
  if (m.grey) {
    const g = grayscaleOf(img);
    if (options.invert) for (let i = 0; i < g.length; i++) g[i] = 1 - g[i]!;
    img = { data: g, height: img.height, width: img.width, channels: 1 };
  }
  const rng = new Rng(0); // the eval transforms draw nothing
  const view = new Compose([new CenterCrop(m.input.size, { cropPct: m.input.cropPct, interpolation: m.input.interpolation }), new RepeatChannels(3)]).apply(img, rng);
  const norm = new Normalize(m.input.mean, m.input.std).apply(view);
  return { view, x: tf.tensor4d(norm.data, [1, norm.height, norm.width, norm.channels]) };
}

/** The five most probable classes. */
export async function predict(m: LoadedModel, x: tf.Tensor4D): Promise<TopKEntry[]> {
  const probs = tf.tidy(() => tf.softmax(m.model.forward(x) as tf.Tensor2D));
  const row = await probs.data();
  probs.dispose();
  return topK(row, 5, m.classNames);
}
