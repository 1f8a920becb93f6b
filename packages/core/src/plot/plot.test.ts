import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { setTestBackend } from '../testing/backend.js';
import { plotConfusionMatrix } from './confusion.js';
import { plotLearningCurves } from './curves.js';
import { plotPredictionGrid } from './grid.js';
import { plotPaths } from './render.js';
import { plotExplanation } from './explanation.js';

const tmp = mkdtempSync(join(tmpdir(), 'vit-plot-'));
beforeAll(async () => {
  await setTestBackend();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** The root <svg> width and height, and the text of every <text> element. */
function svgInfo(file: string): { width: number; height: number; texts: string[]; raw: string } {
  const raw = readFileSync(file, 'utf8');
  const m = /<svg[^>]*\bwidth="([\d.]+)"[^>]*\bheight="([\d.]+)"/.exec(raw);
  expect(m).not.toBeNull();
  const texts = [...raw.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((t) => t[1]!.replace(/&amp;/g, '&'));
  return { width: Number(m![1]), height: Number(m![2]), texts, raw };
}

async function pngInfo(file: string) {
  const bytes = readFileSync(file);
  expect(bytes.subarray(0, 8).equals(PNG_MAGIC)).toBe(true);
  return sharp(bytes).metadata();
}

/** Pixels of `png` within `tol` of an RGB colour. */
async function countColour(file: string, rgb: [number, number, number], tol = 12): Promise<number> {
  const { data, info } = await sharp(readFileSync(file)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let n = 0;
  for (let i = 0; i < data.length; i += info.channels) {
    if (Math.abs(data[i]! - rgb[0]) <= tol && Math.abs(data[i + 1]! - rgb[1]) <= tol && Math.abs(data[i + 2]! - rgb[2]) <= tol) n++;
  }
  return n;
}

const history = {
  epochs: Array.from({ length: 5 }, (_, e) => ({ epoch: e, step: (e + 1) * 20, trainLoss: 2 / (e + 1), valLoss: 2.2 / (e + 1), trainAcc: 0.5 + e / 10, valAcc: 0.45 + e / 10 })),
  steps: Array.from({ length: 10 }, (_, k) => ({ step: (k + 1) * 10, epoch: Math.floor(k / 2), loss: 2.5 / (k + 1) })),
};

describe('plotPaths', () => {
  it('puts the PNG and SVG side by side whatever extension is given', () => {
    expect(plotPaths('a/b.png')).toEqual({ png: 'a/b.png', svg: 'a/b.svg' });
    expect(plotPaths('a/b.SVG')).toEqual({ png: 'a/b.png', svg: 'a/b.svg' });
    expect(plotPaths('a/b')).toEqual({ png: 'a/b.png', svg: 'a/b.svg' });
  });
});

describe('plotLearningCurves', () => {
  it('writes a PNG at twice the SVG size with both panels, both series and the title', async () => {
    const files = await plotLearningCurves(history, join(tmp, 'run', 'curves.png'), { title: 'My run' });
    const svg = svgInfo(files.svg!);
    const png = await pngInfo(files.png);
    expect(png.width).toBe(Math.round(svg.width * 2));
    expect(png.height).toBe(Math.round(svg.height * 2));
    expect(svg.width).toBeGreaterThan(900);
    for (const t of ['My run', 'Loss', 'Accuracy', 'train', 'validation', 'train (per step)', 'epoch', 'cross-entropy loss', 'top-1 accuracy', '90%']) {
      expect(svg.texts).toContain(t);
    }
    expect(svg.texts.some((t) => t.includes('best val acc 85.0% (epoch 5)'))).toBe(true);
    // Lines in the series colours: train and validation in both panels, per-step in one.
    const strokes = (c: string) => svg.raw.split(`stroke="${c}"`).length - 1;
    expect(strokes('#1f77b4')).toBeGreaterThanOrEqual(2);
    expect(strokes('#d62728')).toBeGreaterThanOrEqual(2);
    expect(strokes('#9ecae1')).toBeGreaterThanOrEqual(1);
  });

  it('draws train-only histories and percentages, and rejects empty ones', async () => {
    const files = await plotLearningCurves(
      history.epochs.map(({ epoch, trainLoss, trainAcc }) => ({ epoch, trainLoss, trainAcc: trainAcc * 100 })),
      join(tmp, 'train-only'),
    );
    const svg = svgInfo(files.svg!);
    expect(svg.texts).not.toContain('validation');
    expect(svg.texts.some((t) => t.includes('final train acc 90.0%'))).toBe(true);
    await expect(plotLearningCurves([], join(tmp, 'x'))).rejects.toThrow(ConfigError);
    await expect(plotLearningCurves([{ epoch: 0, trainLoss: NaN }], join(tmp, 'x'))).rejects.toThrow(/no finite/);
  });
});

describe('plotConfusionMatrix', () => {
  const names = ['T-shirt/top', 'Trouser', 'Bag & co'];
  const m = [
    [50, 3, 0],
    [7, 41, 2],
    [0, 0, 47],
  ];
  it('labels rows and columns with class names and cells with counts', async () => {
    const files = await plotConfusionMatrix(m, names, join(tmp, 'cm.png'));
    const svg = svgInfo(files.svg!);
    const png = await pngInfo(files.png);
    expect(png.width).toBe(Math.round(svg.width * 2));
    for (const t of [...names, '50', '41', '47', '7', 'true class', 'predicted class', 'Confusion matrix']) expect(svg.texts).toContain(t);
    // Zero cells are left blank.
    expect(svg.texts.filter((t) => t === '0')).toEqual([]);
    expect(svg.texts.some((t) => t.includes('150 examples · 92.0% correct'))).toBe(true);
  });

  it('rejects a matrix that does not match the class names', async () => {
    await expect(plotConfusionMatrix([[1, 2]], names, join(tmp, 'bad'))).rejects.toThrow(/expected a 3x3 matrix for 3 class names, got 1x2/);
    await expect(plotConfusionMatrix([[1, -1], [0, 1]], ['a', 'b'], join(tmp, 'bad'))).rejects.toThrow(/non-negative/);
  });
});

describe('plotPredictionGrid', () => {
  const red = { data: Float32Array.from({ length: 8 * 8 * 3 }, (_, i) => (i % 3 === 0 ? 1 : 0)), height: 8, width: 8, channels: 3 };
  const gray = { data: new Uint8Array(8 * 8).fill(200), height: 8, width: 8, channels: 1 };

  it('lays out captioned tiles and frames only the wrong ones', async () => {
    const file = join(tmp, 'grid-ok.png');
    await plotPredictionGrid({ images: [gray, gray, gray, red], predicted: [0, 1, 1, 0], actual: [0, 1, 1, 0], classNames: ['bag', 'coat'], cellSize: 40 }, file);
    const meta = await pngInfo(file);
    // 2 columns of 150 px + 2·20 margin; 78 title + 2 rows of (40 + 46 + 14) + 20.
    expect([meta.width, meta.height]).toEqual([340, 298]);
    // The red image fills its 40x40 tile (nearest enlargement keeps the colour exact).
    expect(await countColour(file, [255, 0, 0], 0)).toBe(40 * 40);
    // Anti-aliased caption text may add a few pixels of the same grey.
    const grey = await countColour(file, [200, 200, 200], 0);
    expect(grey).toBeGreaterThanOrEqual(3 * 40 * 40);
    expect(grey).toBeLessThan(3 * 40 * 40 + 40);
    expect(await countColour(file, [0xcf, 0x22, 0x2e], 4)).toBe(0);

    const wrong = join(tmp, 'grid-wrong.png');
    await plotPredictionGrid({ images: [gray, gray, gray, red], predicted: [0, 1, 0, 0], actual: [0, 1, 1, 0], classNames: ['bag', 'coat'], cellSize: 40 }, wrong);
    expect(await countColour(wrong, [0xcf, 0x22, 0x2e], 4)).toBeGreaterThan(4 * 40 * 3);
  });

  it('takes a normalised NHWC tensor and undoes the normalisation', async () => {
    const mean = [0.5, 0.5, 0.5];
    const std = [0.25, 0.25, 0.25];
    // (0 − 0.5)/0.25 = −2 is black after denormalising, 2 is white.
    const x = tf.tensor4d([...new Array(16 * 3).fill(-2), ...new Array(16 * 3).fill(2)], [2, 4, 4, 3]);
    const before = tf.memory().numTensors;
    const file = join(tmp, 'grid-tensor.png');
    await plotPredictionGrid({ images: x, predicted: [0, 1], actual: [0, 1], classNames: ['a', 'b'], mean, std, cellSize: 32, title: 'Tensors' }, file);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    expect(await countColour(file, [0, 0, 0], 0)).toBeGreaterThanOrEqual(32 * 32);
  });

  it('rejects mismatched inputs', async () => {
    await expect(plotPredictionGrid({ images: [gray], predicted: [0, 1], actual: [0], classNames: ['a', 'b'] }, join(tmp, 'x.png'))).rejects.toThrow(
      /1 images but 2 predictions and 1 labels/,
    );
    await expect(plotPredictionGrid({ images: [gray], predicted: [5], actual: [0], classNames: ['a', 'b'] }, join(tmp, 'x.png'))).rejects.toThrow(
      /class 5 is not in the 2 class names/,
    );
  });
});

describe('plotExplanation', () => {
  it("writes a PNG of the image's own size with the map blended over the model's centred square", async () => {
    // A 30×20 mid-grey PNG on disk (a landscape image: the model saw its centred 20×20 square).
    const src = join(tmp, 'landscape.png');
    await sharp({ create: { width: 30, height: 20, channels: 3, background: { r: 128, g: 128, b: 128 } } }).png().toFile(src);
    const out = join(tmp, 'sub', 'overlay.png');
    const r = await plotExplanation(src, { data: [1], width: 1, height: 1 }, out, { alpha: 1 });
    expect(r).toEqual({ png: out, width: 30, height: 20 });
    const meta = await pngInfo(out);
    expect([meta.width, meta.height]).toEqual([30, 20]);
    const { data, info } = await sharp(readFileSync(out)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const px = (x: number, y: number) => [...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3)];
    // Columns 5..24 are the square (jet(1) is dark red); the 5 columns either side are the image.
    for (const x of [5, 15, 24]) expect(px(x, 10)).toEqual([128, 0, 0]);
    for (const x of [0, 4, 25, 29]) expect(px(x, 10)).toEqual([128, 128, 128]);
    // centreCrop: the model saw 0.5 of the shorter side.
    await plotExplanation(src, { data: [1], width: 1, height: 1 }, out, { alpha: 1, centreCrop: 0.5 });
    const half = await sharp(readFileSync(out)).removeAlpha().raw().toBuffer();
    expect([...half.subarray((10 * 30 + 15) * 3, (10 * 30 + 15) * 3 + 3)]).toEqual([128, 0, 0]);
    expect([...half.subarray((2 * 30 + 15) * 3, (2 * 30 + 15) * 3 + 3)]).toEqual([128, 128, 128]);
  });

  it('refuses an unreadable image and a bad crop', async () => {
    const bad = join(tmp, 'not-an-image.png');
    writeFileSync(bad, 'hello');
    await expect(plotExplanation(bad, { data: [0], width: 1, height: 1 }, join(tmp, 'x.png'))).rejects.toThrow(/not-an-image\.png: cannot decode image/);
    const img = { data: new Uint8Array(12), width: 2, height: 2, channels: 3 };
    await expect(plotExplanation(img, { data: [0], width: 1, height: 1 }, join(tmp, 'x.png'), { centreCrop: 0 })).rejects.toThrow(/centreCrop must be in \(0, 1\]/);
  });
});
