/**
 * Pretrained weights the timm way: a model name (and optional tag) → the card's published file →
 * the local cache → the architecture's checkpoint filter → an all-or-nothing load.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError, DownloadError, FormatError, VitError, nearestNames } from '../errors.js';
import type { Module } from '../nn/module.js';
import { createModel, getModelCard, pretrainedTag, type CreateModelOptions, type ModelCard, type PretrainedSource, type PretrainedTag } from '../registry/registry.js';
import { labelSet } from '../data/labels.js';
import { loadOurStateDict, replaceClassifier, type PytorchLoadResult } from '../weights/convert.js';
import { OUR_LAYOUT } from '../weights/io.js';
import { loadOfficialCheckpoint } from '../weights/official.js';
import { loadPth, looksLikePth } from '../weights/pth.js';
import { parseSafetensors, rawToTensor } from '../weights/safetensors.js';
import { absoluteUrl, evictBrowserCached, fetchBytesCached, isNodeRuntime } from './browser.js';
import { cachedFile, defaultCacheDir, evictCached, fetchToCache, nodeModules, offlineFromEnv, sha256File, type DownloadOptions } from './download.js';

export interface PretrainedOptions extends Omit<DownloadOptions, 'sha256' | 'sizeBytes'> {
  /** Which pretrained tag (default: the card's first). */
  tag?: string;
  /**
   * Load this file instead of the tag's sources: `https:`/`http:` (cached like the card's), a
   * `file:` URL or a local path (read in place). The tag still gives preprocessing and labels.
   */
  url?: string;
  /** Expected SHA-256 of `url`'s file (the card's checksum applies to the card's own sources only). */
  sha256?: string;
  /** Cache folder (default `VIT_CACHE_DIR`, `$XDG_CACHE_HOME/vit` or `~/.cache/vit`). Node only. */
  cacheDir?: string;
  /** Cache API storage in a browser (default `vit-weights`). */
  cacheName?: string;
  /** Use the cache only (default: `VIT_OFFLINE=1`). */
  offline?: boolean;
  /** Another class count: the checkpoint's classifier is dropped and the new one starts fresh (fine-tuning). */
  numClasses?: number;
  /** Further `createModel` options (drop path rate…). */
  modelOptions?: CreateModelOptions;
}

/** What `loadPretrained` did, with the model. */
export interface PretrainedResult<M extends Module = Module> {
  model: M;
  /** The tag's settings: input size, mean/std, crop, interpolation, label set. */
  tag: PretrainedTag;
  /** Class names of the model's outputs (the tag's label set), or undefined after a `numClasses` change. */
  classNames: readonly string[] | undefined;
  /** The local file loaded. */
  file: string;
  /** Where it came from (a URL, or the local path). */
  source: string;
  fromCache: boolean;
  /** What the checkpoint filter did (resampled tables, a dropped classifier). */
  notes: string[];
}

/** The card's pretrained tag `tag` (default: its first); clear errors for models or tags without weights. */
export function getPretrainedTag(name: string, tag?: string): PretrainedTag {
  const card = getModelCard(name);
  const tags = card.pretrained ?? [];
  if (tags.length === 0) {
    throw new ConfigError(`${name} has no published pretrained weights${card.notes ? ` (${card.notes})` : ''}; pass a weights file with \`url\` (vit: --weights-url) or train it`);
  }
  if (tag === undefined) return tags[0]!;
  const t = tags.find((x) => x.tag === tag);
  if (!t) {
    const near = nearestNames(tag, tags.map((x) => x.tag));
    throw new ConfigError(`${name} has no pretrained tag '${tag}'${near.length ? `; did you mean ${near.join(', ')}?` : ''} (tags: ${tags.map((x) => x.tag).join(', ')})`);
  }
  return t;
}

function isRemote(url: string): boolean {
  return /^https?:\/\//i.test(url);
}

/** A local path from a `file:` URL or a plain path. */
async function localPath(url: string): Promise<string> {
  const { url: nodeUrl, path } = await nodeModules();
  return url.startsWith('file:') ? nodeUrl.fileURLToPath(url) : path.resolve(url);
}

/**
 * The tag a load uses: the card's, or — for `url` on a model whose card lists no weights — one made
 * from the card itself (its input settings; ImageNet-1k names for a 1000-class head, none otherwise).
 */
function resolveTag(name: string, options: PretrainedOptions): PretrainedTag {
  const card = getModelCard(name);
  if (options.url !== undefined && options.tag === undefined && !(card.pretrained ?? []).length) {
    return pretrainedTag(card, { tag: 'url', license: 'unknown (a file you supplied)', labels: card.numClasses === 1000 ? 'imagenet-1k' : '' });
  }
  return getPretrainedTag(name, options.tag);
}

