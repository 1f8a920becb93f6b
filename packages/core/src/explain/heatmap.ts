/**
 * Explanation maps drawn over images, as RGBA pixels (an `ImageData`'s layout): no tensors and no
 * Node modules, so a browser page and the CLI (which encodes them as PNG) draw the same thing.
 */
import { ConfigError, ShapeError } from '../errors.js';

/** An image as interleaved 0–255 values (`Uint8Array`, `Uint8ClampedArray`, a `Buffer`). */
export interface PixelImage {
  data: ArrayLike<number>;
  width: number;
  height: number;
  /** 1 (grey), 3 (RGB) or 4 (RGBA). */
  channels: number;
}

/** A map of values in [0, 1], row-major. */
export interface HeatmapData {
  data: ArrayLike<number>;
  width: number;
  height: number;
}

export interface RenderHeatmapOptions {
  /** Weight of the heatmap colour in the blend (the image gets `1 - alpha`). Default 0.5. */
  alpha?: number;
  /**
   * The part of the image the map covers, in image pixels (fractions allowed): the model's view
   * after a centre crop. Default the whole image; pixels outside are left as they are.
   */
  box?: { left: number; top: number; width: number; height: number };
}

/**
 * The jet colormap (the one Grad-CAM's figures and OpenCV's `COLORMAP_JET` use): 0 dark blue →
 * cyan → yellow → 1 dark red, as `[r, g, b]` in 0–255. Values outside [0, 1] are clamped.
 */
export function jet(v: number): [number, number, number] {
  const x = Number.isNaN(v) ? 0 : Math.min(1, Math.max(0, v));
  const ch = (c: number) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * x - c))));
  return [ch(3), ch(2), ch(1)];
}

function checkImage(what: string, img: { data: ArrayLike<number>; width: number; height: number }, channels: number): void {
  if (!(Number.isInteger(img.width) && img.width > 0 && Number.isInteger(img.height) && img.height > 0)) {
    throw new ShapeError(`renderHeatmap: ${what} must have a positive integer width and height, got ${img.width}x${img.height}`);
  }
  if (img.data.length !== img.width * img.height * channels) {
    throw new ShapeError(`renderHeatmap: ${what} of ${img.width}x${img.height}x${channels} needs ${img.width * img.height * channels} values, got ${img.data.length}`);
  }
}

/**
 * Blends the jet colours of `map` over `image` inside `box` (the map stretched over it, sampled
 * bilinearly at pixel centres) and returns RGBA pixels of the image's size.
 */
export function renderHeatmap(image: PixelImage, map: HeatmapData, options: RenderHeatmapOptions = {}): Uint8ClampedArray {
  const { width: W, height: H, channels: C } = image;
  if (![1, 3, 4].includes(C)) throw new ShapeError(`renderHeatmap: image must have 1, 3 or 4 channels, got ${C}`);
  checkImage('image', image, C);
  checkImage('map', map, 1);
  const alpha = options.alpha ?? 0.5;
  if (!(alpha >= 0 && alpha <= 1)) throw new ConfigError(`renderHeatmap: alpha must be in [0, 1], got ${alpha}`);
  const box = options.box ?? { left: 0, top: 0, width: W, height: H };
  if (!(box.width > 0 && box.height > 0) || ![box.left, box.top].every(Number.isFinite)) {
    throw new ConfigError(`renderHeatmap: box must have a positive width and height and a finite corner, got ${JSON.stringify(box)}`);
  }
  const { data: m, width: mw, height: mh } = map;
  const sample = (fx: number, fy: number) => {
    // Half-pixel centres, edges clamped (as the upsampling of the map itself).
    const x = Math.min(mw - 1, Math.max(0, fx));
    const y = Math.min(mh - 1, Math.max(0, fy));
    const x0 = Math.floor(x);
    const y0 = Math.floor(y);
    const x1 = Math.min(mw - 1, x0 + 1);
    const y1 = Math.min(mh - 1, y0 + 1);
    const dx = x - x0;
    const dy = y - y0;
    const at = (yy: number, xx: number) => m[yy * mw + xx]!;
    return (at(y0, x0) * (1 - dx) + at(y0, x1) * dx) * (1 - dy) + (at(y1, x0) * (1 - dx) + at(y1, x1) * dx) * dy;
  };
  const out = new Uint8ClampedArray(W * H * 4);
  const px = image.data;
  for (let y = 0; y < H; y++) {
    const fy = ((y + 0.5 - box.top) / box.height) * mh - 0.5;
    const inY = y + 0.5 >= box.top && y + 0.5 <= box.top + box.height;
    for (let x = 0; x < W; x++) {
      const i = y * W + x;
      const rgb = C === 1 ? [px[i]!, px[i]!, px[i]!] : [px[i * C]!, px[i * C + 1]!, px[i * C + 2]!];
      const o = i * 4;
      out[o + 3] = C === 4 ? px[i * 4 + 3]! : 255;
      const inside = inY && x + 0.5 >= box.left && x + 0.5 <= box.left + box.width;
      if (!inside) {
        out.set(rgb, o);
        continue;
      }
      const colour = jet(sample(((x + 0.5 - box.left) / box.width) * mw - 0.5, fy));
      for (let c = 0; c < 3; c++) out[o + c] = Math.round((1 - alpha) * rgb[c]! + alpha * colour[c]!);
    }
  }
  return out;
}
