import '@tensorflow/tfjs';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import {
  CIFAR10_CLASSES,
  CenterCrop,
  DataLoader,
  ImageFolderDataset,
  DownloadError,
  FASHION_MNIST_CLASSES,
  FormatError,
  fashionMnist,
  getArchitecture,
  getModelCard,
  listModels,
  loadPretrained,
  loadPytorchStateDict,
  loadSafetensorsFile,
  modelCard,
  saveModelWeights,
  pretrainedTag,
  registerModel,
  unregisterModel,
  type PretrainedSource,
  type VisionModel,
} from '@vit/core';
import { nchwToNhwc, runProcess, setTestBackend } from '@vit/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../main.js';
import { bundledFashionMnistDir, evalTransform } from '../data.js';

// Official-format fixtures (torch.save by the official CaiT code's weights) served over loopback:
// the real download → cache → checkpoint filter → load path, with no external host.
const FIX = fileURLToPath(new URL('../../../core/test/fixtures/', import.meta.url));
const PTH = `${FIX}pth/cait_p8_d2_wrapped_module.pth`;
const PTH_BYTES = readFileSync(PTH);
const PTH_SHA = createHash('sha256').update(PTH_BYTES).digest('hex');

async function vit(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const requests: string[] = [];
/** A torch.save file `vit convert --to-pytorch` wrote (set by its test). */
let exported: Buffer | undefined;
const server: Server = createServer((req, res) => {
  requests.push(req.url ?? '');
  if (req.url === '/w/cait.pth') {
    res.writeHead(200, { 'Content-Length': PTH_BYTES.length });
    return res.end(PTH_BYTES);
  }
  if (req.url === '/w/exported.pth' && exported) {
    res.writeHead(200, { 'Content-Length': exported.length });
    return res.end(exported);
  }
  if (req.url === '/w/garbage.pth') {
    // A complete answer that is not a checkpoint (a login page behind a 200).
    const page = Buffer.from('<html>please log in</html>'.repeat(40));
    res.writeHead(200, { 'Content-Length': page.length });
    return res.end(page);
  }
  res.writeHead(404);
  res.end();
});

let base = '';
let dir = '';
let kwargs: Record<string, unknown> = {};
let golden: Map<string, tf.Tensor>;
let reference: VisionModel;
let input: tf.Tensor4D;
const toys: string[] = [];

/** Registers a CaiT at the fixture's config whose card lists `sources` (and optionally other kwargs). */
function registerToy(name: string, sources: (b: string) => PretrainedSource[], extra: Record<string, unknown> = {}): void {
  const card = modelCard({ name, arch: 'cait', inputSize: [32, 32, 3], numClasses: 10, cropPct: 1, firstConv: 'patch_embed.proj', classifier: 'head' });
  const tag = pretrainedTag(card, { tag: 'toy', license: 'Apache-2.0', labels: 'cifar-10', sources: sources(base) });
  registerModel(name, (o = {}) => getArchitecture('cait').fromOfficialConfig({ ...kwargs, ...extra, num_classes: o.numClasses ?? 10 }), { ...card, pretrained: [tag] });
  toys.push(name);
}

function filesUnder(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name));
}