/** The sources to try: the `url` option alone, or the tag's own. */
function sourcesFor(tag: PretrainedTag, name: string, options: PretrainedOptions): PretrainedSource[] {
  if (options.url !== undefined) {
    const format = /\.safetensors$/i.test(options.url) ? 'safetensors' : 'pth';
    return [{ url: options.url, format, sha256: options.sha256 }];
  }
  if (tag.unavailable) {
    throw new ConfigError(`${name}.${tag.tag}: ${tag.unavailable}. Load a copy you downloaded yourself with \`url\` (vit: --weights-url FILE)`);
  }
  if (tag.sources.length === 0) throw new ConfigError(`${name}.${tag.tag} lists no weight file; pass one with \`url\``);
  return tag.sources;
}

/**
 * The local file holding the tag's weights: a local source is used in place (checked against the
 * card's size and SHA-256 when it gives them), a remote one is downloaded into the cache once. The
 * tag's sources are tried in order; the last error is thrown when none answers.
 */
export async function downloadPretrained(
  name: string,
  options: PretrainedOptions = {},
): Promise<{ file: string; source: PretrainedSource; tag: PretrainedTag; fromCache: boolean }> {
  const tag = resolveTag(name, options);
  const cacheDir = options.cacheDir ?? (await defaultCacheDir());
  const offline = options.offline ?? offlineFromEnv();
  return firstUsableSource(name, tag, sourcesFor(tag, name, options), async (source) => {
    if (!isRemote(source.url)) {
      const file = await localPath(source.url);
      await checkLocal(file, source);
      return { file, source, tag, fromCache: false };
    }
    const { file, fromCache } = await fetchToCache(source.url, cacheDir, { ...options, offline, sha256: source.sha256, sizeBytes: source.sizeBytes });
    return { file, source, tag, fromCache };
  });
}

/**
 * `get` on each source in order until one answers. A refused or missing file (`DownloadError`,
 * an unreadable local file) moves on to the next source; anything else is thrown at once. When none
 * answers: the one error, or one `DownloadError` listing them all.
 */
async function firstUsableSource<T>(name: string, tag: PretrainedTag, sources: PretrainedSource[], get: (source: PretrainedSource) => Promise<T>): Promise<T> {
  const failures: unknown[] = [];
  for (const source of sources) {
    try {
      return await get(source);
    } catch (e) {
      if (!(e instanceof DownloadError) && !(e instanceof VitError && e.code === 'VIT_IO')) throw e;
      failures.push(e);
    }
  }
  if (failures.length === 1) throw failures[0];
  const list = failures.map((e) => `  ${(e as Error).message}`).join('\n');
  throw new DownloadError(`${name}.${tag.tag}: none of its ${failures.length} sources could be used:\n${list}`, sources[0]!.url, failures.some((e) => (e as DownloadError).retryable));
}

/** A downloaded file that does not parse fails every time: it was evicted, and the error says so. */
function evictedError(e: FormatError): FormatError {
  return new FormatError(`${e.message} (removed from the cache; the next call downloads it again)`);
}

async function checkLocal(file: string, source: PretrainedSource): Promise<void> {
  const { fs } = await nodeModules();
  let size: number;
  try {
    size = (await fs.promises.stat(file)).size;
  } catch (e) {
    throw new VitError(`Cannot read weights '${file}': ${(e as Error).message}`, 'VIT_IO');
  }
  if (source.sizeBytes !== undefined && size !== source.sizeBytes) throw new DownloadError(`Refused ${file}: ${size} bytes, the model card says ${source.sizeBytes}`, source.url);
  if (source.sha256 !== undefined) {
    const sha = await sha256File(file);
    if (sha !== source.sha256.toLowerCase()) throw new DownloadError(`Refused ${file}: its SHA-256 is ${sha}, expected ${source.sha256.toLowerCase()}`, source.url);
  }
}

/**
 * Loads weight-file bytes into `model` (works anywhere, browsers included): a .pth or official
 * safetensors through the architecture's checkpoint filter (`loadOfficialCheckpoint`), one of our
 * safetensors directly; a classifier of another class count is dropped. All or nothing.
 */
