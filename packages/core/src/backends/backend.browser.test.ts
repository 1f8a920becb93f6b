import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InitBackendResult } from '../backend.js';
import { browserRequired, bundleForBrowser, chromiumMissing, launchChromium, serveLocally } from '../testing/browser.js';

// initBackend in a real browser (Debian's Chromium, headless, no GPU: WebGL and WebGPU are
// SwiftShader there): the page bundles @vit/core with the backends the app imports, as a user's
// bundler does. Without the wasm binaries served, auto must pick WebGL (tried again after wasm
// failed) and say how to serve them; with them, wasm (faster than a CPU-rendered WebGL); by name,
// WebGL with our gradient fixes working on it.
// Skips (with the reason printed) without Chromium; VIT_BROWSER_TEST_REQUIRE=1 makes that a failure.

const here = path.dirname(fileURLToPath(import.meta.url));
const wasmDist = path.resolve(here, '../../../../node_modules/@tensorflow/tfjs-backend-wasm/dist');
const missing = chromiumMissing;
if (missing && !browserRequired) console.log(`[browser] skipped: ${missing}`);

interface Page {
  goto(url: string): Promise<unknown>;
  waitForFunction(f: string): Promise<unknown>;
  evaluate<T>(f: string): Promise<T>;
  on(event: 'pageerror', handler: (e: Error) => void): void;
  close(): Promise<void>;
}
interface Browser {
  newPage(): Promise<Page>;
  close(): Promise<void>;
}
type Init = InitBackendResult & { current: string };

describe.skipIf(missing !== undefined && !browserRequired)('initBackend in Chromium', () => {
  let browser: Browser | undefined;
  let server: { origin: string; close(): Promise<void> } | undefined;
  let outDir = '';
  const wasmRequests: string[] = [];

  beforeAll(async () => {
    if (missing) throw new Error(`VIT_BROWSER_TEST_REQUIRE=1 but ${missing}`);
    outDir = mkdtempSync(path.join(os.tmpdir(), 'vit-browser-backend-'));
    await bundleForBrowser({ page: path.join(here, '__fixtures__/backend_page.ts') }, outDir);
    const html = '<!doctype html><meta charset="utf-8"><title>vit backends</title><script type="module" src="/page.js"></script>';
    server = await serveLocally(
      (url) => {
        if (url.pathname.endsWith('.wasm')) wasmRequests.push(url.pathname);
        if (url.pathname === '/') return { body: html, type: 'text/html' };
        if (url.pathname === '/page.js') return { body: readFileSync(path.join(outDir, 'page.js')), type: 'text/javascript' };
        // The binaries only under /wasm/, where an app that follows the error's advice puts them.
        const file = path.join(wasmDist, path.basename(url.pathname));
        if (url.pathname.startsWith('/wasm/') && url.pathname.endsWith('.wasm') && existsSync(file)) return { body: readFileSync(file), type: 'application/wasm' };
        return undefined;
      },
      (url): Record<string, string> => (url.searchParams.get('isolated') === '1' ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } : {}),
    );
    browser = await launchChromium<Browser>();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  async function run<T>(query: string, script: string): Promise<{ value: T; errors: string[] }> {
    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
      await page.goto(`${server!.origin}/${query}`);
      await page.waitForFunction('typeof globalThis.vitInit === "function"');
      return { value: await page.evaluate<T>(script), errors };
    } finally {
      await page.close();
    }
  }

  it("auto without the wasm binaries served: WebGL (SwiftShader), with each backend's reason and the way to serve the binaries", async () => {
    wasmRequests.length = 0;
    const { value: r, errors } = await run<Init>('', "globalThis.vitInit('auto')");
    console.log(`[browser] auto, no wasm files: ${r.backend} (${r.detail}); reasons ${JSON.stringify(r.reasons)}; warnings ${JSON.stringify(r.warnings)}`);
    expect(errors).toEqual([]);
    expect(r.backend).toBe('webgl');
    expect(r.current).toBe('webgl');
    expect(r.detail).toMatch(/SwiftShader.*WebGL 2, software/);
    // tfjs looked for the binaries beside the page, and did not find them.
    expect(wasmRequests.length).toBeGreaterThan(0);
    expect(wasmRequests.every((p) => !p.startsWith('/wasm/'))).toBe(true);
    expect(r.reasons.tensorflow).toMatch(/only in Node/);
    expect(r.reasons.webgpu).toMatch(/software renderer|no WebGPU/);
    expect(r.reasons.wasm).toMatch(/beside the page's script \(http:\/\/127\.0\.0\.1:\d+\/.*node_modules\/@tensorflow\/tfjs-backend-wasm\/dist\/\*\.wasm.*setWasmPaths\(\)/);
    // Chosen on its second try: no reason against it, a warning saying why it runs in software.
    expect(r.reasons.webgl).toBeUndefined();
    expect(r.warnings.join(' ')).toMatch(/WebGL runs on the CPU here .*SwiftShader.*chosen because wasm was unavailable/);
    expect(r.gradients).toContain('StridedSlice');
  });

  it('auto with the binaries where setWasmPaths says: wasm, ahead of the software WebGL (and why not threads from a bundle)', async () => {
    const { value: r, errors } = await run<Init>('?isolated=1', "globalThis.vitInit('auto', '/wasm/')");
    console.log(`[browser] auto, wasm files served: ${r.backend} (${r.detail}); webgl: ${r.reasons.webgl}`);
    expect(errors).toEqual([]);
    expect(r.backend).toBe('wasm');
    expect(r.detail).toMatch(/tfjs-backend-wasm \(SIMD/);
    expect(r.reasons.webgl).toMatch(/runs on the CPU \(.*SwiftShader.*\), slower than wasm; ask for 'webgl' by name/);
    // On an isolated page the threaded build needs the package's module, which a bundle hides from @vit/core.
    expect(r.wasmThreads?.threads).toBeGreaterThanOrEqual(1);
    if (r.wasmThreads!.threads === 1) expect(r.wasmThreads?.reason).toMatch(/cannot import '@tensorflow\/tfjs-backend-wasm' by name/);
  });

  it("initBackend('webgl') by name: WebGL with the gradient fixes, and a fixed gradient (StridedSlice) computes on it", async () => {
    const { value, errors } = await run<{ init: Init; grad: { values: number[]; backend: string; tensors: number } }>(
      '',
      "(async () => ({ init: await globalThis.vitInit('webgl'), grad: await globalThis.vitStridedSliceGrad() }))()",
    );
    expect(errors).toEqual([]);
    expect(value.init.backend).toBe('webgl');
    expect(value.init.reasons).toEqual({});
    expect(value.init.warnings).toEqual([]);
    expect(value.init.gradients).toEqual(expect.arrayContaining(['StridedSlice', 'GatherNd', 'GatherV2']));
    expect(value.grad.backend).toBe('webgl');
    expect(value.grad.values).toEqual([0, 1, 0, 10, 0, 0, 0, 0, 0, 100, 0, 1000]);
    expect(value.grad.tensors).toBe(0);
  });
});
