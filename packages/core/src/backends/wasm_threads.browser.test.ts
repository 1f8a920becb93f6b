import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserRequired, bundleForBrowser, chromiumMissing, launchChromium } from '../testing/browser.js';

// wasm threads in a real browser: Debian's Chromium driven by playwright-core loads a page that
// bundles @vit/core (source) and calls initBackend('wasm'). On a cross-origin-isolated page
// (COOP same-origin + COEP require-corp) the wasm backend must run 2 threads and a pthread worker
// must execute the matMul's wasm code (a CPU profile of the worker, taken over the Chrome DevTools
// Protocol); on a page that is not isolated it must run 1 thread and say why.
// Skips (with the reason printed) without Chromium; VIT_BROWSER_TEST_REQUIRE=1 makes that a failure.

const here = path.dirname(fileURLToPath(import.meta.url));
const wasmDist = path.resolve(here, '../../../../node_modules/@tensorflow/tfjs-backend-wasm/dist');
const required = browserRequired;
const missing = chromiumMissing;
if (missing && !required) console.log(`[browser] skipped: ${missing}`);

const THREADS = Math.min(2, os.availableParallelism());

// Minimal shapes of what this test uses from playwright-core (imported lazily: a dev dependency).
interface CDPSession {
  send(method: string, params?: Record<string, unknown>): Promise<Record<string, unknown>>;
  on(event: string, handler: (e: Record<string, unknown>) => void): void;
}
interface Page {
  goto(url: string): Promise<unknown>;
  waitForFunction(f: string): Promise<unknown>;
  evaluate<T>(f: string): Promise<T>;
  close(): Promise<void>;
  on(event: 'pageerror', handler: (e: Error) => void): void;
  context(): { newCDPSession(page: Page): Promise<CDPSession> };
}
interface Browser {
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

interface PageInit {
  crossOriginIsolated: boolean;
  hardwareConcurrency: number;
  backend: string;
  detail: string;
  wasmThreads?: { threads: number; requested: number; reason?: string };
  status: { requested: number; threads: number | null; build: string | null; workers: number; reason?: string };
  threadsCount: number;
  runningWorkers: number | null;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}
interface Profile {
  nodes: ProfileNode[];
  samples?: number[];
}

/** Self samples per wasm function (`wasm-function[i]`: the binary has no names) in a CPU profile. */
function wasmSamples(profile: Profile): Map<string, number> {
  const byNode = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const counts = new Map<string, number>();
  for (const id of profile.samples ?? []) {
    const f = byNode.get(id);
    if (!f || !/^wasm-function\[\d+\]$/.test(f.functionName)) continue;
    counts.set(f.functionName, (counts.get(f.functionName) ?? 0) + 1);
  }
  return counts;
}

describe.skipIf(missing !== undefined && !required)('wasm threads in Chromium', () => {
  let server: http.Server | undefined;
  let browser: Browser | undefined;
  let origin = '';
  let outDir = '';

  beforeAll(async () => {
    if (missing) throw new Error(`VIT_BROWSER_TEST_REQUIRE=1 but ${missing}`);
    const { mkdtempSync } = await import('node:fs');
    outDir = mkdtempSync(path.join(os.tmpdir(), 'vit-browser-'));
    // Two entries, split: the page, and the package itself for the import map, so the bare
    // specifier initBackend imports at run time is the bundle's own copy.
    await bundleForBrowser(
      {
        page: path.join(here, '__fixtures__/wasm_threads_page.ts'),
        'tfjs-backend-wasm': path.join(here, '__fixtures__/wasm_threads_page_wasm.ts'),
      },
      outDir,
      { splitting: true },
    );
    const html =
      '<!doctype html><meta charset="utf-8"><title>vit wasm threads</title>' +
      '<script type="importmap">{"imports":{"@tensorflow/tfjs-backend-wasm":"/bundle/tfjs-backend-wasm.js"}}</script>' +
      '<script type="module" src="/bundle/page.js"></script>';
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const isolated = url.searchParams.get('isolated') === '1';
      const headers: Record<string, string> = isolated ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } : {};
      const file = (dir: string) => path.join(dir, path.basename(url.pathname));
      let body: string | Buffer | undefined;
      if (url.pathname === '/') body = html;
      else if (url.pathname.startsWith('/bundle/') && existsSync(file(outDir))) body = readFileSync(file(outDir));
      else if (url.pathname.startsWith('/wasm/') && url.pathname.endsWith('.wasm') && existsSync(file(wasmDist))) body = readFileSync(file(wasmDist));
      if (body === undefined) {
        res.writeHead(404, headers).end();
        return;
      }
      const type = url.pathname === '/' ? 'text/html' : url.pathname.endsWith('.wasm') ? 'application/wasm' : 'text/javascript';
      res.writeHead(200, { ...headers, 'Content-Type': type }).end(body);
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await launchChromium<Browser>();
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    if (outDir) (await import('node:fs')).rmSync(outDir, { recursive: true, force: true });
  });

  async function openPage(isolated: boolean): Promise<{ page: Page; cdp: CDPSession; errors: string[] }> {
    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const cdp = await page.context().newCDPSession(page);
    await page.goto(`${origin}/?isolated=${isolated ? 1 : 0}`);
    await page.waitForFunction('typeof globalThis.vitInit === "function"');
    return { page, cdp, errors };
  }

  it(`runs ${THREADS} threads on a cross-origin-isolated page, and a worker executes the matMul's wasm`, async () => {
    const { page, cdp, errors } = await openPage(true);
    // Every worker the page starts (emscripten's pthread pool) is attached, not paused, and spoken
    // to through Target.sendMessageToTarget.
    const workers: string[] = [];
    const pending = new Map<string, (msg: Record<string, unknown>) => void>();
    let nextId = 1;
    cdp.on('Target.attachedToTarget', (e) => {
      if ((e.targetInfo as { type: string }).type === 'worker') workers.push(e.sessionId as string);
    });
    cdp.on('Target.receivedMessageFromTarget', (e) => {
      const msg = JSON.parse(e.message as string) as Record<string, unknown>;
      const key = `${String(e.sessionId)}:${String(msg.id)}`;
      pending.get(key)?.(msg);
      pending.delete(key);
    });
    const inWorker = async (sessionId: string, method: string, params: Record<string, unknown> = {}) => {
      const id = nextId++;
      const reply = new Promise<Record<string, unknown>>((resolve) => pending.set(`${sessionId}:${id}`, resolve));
      await cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) });
      const msg = await reply;
      if (msg.error) throw new Error(`${method} in a worker: ${JSON.stringify(msg.error)}`);
      return msg.result as Record<string, unknown>;
    };
    await cdp.send('Target.setAutoAttach', { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });

