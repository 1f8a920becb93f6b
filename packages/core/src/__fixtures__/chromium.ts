// What the browser tests share: finding Debian's Chromium (never a downloaded browser), bundling
// a page script with esbuild, and launching Chromium through playwright-core.
import { existsSync } from 'node:fs';

/** Debian's chromium (or VIT_CHROMIUM), if installed. */
export const chromiumPath = (process.env.VIT_CHROMIUM ? [process.env.VIT_CHROMIUM] : ['/usr/bin/chromium', '/usr/bin/chromium-browser']).find((p) => existsSync(p));
/** VIT_BROWSER_TEST_REQUIRE=1: a missing Chromium fails the test instead of skipping it. */
export const browserRequired = process.env.VIT_BROWSER_TEST_REQUIRE === '1';
/** Why the browser tests cannot run here, if they cannot. */
export const chromiumMissing = chromiumPath ? undefined : 'Chromium is not installed (apt-get install chromium, or set VIT_CHROMIUM)';

/** Bundles page entry points for the browser (ESM; node: imports stay external, as a bundler leaves them unused). */
export async function bundleForBrowser(entryPoints: Record<string, string>, outdir: string, options: { splitting?: boolean } = {}): Promise<void> {
  const { build } = await import('esbuild');
  await build({ entryPoints, bundle: true, splitting: options.splitting ?? false, format: 'esm', platform: 'browser', target: 'es2022', external: ['node:*'], outdir, logLevel: 'error' });
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
