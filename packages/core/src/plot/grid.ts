import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { loadSharp } from '../data/optional.js';
import { writeFileAtomic } from '../weights/io.js';
import { ensureDir, escapeXml, plotPaths, type PlotFiles } from './render.js';

/** An HWC image: uint8 0–255, or float (0–1, or normalised when `mean`/`std` are given). */
export interface PlotImage {
  data: Uint8Array | Float32Array;
  height: number;
  width: number;
  channels: number;
}

export interface PredictionGridInput {
  /** NHWC images (a tensor, e.g. a batch's `x`, or a list). */
  images: tf.Tensor4D | readonly PlotImage[];
  predicted: ArrayLike<number>;
  actual: ArrayLike<number>;
  classNames: readonly string[];
  /** Probability of each prediction, shown beside the label. */
  confidence?: ArrayLike<number>;
  /** The normalisation the images went through, undone for display. */
  mean?: readonly number[];
  std?: readonly number[];
  title?: string;
  /** Columns of the grid. Default ⌈√n⌉ (at most 10). */
  columns?: number;
  /** Side of each displayed image in pixels. Default 112 (small images are enlarged without smoothing). */
  cellSize?: number;
}

const GREEN = '#1a7f37';
const RED = '#cf222e';
const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';

/** To RGB uint8, undoing normalisation; float images outside [0, 1] are min–max scaled. */
function toRgb(img: PlotImage, mean?: readonly number[], std?: readonly number[]): Buffer {
  const { data, height, width, channels: C } = img;
  if (C !== 1 && C !== 3) throw new ShapeError(`plotPredictionGrid: images must have 1 or 3 channels, got ${C}`);
  if (data.length !== height * width * C) throw new ShapeError(`plotPredictionGrid: image data has ${data.length} values, expected ${height}x${width}x${C}`);
  const n = height * width;
  const out = Buffer.alloc(n * 3);
  const isByte = data instanceof Uint8Array;
  const vals = new Float32Array(n * C);
  for (let i = 0; i < n * C; i++) {
    const c = i % C;
    let v = data[i]!;
    if (!isByte && mean && std) v = v * std[c % std.length]! + mean[c % mean.length]!;
    vals[i] = v;
  }
  let lo = 0;
  let hi = isByte ? 255 : 1;
  if (!isByte) {
    let mn = Infinity;
    let mx = -Infinity;
    for (const v of vals) {
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
    if (mn < -1e-3 || mx > 1 + 1e-3) [lo, hi] = [mn, mx > mn ? mx : mn + 1];
  }
  const k = 255 / (hi - lo);
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) {
      const v = (vals[p * C + (C === 1 ? 0 : c)]! - lo) * k;
      out[p * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
    }
  }
  return out;
}

async function imagesOf(images: PredictionGridInput['images']): Promise<PlotImage[]> {
  if (!Array.isArray(images)) {
    const t = images as tf.Tensor4D;
    if (t.rank !== 4) throw new ShapeError(`plotPredictionGrid: expected NHWC images, got shape [${t.shape.join(', ')}]`);
    const [n, height, width, channels] = t.shape;
    const all = (await t.data()) as Float32Array | Int32Array | Uint8Array;
    const per = height * width * channels;
    const f32 = all instanceof Float32Array ? all : Float32Array.from(all);
    return Array.from({ length: n }, (_, i) => ({ data: f32.subarray(i * per, (i + 1) * per), height, width, channels }));
  }
  return images as PlotImage[];
}

