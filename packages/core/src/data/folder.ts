import { ConfigError, FormatError } from '../errors.js';
import { checkIndex } from './memory.js';
import { nodeApi, type NodeApi } from './node.js';
import { loadSharp, type SharpFactory } from './optional.js';
import type { Size } from './transforms.js';
import type { Dataset, Sample } from './types.js';

export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.webp'];

export interface ImageFolderOptions {
  /** Root folder: one sub-folder per class (sorted names = class indices), images anywhere below it. */
  dir: string;
  /** Every image is resized to this (`[height, width]`, or a square side). */
  size: Size;
  /** 3 (RGB, default; grayscale images are expanded, alpha is dropped) or 1 (grayscale). */
  channels?: 1 | 3;
  /** How the aspect ratio is handled: 'cover' (default) scales the shorter side and centre-crops, 'fill' stretches, 'contain' letterboxes with black. */
  fit?: 'cover' | 'fill' | 'contain';
  /** libvips resampling kernel. Default 'cubic'. */
  kernel?: 'nearest' | 'linear' | 'cubic' | 'mitchell' | 'lanczos2' | 'lanczos3';
  /** Keep decoded images in memory (for folders that fit; later epochs skip decoding). */
  cache?: boolean;
  /** File extensions to read (lower case, with the dot). */
  extensions?: readonly string[];
}

async function walk(node: NodeApi, dir: string, exts: ReadonlySet<string>): Promise<string[]> {
  const { join, extname } = node.path;
  const out: string[] = [];
  const entries = (await node.fs.readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(node, p, exts)));
    else if (exts.has(extname(e.name).toLowerCase())) out.push(p);
  }
  return out;
}

/** Images in class sub-folders, decoded by sharp (libvips) on demand. */
export class ImageFolderDataset implements Dataset {
  readonly length: number;
  readonly imageShape: readonly [number, number, number];
  readonly numClasses: number;
  readonly classNames: readonly string[];
  private readonly cache: Map<number, Uint8Array> | undefined;

  constructor(
    readonly files: readonly string[],
    readonly labels: Int32Array,
    classNames: readonly string[],
    private readonly sharp: SharpFactory,
    private readonly options: ImageFolderOptions,
  ) {
    const [h, w] = typeof options.size === 'number' ? [options.size, options.size] : options.size;
    this.imageShape = [h, w, options.channels ?? 3];
    this.length = files.length;
    this.classNames = classNames;
    this.numClasses = classNames.length;
    this.cache = options.cache ? new Map() : undefined;
  }

  labelOf(index: number): number {
    return this.labels[index]!;
  }

  async get(index: number): Promise<Sample> {
    checkIndex(index, this.length);
    const label = this.labels[index]!;
    const hit = this.cache?.get(index);
    if (hit) return { image: hit, label };
    const file = this.files[index]!;
    const [h, w, c] = this.imageShape;
    let result: { data: Buffer; info: { width: number; height: number; channels: number } };
    try {
      let img = this.sharp(file, { failOn: 'error' });
      img = c === 1 ? img.greyscale() : img.toColourspace('srgb');
      result = await img
        .removeAlpha()
        .resize(w, h, { fit: this.options.fit ?? 'cover', kernel: this.options.kernel ?? 'cubic', background: { r: 0, g: 0, b: 0 } })
        .raw()
        .toBuffer({ resolveWithObject: true });
    } catch (e) {
      throw new FormatError(`${file}: cannot decode image (${(e as Error).message})`);
    }
    const { info } = result;
    if (info.width !== w || info.height !== h || info.channels !== c) {
      throw new FormatError(`${file}: decoded to ${info.height}x${info.width}x${info.channels}, expected ${h}x${w}x${c}`);
    }
    const image = new Uint8Array(result.data.buffer, result.data.byteOffset, result.data.byteLength);
    this.cache?.set(index, image);
    return { image, label };
  }
}

/**
 * An image-folder dataset (torchvision `ImageFolder` layout): `dir/<class>/…/*.{jpg,jpeg,png,webp}`,
 * classes in sorted order. Needs the optional `sharp` package; fails early, naming the folder,
 * when there are no class folders or a class has no images. Decoding errors name the file.
 */
export async function imageFolder(options: ImageFolderOptions): Promise<ImageFolderDataset> {
  const sharp = await loadSharp('Reading an image folder');
  const size = options.size;
  const [h, w] = typeof size === 'number' ? [size, size] : size;
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) {
    throw new ConfigError(`imageFolder: size must be a positive integer or [height, width], got ${JSON.stringify(size)}`);
  }
  if (options.channels !== undefined && options.channels !== 1 && options.channels !== 3) {
    throw new ConfigError(`imageFolder: channels must be 1 or 3, got ${String(options.channels)}`);
  }
  const node = await nodeApi('Reading an image folder');
  const { join } = node.path;
  let top;
  try {
    top = await node.fs.readdir(options.dir, { withFileTypes: true });
  } catch (e) {
    throw new ConfigError(`Cannot read image folder ${options.dir}: ${(e as Error).message}`);
  }
  const classNames = top
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (classNames.length === 0) {
    throw new ConfigError(`${options.dir}: no class sub-folders (expected ${options.dir}/<class name>/<images>)`);
  }
  const exts = new Set((options.extensions ?? IMAGE_EXTENSIONS).map((e) => e.toLowerCase()));
  const files: string[] = [];
  const labels: number[] = [];
  for (const [k, name] of classNames.entries()) {
    const found = await walk(node, join(options.dir, name), exts);
    if (found.length === 0) {
      throw new ConfigError(`${join(options.dir, name)}: class '${name}' has no images (${[...exts].join(', ')})`);
    }
    files.push(...found);
    labels.push(...found.map(() => k));
  }
  return new ImageFolderDataset(files, Int32Array.from(labels), classNames, sharp, options);
}