export function loadPretrainedBytes(
  model: Module,
  bytes: Uint8Array,
  options: { card: Pick<ModelCard, 'arch' | 'classifier'>; source?: Pick<PretrainedSource, 'stateDictKey' | 'lenient'>; inflate?: (data: Uint8Array, max: number) => Uint8Array; what?: string },
): PytorchLoadResult & { notes: string[]; layout: 'ours' | 'pytorch' } {
  const what = options.what ?? 'weights';
  const tensors = new Map<string, tf.Tensor>();
  let layout: 'ours' | 'pytorch' = 'pytorch';
  try {
    if (looksLikePth(bytes.subarray(0, 4))) {
      const r = loadPth(bytes, {
        key: options.source?.stateDictKey,
        unknownGlobals: options.source?.lenient ? 'placeholder' : 'error',
        inflate: options.inflate,
      });
      for (const [k, t] of r.tensors) tensors.set(k, t);
    } else {
      const parsed = parseSafetensors(bytes);
      if (parsed.metadata.layout === OUR_LAYOUT) layout = 'ours';
      for (const [k, raw] of parsed.tensors) tensors.set(k, rawToTensor(raw));
    }
  } catch (e) {
    for (const t of tensors.values()) t.dispose();
    if (e instanceof FormatError) throw new FormatError(`${what}: ${e.message}`);
    throw e;
  }
  try {
    if (layout === 'pytorch') {
      return { ...loadOfficialCheckpoint(model, tensors, { arch: options.card.arch, classifier: options.card.classifier }), layout };
    }
    const notes: string[] = [];
    const created: tf.Tensor[] = [];
    const w = tensors.get(`${options.card.classifier}.weight`);
    const classes = (model as { numClasses?: unknown }).numClasses;
    // Ours: a Linear weight is [in, out]; the class count is its last dimension.
    if (w && typeof classes === 'number' && w.shape[w.rank - 1] !== classes) {
      const swap = replaceClassifier(model, tensors, options.card.classifier, 'ours');
      created.push(...swap.created);
      notes.push(`classifier dropped: the checkpoint has ${w.shape[w.rank - 1]} classes, the model ${classes}; ${options.card.classifier} keeps its fresh init`);
    }
    try {
      const r = loadOurStateDict(model, Object.fromEntries(tensors), { strict: true });
      return { ...r, ignoredKeys: [], batchCounters: {}, notes, layout };
    } finally {
      for (const t of created) t.dispose();
    }
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

/**
 * Loads the tag's weights into an existing model (built for the same variant). A file that fails
 * to parse is removed from the cache (it would fail every time) and the error says so.
 */
export async function loadPretrainedWeights(
  model: Module,
  name: string,
  options: PretrainedOptions = {},
): Promise<Omit<PretrainedResult, 'model' | 'classNames'> & { result: PytorchLoadResult }> {
  const card = getModelCard(name);
  if (!isNodeRuntime()) return loadPretrainedInBrowser(model, name, card, options);
  const got = await downloadPretrained(name, options);
  const { fs, zlib } = await nodeModules();
  const bytes = await fs.promises.readFile(got.file);
  try {
    const r = loadPretrainedBytes(model, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
      card,
      source: got.source,
      inflate: (data, max) => zlib.inflateRawSync(data, { maxOutputLength: Math.max(1, max) }),
      what: got.file,
    });
    return { tag: got.tag, file: got.file, source: got.source.url, fromCache: got.fromCache, notes: r.notes, result: r };
  } catch (e) {
    if (e instanceof FormatError && isRemote(got.source.url)) {
      const cacheDir = options.cacheDir ?? (await defaultCacheDir());
      if ((await cachedFile(got.source.url, cacheDir)) === got.file) await evictCached(got.source.url, cacheDir);
      throw evictedError(e);
    }
    throw e;
  }
}

/** The browser route: each source through `fetchBytesCached` (Cache API), then the same loader. */
async function loadPretrainedInBrowser(
  model: Module,
  name: string,
  card: ModelCard,
  options: PretrainedOptions,
): Promise<Omit<PretrainedResult, 'model' | 'classNames'> & { result: PytorchLoadResult }> {
  const tag = resolveTag(name, options);
  const { source, got } = await firstUsableSource(name, tag, sourcesFor(tag, name, options), async (source) => ({
    source,
    got: await fetchBytesCached(source.url, { ...options, sha256: source.sha256, sizeBytes: source.sizeBytes, offline: options.offline ?? false }),
  }));
  const url = absoluteUrl(source.url);
  try {
    const r = loadPretrainedBytes(model, got.bytes, { card, source, what: url });
    return { tag, file: url, source: url, fromCache: got.fromCache, notes: r.notes, result: r };
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
    await evictBrowserCached(source.url, options.cacheName);
    throw evictedError(e);
  }
}

/**
 * Builds `name` and loads its pretrained weights, with the tag's preprocessing and class names:
 * `const { model, classNames } = await loadPretrained('cait_xxs24_224')`.
 */
export async function loadPretrained<M extends Module = Module>(name: string, options: PretrainedOptions = {}): Promise<PretrainedResult<M>> {
  const tag = resolveTag(name, options);
  const numClasses = options.numClasses ?? tag.numClasses;
  const model = createModel<M>(name, { ...options.modelOptions, numClasses });
  try {
    const r = await loadPretrainedWeights(model, name, options);
    model.eval();
    const classNames = numClasses === tag.numClasses && tag.labels ? labelSet(tag.labels) : undefined;
    return { model, tag: r.tag, classNames, file: r.file, source: r.source, fromCache: r.fromCache, notes: r.notes };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** timm's `create_model(name, pretrained=True)`: the model with its pretrained weights, in eval mode. */
export async function createPretrainedModel<M extends Module = Module>(name: string, options: PretrainedOptions = {}): Promise<M> {
  return (await loadPretrained<M>(name, options)).model;
}