    const init = await page.evaluate<PageInit>(`globalThis.vitInit(${JSON.stringify(`${origin}/wasm/`)})`);
    console.log(`[browser] isolated page: ${init.detail}; status ${JSON.stringify(init.status)}`);
    expect(errors).toEqual([]);
    expect(init.crossOriginIsolated).toBe(true);
    expect(init.backend).toBe('wasm');
    expect(init.threadsCount).toBe(THREADS);
    expect(init.wasmThreads).toEqual({ threads: THREADS, requested: THREADS });
    expect(init.status).toMatchObject({ threads: THREADS, build: 'threaded-simd', workers: THREADS - 1 });
    // The threaded build's pthread pool: XNNPACK's THREADS − 1 threads run on workers.
    expect(init.runningWorkers).toBe(THREADS - 1);
    // The cap was lifted only while the backend initialised.
    expect(init.hardwareConcurrency).toBe(await page.evaluate<number>('navigator.hardwareConcurrency'));
    expect(workers.length).toBeGreaterThanOrEqual(THREADS - 1);

    // Profile the page and every worker: first while the page only waits (the control), then over
    // two 1024³ matMuls.
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
    for (const w of workers) {
      await inWorker(w, 'Profiler.enable');
      await inWorker(w, 'Profiler.setSamplingInterval', { interval: 200 });
    }
    const profile = async (what: string) => {
      for (const w of workers) await inWorker(w, 'Profiler.start');
      await cdp.send('Profiler.start');
      const result = await page.evaluate<number>(what);
      const main = wasmSamples(((await cdp.send('Profiler.stop')) as unknown as { profile: Profile }).profile);
      const perWorker: Map<string, number>[] = [];
      for (const w of workers) perWorker.push(wasmSamples(((await inWorker(w, 'Profiler.stop')) as unknown as { profile: Profile }).profile));
      return { result, main, perWorker };
    };
    const idle = await profile('new Promise((resolve) => setTimeout(() => resolve(0), 300))');
    const work = await profile('globalThis.vitMatMul(2)');
    await page.close();

    expect(work.result).toBeCloseTo(4, 3);
    // The matMul's kernel: the wasm function that the main thread and a worker both spent the most
    // samples in (XNNPACK splits the GEMM's tiles between the threads, and both run its microkernel).
    let kernel = '';
    let shared = 0;
    for (const [f, n] of work.main) {
      for (const m of work.perWorker) {
        if (Math.min(n, m.get(f) ?? 0) > shared) [kernel, shared] = [f, Math.min(n, m.get(f) ?? 0)];
      }
    }
    const busy = work.perWorker.map((m) => m.get(kernel) ?? 0);
    const idleBusy = idle.perWorker.map((m) => m.get(kernel) ?? 0);
    console.log(
      `[browser] matMul kernel ${kernel || '(none)'}: ${work.main.get(kernel) ?? 0} samples on the main thread, ${JSON.stringify(busy)} on the ${workers.length} workers (${JSON.stringify(idleBusy)} while idle)`,
    );
    // Exactly THREADS − 1 workers ran the kernel the main thread ran, and only because of the matMul.
    expect(shared).toBeGreaterThan(0);
    expect(busy.filter((n) => n > 0).length).toBe(THREADS - 1);
    expect(idleBusy.every((n) => n === 0)).toBe(true);
    expect(idle.main.get(kernel) ?? 0).toBe(0);
  });

  it('runs 1 thread on a page that is not cross-origin isolated, and says why', async () => {
    const { page, errors } = await openPage(false);
    const init = await page.evaluate<PageInit>(`globalThis.vitInit(${JSON.stringify(`${origin}/wasm/`)})`);
    const checksum = await page.evaluate<number>('globalThis.vitMatMul(1)');
    await page.close();
    console.log(`[browser] page not isolated: ${init.detail}`);
    expect(errors).toEqual([]);
    expect(init.crossOriginIsolated).toBe(false);
    expect(init.backend).toBe('wasm');
    expect(init.threadsCount).toBe(1);
    // The single-threaded build: no pthread pool.
    expect(init.runningWorkers).toBeNull();
    const reason = /not cross-origin isolated.*Cross-Origin-Opener-Policy: same-origin.*Cross-Origin-Embedder-Policy: require-corp/;
    expect(init.wasmThreads?.threads).toBe(1);
    expect(init.wasmThreads?.reason).toMatch(reason);
    expect(init.status.reason).toMatch(reason);
    expect(init.detail).toMatch(reason);
    expect(checksum).toBeCloseTo(2, 3);
  });
});
