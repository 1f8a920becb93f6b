import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DownloadError } from '../errors.js';
import { cachePathFor, cachedFile, downloadFile, fetchToCache } from './download.js';

// A real HTTP server on loopback: every failure mode the downloader must survive, served for real.
const BODY = randomBytes(300_000);
const SHA = createHash('sha256').update(BODY).digest('hex');
const hits: Array<{ path: string; range?: string }> = [];
let flakyServed = 0;
let failedOnce = 0;

function send(res: ServerResponse, req: IncomingMessage, body: Buffer, options: { ranges?: boolean; dropAfter?: number; chunked?: boolean } = {}): void {
  let start = 0;
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (options.ranges && range && req.headers['if-range'] === '"v1"') start = Number(range[1]);
  const part = body.subarray(start);
  const headers: Record<string, string | number> = { 'Content-Type': 'application/octet-stream' };
  if (!options.chunked) headers['Content-Length'] = part.length;
  if (options.ranges) Object.assign(headers, { ETag: '"v1"', 'Accept-Ranges': 'bytes' });
  if (start > 0) headers['Content-Range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
  res.writeHead(start > 0 ? 206 : 200, headers);
  if (options.dropAfter !== undefined) {
    res.write(part.subarray(0, options.dropAfter), () => res.socket?.destroy());
    return;
  }
  res.end(part);
}

const server: Server = createServer((req, res) => {
  const path = req.url ?? '';
  hits.push({ path, range: req.headers.range });
  if (path === '/ok/w.bin') return send(res, req, BODY);
  if (path === '/chunked/w.bin') return send(res, req, BODY, { chunked: true });
  if (path === '/redirect/w.bin') {
    res.writeHead(302, { Location: '/ok/w.bin' });
    return res.end();
  }
  if (path === '/missing/w.bin') {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    return res.end('not found');
  }
  // Closes the connection a third of the way in, every time.
  if (path === '/drop/w.bin') return send(res, req, BODY, { dropAfter: 100_000 });
  // Closes the first response part-way; honours Range/If-Range afterwards.
  if (path === '/flaky/w.bin') return send(res, req, BODY, { ranges: true, dropAfter: flakyServed++ === 0 ? 120_000 : undefined });
  // A 503 once, then the file.
  if (path === '/busy/w.bin') {
    if (failedOnce++ === 0) {
      res.writeHead(503);
      return res.end();
    }
    return send(res, req, BODY);
  }
  // Sends headers, then nothing.
  if (path === '/stall/w.bin') {
    res.writeHead(200, { 'Content-Length': BODY.length });
    res.write(BODY.subarray(0, 10));
    return;
  }
  res.writeHead(500);
  res.end();
});

let base = '';
let dir = '';
const fast = { retries: 2, retryDelayMs: 5 };

/** Every file under the cache folder (a failed download must leave none, part files included). */
function filesUnder(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name));
}

