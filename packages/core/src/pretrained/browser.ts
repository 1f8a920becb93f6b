/**
 * Weights in a browser: `fetch` + the Cache API, with the Node path's checks. A response enters the
 * cache only after its size and SHA-256 (when the card gives them) were checked, so a truncated or
 * corrupted download is never kept; a cached entry is checked again before use.
 */
import { DownloadError } from '../errors.js';
import { isNodeRuntime } from '../platform/index.js';
import { DEFAULT_MAX_BYTES, announcedLength, announcedSizeProblem, retryableStatus, type DownloadOptions } from './download.js';

export { isNodeRuntime };

/** Cache API storage name (`caches.open`). */
export const BROWSER_CACHE_NAME = 'vit-weights';


async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Why `bytes` does not match what is expected, or undefined when it does. */
async function mismatch(bytes: Uint8Array, expect: { sha256?: string; sizeBytes?: number }): Promise<string | undefined> {
  if (expect.sizeBytes !== undefined && bytes.length !== expect.sizeBytes) return `${bytes.length} bytes arrived, the model card says ${expect.sizeBytes}`;
  if (expect.sha256 !== undefined) {
    const sha = await sha256Hex(bytes);
    if (sha !== expect.sha256.toLowerCase()) return `its SHA-256 is ${sha}, expected ${expect.sha256.toLowerCase()} (a corrupted or different file)`;
  }
  return undefined;
}

async function openCache(name: string): Promise<Cache | undefined> {
  if (typeof caches === 'undefined') return undefined;
  try {
    return await caches.open(name);
  } catch {
    // Opaque origins and some private modes refuse storage: download every time.
    return undefined;
  }
}

/** The absolute URL of a source (relative ones are resolved against the page). */
export function absoluteUrl(url: string): string {
  const base = (globalThis as { location?: { href?: string } }).location?.href;
  return new URL(url, base).href;
}

/**
 * The bytes of `url`: from the Cache API when a checked copy is there, else downloaded (retried on
 * dropped connections and 5xx), checked, then cached. Throws `DownloadError`; nothing is cached then.
 */
export async function fetchBytesCached(
  url: string,
  options: DownloadOptions & { offline?: boolean; cacheName?: string } = {},
): Promise<{ bytes: Uint8Array; fromCache: boolean }> {
  const abs = absoluteUrl(url);
  const cache = await openCache(options.cacheName ?? BROWSER_CACHE_NAME);
  const hit = await cache?.match(abs);
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    if ((await mismatch(bytes, options)) === undefined) return { bytes, fromCache: true };
    await cache!.delete(abs);
  }
  if (options.offline) throw new DownloadError(`${abs} is not in the browser cache ('${options.cacheName ?? BROWSER_CACHE_NAME}') and offline mode refuses the network`, abs);
  const doFetch = options.fetch ?? globalThis.fetch;
  const maxBytes = options.maxBytes ?? options.sizeBytes ?? DEFAULT_MAX_BYTES;
  const retries = options.retries ?? 3;
  for (let attempt = 1; ; attempt++) {
    let retryable = true;
    try {
      const res = await doFetch(abs, { redirect: 'follow' });
      if (!res.ok) {
        retryable = retryableStatus(res.status);
        throw new Error(`HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
      }
      const total = announcedLength(res);
      const refused = total === undefined ? undefined : announcedSizeProblem(total, options, maxBytes);
      if (refused) {
        retryable = false;
        await res.body?.cancel().catch(() => undefined);
        throw new Error(refused);
      }
      const chunks: Uint8Array[] = [];
      let loaded = 0;
      const reader = res.body!.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        loaded += value.length;
        if (loaded > maxBytes) {
          retryable = false;
          await reader.cancel().catch(() => undefined);
          throw new Error(`more than the ${maxBytes} bytes allowed arrived`);
        }
        chunks.push(value);
        options.onProgress?.({ url: abs, loaded, total: total ?? options.sizeBytes, attempt });
      }
      if (total !== undefined && loaded !== total) throw new Error(`connection closed after ${loaded} of ${total} bytes`);
      const bytes = new Uint8Array(loaded);
      let o = 0;
      for (const c of chunks) {
        bytes.set(c, o);
        o += c.length;
      }
      const bad = await mismatch(bytes, options);
      if (bad) {
        retryable = false;
        throw new Error(bad);
      }
      await cache?.put(abs, new Response(bytes, { headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.length) } }));
      return { bytes, fromCache: false };
    } catch (e) {
      if (!retryable || attempt > retries) {
        const tries = attempt > 1 ? ` (after ${attempt} tries)` : '';
        throw new DownloadError(`Cannot download ${abs}: ${(e as Error).message}${tries}`, abs, retryable);
      }
      await new Promise((r) => setTimeout(r, (options.retryDelayMs ?? 500) * 2 ** (attempt - 1)));
    }
  }
}

/** Drops a cached entry (a file that failed to parse). */
export async function evictBrowserCached(url: string, cacheName = BROWSER_CACHE_NAME): Promise<void> {
  const cache = await openCache(cacheName);
  await cache?.delete(absoluteUrl(url));
}
