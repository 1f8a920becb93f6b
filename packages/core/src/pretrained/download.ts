/**
 * Fetching weight files into a local cache (Node). A file enters the cache only whole and checked:
 * it streams into a private `.part-<pid>-<random>` file beside its place, its size and SHA-256 are
 * checked, and it is renamed into place (atomic), so a reader — another process included — sees
 * no file or the complete one, and a failed download leaves nothing behind. `node:` modules come
 * through platform/index.ts, so importing this module stays harmless in a browser.
 */
import { DownloadError } from '../errors.js';
import { requireNode, type NodeBuiltins } from '../platform/index.js';
import { writeFileAtomic } from '../weights/io.js';

/** Node's built-ins, or a clear error outside Node. */
export async function nodeModules(): Promise<NodeBuiltins> {
  return requireNode('Caching downloaded weights', 'in a browser fetch the bytes and use loadPretrainedBytes');
}

/** Progress of one download, for a progress line. */
export interface DownloadProgress {
  url: string;
  /** Bytes received so far (resumed bytes included). */
  loaded: number;
  /** Expected size, when the server or the model card says. */
  total?: number;
  /** Which try this is (1 first). */
  attempt: number;
}

export interface DownloadOptions {
  /** Expected hex SHA-256; a file that differs is refused. */
  sha256?: string;
  /** Expected exact size in bytes. */
  sizeBytes?: number;
  /** Refuse anything larger (default: `sizeBytes` when known, else 4 GiB). */
  maxBytes?: number;
  /** Further tries after a dropped connection, a timeout or a 5xx/429 answer (default 3). Resumed with a Range request where the server allows. */
  retries?: number;
  /** Wait before try n+1: `retryDelayMs · 2^(n-1)` (default 500). */
  retryDelayMs?: number;
  /** Give up a try when no byte arrives for this long (default 60 s). */
  idleTimeoutMs?: number;
  onProgress?: (p: DownloadProgress) => void;
  /** The fetch to use (default `globalThis.fetch`). */
  fetch?: typeof globalThis.fetch;
}

const mib = (n: number) => `${(n / 1024 ** 2).toFixed(1)} MiB`;

/** The most a download may bring when neither the caller nor the card says. */
export const DEFAULT_MAX_BYTES = 4 * 1024 ** 3;

/** Statuses worth another try later (the server is busy or failed), as opposed to a 404. */
export function retryableStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

/** The body size a response announces (`Content-Length`), if any. */
export function announcedLength(res: Response): number | undefined {
  const len = res.headers.get('content-length');
  return len !== null && /^\d+$/.test(len) ? Number(len) : undefined;
}

/** Why a file of `total` bytes is refused before any byte is kept, or undefined. */
export function announcedSizeProblem(total: number, expect: { sizeBytes?: number }, maxBytes: number): string | undefined {
  if (expect.sizeBytes !== undefined && total !== expect.sizeBytes) return `the server announces ${total} bytes, the model card says ${expect.sizeBytes}`;
  if (total > maxBytes) return `the server announces ${mib(total)}, more than the ${mib(maxBytes)} allowed`;
  return undefined;
}

/** Where weights are cached: `VIT_CACHE_DIR`, else `$XDG_CACHE_HOME/vit`, else `~/.cache/vit`. */
export async function defaultCacheDir(): Promise<string> {
  const { path, os } = await nodeModules();
  const env = typeof process !== 'undefined' ? process.env : {};
  if (env.VIT_CACHE_DIR) return path.resolve(env.VIT_CACHE_DIR);
  if (env.XDG_CACHE_HOME) return path.join(env.XDG_CACHE_HOME, 'vit');
  return path.join(os.homedir(), '.cache', 'vit');
}