describe('weights download and cache', () => {
  beforeAll(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  beforeEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = mkdtempSync(join(tmpdir(), 'vit-cache-'));
    hits.length = 0;
  });

  it('downloads into the cache with a record, then serves the cached copy without the network (offline too)', async () => {
    const progress: number[] = [];
    const r = await fetchToCache(`${base}/ok/w.bin`, dir, { ...fast, sha256: SHA, sizeBytes: BODY.length, onProgress: (p) => progress.push(p.loaded) });
    expect(r.fromCache).toBe(false);
    expect(r.file).toBe(await cachePathFor(`${base}/ok/w.bin`, dir));
    expect(readFileSync(r.file).equals(BODY)).toBe(true);
    expect(JSON.parse(readFileSync(`${r.file}.json`, 'utf8'))).toMatchObject({ url: `${base}/ok/w.bin`, sha256: SHA, sizeBytes: BODY.length });
    expect(progress.at(-1)).toBe(BODY.length);
    expect(filesUnder(dir).sort()).toEqual([r.file, `${r.file}.json`].sort());
    const again = await fetchToCache(`${base}/ok/w.bin`, dir, { ...fast, offline: true });
    expect(again).toEqual({ file: r.file, fromCache: true });
    expect(hits).toHaveLength(1);
  });

  it('offline with nothing cached refuses the network and creates nothing', async () => {
    await expect(fetchToCache(`${base}/ok/w.bin`, dir, { offline: true })).rejects.toThrow(/not in the cache .* offline mode \(VIT_OFFLINE\) refuses the network/);
    expect(hits).toHaveLength(0);
    expect(filesUnder(dir)).toEqual([]);
  });

  it('follows redirects and accepts a response without a length (chunked)', async () => {
    const r = await fetchToCache(`${base}/redirect/w.bin`, dir, fast);
    expect(readFileSync(r.file).equals(BODY)).toBe(true);
    const c = await fetchToCache(`${base}/chunked/w.bin`, dir, { ...fast, sha256: SHA });
    expect(readFileSync(c.file).equals(BODY)).toBe(true);
  });

  it('a 404 fails at once, naming the status, and leaves nothing', async () => {
    const e = await fetchToCache(`${base}/missing/w.bin`, dir, fast).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DownloadError);
    expect((e as DownloadError).message).toMatch(/Cannot download .*\/missing\/w\.bin: HTTP 404/);
    expect((e as DownloadError).retryable).toBe(false);
    expect(hits).toHaveLength(1);
    expect(filesUnder(dir)).toEqual([]);
  });

  it('a server that always closes mid-file: retried, then a clear error and no partial file', async () => {
    const e = await fetchToCache(`${base}/drop/w.bin`, dir, fast).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DownloadError);
    expect((e as Error).message).toMatch(/connection (closed|dropped) after \d+ .*bytes.*\(after 3 tries\)/);
    expect(hits).toHaveLength(3);
    expect(filesUnder(dir)).toEqual([]);
  });

  it('a connection dropped once is resumed with a Range request against the same file', async () => {
    flakyServed = 0;
    const r = await fetchToCache(`${base}/flaky/w.bin`, dir, { ...fast, sha256: SHA });
    expect(readFileSync(r.file).equals(BODY)).toBe(true);
    // The second request asks for the rest of the same file: from what arrived before the drop
    // (the server wrote 120,000 bytes; the client may have received fewer before the reset).
    expect(hits).toHaveLength(2);
    expect(hits[0]!.range).toBeUndefined();
    const from = Number(/^bytes=(\d+)-$/.exec(hits[1]!.range ?? '')?.[1]);
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThanOrEqual(120_000);
  });

  it('retries a 503 and gives up a stalled connection after the idle timeout', async () => {
    failedOnce = 0;
    const r = await fetchToCache(`${base}/busy/w.bin`, dir, fast);
    expect(readFileSync(r.file).equals(BODY)).toBe(true);
    const e = await fetchToCache(`${base}/stall/w.bin`, dir, { retries: 1, retryDelayMs: 5, idleTimeoutMs: 150 }).catch((x: unknown) => x);
    expect((e as Error).message).toMatch(/no data for 0\.15 s \(after 2 tries\)/);
    expect(filesUnder(dir).filter((f) => f.includes('stall') || f.includes('.part'))).toEqual([]);
  });

  it('refuses a wrong checksum, a size other than the card says, and a file larger than allowed; nothing is left', async () => {
    const url = `${base}/ok/w.bin`;
    await expect(fetchToCache(url, dir, { ...fast, sha256: '0'.repeat(64) })).rejects.toThrow(/its SHA-256 is [0-9a-f]{64}, expected 0{64}/);
    await expect(fetchToCache(url, dir, { ...fast, sizeBytes: BODY.length - 1 })).rejects.toThrow(/announces 300000 bytes, the model card says 299999/);
    await expect(fetchToCache(url, dir, { ...fast, maxBytes: 1000 })).rejects.toThrow(/announces 0\.3 MiB, more than the 0\.0 MiB allowed/);
    // Without a Content-Length the limit is enforced while streaming.
    await expect(fetchToCache(`${base}/chunked/w.bin`, dir, { ...fast, maxBytes: 1000 })).rejects.toThrow(/more than the 0\.0 MiB allowed arrived/);
    expect(filesUnder(dir)).toEqual([]);
    expect(await cachedFile(url, dir)).toBeNull();
  });

  it('a cached file that no longer matches its record is downloaded again', async () => {
    const url = `${base}/ok/w.bin`;
    const r = await fetchToCache(url, dir, fast);
    writeFileSync(r.file, BODY.subarray(0, 1000));
    expect(await cachedFile(url, dir)).toBeNull();
    const again = await fetchToCache(url, dir, fast);
    expect(again.fromCache).toBe(false);
    expect(statSync(again.file).size).toBe(BODY.length);
  });

  it('concurrent downloads of one file share one request in a process, and racing writers never corrupt it', async () => {
    const url = `${base}/ok/w.bin`;
    const rs = await Promise.all([0, 1, 2].map(() => fetchToCache(url, dir, fast)));
    expect(new Set(rs.map((r) => r.file)).size).toBe(1);
    expect(hits).toHaveLength(1);
    // Two independent writers (as two processes would be) to the same place.
    const dest = join(dir, 'race', 'w.bin');
    const out = await Promise.all([downloadFile(url, dest, fast), downloadFile(url, dest, fast)]);
    expect(out.map((o) => o.sha256)).toEqual([SHA, SHA]);
    expect(readFileSync(dest).equals(BODY)).toBe(true);
    expect(filesUnder(join(dir, 'race'))).toEqual([dest]);
  });
});