describe('pretrained weights', () => {
  let baseline = 0;
  beforeAll(async () => {
    await setTestBackend();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    dir = mkdtempSync(join(tmpdir(), 'vit-pretrained-'));
    const px = Buffer.from(Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 37) % 256));
    await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(dir, 'noise.png'));
    const g = await loadSafetensorsFile(`${FIX}cait_p8_d2.safetensors`);
    kwargs = JSON.parse(g.metadata.config!) as Record<string, unknown>;
    golden = g.tensors;
    input = nchwToNhwc(golden.get('golden.input')!) as tf.Tensor4D;
    reference = getArchitecture('cait').fromOfficialConfig(kwargs) as VisionModel;
    loadPytorchStateDict(reference, new Map([...golden].filter(([k]) => !k.startsWith('golden.'))));
    reference.eval();
    registerToy('caittoy_p8', (b) => [{ url: `${b}/w/cait.pth`, format: 'pth', sha256: PTH_SHA, sizeBytes: PTH_BYTES.length }]);
    registerToy('caittoy_p8_48', (b) => [{ url: `${b}/w/cait.pth`, format: 'pth' }], { img_size: 48 });
    registerToy('caittoy_badsum', (b) => [{ url: `${b}/w/cait.pth`, format: 'pth', sha256: 'f'.repeat(64) }]);
    registerToy('caittoy_toolarge', (b) => [{ url: `${b}/w/cait.pth`, format: 'pth', sizeBytes: 1000 }]);
    registerToy('caittoy_missing', (b) => [{ url: `${b}/w/none.pth`, format: 'pth' }]);
    registerToy('caittoy_garbage', (b) => [{ url: `${b}/w/garbage.pth`, format: 'pth' }]);
    // The first source is gone; the second answers.
    registerToy('caittoy_mirror', (b) => [
      { url: `${b}/w/gone.pth`, format: 'pth' },
      { url: `${b}/w/cait.pth`, format: 'pth' },
    ]);
    baseline = tf.memory().numTensors;
  });
  afterAll(async () => {
    expect(tf.memory().numTensors).toBe(baseline);
    for (const n of toys) unregisterModel(n);
    reference.dispose();
    input.dispose();
    for (const t of golden.values()) t.dispose();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('downloads, caches, converts the official .pth through the checkpoint filter, and gives the same logits as a direct load', async () => {
    const cacheDir = join(dir, 'c1');
    requests.length = 0;
    const r = await loadPretrained<VisionModel>('caittoy_p8', { cacheDir });
    expect(r).toMatchObject({ fromCache: false, source: `${base}/w/cait.pth`, classNames: CIFAR10_CLASSES, notes: [] });
    expect(r.tag).toMatchObject({ tag: 'toy', labels: 'cifar-10', inputSize: [32, 32, 3] });
    expect(r.model.training).toBe(false);
    const want = reference.forward(input);
    const got = r.model.forward(input);
    expect(Array.from(got.dataSync())).toEqual(Array.from(want.dataSync()));
    // Second time: from the cache, with the network refused.
    const again = await loadPretrained<VisionModel>('caittoy_p8', { cacheDir, offline: true });
    expect(again.fromCache).toBe(true);
    const got2 = again.model.forward(input);
    expect(Array.from(got2.dataSync())).toEqual(Array.from(want.dataSync()));
    expect(requests).toEqual(['/w/cait.pth']);
    tf.dispose([want, got, got2]);
    r.model.dispose();
    again.model.dispose();
  });

  it('fine-tuning and another resolution go through the architecture filter: classifier dropped, position table resampled', async () => {
    const cacheDir = join(dir, 'c1');
    const r = await loadPretrained<VisionModel>('caittoy_p8', { cacheDir, numClasses: 4 });
    expect(r.model.numClasses).toBe(4);
    expect(r.classNames).toBeUndefined();
    expect(r.notes.join('\n')).toMatch(/classifier dropped: the checkpoint has 10 classes, the model 4/);
    const f1 = r.model.forwardFeatures(input);
    const f0 = reference.forwardFeatures(input);
    expect(Array.from(f1.dataSync())).toEqual(Array.from(f0.dataSync()));
    const big = await loadPretrained<VisionModel>('caittoy_p8_48', { cacheDir });
    expect(big.notes.join('\n')).toMatch(/pos_embed resampled \(bilinear\) from a 4x4 grid to 6x6/);
    tf.dispose([f1, f0]);
    r.model.dispose();
    big.model.dispose();
  });

  it('refuses a wrong checksum, a file larger than the card allows, a 404 and a non-checkpoint; nothing is left in the cache', async () => {
    const cacheDir = join(dir, 'c2');
    await expect(loadPretrained('caittoy_badsum', { cacheDir, retries: 0 })).rejects.toThrow(/SHA-256 is [0-9a-f]{64}, expected f{64}/);
    await expect(loadPretrained('caittoy_toolarge', { cacheDir, retries: 0 })).rejects.toThrow(/announces \d+ bytes, the model card says 1000/);
    await expect(loadPretrained('caittoy_missing', { cacheDir, retries: 0 })).rejects.toThrow(DownloadError);
    expect(filesUnder(cacheDir)).toEqual([]);
    const e = await loadPretrained('caittoy_garbage', { cacheDir, retries: 0 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(FormatError);
    expect((e as Error).message).toMatch(/garbage\.pth: .*\(removed from the cache; the next call downloads it again\)/);
    expect(filesUnder(cacheDir)).toEqual([]);
    const m = await loadPretrained('caittoy_mirror', { cacheDir, retries: 0 });
    expect(m.source).toBe(`${base}/w/cait.pth`);
    m.model.dispose();
  });

  it('vit predict --pretrained: top-5 with class index and name; vit download; vit models --pretrained', async () => {
    const cacheDir = join(dir, 'c3');
    const img = join(dir, 'noise.png');
    const d = await vit('download', 'caittoy_p8', '--cache-dir', cacheDir);
    expect(d.code).toBe(0);
    expect(d.out).toMatch(/^caittoy_p8\.toy: downloaded: .*cait\.pth$/);
    expect((await vit('download', 'caittoy_p8', '--cache-dir', cacheDir)).out).toMatch(/already in the cache/);
    const p = await vit('predict', '--model', 'caittoy_p8', '--pretrained', '--cache-dir', cacheDir, img, '--json', '--backend', 'cpu');
    expect(p.code, p.err).toBe(0);
    const j = JSON.parse(p.out) as { model: string; predictions: Array<{ top: Array<{ class: number; name: string; probability: number }> }> };
    expect(j.model).toBe('caittoy_p8.toy');
    const top = j.predictions[0]!.top;
    expect(top).toHaveLength(5);
    for (const t of top) expect(t.name).toBe(CIFAR10_CLASSES[t.class]);
    const text = await vit('predict', '--model', 'caittoy_p8', '--pretrained', '--cache-dir', cacheDir, img, '--backend', 'cpu');
    expect(text.out).toMatch(new RegExp(`%  ${top[0]!.name}`));
    const models = await vit('models', 'caittoy_*', '--pretrained');
    expect(models.out).toMatch(/caittoy_p8 .* toy/);
    expect(listModels('caittoy_*', { pretrained: true })).toContain('caittoy_p8');
  });

  it('CLI errors: no weights published, weights only on a share site, an unknown tag (exit 2); 404 and offline misses (exit 3)', async () => {
    const img = join(dir, 'noise.png');
    const cacheDir = join(dir, 'c4');
    const none = await vit('predict', '--model', 'resnet50_mrlal', '--pretrained', img);
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/resnet50_mrlal has no published pretrained weights/);
    const share = await vit('predict', '--model', 'conv2former_n', '--pretrained', img);
    expect(share.code).toBe(2);
    expect(share.err).toMatch(/conv2former_n\.in1k: the official weights are published only on a Baidu Netdisk share \(https:\/\/pan\.baidu\.com\/.*--weights-url FILE/);
    const tag = await vit('download', 'caittoy_p8', '--tag', 'tyo');
    expect(tag.code).toBe(2);
    expect(tag.err).toMatch(/no pretrained tag 'tyo'; did you mean toy\?/);
    const missing = await vit('download', 'caittoy_missing', '--cache-dir', cacheDir);
    expect(missing.code).toBe(3);
    expect(missing.err).toMatch(/Cannot download .*none\.pth: HTTP 404/);
    process.env.VIT_OFFLINE = '1';
    try {
      const off = await vit('predict', '--model', 'caittoy_p8', '--pretrained', '--cache-dir', cacheDir, img);
      expect(off.code).toBe(3);
      expect(off.err).toMatch(/not in the cache .* refuses the network/);
    } finally {
      delete process.env.VIT_OFFLINE;
    }
    const both = await vit('predict', '--model', 'caittoy_p8', '--pretrained', '--weights', PTH, img);
    expect(both.code).toBe(2);
    expect(filesUnder(cacheDir)).toEqual([]);
  });

  // The official PyTorch CaiT on the same weights and the same preprocessed image: the top-5 that
  // `vit predict --pretrained` prints must be PyTorch's. Needs python3 + torch (the local wheel) and
  // the official deit code (../ref/facebookresearch+deit, or VIT_REF_ROOT); skips and says why without.
  const refRoot = process.env.VIT_REF_ROOT ?? fileURLToPath(new URL('../../../../../ref/', import.meta.url));
  const shim = fileURLToPath(new URL('../../../../../shared/perf/shim/', import.meta.url));
  const torchWhy = (() => {
    if (!existsSync(join(refRoot, 'facebookresearch+deit', 'cait_models.py'))) return `no official deit code under ${refRoot}`;
    if (!existsSync(shim)) return `no timm shim at ${shim}`;
    const r = spawnSync('python3', ['-c', 'import torch'], { encoding: 'utf8' });
    return r.status === 0 ? '' : 'python3 with torch is not installed (pip install /opt/wheels/torch-*.whl)';
  })();
  if (torchWhy) console.log(`[pretrained] skipped the PyTorch top-5 comparison: ${torchWhy}`);
  it.skipIf(torchWhy !== '')('vit predict --pretrained gives the official PyTorch model\'s top-5 on the same image', async () => {
    const cacheDir = join(dir, 'c5');
    const img = join(dir, 'gradient.png');
    const px = Buffer.from(Array.from({ length: 40 * 48 * 3 }, (_, i) => ((i % 3) * 80 + Math.floor(i / 144) * 5 + (i % 144)) % 256));
    await sharp(px, { raw: { width: 48, height: 40, channels: 3 } }).png().toFile(img);
    const p = await vit('predict', '--model', 'caittoy_p8', '--pretrained', '--cache-dir', cacheDir, img, '--json', '--backend', 'cpu');
    expect(p.code, p.err).toBe(0);
    const ours = (JSON.parse(p.out) as { predictions: Array<{ top: Array<{ class: number; probability: number }> }> }).predictions[0]!.top;
    // The pixels predict fed the model, made the same way (decode at size/crop, centre crop, normalise).
    const card = getModelCard('caittoy_p8');
    const ds = new ImageFolderDataset([img], new Int32Array(1), [], sharp as unknown as ConstructorParameters<typeof ImageFolderDataset>[3], { dir: '', size: 32, channels: 3 });
    const loader = new DataLoader(ds, { batchSize: 1, transform: new CenterCrop(32), channels: 3, mean: card.mean, std: card.std });
    let x: Float32Array | undefined;
    for await (const b of loader.epoch(0)) {
      x = b.x.dataSync() as Float32Array;
      tf.dispose([b.x, b.y]);
    }
    const raw = join(dir, 'x.f32');
    writeFileSync(raw, Buffer.from(x!.buffer, x!.byteOffset, x!.byteLength));
    const script = [
      'import functools, json, sys, torch',
      `sys.path[:0] = [${JSON.stringify(shim)}, ${JSON.stringify(join(refRoot, 'facebookresearch+deit'))}]`,
      'import cait_models',
      `kw = json.loads(${JSON.stringify(JSON.stringify(kwargs))})`,
      'kw["norm_layer"] = functools.partial(torch.nn.LayerNorm, eps=1e-6)',
      'm = cait_models.cait_models(**kw).eval()',
      `sd = torch.load(${JSON.stringify(PTH)}, map_location="cpu", weights_only=True)["model"]`,
      'm.load_state_dict({k.replace("module.", ""): v for k, v in sd.items()})',
      `x = torch.frombuffer(bytearray(open(${JSON.stringify(raw)}, "rb").read()), dtype=torch.float32).reshape(1, 32, 32, 3).permute(0, 3, 1, 2)`,
      'with torch.no_grad(): p = m(x).softmax(-1)[0]',
      'v, i = p.topk(5)',
      'print(json.dumps([{"class": int(a), "probability": float(b)} for a, b in zip(i, v)]))',
    ].join('\n');
    const py = await runProcess('python3', ['-c', script]);
    expect(py.status, py.stderr).toBe(0);
    const theirs = JSON.parse(py.stdout) as Array<{ class: number; probability: number }>;
    expect(ours.map((t) => t.class)).toEqual(theirs.map((t) => t.class));
    for (let i = 0; i < 5; i++) expect(Math.abs(ours[i]!.probability - theirs[i]!.probability)).toBeLessThan(1e-5);
  });

  it('a file `vit convert --to-pytorch` exported serves as pretrained weights: same logits as the model it came from', async () => {
    // Our checkpoint of the reference model, exported to the official layout as a torch.save file.
    const ours = join(dir, 'ref.safetensors');
    const saved = await loadSafetensorsFile(`${FIX}cait_p8_d2.safetensors`);
    for (const t of saved.tensors.values()) t.dispose();
    await saveModelWeights(reference, ours, { format: 'ours', metadata: { arch: 'cait', config: saved.metadata.config! } });
    const out = join(dir, 'exported.pth');
    const conv = await vit('convert', ours, '--to-pytorch', '--out', out);
    expect(conv.code, conv.err).toBe(0);
    exported = readFileSync(out);
    registerToy('caittoy_exported', (b) => [{ url: `${b}/w/exported.pth`, format: 'pth', sha256: createHash('sha256').update(exported!).digest('hex'), sizeBytes: exported!.length }]);
    const r = await loadPretrained<VisionModel>('caittoy_exported', { cacheDir: join(dir, 'c6') });
    const a = r.model.forward(input);
    const b = reference.forward(input);
    expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync()));
    tf.dispose([a, b]);
    r.model.dispose();
  });

  it('--weights-url loads a local copy with the tag settings (a file downloaded by hand)', async () => {
    const img = join(dir, 'noise.png');
    const p = await vit('predict', '--model', 'caittoy_missing', '--weights-url', PTH, img, '--json', '--backend', 'cpu');
    expect(p.code, p.err).toBe(0);
    expect((JSON.parse(p.out) as { checkpoint: string }).checkpoint).toBe(PTH);

    // A model whose card lists no weights still takes a file, with the card's own settings.
    registerModel('caittoy_bare', () => getArchitecture('cait').fromOfficialConfig(kwargs), modelCard({ name: 'caittoy_bare', arch: 'cait', inputSize: [32, 32, 3], numClasses: 10, cropPct: 1, firstConv: 'patch_embed.proj', classifier: 'head' }));
    toys.push('caittoy_bare');
    const bare = await loadPretrained<VisionModel>('caittoy_bare', { url: PTH });
    expect(bare).toMatchObject({ classNames: undefined, source: PTH, fromCache: false });
    expect(bare.tag).toMatchObject({ tag: 'url', labels: '', inputSize: [32, 32, 3] });
    const a = bare.model.forward(input);
    const b = reference.forward(input);
    expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync()));
    tf.dispose([a, b]);
    bare.model.dispose();
  });
});

