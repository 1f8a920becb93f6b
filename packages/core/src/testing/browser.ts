/**
 * Tests in a real browser: Debian's Chromium (or `VIT_CHROMIUM`; never a downloaded browser) driven
 * by playwright-core, pages bundled by esbuild the way a user's bundler does it, served from
 * 127.0.0.1. `describeBrowserParity` is every architecture package's GPU suite in the browser:
 * golden parity on WebGL and WebGPU. playwright-core and esbuild are optional peers, imported by name
 * when a browser test runs (so bundles of the GPU suites leave them out). Without Chromium the tests skip with the reason printed, unless
 * `VIT_BROWSER_TEST_REQUIRE=1` (CI sets it where it installed Chromium) makes that a failure.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importByName } from '../platform/index.js';

/** Debian's chromium (or VIT_CHROMIUM), if installed. */
export const chromiumPath = (process.env.VIT_CHROMIUM ? [process.env.VIT_CHROMIUM] : ['/usr/bin/chromium', '/usr/bin/chromium-browser']).find((p) => existsSync(p));
/** VIT_BROWSER_TEST_REQUIRE=1: a missing Chromium fails the test instead of skipping it. */
export const browserRequired = process.env.VIT_BROWSER_TEST_REQUIRE === '1';
/**
 * Why the browser tests cannot run here, if they cannot. VIT_BROWSER_TESTS=0 turns them off for a
 * run where they would only repeat themselves (CI's second pass on the tensorflow backend: the page
 * never runs on the Node backend under test).
 */
export const chromiumMissing =
  process.env.VIT_BROWSER_TESTS === '0'
    ? 'browser tests turned off for this run (VIT_BROWSER_TESTS=0)'
    : chromiumPath
      ? undefined
      : 'Chromium is not installed (apt-get install chromium, or set VIT_CHROMIUM)';

// Run from this repository's sources (vitest), pages bundle the sources too: the same code the
// test process runs. From the published dist, packages resolve as a user's bundler resolves them.
const here = fileURLToPath(new URL('.', import.meta.url));
const fromSources = import.meta.url.endsWith('.ts');
const sourceAliases: Record<string, string> = fromSources
  ? { '@vit/core': path.join(here, '../index.ts'), '#node-builtins': path.join(here, '../platform/browser.ts') }
  : {};

export interface BundleOptions {
  /** Shared chunks between the entry points. */
  splitting?: boolean;
  /** Exact specifiers → files (sibling packages' sources). */
  alias?: Record<string, string>;
}

