import * as tf from '@tensorflow/tfjs-core';
import { fashionMnist } from '../data/idx.js';
import { resizeImage, toFloatImage } from '../data/image.js';
import { IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD } from '../registry/registry.js';

/**
 * Grad-CAM computed independently of `gradCam`, as a test oracle: tfjs's own `tf.grad` (not our
 * tape) of the class logits through `rest` (the network after the target, split by hand), and the
 * channel weights, ReLU, bilinear upsampling (half-pixel centres, clamped edges) and [0, 1]
 * scaling written out in plain JavaScript. `a` is the target's NHWC map. Returns `[B·H·W]`.
 */
export function referenceGradCam(a: tf.Tensor4D, rest: (a: tf.Tensor4D) => tf.Tensor2D, classes: number[], height: number, width: number): Float32Array {
  const [b, h, w, c] = a.shape;
  const g = tf.tidy(() => {
    const onehot = tf.cast(tf.oneHot(tf.tensor1d(classes, 'int32'), rest(a).shape[1]), 'float32');
    return tf.grad((t: tf.Tensor) => tf.sum(tf.mul(rest(t as tf.Tensor4D), onehot)))(a);
  });
  const A = a.dataSync();
  const G = g.dataSync();
  g.dispose();
  const out = new Float32Array(b * height * width);
  for (let n = 0; n < b; n++) {
    const weights = Array.from({ length: c }, (_, k) => {
      let s = 0;
      for (let p = 0; p < h * w; p++) s += G[(n * h * w + p) * c + k]!;
      return s / (h * w);
    });
    const cam = Array.from({ length: h * w }, (_, p) => Math.max(0, weights.reduce((s, wk, k) => s + wk * A[(n * h * w + p) * c + k]!, 0)));
    const up = new Float32Array(height * width);
    for (let y = 0; y < height; y++) {
      const fy = Math.min(h - 1, Math.max(0, ((y + 0.5) * h) / height - 0.5));
      for (let x = 0; x < width; x++) {
        const fx = Math.min(w - 1, Math.max(0, ((x + 0.5) * w) / width - 0.5));
        const [y0, x0] = [Math.floor(fy), Math.floor(fx)];
        const [y1, x1] = [Math.min(h - 1, y0 + 1), Math.min(w - 1, x0 + 1)];
        const at = (yy: number, xx: number) => cam[yy * w + xx]!;
        const [dy, dx] = [fy - y0, fx - x0];
        up[y * width + x] = (at(y0, x0) * (1 - dx) + at(y0, x1) * dx) * (1 - dy) + (at(y1, x0) * (1 - dx) + at(y1, x1) * dx) * dy;
      }
    }
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of up) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
    for (let p = 0; p < up.length; p++) out[n * height * width + p] = hi > lo ? (up[p]! - lo) / (hi - lo) : 0;
  }
  return out;
}

/** The largest |a[i] − b[i]| of two equally long arrays (a map's `dataSync()` against `referenceGradCam`). */
export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsDifference: ${a.length} values against ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Fashion-MNIST test images prepared as the nano models were trained on them, with where the garment is. */
export interface FashionMnistProbe {
  /** `[N, 32, 32, 3]`: bilinear resize to 32×32, grey repeated to RGB, ImageNet mean/std. Dispose it. */
  x: tf.Tensor4D;
  labels: number[];
  /** Per image, 32×32: pixels of the garment (intensity > 0.1 after the resize). */
  object: boolean[][];
  /** Per image, 32×32: empty pixels at least 3 px (in x and y) from any garment pixel. */
  empty: boolean[][];
}

/** The first `perClass` test images of every class from the IDX files in `dir` (the CLI's bundled subset works). */
export async function fashionMnistProbe(dir: string, perClass = 4): Promise<FashionMnistProbe> {
  const ds = await fashionMnist({ dir, split: 'test' });
  const taken = new Array<number>(10).fill(0);
  const idx: number[] = [];
  for (let i = 0; i < ds.length && idx.length < 10 * perClass; i++) if (taken[ds.labelOf(i)]!++ < perClass) idx.push(i);
  const S = 32;
  const pixels = new Float32Array(idx.length * S * S * 3);
  const object: boolean[][] = [];
  const empty: boolean[][] = [];
  const labels: number[] = [];
  for (const [n, i] of idx.entries()) {
    const s = await ds.get(i);
    labels.push(s.label);
    const f = resizeImage(toFloatImage(s.image as Uint8Array, [28, 28, 1]), S, S, 'bilinear').data;
    const obj = Array.from(f, (v) => v > 0.1);
    object.push(obj);
    const near = (p: number) => {
      const [y, x] = [Math.floor(p / S), p % S];
      for (let yy = Math.max(0, y - 3); yy <= Math.min(S - 1, y + 3); yy++) for (let xx = Math.max(0, x - 3); xx <= Math.min(S - 1, x + 3); xx++) if (obj[yy * S + xx]) return true;
      return false;
    };
    empty.push(obj.map((_, p) => !near(p)));
    for (let p = 0; p < S * S; p++) for (let c = 0; c < 3; c++) pixels[(n * S * S + p) * 3 + c] = (f[p]! - IMAGENET_DEFAULT_MEAN[c]!) / IMAGENET_DEFAULT_STD[c]!;
  }
  return { x: tf.tensor4d(pixels, [idx.length, S, S, 3]), labels, object, empty };
}

/**
 * Where explanation maps `[N, 32, 32]` put their mass on a probe: the mean map value over garment
 * pixels and over empty pixels far from it, each averaged over the images (images with no such
 * empty pixels are left out), and in how many images the garment's mean is the larger.
 */
export function explanationFocus(maps: tf.Tensor3D, probe: FashionMnistProbe): { object: number; empty: number; wins: number; images: number } {
  const m = maps.dataSync();
  const per = 32 * 32;
  let [object, empty, wins, images] = [0, 0, 0, 0];
  probe.object.forEach((obj, n) => {
    let [so, no, se, ne] = [0, 0, 0, 0];
    for (let p = 0; p < per; p++) {
      const v = m[n * per + p]!;
      if (obj[p]) [so, no] = [so + v, no + 1];
      else if (probe.empty[n]![p]) [se, ne] = [se + v, ne + 1];
    }
    if (no === 0 || ne === 0) return;
    images++;
    object += so / no;
    empty += se / ne;
    if (so / no > se / ne) wins++;
  });
  return { object: object / images, empty: empty / images, wins, images };
}
