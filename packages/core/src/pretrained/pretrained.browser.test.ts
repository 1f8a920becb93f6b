import '@tensorflow/tfjs';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveModelWeights } from '../weights/io.js';
import { setTestBackend } from '../testing/backend.js';
import { TinyNet } from './__fixtures__/tiny_model.js';
import { browserRequired, bundleForBrowser, chromiumMissing, launchChromium } from '../testing/browser.js';

// Pretrained weights in a real browser: Debian's Chromium (playwright-core) loads a page that
// bundles @vit/core (source) and calls loadPretrained, whose browser route fetches the card's file,
// checks it, keeps it in the Cache API and loads it through the same checkpoint code as Node. The
// files (an official-layout .pth and our safetensors, written here) are served over loopback.
// Skips (with the reason printed) without Chromium; VIT_BROWSER_TEST_REQUIRE=1 makes that a failure.

const here = path.dirname(fileURLToPath(import.meta.url));
const missing = chromiumMissing;
const required = browserRequired;
if (missing && !required) console.log(`[browser] skipped: ${missing}`);

interface Page {
  goto(url: string): Promise<unknown>;
  waitForFunction(f: string): Promise<unknown>;
  evaluate<T, A>(f: (arg: A) => Promise<T> | T, arg: A): Promise<T>;
  close(): Promise<void>;
}
interface Browser {
  newPage(): Promise<Page>;
  close(): Promise<void>;
}
interface LoadResult {
  logits?: number[];
  fromCache?: boolean;
  source?: string;
  error?: { name: string; message: string };
  tensors: number;
}
type Source = { url: string; format: 'pth' | 'safetensors'; sha256?: string; sizeBytes?: number };

describe.skipIf(missing !== undefined && !required)('pretrained weights in Chromium (fetch + Cache API)', () => {
  let server: http.Server | undefined;
  let browser: Browser | undefined;
  let page: Page | undefined;
  let origin = '';
  let outDir = '';
  const files = new Map<string, Buffer>();
  const hits: string[] = [];
  let expected: number[] = [];
  const input = Array.from({ length: 8 * 8 * 3 }, (_, i) => Math.sin(i));
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  beforeAll(async () => {
    if (missing) throw new Error(`VIT_BROWSER_TEST_REQUIRE=1 but ${missing}`);
    await setTestBackend();
    outDir = mkdtempSync(path.join(os.tmpdir(), 'vit-browser-pretrained-'));
    // The weights and the logits they must give, from Node.
    const model = new TinyNet();
    model.eval();
    await saveModelWeights(model, path.join(outDir, 'tiny.pth'), { format: 'pytorch', container: 'pth' });
    await saveModelWeights(model, path.join(outDir, 'tiny.safetensors'), { format: 'ours' });
    const y = tf.tidy(() => model.forward(tf.tensor4d(input, [1, 8, 8, 3])));
    expected = Array.from(y.dataSync());
    y.dispose();
    model.dispose();
    files.set('/w/tiny.pth', readFileSync(path.join(outDir, 'tiny.pth')));
    files.set('/w/tiny.safetensors', readFileSync(path.join(outDir, 'tiny.safetensors')));
    files.set('/w/tiny2.safetensors', files.get('/w/tiny.safetensors')!);
    files.set('/w/garbage.pth', Buffer.from('<html>sign in</html>'.repeat(20)));

    await bundleForBrowser({ page: path.join(here, '__fixtures__/pretrained_page.ts') }, outDir);
    const html = '<!doctype html><meta charset="utf-8"><title>vit pretrained</title><script type="module" src="/bundle/page.js"></script>';
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      hits.push(url.pathname);
      if (url.pathname === '/') return void res.writeHead(200, { 'Content-Type': 'text/html' }).end(html);
      if (url.pathname === '/bundle/page.js') return void res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(readFileSync(path.join(outDir, 'page.js')));
      const body = files.get(url.pathname);
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length }).end(body);
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await launchChromium<Browser>();
    page = await browser.newPage();
    await page.goto(`${origin}/`);
    await page.waitForFunction('typeof globalThis.vitLoad === "function"');
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  const load = (name: string, sources: Source[], offline = false) =>
    page!.evaluate(
      ([n, s, x, o]) => (globalThis as unknown as { vitLoad: (...a: unknown[]) => Promise<LoadResult> }).vitLoad(n, s, x, { offline: o }),
      [name, sources, input, offline] as const,
    );
  const cached = (url: string) => page!.evaluate((u) => (globalThis as unknown as { vitCached: (u: string) => Promise<boolean> }).vitCached(u), url);

  it('an official-layout .pth: fetched, checked, converted, the same logits as in Node; the second load comes from the Cache API', async () => {
    const pth = files.get('/w/tiny.pth')!;
    const src: Source[] = [{ url: '/w/tiny.pth', format: 'pth', sha256: sha(pth), sizeBytes: pth.length }];
    hits.length = 0;
    const a = await load('tiny_pth', src);
    expect(a.error).toBeUndefined();
    expect(a.fromCache).toBe(false);
    expect(a.source).toBe(`${origin}/w/tiny.pth`);
    for (let i = 0; i < expected.length; i++) expect(a.logits![i]).toBeCloseTo(expected[i]!, 5);
    const b = await load('tiny_pth', src, true);
    expect(b).toMatchObject({ fromCache: true, logits: a.logits });
    expect(hits).toEqual(['/w/tiny.pth']);
    expect(b.tensors).toBe(a.tensors);
  });

  it('our safetensors too', async () => {
    const r = await load('tiny_st', [{ url: `${origin}/w/tiny.safetensors`, format: 'safetensors' }]);
    expect(r.error).toBeUndefined();
    for (let i = 0; i < expected.length; i++) expect(r.logits![i]).toBeCloseTo(expected[i]!, 5);
  });

  it('refuses a wrong checksum, a size other than the card says, a 404 and a non-checkpoint; none is cached', async () => {
    const safet = files.get('/w/tiny.safetensors')!;
    const bad = await load('tiny_bad', [{ url: '/w/tiny2.safetensors', format: 'safetensors', sha256: '0'.repeat(64) }]);
    expect(bad.error).toMatchObject({ name: 'DownloadError' });
    expect(bad.error!.message).toMatch(/its SHA-256 is [0-9a-f]{64}, expected 0{64}/);
    const size = await load('tiny_size', [{ url: '/w/tiny2.safetensors', format: 'safetensors', sizeBytes: safet.length + 1 }]);
    expect(size.error!.message).toMatch(new RegExp(`announces ${safet.length} bytes, the model card says ${safet.length + 1}`));
    const gone = await load('tiny_404', [{ url: '/w/none.pth', format: 'pth' }]);
    expect(gone.error!.message).toMatch(/Cannot download .*\/w\/none\.pth: HTTP 404/);
    const garbage = await load('tiny_garbage', [{ url: '/w/garbage.pth', format: 'pth' }]);
    expect(garbage.error).toMatchObject({ name: 'FormatError' });
    expect(garbage.error!.message).toMatch(/removed from the cache/);
    for (const u of ['/w/tiny2.safetensors', '/w/none.pth', '/w/garbage.pth']) expect(await cached(u)).toBe(false);
    expect(await cached('/w/tiny.safetensors')).toBe(true);
    const offline = await load('tiny_off', [{ url: '/w/other.pth', format: 'pth' }], true);
    expect(offline.error!.message).toMatch(/not in the browser cache .* offline mode refuses the network/);
  });
});