/** Page bundles: ESM with esbuild's browser defaults (nothing external). */
async function esbuildPage(input: { entryPoints: Record<string, string> } | { stdin: { contents: string; resolveDir: string } }, out: { outdir: string } | { outfile: string }, options: BundleOptions): Promise<void> {
  const { build } = (await importByName('esbuild')) as typeof import('esbuild');
  const aliases: Record<string, string> = { ...sourceAliases, ...options.alias };
  await build({
    ...('stdin' in input ? { stdin: { ...input.stdin, loader: 'ts' as const, sourcefile: 'page.ts' } } : input),
    ...out,
    bundle: true,
    splitting: options.splitting ?? false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    logLevel: 'error',
    // esbuild's own `alias` takes no `#…` specifiers and rewrites by prefix.
    plugins: [{ name: 'vit-aliases', setup: (b) => b.onResolve({ filter: /^(#|@vit\/)/ }, (a) => (aliases[a.path] ? { path: aliases[a.path] } : undefined)) }],
  });
}

/** Bundles page entry points (files) for the browser into `outdir`. */
export async function bundleForBrowser(entryPoints: Record<string, string>, outdir: string, options: BundleOptions = {}): Promise<void> {
  await esbuildPage({ entryPoints }, { outdir }, options);
}

/** Bundles a page script given as source text, its imports resolved from `resolveDir`, into `outfile`. */
export async function bundlePageSource(contents: string, resolveDir: string, outfile: string, options: BundleOptions = {}): Promise<void> {
  await esbuildPage({ stdin: { contents, resolveDir } }, { outfile }, options);
}

/**
 * Headless Chromium through playwright-core. `--enable-unsafe-webgpu` offers WebGPU on Linux
 * (SwiftShader without a GPU); WebGL is on by default (SwiftShader through ANGLE without a GPU).
 */
export async function launchChromium<B>(extraArgs: string[] = []): Promise<B> {
  if (!chromiumPath) throw new Error(`VIT_BROWSER_TEST_REQUIRE=1 but ${chromiumMissing}`);
  const { chromium } = (await importByName('playwright-core')) as { chromium: { launch(o: Record<string, unknown>): Promise<B> } };
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--enable-unsafe-webgpu', ...extraArgs],
  });
}

/** A file the test server sends: its bytes and content type. */
export interface Served {
  body: string | Uint8Array;
  type: string;
}

/**
 * An HTTP server on 127.0.0.1 (a secure context, as WebGPU requires) answering from `route`
 * (undefined: 404), with `headers` on every answer. `close()` stops it.
 */
export async function serveLocally(route: (url: URL) => Served | undefined, headers: (url: URL) => Record<string, string> = () => ({})): Promise<{ origin: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const h = headers(url);
    let found: Served | undefined;
    try {
      found = route(url);
    } catch {
      found = undefined;
    }
    if (!found) return void res.writeHead(404, h).end();
    res.writeHead(200, { ...h, 'Content-Type': found.type }).end(found.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// Minimal shapes of what is used from playwright-core.
interface Page {
  goto(url: string): Promise<unknown>;
  waitForFunction(f: string): Promise<unknown>;
  evaluate<T, A>(f: (arg: A) => Promise<T> | T, arg: A): Promise<T>;
  on(event: 'pageerror', handler: (e: Error) => void): void;
  close(): Promise<void>;
}
interface Browser {
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

export type BrowserGpuBackend = 'webgl' | 'webgpu';

export interface BrowserParityOptions {
  /** Prefix of the printed lines (`cait`). */
  label: string;
  /** The architecture package's entry (its `src/index.ts` here), bundled into the page: it registers the architecture. */
  entry: string;
  /** Golden files (shared/golden's format), served to the page. */
  goldens: string[];
  /** Backends to run them on (default both); one the browser does not offer skips with the reason printed. */
  backends?: BrowserGpuBackend[];
  /** As `describeGpuParity`: scaled max-abs for outputs and norm-relative for the input gradient (default 1e-3). */
  tolerance?: number;
}

/** What the page reports for one golden case. */
interface PageCase {
  summary: string;
  pass: boolean;
  rows: string[];
  kinds: string[];
  errors: string[];
  ms: number;
  tensorsBefore: number;
}
type PageInit = { backend: string; detail: string; gradients: string[]; warnings: string[] } | { error: string };

// These run in the page (serialised by playwright): only globals, set by the page's bundle.
interface PageGlobals {
  vit: typeof import('../index.js');
  tf: typeof import('@tensorflow/tfjs-core');
}
async function pageInit(backend: string): Promise<PageInit> {
  const { vit } = globalThis as unknown as PageGlobals;
  try {
    const r = await vit.initBackend(backend as 'webgl', { env: false });
    return { backend: r.backend, detail: r.detail, gradients: r.gradients, warnings: r.warnings };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}
async function pageParity(a: { url: string; tolerance: number }): Promise<PageCase> {
  const { vit, tf } = globalThis as unknown as PageGlobals;
  const bytes = new Uint8Array(await (await fetch(a.url)).arrayBuffer());
  const tensorsBefore = tf.memory().numTensors;
  // References stay on cpu: they are compared there (the GPU backends read back asynchronously).
  const golden = await vit.withBackend('cpu', () => vit.loadSafetensors(bytes));
  const t0 = performance.now();
  try {
    const res = await vit.runParityAsync(golden, { tolerance: a.tolerance, gradTolerance: a.tolerance });
    return {
      summary: vit.formatParitySummary(res),
      pass: res.pass,
      rows: res.rows.map(vit.formatParityRow),
      kinds: [...new Set(res.rows.map((r) => r.kind))],
      errors: res.errors,
      ms: performance.now() - t0,
      tensorsBefore,
    };
  } finally {
    await vit.withBackend('cpu', () => golden.tensors.forEach((t) => t.dispose()));
  }
}

/**
 * An architecture package's GPU suite in headless Chromium: each golden case's logits, stage
 * features and input gradient on WebGL and on WebGPU (where the browser offers them), compared on
 * the page's cpu backend with `describeGpuParity`'s tolerance, and no tensor left behind. The page
 * bundles `@tensorflow/tfjs`, `@tensorflow/tfjs-backend-webgpu`, `@vit/core` and `entry`, and picks
 * each backend through `initBackend`. One Chromium per call.
 */
export function describeBrowserParity(o: BrowserParityOptions): void {
  const tol = o.tolerance ?? 1e-3;
  const backends = o.backends ?? ['webgl', 'webgpu'];
  const missing = chromiumMissing;
  if (missing && !browserRequired) console.log(`[${o.label} browser] skipped: ${missing}`);

  describe.skipIf(missing !== undefined && !browserRequired)(`${o.label} in Chromium (${backends.join(', ')})`, () => {
    let browser: Browser | undefined;
    let server: { origin: string; close(): Promise<void> } | undefined;
    let outDir = '';
    const pages = new Map<BrowserGpuBackend, Promise<{ page: Page; init: PageInit; errors: string[] }>>();

    beforeAll(async () => {
      if (missing) throw new Error(`VIT_BROWSER_TEST_REQUIRE=1 but ${missing}`);
      outDir = mkdtempSync(path.join(os.tmpdir(), `vit-browser-${o.label}-`));
      const page = [
        "import * as tf from '@tensorflow/tfjs';",
        "import '@tensorflow/tfjs-backend-webgpu';",
        "import * as vit from '@vit/core';",
        `import ${JSON.stringify(o.entry)};`,
        'Object.assign(globalThis, { tf, vit });',
      ].join('\n');
      // Resolved from the architecture package, as its own imports are.
      await bundlePageSource(page, path.dirname(o.entry), path.join(outDir, 'page.js'));
      const html = `<!doctype html><meta charset="utf-8"><title>vit ${o.label}</title><script type="module" src="/page.js"></script>`;
      server = await serveLocally((url) => {
        if (url.pathname === '/') return { body: html, type: 'text/html' };
        if (url.pathname === '/page.js') return { body: readFileSync(path.join(outDir, 'page.js')), type: 'text/javascript' };
        const i = /^\/golden\/(\d+)$/.exec(url.pathname);
        if (i && o.goldens[Number(i[1])]) return { body: readFileSync(o.goldens[Number(i[1])]!), type: 'application/octet-stream' };
        return undefined;
      });
      browser = await launchChromium<Browser>();
    }, 180_000);

    afterAll(async () => {
      await browser?.close();
      await server?.close();
      if (outDir) rmSync(outDir, { recursive: true, force: true });
    });

    /** One page per backend, made on first use. */
    const pageFor = (backend: BrowserGpuBackend) => {
      if (!pages.has(backend)) {
        pages.set(
          backend,
          (async () => {
            const page = await browser!.newPage();
            const errors: string[] = [];
            page.on('pageerror', (e) => errors.push(e.message));
            await page.goto(`${server!.origin}/`);
            await page.waitForFunction('typeof globalThis.vit === "object"');
            const init = await page.evaluate(pageInit, backend);
            console.log(`[${o.label} browser] ${backend}: ${'error' in init ? `skipped: ${init.error}` : `running on '${init.backend}' (${init.detail})`}`);
            return { page, init, errors };
          })(),
        );
      }
      return pages.get(backend)!;
    };

    for (const backend of backends) {
      for (const [i, file] of o.goldens.entries()) {
        it(`${backend}: golden ${path.basename(file)}: logits, features, input gradient`, async (ctx) => {
          const { page, init, errors } = await pageFor(backend);
          // WebGL must work wherever Chromium runs (SwiftShader without a GPU); WebGPU only where the browser offers it.
          if ('error' in init) {
            if (backend === 'webgl' && browserRequired) throw new Error(`initBackend('webgl') failed in Chromium: ${init.error}`);
            ctx.skip();
            return;
          }
          expect(init.backend).toBe(backend);
          expect(init.gradients.length).toBeGreaterThan(0);
          const res = await page.evaluate(pageParity, { url: `${server!.origin}/golden/${i}`, tolerance: tol });
          const after = await page.evaluate(() => (globalThis as unknown as PageGlobals).tf.memory().numTensors, undefined);
          console.log(`[${o.label} browser] ${backend} ${res.summary} (${(res.ms / 1000).toFixed(1)} s)`);
          expect(errors).toEqual([]);
          expect(res.pass, res.rows.concat(res.errors).join('\n')).toBe(true);
          expect(res.kinds.sort()).toEqual(expect.arrayContaining(['feature', 'grad', 'logits']));
          expect(after).toBe(res.tensorsBefore);
        }, 600_000);
      }
    }
  });
}
