import { ConfigError, FormatError } from '../errors.js';
import { loadSharp } from '../data/optional.js';
import { renderHeatmap, type HeatmapData, type PixelImage } from '../explain/heatmap.js';
import { writeFileAtomic } from '../weights/io.js';
import { ensureDir } from './render.js';

export interface ExplanationPlotOptions {
  /** Heatmap weight in the blend. Default 0.5. */
  alpha?: number;
  /**
   * The side of the centred square the model saw, as a fraction of the image's shorter side (a
   * resize to size/cropPct and a centre crop of size: `size / ⌊size/cropPct⌋`). Default 1: the
   * centred square of the shorter side (a square image: all of it).
   */
  centreCrop?: number;
}

/** An image file (JPEG, PNG, WebP) as RGB bytes at its own size, decoded with sharp. */
export async function decodeImageRgb(file: string): Promise<PixelImage> {
  const sharp = await loadSharp('Reading images');
  try {
    const { data, info } = await sharp(file, { failOn: 'error' }).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height, channels: info.channels };
  } catch (e) {
    throw new FormatError(`${file}: cannot decode image (${(e as Error).message})`);
  }
}

/**
 * Writes `image` (a file or pixels) with the explanation `map` over it as a PNG of the image's
 * size (sharp encodes it). Returns the path written.
 */
export async function plotExplanation(image: string | PixelImage, map: HeatmapData, path: string, options: ExplanationPlotOptions = {}): Promise<{ png: string; width: number; height: number }> {
  const img = typeof image === 'string' ? await decodeImageRgb(image) : image;
  const crop = options.centreCrop ?? 1;
  if (!(crop > 0 && crop <= 1)) throw new ConfigError(`plotExplanation: centreCrop must be in (0, 1], got ${crop}`);
  const side = Math.min(img.width, img.height) * crop;
  const box = { left: (img.width - side) / 2, top: (img.height - side) / 2, width: side, height: side };
  const rgba = renderHeatmap(img, map, { alpha: options.alpha, box });
  const sharp = await loadSharp('Writing PNG images');
  const png = await sharp(new Uint8Array(rgba.buffer, rgba.byteOffset, rgba.byteLength), { raw: { width: img.width, height: img.height, channels: 4 } })
    .png({ compressionLevel: 9 })
    .toBuffer();
  await ensureDir(path);
  await writeFileAtomic(path, png);
  return { png: path, width: img.width, height: img.height };
}
