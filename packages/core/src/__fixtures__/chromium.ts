// What the browser tests share: finding Debian's Chromium (never a downloaded browser), bundling
// a page script with esbuild, and launching Chromium through playwright-core.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Debian's chromium (or VIT_CHROMIUM), if installed. */
export const chromiumPath = (process.env.VIT_CHROMIUM ? [process.env.VIT_CHROMIUM] : ['/usr/bin/chromium', '/usr/bin/chromium-browser']).find((p) => existsSync(p));
/** VIT_BROWSER_TEST_REQUIRE=1: a missing Chromium fails the test instead of skipping it. */
export const browserRequired = process.env.VIT_BROWSER_TEST_REQUIRE === '1';
/** Why the browser tests cannot run here, if they cannot. */
export const chromiumMissing = chromiumPath ? undefined : 'Chromium is not installed (apt-get install chromium, or set VIT_CHROMIUM)';

const coreSrc = fileURLToPath(new URL('..', import.meta.url));

/**
 * Bundles page entry points for the browser (ESM) from the sources, as a user's bundler would from
 * the packages: nothing external, and core's `#node-builtins` is its browser version.
 */
export async function bundleForBrowser(entryPoints: Record<string, string>, outdir: string, options: { splitting?: boolean; alias?: Record<string, string> } = {}): Promise<void> {
  const { build } = await import('esbuild');
  const aliases = { ...options.alias, '#node-builtins': path.join(coreSrc, 'platform/browser.ts') };
  await build({
    entryPoints,
    bundle: true,
    splitting: options.splitting ?? false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    outdir,
    logLevel: 'error',
    // Specifiers esbuild's `alias` option does not take (`#…`), and sibling packages' sources.
    plugins: [{ name: 'vit-sources', setup: (b) => b.onResolve({ filter: /^(#|@vit\/)/ }, (a) => (aliases[a.path] ? { path: aliases[a.path] } : undefined)) }],
  });
}

/** Headless Chromium through playwright-core (a dev dependency, imported lazily). */
export async function launchChromium<B>(): Promise<B> {
  if (!chromiumPath) throw new Error(`VIT_BROWSER_TEST_REQUIRE=1 but ${chromiumMissing}`);
  const { chromium } = (await import('playwright-core')) as unknown as { chromium: { launch(o: Record<string, unknown>): Promise<B> } };
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}
