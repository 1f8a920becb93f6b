import '@tensorflow/tfjs';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { fashionMnist } from '@vit/core';
import { setTestBackend } from '@vit/core/testing';
import { afterAll, beforeAll, beforeEach, afterEach, describe, expect, it } from 'vitest';
import { bundledFashionMnistDir } from '../data.js';
import { microConv2Former as micro, testBackend as backend, vit } from '../__fixtures__/vit.js';

const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

async function decode(file: string): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const bytes = readFileSync(file);
  expect(bytes.subarray(0, 8).equals(PNG_MAGIC)).toBe(true);
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

describe('vit explain', () => {
  let dir = '';
  let before = 0;
  beforeAll(async () => {
    await setTestBackend();
    dir = mkdtempSync(join(tmpdir(), 'vit-explain-'));
    // A Fashion-MNIST trouser (test image of class 1) as a 28×28 grey PNG, and the same garment on a
    // wider 48×30 RGB canvas (the model sees the centred 30×30 square).
    const ds = await fashionMnist({ dir: bundledFashionMnistDir()!, split: 'test' });
    let i = 0;
    while (ds.labelOf(i) !== 1) i++;
    const img = (await ds.get(i)).image as Uint8Array;
    await sharp(Buffer.from(img), { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(join(dir, 'trouser.png'));
    await sharp(Buffer.from(img), { raw: { width: 28, height: 28, channels: 1 } })
      .toColourspace('srgb')
      .extend({ top: 1, bottom: 1, left: 10, right: 10, background: { r: 0, g: 40, b: 0 } })
      .png()
      .toFile(join(dir, 'wide.png'));
    const run = await vit('train', ...micro, '--data', 'synthetic:20', '--img-size', '8', '--batch-size', '10', '--epochs', '1', '--no-plots', '--backend', backend, '--out', join(dir, 'run'));
    expect(run.code, run.err).toBe(0);
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors).toBe(before);
  });

  it('--model conv2former_nano --pretrained: prints the top class and writes a decodable PNG of the image size', async () => {
    const out = join(dir, 'trouser-cam.png');
    const r = await vit('explain', '--model', 'conv2former_nano', '--pretrained', join(dir, 'trouser.png'), '--out', out, '--backend', backend);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/trouser\.png: Trouser \(\d+\.\d\d%\)/);
    expect(r.out).toMatch(/Grad-CAM of 'Trouser' on stages\.1 → .*trouser-cam\.png/);
    const png = await decode(out);
    expect([png.width, png.height]).toEqual([28, 28]);
    // The map is drawn: the overlay is not the grey image (some pixel has unequal channels).
    let coloured = 0;
    for (let p = 0; p < png.data.length; p += 3) if (png.data[p] !== png.data[p + 1] || png.data[p + 1] !== png.data[p + 2]) coloured++;
    expect(coloured).toBeGreaterThan(28 * 28 * 0.9);
  }, 120_000);

  it('cait_nano (auto: attention rollout) on a wider image: --json, the overlay covers the centred square the model saw', async () => {
    const out = join(dir, 'wide-rollout.png');
    const r = await vit('explain', '--model', 'cait_nano', '--pretrained', join(dir, 'wide.png'), '--out', out, '--json', '--backend', backend);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j).toMatchObject({ model: 'cait_nano.fashion_mnist', method: 'rollout', out, image: join(dir, 'wide.png') });
    expect(j.layer).toBeUndefined();
    expect(j.top.name).toBe('Trouser');
    expect(j.explained.class).toBe(j.top.class);
    const png = await decode(out);
    const src = await decode(join(dir, 'wide.png'));
    expect([png.width, png.height]).toEqual([48, 30]);
    const px = (img: typeof png, x: number, y: number) => [...img.data.subarray((y * 48 + x) * 3, (y * 48 + x) * 3 + 3)];
    // Outside the centred 30×30 square (columns 0–8 and 39–47) the image is untouched; inside it is blended.
    for (const x of [0, 8, 39, 47]) for (const y of [0, 15, 29]) expect(px(png, x, y)).toEqual(px(src, x, y));
    let changed = 0;
    for (let x = 9; x < 39; x++) for (let y = 0; y < 30; y++) if (px(png, x, y).join() !== px(src, x, y).join()) changed++;
    expect(changed).toBeGreaterThan(30 * 30 * 0.9);
  }, 120_000);

  it('--checkpoint DIR with --method gradcam --class N explains that class', async () => {
    const out = join(dir, 'sub', 'synthetic-cam.png');
    const r = await vit('explain', '--checkpoint', join(dir, 'run'), join(dir, 'trouser.png'), '--method', 'gradcam', '--class', '3', '--out', out, '--json', '--backend', backend);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j).toMatchObject({ method: 'gradcam', explained: { class: 3 } });
    expect(j.layer).toMatch(/^stages\.\d$/);
    expect(existsSync(out)).toBe(true);
    const png = await decode(out);
    expect([png.width, png.height]).toEqual([28, 28]);
  }, 120_000);
});