/** The nano variants' `fashion_mnist` weights, shipped inside each architecture package. */
const NANOS = ['conv2former_nano', 'regionvit_nano', 'litv2_nano', 'resnet10_mrlal_nano', 'cait_nano'];

describe('shipped Fashion-MNIST weights of the nano variants', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it.each(NANOS)('%s: loads from the package (checked against its card) and classifies the bundled test images', async (name) => {
    const card = getModelCard(name);
    expect(card.pretrained?.[0]).toMatchObject({ tag: 'fashion_mnist', labels: 'fashion-mnist', numClasses: 10 });
    const before = tf.memory().numTensors;
    const r = await loadPretrained<VisionModel>(name);
    expect(r.fromCache).toBe(false);
    expect(r.classNames).toBe(FASHION_MNIST_CLASSES);
    // The first 100 images of the bundled test subset, preprocessed as the runs trained.
    const full = await fashionMnist({ split: 'test', dir: bundledFashionMnistDir()! });
    const ds = { ...full, length: 100, imageShape: full.imageShape, numClasses: 10, classNames: full.classNames, get: (i: number) => full.get(i) };
    const loader = new DataLoader(ds, { batchSize: 50, shuffle: false, transform: evalTransform(28, 32), channels: 3, mean: r.tag.mean, std: r.tag.std });
    let correct = 0;
    for await (const b of loader.epoch(0)) {
      const pred = tf.tidy(() => tf.argMax(r.model.forward(b.x), -1));
      const p = pred.dataSync();
      for (let i = 0; i < p.length; i++) if (p[i] === b.labels[i]) correct++;
      tf.dispose([pred, b.x, b.y]);
    }
    // The card's top-1 is measured on all 10,000 test images; 100 of them land within a few points.
    expect(correct / 100).toBeGreaterThan((r.tag.top1! - 10) / 100);
    r.model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('vit predict --model conv2former_nano --pretrained names Fashion-MNIST classes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vit-nano-'));
    try {
      const ds = await fashionMnist({ split: 'test', dir: bundledFashionMnistDir()! });
      const files: string[] = [];
      const labels: number[] = [];
      for (let i = 0; i < 10; i++) {
        const { image, label } = await ds.get(i);
        const f = join(dir, `${i}.png`);
        await sharp(Buffer.from(image), { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(f);
        files.push(f);
        labels.push(label);
      }
      const p = await vit('predict', '--model', 'conv2former_nano', '--pretrained', ...files, '--json', '--backend', 'cpu');
      expect(p.code, p.err).toBe(0);
      const rows = (JSON.parse(p.out) as { predictions: Array<{ top: Array<{ class: number; name: string }> }> }).predictions;
      const right = rows.filter((row, i) => row.top[0]!.class === labels[i]).length;
      expect(rows[0]!.top[0]!.name).toBe(FASHION_MNIST_CLASSES[rows[0]!.top[0]!.class]);
      expect(right).toBeGreaterThanOrEqual(8);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