/** `VIT_OFFLINE=1` (or `true`): never touch the network, use the cache only. */
export function offlineFromEnv(): boolean {
  const v = typeof process !== 'undefined' ? process.env.VIT_OFFLINE : undefined;
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

/** The cache file for a URL: `<cacheDir>/weights/<16 hex of sha256(url)>/<file name>`. */
export async function cachePathFor(url: string, cacheDir: string): Promise<string> {
  const { path, crypto } = await nodeModules();
  const key = crypto.createHash('sha256').update(url).digest('hex').slice(0, 16);
  let base = 'weights.bin';
  try {
    const name = decodeURIComponent(new URL(url).pathname.split('/').pop() ?? '');
    // Only a plain file name: nothing that could climb out of the cache folder.
    if (/^[A-Za-z0-9._+-]{1,200}$/.test(name) && name !== '.' && name !== '..') base = name;
  } catch {
    // Not a URL: keep the generic name.
  }
  return path.join(cacheDir, 'weights', key, base);
}

/** Hex SHA-256 of a file, streamed. */
export async function sha256File(file: string): Promise<string> {
  const { fs, crypto } = await nodeModules();
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Uint8Array);
  return hash.digest('hex');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the cache records beside each file (`<file>.json`). */
interface Sidecar {
  url: string;
  sha256: string;
  sizeBytes: number;
  downloaded: string;
}

/**
 * The cached copy of `url` if there is a complete one that still matches what was recorded (size,
 * and `sha256` when the caller expects one); else null.
 */
export async function cachedFile(url: string, cacheDir: string, expect: { sha256?: string; sizeBytes?: number } = {}): Promise<string | null> {
  const { fs } = await nodeModules();
  const file = await cachePathFor(url, cacheDir);
  let side: Sidecar;
  let size: number;
  try {
    side = JSON.parse(await fs.promises.readFile(`${file}.json`, 'utf8')) as Sidecar;
    size = (await fs.promises.stat(file)).size;
  } catch {
    return null;
  }
  if (side.sizeBytes !== size) return null;
  if (expect.sizeBytes !== undefined && expect.sizeBytes !== size) return null;
  if (expect.sha256 !== undefined && expect.sha256.toLowerCase() !== side.sha256) return null;
  return file;
}

/** Removes a cache entry (the file and its record), e.g. after it failed to parse. */
export async function evictCached(url: string, cacheDir: string): Promise<void> {
  const { fs } = await nodeModules();
  const file = await cachePathFor(url, cacheDir);
  await fs.promises.rm(`${file}.json`, { force: true });
  await fs.promises.rm(file, { force: true });
}

/** An error of one try: `retryable` ones are tried again (dropped connections, timeouts, 5xx). */
class TryError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

/**
 * Downloads `url` to `dest` whole and checked (see the module comment), retrying and resuming.
 * Resolves to the SHA-256 and size of what was written. Throws `DownloadError`, leaving `dest` as
 * it was and no partial file.
 */
export async function downloadFile(url: string, dest: string, options: DownloadOptions = {}): Promise<{ sha256: string; sizeBytes: number }> {
  const { fs, path, crypto } = await nodeModules();
  const doFetch = options.fetch ?? globalThis.fetch;
  if (typeof doFetch !== 'function') throw new DownloadError(`Cannot download ${url}: no fetch in this runtime (Node ≥ 18 has one)`, url);
  const maxBytes = options.maxBytes ?? options.sizeBytes ?? DEFAULT_MAX_BYTES;
  const retries = options.retries ?? 3;
  const idleMs = options.idleTimeoutMs ?? 60_000;
  await fs.promises.mkdir(path.dirname(dest), { recursive: true });
  const part = `${dest}.part-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const handle = await fs.promises.open(part, 'w', 0o644);
  let closed = false;
  try {
    let written = 0;
    let hash = crypto.createHash('sha256');
    let validator: string | undefined;
    for (let attempt = 1; ; attempt++) {
      const ctrl = new AbortController();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const arm = () => {
        if (timer) clearTimeout(timer);
        timer = setTimeout(() => ctrl.abort(new TryError(`no data for ${idleMs / 1000} s`, true)), idleMs);
      };
      try {
        const headers: Record<string, string> = {};
        // Resume only against the same file (its ETag or Last-Modified): If-Range makes the server
        // send the whole file instead when it changed.
        if (written > 0 && validator) Object.assign(headers, { Range: `bytes=${written}-`, 'If-Range': validator });
        arm();
        let res: Response;
        try {
          res = await doFetch(url, { headers, redirect: 'follow', signal: ctrl.signal });
        } catch (e) {
          throw new TryError(`cannot connect: ${reason(e)}`, true);
        }
        if (res.status === 206 && written > 0) {
          // Resumed: keep what we have.
        } else if (res.status === 200) {
          if (written > 0) {
            // The server sent the whole file again: start over.
            await handle.truncate(0);
            written = 0;
            hash = crypto.createHash('sha256');
          }
        } else {
          await res.body?.cancel().catch(() => undefined);
          throw new TryError(`HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`, retryableStatus(res.status));
        }
        validator = res.headers.get('etag') ?? res.headers.get('last-modified') ?? undefined;
        const len = announcedLength(res);
        const total = len === undefined ? undefined : written + len;
        const refused = total === undefined ? undefined : announcedSizeProblem(total, options, maxBytes);
        if (refused) {
          await res.body?.cancel().catch(() => undefined);
          throw new TryError(refused, false);
        }
        if (!res.body) throw new TryError('empty response', true);
        const reader = res.body.getReader();
        for (;;) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await reader.read();
          } catch (e) {
            throw e instanceof TryError ? e : new TryError(`connection dropped after ${written} bytes: ${reason(e)}`, true);
          }
          if (chunk.done) break;
          arm();
          const bytes = chunk.value;
          if (written + bytes.length > maxBytes) {
            await reader.cancel().catch(() => undefined);
            throw new TryError(`more than the ${mib(maxBytes)} allowed arrived`, false);
          }
          await handle.write(bytes, 0, bytes.length, written);
          hash.update(bytes);
          written += bytes.length;
          options.onProgress?.({ url, loaded: written, total: total ?? options.sizeBytes, attempt });
        }
        if (total !== undefined && written !== total) throw new TryError(`connection closed after ${written} of ${total} bytes`, true);
        break;
      } catch (e) {
        const err = e instanceof TryError ? e : ctrl.signal.aborted && ctrl.signal.reason instanceof TryError ? ctrl.signal.reason : new TryError(reason(e), true);
        if (!err.retryable || attempt > retries) {
          const tries = attempt > 1 ? ` (after ${attempt} tries)` : '';
          throw new DownloadError(`Cannot download ${url}: ${err.message}${tries}`, url, err.retryable);
        }
        await sleep((options.retryDelayMs ?? 500) * 2 ** (attempt - 1));
      } finally {
        if (timer) clearTimeout(timer);
      }
    }
    await handle.sync();
    await handle.close();
    closed = true;
    const sha256 = hash.digest('hex');
    if (options.sizeBytes !== undefined && written !== options.sizeBytes) {
      throw new DownloadError(`Refused ${url}: ${written} bytes arrived, the model card says ${options.sizeBytes}`, url);
    }
    if (options.sha256 !== undefined && sha256 !== options.sha256.toLowerCase()) {
      throw new DownloadError(`Refused ${url}: its SHA-256 is ${sha256}, expected ${options.sha256.toLowerCase()} (a corrupted or different file)`, url);
    }
    await fs.promises.rename(part, dest);
    return { sha256, sizeBytes: written };
  } finally {
    if (!closed) await handle.close().catch(() => undefined);
    await fs.promises.rm(part, { force: true }).catch(() => undefined);
  }
}

function reason(e: unknown): string {
  const err = e as { message?: string; cause?: { message?: string; code?: string } };
  const cause = err?.cause?.code ?? err?.cause?.message;
  return `${err?.message ?? String(e)}${cause && !String(err?.message).includes(cause) ? ` (${cause})` : ''}`;
}

const inflight = new Map<string, Promise<string>>();

/**
 * The cached copy of `url`, downloading it first when missing (`downloadFile`). Concurrent calls
 * for the same file in one process share one download; across processes each downloads to its own
 * part file and the renames replace one complete file by another.
 */
export async function fetchToCache(url: string, cacheDir: string, options: DownloadOptions & { offline?: boolean } = {}): Promise<{ file: string; fromCache: boolean }> {
  const hit = await cachedFile(url, cacheDir, options);
  if (hit) return { file: hit, fromCache: true };
  if (options.offline) {
    throw new DownloadError(`${url} is not in the cache (${cacheDir}) and offline mode (VIT_OFFLINE) refuses the network`, url);
  }
  const file = await cachePathFor(url, cacheDir);
  let p = inflight.get(file);
  if (!p) {
    p = (async () => {
      const { fs } = await nodeModules();
      // A record from an older download must not vouch for the new file while it is replaced.
      await fs.promises.rm(`${file}.json`, { force: true });
      const r = await downloadFile(url, file, options);
      const side: Sidecar = { url, sha256: r.sha256, sizeBytes: r.sizeBytes, downloaded: new Date().toISOString() };
      await writeFileAtomic(`${file}.json`, JSON.stringify(side, null, 2));
      return file;
    })().finally(() => inflight.delete(file));
    inflight.set(file, p);
  }
  return { file: await p, fromCache: false };
}