/** Cuts a label to about `px` pixels of a `size`-px font (DejaVu Sans averages ~0.6 em per glyph). */
function fit(text: string, px: number, size: number): string {
  const max = Math.max(3, Math.floor(px / (size * 0.6)));
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * A grid of images, each captioned with its predicted label (green when right, red when wrong)
 * and, when wrong, the true label; wrong images get a red frame. Composed with sharp; writes a PNG.
 */
export async function plotPredictionGrid(input: PredictionGridInput, path: string): Promise<PlotFiles> {
  const sharp = await loadSharp('Writing the prediction grid');
  const images = await imagesOf(input.images);
  const n = images.length;
  const { predicted, actual, classNames } = input;
  if (n === 0) throw new ConfigError('plotPredictionGrid: no images');
  if (predicted.length !== n || actual.length !== n) {
    throw new ConfigError(`plotPredictionGrid: ${n} images but ${predicted.length} predictions and ${actual.length} labels`);
  }
  if (input.confidence && input.confidence.length !== n) throw new ConfigError(`plotPredictionGrid: ${n} images but ${input.confidence.length} confidences`);
  const name = (k: number) => {
    if (!(Number.isInteger(k) && k >= 0 && k < classNames.length)) throw new ConfigError(`plotPredictionGrid: class ${k} is not in the ${classNames.length} class names`);
    return classNames[k]!;
  };
  const cols = Math.max(1, Math.min(input.columns ?? Math.min(10, Math.ceil(Math.sqrt(n))), n));
  const rows = Math.ceil(n / cols);
  const img = input.cellSize ?? 112;
  const colW = Math.max(img + 24, 150);
  const capH = 46;
  const rowH = img + capH + 14;
  const margin = 20;
  const head = 78;
  const W = margin * 2 + cols * colW;
  const H = head + rows * rowH + margin;
  let wrong = 0;
  const composites: Array<Record<string, unknown>> = [];
  const svg: string[] = [];
  for (let i = 0; i < n; i++) {
    const im = images[i]!;
    const r = Math.floor(i / cols);
    const c = i % cols;
    const x = margin + c * colW + Math.floor((colW - img) / 2);
    const y = head + r * rowH;
    const small = Math.max(im.height, im.width) <= img;
    const tile = await sharp(toRgb(im, input.mean, input.std), { raw: { width: im.width, height: im.height, channels: 3 } })
      .resize(img, img, { fit: 'contain', kernel: small ? 'nearest' : 'lanczos3', background: { r: 255, g: 255, b: 255 } })
      .png()
      .toBuffer();
    composites.push({ input: tile, left: x, top: y });
    const ok = predicted[i] === actual[i];
    if (!ok) wrong++;
    const pred = name(predicted[i]!);
    const conf = input.confidence ? ` ${Math.round(100 * input.confidence[i]!)}%` : '';
    const cx = margin + c * colW + colW / 2;
    svg.push(
      `<rect x="${x - 2}" y="${y - 2}" width="${img + 4}" height="${img + 4}" fill="none" stroke="${ok ? '#d0d7de' : RED}" stroke-width="${ok ? 1 : 4}"/>`,
      `<text x="${cx}" y="${y + img + 20}" text-anchor="middle" font-size="14" font-weight="bold" fill="${ok ? GREEN : RED}">${escapeXml(fit(pred + conf, colW - 8, 14))}</text>`,
    );
    if (!ok) {
      svg.push(`<text x="${cx}" y="${y + img + 38}" text-anchor="middle" font-size="12.5" fill="#333">${escapeXml(fit(`true: ${name(actual[i]!)}`, colW - 8, 12.5))}</text>`);
    }
  }
  const title = input.title ?? 'Predictions';
  const subtitle = `${n - wrong} of ${n} correct · green: right · red frame and label: wrong, true class below`;
  const overlay = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="${FONT}">`,
    `<text x="${margin}" y="34" font-size="20" font-weight="bold" fill="#111">${escapeXml(title)}</text>`,
    `<text x="${margin}" y="58" font-size="13.5" fill="#555">${escapeXml(subtitle)}</text>`,
    ...svg,
    '</svg>',
  ].join('');
  composites.push({ input: Buffer.from(overlay), left: 0, top: 0 });
  const png = await sharp({ create: { width: W, height: H, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .composite(composites)
    .png({ compressionLevel: 9 })
    .toBuffer();
  const { png: file } = plotPaths(path);
  await ensureDir(file);
  await writeFileAtomic(file, png);
  return { png: file };
}
