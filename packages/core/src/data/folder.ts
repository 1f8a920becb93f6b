import { ConfigError, DataError, FormatError } from '../errors.js';
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
  /**
   * Check every image before the dataset is returned, so a bad file is found now and not when it
   * is first sampled (maybe an epoch into a run): 'header' reads each header (fast: finds files
   * that are not images), 'full' decodes each image as `get` does (finds truncated and corrupt
   * data; with `cache`, the decoded images are kept, so nothing is decoded twice). Default 'header'.
   */
  check?: 'none' | 'header' | 'full';
  /** What a failed check does: 'error' (default) throws a `DataError` listing every bad file; 'skip' leaves them out (`skipped` lists them). */
  badImages?: 'error' | 'skip';
  /** Progress of the check (called every few images, and once at the end). */
  onCheckProgress?: (done: number, total: number) => void;
}

/** An image that failed `ImageFolderDataset.check`, and why. */
export interface BadImage {
  file: string;
  reason: string;
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
  /** Files left out by `imageFolder({ badImages: 'skip' })`, with the reason. */
  skipped: readonly BadImage[] = [];

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
    let result: { data: Uint8Array; info: { width: number; height: number; channels: number } };
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

  /**
   * Checks every file, `concurrency` at a time (libvips decodes on its own threads): 'header' reads
   * the header (is it an image sharp can read, with a size?), 'full' decodes it as `get` does
   * (and caches it when the dataset caches). Returns the bad files in dataset order.
   */
  async check(options: { mode?: 'header' | 'full'; concurrency?: number; onProgress?: (done: number, total: number) => void } = {}): Promise<BadImage[]> {
    const mode = options.mode ?? 'header';
    const concurrency = Math.max(1, options.concurrency ?? 8);
    const bad: Array<BadImage & { index: number }> = [];
    let next = 0;
    let done = 0;
    const every = Math.max(1, Math.floor(this.length / 100));
    const one = async (i: number): Promise<void> => {
      const file = this.files[i]!;
      try {
        if (mode === 'full') {
          await this.get(i);
        } else {
          const meta = await this.sharp(file, { failOn: 'error' }).metadata();
          if (!meta.width || !meta.height) throw new Error('no image size in its header');
        }
      } catch (e) {
        const msg = (e as Error).message;
        bad.push({ index: i, file, reason: msg.startsWith(`${file}: `) ? msg.slice(file.length + 2) : msg });
      }
      done += 1;
      if (done % every === 0 && done < this.length) options.onProgress?.(done, this.length);
    };
    const workers = Array.from({ length: Math.min(concurrency, this.length) }, async () => {
      while (next < this.length) await one(next++);
    });
    await Promise.all(workers);
    options.onProgress?.(done, this.length);
    return bad.sort((a, b) => a.index - b.index).map(({ file, reason }) => ({ file, reason }));
  }

  /** The same dataset without `files` (decoded images already cached are kept). */
  without(files: Iterable<string>): ImageFolderDataset {
    const drop = new Set(files);
    const keep: number[] = [];
    for (let i = 0; i < this.length; i++) if (!drop.has(this.files[i]!)) keep.push(i);
    const ds = new ImageFolderDataset(
      keep.map((i) => this.files[i]!),
      Int32Array.from(keep, (i) => this.labels[i]!),
      this.classNames,
      this.sharp,
      this.options,
    );
    if (this.cache && ds.cache) keep.forEach((i, j) => {
      const hit = this.cache!.get(i);
      if (hit) ds.cache!.set(j, hit);
    });
    return ds;
  }
}

/**
 * An image-folder dataset (torchvision `ImageFolder` layout): `dir/<class>/…/*.{jpg,jpeg,png,webp}`,
 * classes in sorted order. Needs the optional `sharp` package; fails early, naming the folder,
 * when there are no class folders or a class has no images, and (`check`) lists every file that is
 * not a readable image before anything trains on it. Decoding errors name the file.
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
    throw new DataError(`Cannot read image folder ${options.dir}: ${(e as Error).message}`);
  }
  const classNames = top
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (classNames.length === 0) {
    throw new DataError(`${options.dir}: no class sub-folders (expected ${options.dir}/<class name>/<images>)`);
  }
  const exts = new Set((options.extensions ?? IMAGE_EXTENSIONS).map((e) => e.toLowerCase()));
  const files: string[] = [];
  const labels: number[] = [];
  for (const [k, name] of classNames.entries()) {
    const found = await walk(node, join(options.dir, name), exts);
    if (found.length === 0) {
      throw new DataError(`${join(options.dir, name)}: class '${name}' has no images (${[...exts].join(', ')})`);
    }
    files.push(...found);
    labels.push(...found.map(() => k));
  }
  let ds = new ImageFolderDataset(files, Int32Array.from(labels), classNames, sharp, options);
  const mode = options.check ?? 'header';
  if (mode === 'none') return ds;
  const bad = await ds.check({ mode, onProgress: options.onCheckProgress });
  if (bad.length === 0) return ds;
  if ((options.badImages ?? 'error') === 'error') {
    throw new DataError(
      `${options.dir}: ${bad.length} of ${files.length} image files cannot be read (leave them out with badImages 'skip', \`vit train --bad-images skip\`):\n` +
        bad.map((b) => `  ${b.file}: ${b.reason}`).join('\n'),
    );
  }
  ds = ds.without(bad.map((b) => b.file));
  ds.skipped = bad;
  const empty = classNames.filter((_, k) => !ds.labels.includes(k));
  if (empty.length) throw new DataError(`${options.dir}: no readable images left in class folder(s) ${empty.join(', ')} after skipping ${bad.length} bad file(s)`);
  return ds;
}
