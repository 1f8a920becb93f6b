/**
 * The explanation map: core's `explain` (Grad-CAM for the conv models, attention rollout for CaiT,
 * Grad-CAM for any model when a class is chosen) drawn over the model's view of the image with
 * core's `renderHeatmap`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { explain, renderHeatmap, type ExplainMethod, type FloatImage } from '@vit/core';
import type { LoadedModel } from './models.js';

export interface DrawnExplanation {
  method: 'gradcam' | 'rollout';
  layer?: string;
  classIndex: number;
}

/** The [0, 1] RGB view as 0–255 pixels scaled up `scale`× (nearest: the pixels the model saw). */
function upscale(view: FloatImage, scale: number): { data: Uint8ClampedArray; width: number; height: number; channels: 3 } {
  const width = view.width * scale;
  const height = view.height * scale;
  const data = new Uint8ClampedArray(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const src = (Math.floor(y / scale) * view.width + Math.floor(x / scale)) * view.channels;
      for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = Math.round(255 * view.data[src + (view.channels === 1 ? 0 : c)]!);
    }
  }
  return { data, width, height, channels: 3 };
}

/** Explains `x` (the model's input for `view`) and paints the overlay on `canvas`. */
export async function drawExplanation(
  canvas: HTMLCanvasElement,
  m: LoadedModel,
  x: tf.Tensor4D,
  view: FloatImage,
  options: { method: ExplainMethod; classIndex?: number },
): Promise<DrawnExplanation> {
  const r = explain(m.model, x, { method: options.method, classIndex: options.classIndex });
  try {
    const [, h, w] = r.map.shape;
    const map = await r.map.data();
    const scale = Math.max(1, Math.floor(canvas.width / view.width));
    const image = upscale(view, scale);
    // The map covers the whole view: the view is what the model was given.
    const rgba = renderHeatmap(image, { data: map, width: w, height: h }, { alpha: 0.5 });
    const tmp = document.createElement('canvas');
    tmp.width = image.width;
    tmp.height = image.height;
    tmp.getContext('2d')!.putImageData(new ImageData(rgba as Uint8ClampedArray<ArrayBuffer>, image.width, image.height), 0, 0);
    const g = canvas.getContext('2d')!;
    g.imageSmoothingEnabled = false;
    g.drawImage(tmp, 0, 0, canvas.width, canvas.height);
    return { method: r.method, layer: r.layer, classIndex: r.classIndex[0]! };
  } finally {
    tf.dispose([r.map, r.logits]);
  }
}
