import { ShapeError } from '../errors.js';

/**
 * An HWC float32 image, the working format of every per-sample transform. Pixel values are in
 * [0, 1] until `Normalize` runs (the loader divides uint8 samples by 255).
 */
export interface FloatImage {
  data: Float32Array;
  height: number;
  width: number;
  channels: number;
}

export type Interpolation = 'nearest' | 'bilinear' | 'bicubic';

/** A new zero-filled image. */
export function createImage(height: number, width: number, channels: number): FloatImage {
  return { data: new Float32Array(height * width * channels), height, width, channels };
}

/**
 * A sample's pixels as a `FloatImage`: uint8 data is scaled by 1/255, float data is taken as
 * already in [0, 1] (and copied, so transforms never alias a dataset's storage).
 */
export function toFloatImage(
  pixels: Uint8Array | Float32Array,
  shape: readonly [number, number, number],
): FloatImage {
  const [height, width, channels] = shape;
  const n = height * width * channels;
  if (pixels.length !== n) {
    throw new ShapeError(`Image data has ${pixels.length} values; expected ${height}x${width}x${channels} = ${n}`);
  }
  const data = new Float32Array(n);
  if (pixels instanceof Uint8Array) {
    for (let i = 0; i < n; i++) data[i] = pixels[i]! / 255;
  } else {
    data.set(pixels);
  }
  return { data, height, width, channels };
}

// Resampling filters as Pillow defines them (src/libImaging/Resample.c); torch's antialiased
// interpolate and torchvision's tensor Resize port the same code.
function bilinearFilter(x: number): number {
  x = Math.abs(x);
  return x < 1 ? 1 - x : 0;
}

function bicubicFilter(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface AxisCoeffs {
  /** First input index each output index reads. */
  start: Int32Array;
  /** Taps per output index. */
  count: Int32Array;
  /** `taps` weights per output index (row-major, zero-padded). */
  weights: Float32Array;
  taps: number;
}

/**
 * Pillow's `precompute_coeffs`: the filter is widened by the downscale factor (antialiasing),
 * so shrinking averages every input pixel instead of sampling a few.
 */
function axisCoeffs(inSize: number, outSize: number, interpolation: 'bilinear' | 'bicubic'): AxisCoeffs {
  const filter = interpolation === 'bilinear' ? bilinearFilter : bicubicFilter;
  const baseSupport = interpolation === 'bilinear' ? 1 : 2;
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = baseSupport * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float32Array(outSize * taps);
  const ss = 1 / filterScale;
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    // Math.trunc mirrors C's (int) cast, which truncates towards zero.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    for (let k = 0; k < xmax; k++) {
      const w = filter((k + xmin - center + 0.5) * ss);
      weights[o * taps + k] = w;
      total += w;
    }
    if (total !== 0) for (let k = 0; k < xmax; k++) weights[o * taps + k]! /= total;
    start[o] = xmin;
    count[o] = xmax;
  }
  return { start, count, weights, taps };
}

function resizeNearest(img: FloatImage, outH: number, outW: number): FloatImage {
  const { height: H, width: W, channels: C, data } = img;
  const out = createImage(outH, outW, C);
  for (let y = 0; y < outH; y++) {
    const sy = Math.min(Math.floor(((y + 0.5) * H) / outH), H - 1);
    for (let x = 0; x < outW; x++) {
      const sx = Math.min(Math.floor(((x + 0.5) * W) / outW), W - 1);
      const si = (sy * W + sx) * C;
      const di = (y * outW + x) * C;
      for (let c = 0; c < C; c++) out.data[di + c] = data[si + c]!;
    }
  }
  return out;
}

/**
 * Resizes to exactly `outH`×`outW`. Bilinear and bicubic follow Pillow's separable resampling
 * (bicubic a = −0.5, antialiased when shrinking), i.e. the numbers of `PIL.Image.resize` and of
 * `torch.nn.functional.interpolate(..., antialias=True)`, computed in float without rounding.
 */
export function resizeImage(img: FloatImage, outH: number, outW: number, interpolation: Interpolation = 'bilinear'): FloatImage {
  if (!(outH >= 1 && outW >= 1) || !Number.isInteger(outH) || !Number.isInteger(outW)) {
    throw new ShapeError(`resize needs a positive integer size, got ${outH}x${outW}`);
  }
  if (outH === img.height && outW === img.width) return { ...img, data: img.data.slice() };
  if (interpolation === 'nearest') return resizeNearest(img, outH, outW);
  const { height: H, width: W, channels: C, data } = img;
  // Horizontal pass (H×W → H×outW), then vertical (→ outH×outW), as Pillow does.
  const cx = axisCoeffs(W, outW, interpolation);
  const tmp = new Float32Array(H * outW * C);
  for (let y = 0; y < H; y++) {
    const row = y * W * C;
    for (let x = 0; x < outW; x++) {
      const s = cx.start[x]!;
      const n = cx.count[x]!;
      const wo = x * cx.taps;
      const di = (y * outW + x) * C;
      for (let c = 0; c < C; c++) {
        let acc = 0;
        for (let k = 0; k < n; k++) acc += data[row + (s + k) * C + c]! * cx.weights[wo + k]!;
        tmp[di + c] = acc;
      }
    }
  }
  const cy = axisCoeffs(H, outH, interpolation);
  const out = createImage(outH, outW, C);
  const rowLen = outW * C;
  for (let y = 0; y < outH; y++) {
    const s = cy.start[y]!;
    const n = cy.count[y]!;
    const wo = y * cy.taps;
    const dst = y * rowLen;
    for (let k = 0; k < n; k++) {
      const w = cy.weights[wo + k]!;
      const src = (s + k) * rowLen;
      for (let i = 0; i < rowLen; i++) out.data[dst + i]! += tmp[src + i]! * w;
    }
  }
  return out;
}

