// The demo end to end: builds the app with Vite (production build, into a temp folder), serves it
// with `vite preview` on 127.0.0.1, and drives it in Debian's Chromium (playwright-core): load a
// nano model's Fashion-MNIST weights, predict bundled test images, load the same weights as a
// user's file, draw, train a few steps with the live curve, switch backends. Screenshots go to
// apps/demo/screenshots/. Skips (with the reason printed) without Chromium;
// VIT_BROWSER_TEST_REQUIRE=1 makes that a failure.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { build, preview, type PreviewServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserRequired, chromiumMissing, launchChromium } from '../../../packages/core/src/testing/browser.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const appRoot = path.resolve(here, '..');
const shots = path.join(appRoot, 'screenshots');
const FASHION = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

if (chromiumMissing && !browserRequired) console.log(`[browser] skipped: ${chromiumMissing}`);

describe.skipIf(chromiumMissing !== undefined && !browserRequired)('the demo app in Chromium', () => {
  let outDir = '';
  let server: PreviewServer | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const errors: string[] = [];

  beforeAll(async () => {
    if (chromiumMissing) throw new Error(`VIT_BROWSER_TEST_REQUIRE=1 but ${chromiumMissing}`);
    outDir = mkdtempSync(path.join(os.tmpdir(), 'vit-demo-'));
    const configFile = path.join(appRoot, 'vite.config.ts');
    await build({ configFile, logLevel: 'error', build: { outDir, emptyOutDir: true } });
    server = await preview({ configFile, logLevel: 'error', build: { outDir }, preview: { host: '127.0.0.1', port: 0, strictPort: false } });
    const url = server.resolvedUrls?.local[0];
    if (!url) throw new Error('vite preview gave no local URL');
    browser = await launchChromium<Browser>();
    page = await browser.newPage({ viewport: { width: 1150, height: 1000 } });
    page.on('pageerror', (e) => errors.push(e.message));
    mkdirSync(shots, { recursive: true });
    await page.goto(url);
    await page.waitForFunction(() => document.body.dataset.ready !== undefined, null, { timeout: 60_000 });
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((resolve) => (server ? server.httpServer.close(() => resolve()) : resolve()));
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  const shot = (name: string) => page.screenshot({ path: path.join(shots, name), fullPage: true });
  const state = (sel: string) => page.$eval(sel, (e) => (e as HTMLElement).dataset.state);
  const waitState = (sel: string, states: string[], timeout = 60_000) =>
    page.waitForFunction(([s, ok]) => ok!.includes((document.querySelector(s!) as HTMLElement).dataset.state ?? ''), [sel, states] as const, { timeout });
  const top = () => page.$$eval('#top5 li', (ls) => ls.map((li) => ({ index: Number(li.dataset.index), name: li.querySelector('.name')!.textContent!, prob: parseFloat(li.querySelector('.prob')!.textContent!) })));

  /** The explanation canvas: its pixels' digest, how many distinct colours, and whether it is all one colour. */
  const explainCanvas = () =>
    page.$eval('#explain', (c) => {
      const d = (c as HTMLCanvasElement).getContext('2d')!.getImageData(0, 0, 224, 224).data;
      const colours = new Set<number>();
      let hash = 0;
      for (let i = 0; i < d.length; i += 4) {
        colours.add((d[i]! << 16) | (d[i + 1]! << 8) | d[i + 2]!);
        hash = (Math.imul(hash, 31) + d[i]! * 65536 + d[i + 1]! * 256 + d[i + 2]!) | 0;
      }
      // Jet's hot end (red well above blue) somewhere: the map has a peak.
      let hot = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i]! > 150 && d[i + 2]! < 100) hot++;
      return { hash, colours: colours.size, hot };
    });
  const explainState = () =>
    page.$eval('#explain-status', (e) => ({ state: (e as HTMLElement).dataset.state, method: (e as HTMLElement).dataset.method, classIndex: Number((e as HTMLElement).dataset.classIndex), text: e.textContent! }));

  /** Loads a nano model's Fashion-MNIST weights into the predict panel. */
  async function loadNano(name: string) {
    await page.selectOption('#model', name);
    await page.click('#load-pretrained');
    await page.waitForFunction((n) => new RegExp(`^${n} from http`).test(document.querySelector('#model-status')!.textContent!), name, { timeout: 60_000 });
  }

  /** Clicks bundled test image `index` and waits for its top 5. */
  async function pickSample(index: number) {
    await page.click(`#samples button[data-index="${index}"]`);
    await waitState('#top5', ['ready', 'error']);
    expect(await state('#top5'), (await page.textContent('#top5')) ?? '').toBe('ready');
    await waitState('#explain-status', ['ready', 'error']);
    return { label: Number(await page.$eval('#input-label', (e) => (e as HTMLElement).dataset.label)), top: await top() };
  }

  it('loads on wasm with the bundled subset and every backend listed', async () => {
    expect(await page.evaluate(() => document.body.dataset.ready)).toBe('1');
    expect(await state('#backend-status')).toBe('ready');
    expect(await page.textContent('#backend-status')).toMatch(/^wasm: tfjs-backend-wasm \(SIMD/);
    const options = await page.$$eval('#backend option', (os) => os.map((o) => (o as HTMLOptionElement).value));
    expect(options).toEqual(['wasm', 'webgl', 'webgpu', 'cpu']);
    // Two test images of each class.
    expect(await page.$$eval('#samples button', (bs) => bs.length)).toBe(20);
    await shot('01-loaded.png');
  });

  it('loads cait_nano with its Fashion-MNIST weights and predicts test images right', async () => {
    await page.selectOption('#model', 'cait_nano');
    await page.click('#load-pretrained');
    await waitState('#model-status', ['ready', 'error']);
    const status = await page.textContent('#model-status');
    expect(await state('#model-status'), status!).toBe('ready');
    // The card's URL, rewritten by Vite to the asset it emitted from packages/cait/weights.
    expect(status).toMatch(/^cait_nano from http:\/\/127\.0\.0\.1:\d+\/assets\/cait_nano\.fashion_mnist-[\w-]+\.safetensors/);
    // Test images 7 (a trouser) and 24 (a bag): the weights get both right. CaiT is an attention
    // model: its explanation is attention rollout, of the top class.
    const maps = [];
    for (const [index, cls] of [
      [7, 1],
      [24, 8],
    ] as const) {
      const { label, top } = await pickSample(index);
      expect(label).toBe(cls);
      expect(top).toHaveLength(5);
      expect(top[0]!.index).toBe(cls);
      expect(top.map((t) => t.name)).toEqual(top.map((t) => FASHION[t.index]));
      expect(top[0]!.prob).toBeGreaterThan(50);
      const ex = await explainState();
      expect(ex, ex.text).toMatchObject({ state: 'ready', method: 'rollout', classIndex: cls });
      expect(ex.text).toBe(`attention rollout, for ${FASHION[cls]} (the top class)`);
      const map = await explainCanvas();
      expect(map.colours).toBeGreaterThan(50);
      expect(map.hot).toBeGreaterThan(0);
      maps.push(map.hash);
      await shot(`02-predict-cait_nano-${index}.png`);
    }
    // Two images, two maps.
    expect(maps[0]).not.toBe(maps[1]);
  });

  it('explains a conv model with Grad-CAM, for the top class or a class clicked in the top 5', async () => {
    await loadNano('conv2former_nano');
    await waitState('#top5', ['ready']);
    await waitState('#explain-status', ['ready', 'error']);
    const { top } = await pickSample(7);
    expect(top[0]!.index).toBe(1);
    const ex = await explainState();
    expect(ex, ex.text).toMatchObject({ state: 'ready', method: 'gradcam', classIndex: 1 });
    expect(ex.text).toMatch(/^Grad-CAM on stages\.\d, for Trouser \(the top class\)$/);
    const trouser = await explainCanvas();
    expect(trouser.colours).toBeGreaterThan(50);
    await shot('03-explain-conv2former_nano.png');
    // Another image, another map.
    await pickSample(24);
    expect((await explainState()).classIndex).toBe(8);
    expect((await explainCanvas()).hash).not.toBe(trouser.hash);
    // The second class of the top 5, explained on request.
    await pickSample(7);
    const second = top[1]!;
    await page.click(`#top5 li[data-index="${second.index}"]`);
    await page.waitForFunction((i) => (document.querySelector('#explain-status') as HTMLElement).dataset.classIndex === String(i), second.index);
    await waitState('#explain-status', ['ready', 'error']);
    const chosen = await explainState();
    expect(chosen, chosen.text).toMatchObject({ state: 'ready', method: 'gradcam', classIndex: second.index });
    expect(chosen.text).toMatch(new RegExp(`^Grad-CAM on stages\\.\\d, for ${second.name.replace('/', '\\/')}$`));
    expect(await page.$eval('#top5 li.explained', (li) => Number((li as HTMLElement).dataset.index))).toBe(second.index);
    expect((await explainCanvas()).hash).not.toBe(trouser.hash);
    await shot('03-explain-conv2former_nano-class.png');
    // Back to cait_nano for what follows.
    await loadNano('cait_nano');
    await waitState('#top5', ['ready']);
  });

  it("loads a user's weights file into a registered model (the same file: the same top 5)", async () => {
    const before = await top();
    await page.setInputFiles('#weights-file', path.resolve(appRoot, '../../packages/cait/weights/cait_nano.fashion_mnist.safetensors'));
    await page.waitForFunction(() => /from cait_nano\.fashion_mnist\.safetensors/.test(document.querySelector('#model-status')!.textContent!), null, { timeout: 60_000 });
    await waitState('#top5', ['ready']);
    expect(await top()).toEqual(before);
  });

  it('predicts a drawing', async () => {
    const box = (await page.locator('#input').boundingBox())!;
    await page.mouse.move(box.x + 60, box.y + 40);
    await page.mouse.down();
    for (const [x, y] of [
      [60, 190],
      [110, 190],
      [112, 60],
      [165, 190],
      [205, 190],
    ])
      await page.mouse.move(box.x + x, box.y + y, { steps: 4 });
    await page.mouse.up();
    await waitState('#top5', ['ready']);
    const t = await top();
    expect(t).toHaveLength(5);
    expect(await page.textContent('#input-label')).toBe('');
    // Not blank: the drawing reached the canvas.
    const lit = await page.$eval('#input', (c) => {
      const d = (c as HTMLCanvasElement).getContext('2d')!.getImageData(0, 0, 224, 224).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i]! > 128) n++;
      return n;
    });
    expect(lit).toBeGreaterThan(500);
    await shot('04-drawing.png');
  });

  it('trains a nano model for a few steps with a live curve and img/s', async () => {
    await page.selectOption('#train-model', 'cait_nano');
    await page.fill('#train-steps', '4');
    await page.fill('#train-batch', '16');
    // Every redraw of the curve, with the training state then: the curve is live if it grows
    // point by point while the run is in progress.
    await page.evaluate(() => {
      const log: { points: number; state: string; backendLocked: boolean }[] = [];
      (window as unknown as { curveLog: typeof log }).curveLog = log;
      const svg = document.querySelector('#curve')!;
      new MutationObserver(() =>
        log.push({
          points: svg.querySelectorAll('circle.point').length,
          state: (document.querySelector('#train-status') as HTMLElement).dataset.state!,
          backendLocked: (document.querySelector('#backend') as HTMLSelectElement).disabled,
        }),
      ).observe(svg, { childList: true });
    });
    await page.click('#train-start');
    await waitState('#train-status', ['done', 'error'], 90_000);
    const log = await page.evaluate(() => (window as unknown as { curveLog: { points: number; state: string; backendLocked: boolean }[] }).curveLog);
    const live = log.filter((e) => e.state === 'running' && e.points > 0);
    expect(live.map((e) => e.points)).toEqual([1, 2, 3, 4]);
    expect(live.every((e) => e.backendLocked)).toBe(true);
    const status = await page.textContent('#train-status');
    expect(await state('#train-status'), status!).toBe('done');
    expect(status).toMatch(/^done after 4 steps on wasm; test top-1 \d+(\.\d)?% on 100 images/);
    const losses = await page.$$eval('#curve circle.point', (cs) => cs.map((c) => Number(c.getAttribute('data-loss'))));
    expect(losses).toHaveLength(4);
    for (const l of losses) expect(Number.isFinite(l) && l > 0).toBe(true);
    const ips = Number(await page.$eval('#train-stats', (e) => (e as HTMLElement).dataset.imagesPerSecond));
    expect(ips).toBeGreaterThan(0);
    console.log(`[demo] cait_nano training on wasm: ${ips} img/s (batch 16)`);
    expect(await page.$eval('#curve polyline.loss', (p) => p.getAttribute('points')!.split(' ').length)).toBe(4);
    await shot('05-trained.png');
    // The trained model takes over the predict panel (and is explained there).
    await page.click('#train-use');
    await page.waitForFunction(() => /^cait_nano from 4 steps of training in this page/.test(document.querySelector('#model-status')!.textContent!), null, { timeout: 30_000 });
    await waitState('#top5', ['ready']);
    await waitState('#explain-status', ['ready', 'error']);
    expect(await state('#explain-status')).toBe('ready');
  });

  it('switches backends and predicts and explains the same on each', async () => {
    await loadNano('cait_nano');
    await pickSample(7);
    const webgl = await page.$eval('#backend option[value=webgl]', (o) => !(o as HTMLOptionElement).disabled);
    for (const name of ['cpu', ...(webgl ? ['webgl'] : []), 'wasm']) {
      await page.selectOption('#backend', name);
      await waitState('#backend-status', ['ready', 'error']);
      const status = await page.textContent('#backend-status');
      expect(await state('#backend-status'), status!).toBe('ready');
      expect(status!.startsWith(`${name}:`)).toBe(true);
      expect(await page.evaluate(() => (document.querySelector('#backend') as HTMLSelectElement).value)).toBe(name);
      await waitState('#top5', ['ready']);
      const t = await top();
      expect(t[0]!.index).toBe(1);
      await waitState('#explain-status', ['ready', 'error']);
      const ex = await explainState();
      expect(ex, ex.text).toMatchObject({ state: 'ready', method: 'rollout', classIndex: 1 });
      expect((await explainCanvas()).hot).toBeGreaterThan(0);
      console.log(`[demo] ${status}: top-1 ${t[0]!.name} ${t[0]!.prob}%`);
      if (name !== 'wasm') await shot(`06-backend-${name}.png`);
    }
    if (!webgl) console.log('[demo] webgl is not offered by this Chromium; switched cpu ↔ wasm only');
  });

  it('raised no page errors', () => {
    expect(errors).toEqual([]);
  });
});