/**
 * The `height`×`width` window whose top-left corner is (`top`, `left`). Parts of the window
 * outside the image are filled with `fill` (torchvision pads the same way when cropping past an edge).
 */
export function cropImage(img: FloatImage, top: number, left: number, height: number, width: number, fill = 0): FloatImage {
  const { height: H, width: W, channels: C, data } = img;
  const out = createImage(height, width, C);
  if (fill !== 0) out.data.fill(fill);
  const y0 = Math.max(0, -top);
  const y1 = Math.min(height, H - top);
  const x0 = Math.max(0, -left);
  const x1 = Math.min(width, W - left);
  if (x1 <= x0) return out;
  for (let y = y0; y < y1; y++) {
    const src = ((top + y) * W + left + x0) * C;
    out.data.set(data.subarray(src, src + (x1 - x0) * C), (y * width + x0) * C);
  }
  return out;
}

/** Mirror left–right. */
export function flipHorizontal(img: FloatImage): FloatImage {
  const { height: H, width: W, channels: C, data } = img;
  const out = createImage(H, W, C);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const si = (y * W + x) * C;
      const di = (y * W + (W - 1 - x)) * C;
      for (let c = 0; c < C; c++) out.data[di + c] = data[si + c]!;
    }
  }
  return out;
}

/**
 * Rotates counter-clockwise by `degrees` about the image centre, keeping the size
 * (torchvision `rotate(expand=False)`); pixels that come from outside the image get `fill`.
 */
export function rotateImage(img: FloatImage, degrees: number, interpolation: 'nearest' | 'bilinear' = 'bilinear', fill = 0): FloatImage {
  const { height: H, width: W, channels: C, data } = img;
  const out = createImage(H, W, C);
  const t = (degrees * Math.PI) / 180;
  const cos = Math.cos(t);
  const sin = Math.sin(t);
  const cx = W / 2;
  const cy = H / 2;
  for (let y = 0; y < H; y++) {
    const dy = y + 0.5 - cy;
    for (let x = 0; x < W; x++) {
      const dx = x + 0.5 - cx;
      // Inverse map of a counter-clockwise rotation with the y axis pointing down.
      const sx = dx * cos - dy * sin + cx - 0.5;
      const sy = dx * sin + dy * cos + cy - 0.5;
      const di = (y * W + x) * C;
      if (interpolation === 'nearest') {
        const ix = Math.round(sx);
        const iy = Math.round(sy);
        if (ix < 0 || iy < 0 || ix >= W || iy >= H) {
          for (let c = 0; c < C; c++) out.data[di + c] = fill;
        } else {
          const si = (iy * W + ix) * C;
          for (let c = 0; c < C; c++) out.data[di + c] = data[si + c]!;
        }
        continue;
      }
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      for (let c = 0; c < C; c++) {
        let acc = 0;
        for (let j = 0; j < 2; j++) {
          const yy = y0 + j;
          const wy = j ? fy : 1 - fy;
          if (wy === 0) continue;
          for (let i = 0; i < 2; i++) {
            const xx = x0 + i;
            const wx = i ? fx : 1 - fx;
            if (wx === 0) continue;
            const v = xx < 0 || yy < 0 || xx >= W || yy >= H ? fill : data[(yy * W + xx) * C + c]!;
            acc += v * wx * wy;
          }
        }
        out.data[di + c] = acc;
      }
    }
  }
  return out;
}

/** Per-channel `(x − mean) / std`. */
export function normalizeImage(img: FloatImage, mean: readonly number[], std: readonly number[]): FloatImage {
  const C = img.channels;
  if (mean.length !== C || std.length !== C) {
    throw new ShapeError(`normalize: mean/std have ${mean.length}/${std.length} values but the image has ${C} channels`);
  }
  const out = createImage(img.height, img.width, C);
  const inv = std.map((s) => 1 / s);
  for (let i = 0; i < img.data.length; i += C) {
    for (let c = 0; c < C; c++) out.data[i + c] = (img.data[i + c]! - mean[c]!) * inv[c]!;
  }
  return out;
}

/** Repeats a single channel `channels` times (grayscale into RGB models). */
export function repeatChannels(img: FloatImage, channels: number): FloatImage {
  if (img.channels === channels) return img;
  if (img.channels !== 1) {
    throw new ShapeError(`Cannot turn a ${img.channels}-channel image into ${channels} channels (only 1 → N is supported)`);
  }
  const out = createImage(img.height, img.width, channels);
  for (let p = 0, o = 0; p < img.data.length; p++) {
    const v = img.data[p]!;
    for (let c = 0; c < channels; c++) out.data[o++] = v;
  }
  return out;
}

/** ITU-R 601 luma, the weights torchvision's `rgb_to_grayscale` uses. */
export function grayscaleOf(img: FloatImage): Float32Array {
  const n = img.height * img.width;
  const g = new Float32Array(n);
  if (img.channels === 1) {
    g.set(img.data);
    return g;
  }
  for (let p = 0; p < n; p++) {
    const i = p * img.channels;
    g[p] = 0.299 * img.data[i]! + 0.587 * img.data[i + 1]! + 0.114 * img.data[i + 2]!;
  }
  return g;
}
