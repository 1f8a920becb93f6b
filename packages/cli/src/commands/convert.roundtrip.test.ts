/**
 * `vit convert` to PyTorch and back loses nothing (issue 17, item 7): every official .pth fixture
 * converts to ours and back to a .pth bit for bit (keys, dtypes, values; fp16 stays fp16 with
 * --dtype keep), and so do files `vit convert --to-pytorch` wrote from every registered variant at
 * a small size. Where python3 with torch is present, torch itself checks what we export:
 * `torch.load(weights_only=True)`, equality with the original state dict, and
 * `load_state_dict(strict=True)` into the official model class (official repositories under
 * ../ref, as tools/bench/peer.mjs uses them). Skipped, with the reason printed, where absent.
 */
import '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { CAIT_VARIANTS } from '@vit/cait';
import { createModel, findStateDict, getModelCard, listModels, loadSafetensorsFile, PthTensor, readPth, readSafetensorsFile, saveModelWeights, type PyDict } from '@vit/core';
import { runProcess, setTestBackend } from '@vit/core/testing';
import { MRLA_CONFIGS } from '@vit/mrla';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../main.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const REPO = fileURLToPath(new URL('../../../../', import.meta.url));
// VIT_GOLDEN_PTH=/nonexistent checks the repository-copies path CI takes.
const SHARED_PTH = process.env.VIT_GOLDEN_PTH ?? join(REPO, '..', 'shared', 'golden', 'pth');
/** Repository copies of the official fixtures (used where ../shared is absent, as on CI). */
const LOCAL_PTH = [join(REPO, 'packages/core/test/fixtures/pth'), join(HERE, '__fixtures__/pth')];
const PKG_OF_ARCH: Record<string, string> = { litv2: 'hilo', conv2former: 'conv2former', regionvit: 'regionvit', mrla: 'mrla', cait: 'cait' };

interface ManifestEntry {
  file: string;
  source: string;
  dtype: string;
}
const manifest = JSON.parse(readFileSync(join(HERE, '__fixtures__/pth/manifest.json'), 'utf8')) as { files: ManifestEntry[] };
const officialFiles = manifest.files.filter((f) => !f.file.includes('/bad/'));

async function vit(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** A .pth's state dict as PyTorch sees it (a wrapped file's entry, `module.` removed): key → tensor. */
function pthStateDict(file: string): Map<string, PthTensor> {
  const { dict } = findStateDict(readPth(readFileSync(file)).root);
  const out = new Map<string, PthTensor>();
  for (const [k, v] of dict as PyDict) if (v instanceof PthTensor) out.set(String(k), v);
  const strip = [...out.keys()].every((k) => k.startsWith('module.'));
  return strip ? new Map([...out].map(([k, v]) => [k.slice('module.'.length), v])) : out;
}

/** Keys, dtypes, shapes and bytes equal. */
function expectSamePth(got: string, want: string): void {
  const a = pthStateDict(got);
  const b = pthStateDict(want);
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  for (const [k, t] of b) {
    const u = a.get(k)!;
    expect(u.dtype, k).toBe(t.dtype);
    expect(u.shape, k).toEqual(t.shape);
    expect(Buffer.from(u.bytes()).equals(Buffer.from(t.bytes())), `${k} bytes`).toBe(true);
  }
}

function torchAvailable(): string | null {
  const r = spawnSync('python3', ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  if (r.error) return `python3 not runnable (${r.error.message})`;
  if (r.status !== 0) return `python3 cannot import torch (${(r.stderr || '').trim().split('\n').pop()})`;
  return null;
}

/** What torch_check.py checks for each exported file. */
interface TorchJob {
  exported: string;
  original?: string;
  golden?: { reference: string; class: string; config: Record<string, unknown>; overrides?: Record<string, unknown> };
}
const torchJobs: TorchJob[] = [];

let dir = '';
let baseline = 0;
beforeAll(async () => {
  await setTestBackend();
  dir = mkdtempSync(join(tmpdir(), 'vit-roundtrip-'));
  baseline = tf.memory().numTensors;
});
afterAll(() => {
  expect(tf.memory().numTensors).toBe(baseline);
  rmSync(dir, { recursive: true, force: true });
});

describe('official .pth → ours → .pth is lossless', () => {
  const fromShared = existsSync(SHARED_PTH);
  const located = officialFiles.map((f) => {
    const name = f.file.split('/').pop()!;
    const where = fromShared ? [SHARED_PTH] : LOCAL_PTH;
    return { ...f, name, path: where.map((d) => join(d, name)).find((p) => existsSync(p)) };
  });
  const absent = located.filter((f) => !f.path).map((f) => f.name);
  if (!fromShared) console.log(`convert round trip: ${SHARED_PTH} is absent; using the ${located.length - absent.length} repository copies (not here: ${absent.join(', ')})`);

  it('covers every official fixture where ../shared is present, and at least the BatchNorm, MRLA and fp16 cases everywhere', () => {
    const names = located.filter((f) => f.path).map((f) => f.name);
    if (fromShared) expect(names.length).toBe(readdirSync(SHARED_PTH).filter((n) => n.endsWith('.pth')).length);
    expect(names).toEqual(expect.arrayContaining(['mrla_e1_g2_w8.pth', 'conv2former_k7_d16_fp16.pth', 'conv2former_k11_d16_legacy.pth', 'cait_p8_d2_views.pth', 'cait_p8_d2_wrapped_module.pth']));
  });

  it.each(located.filter((f) => f.path).map((f) => [f.name, f] as const))('%s', async (name, f) => {
    const [, arch, kase] = /^shared\/golden\/([^/]+)\/(.+)\.safetensors$/.exec(f.source)!;
    const golden = join(REPO, 'packages', PKG_OF_ARCH[arch!]!, 'test/fixtures', `${kase}.safetensors`);
    const fp16 = f.dtype !== 'as-source';
    const dtype = fp16 ? ['--dtype', 'keep'] : [];
    const stem = name.slice(0, -'.pth'.length);
    const ours = join(dir, `${stem}.ours.safetensors`);
    const r = await vit('convert', f.path!, '--config', golden, '--out', ours, ...dtype);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const back = join(dir, `${stem}.back.pth`);
    // Only the file's own metadata: the model (with MRLA's class-attribute overrides) and the counters.
    const b = await vit('convert', ours, '--to-pytorch', '--out', back, ...dtype);
    expect(b.err).toBe('');
    expect(b.code).toBe(0);
    expectSamePth(back, f.path!);
    if (fp16) expect([...pthStateDict(back).values()].filter((t) => t.dtype === 'F16').length).toBeGreaterThan(100);
    const counters = [...pthStateDict(f.path!).keys()].filter((k) => k.endsWith('num_batches_tracked'));
    if (counters.length) {
      expect(r.out).toMatch(new RegExp(`kept: {4}${counters.length} num_batches_tracked counters in the metadata`));
      // The fixtures' counters are not 0 (what a fresh BatchNorm would write).
      expect(pthStateDict(f.path!).get(counters[0]!)!.toRaw().data[0]).not.toBe(0);
    }
    // The same through a PyTorch-layout safetensors file.
    const st = join(dir, `${stem}.back.safetensors`);
    expect((await vit('convert', ours, '--to-pytorch', '--out', st, ...dtype)).code).toBe(0);
    const parsed = await readSafetensorsFile(st);
    const want = pthStateDict(f.path!);
    expect([...parsed.tensors.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [k, t] of want) {
      expect(parsed.tensors.get(k)!.dtype, k).toBe(t.dtype);
      expect(Array.from(parsed.tensors.get(k)!.data), k).toEqual(Array.from(t.toRaw(k).data));
    }
    const meta = (await readSafetensorsFile(golden)).metadata;
    torchJobs.push({
      exported: back,
      original: f.path!,
      golden: { reference: meta.reference!, class: meta.class!, config: JSON.parse(meta.config!), overrides: meta.overrides ? JSON.parse(meta.overrides) : undefined },
    });
  });
});

/** Each registered variant shrunk as its package's conformance test does (the real sizes are too big for a unit test). */
function tinyOptions(name: string): Record<string, unknown> {
  const arch = getModelCard(name).arch;
  switch (arch) {
    case 'cait':
      return { embedDim: CAIT_VARIANTS[name]!.options.numHeads! * 4, depth: 2, depthTokenOnly: 1, imgSize: 32, numClasses: 5 };
    case 'conv2former':
      return { dims: [8, 16, 16, 24], depths: [1, 1, 1, 1], numClasses: 5, dropPathRate: 0, headDim: 32 };
    case 'litv2':
      return { embedDim: 8, depths: [1, 1, 1, 1], numHeads: [1, 2, 4, 4], numClasses: 5, dropPathRate: 0 };
    case 'regionvit':
      if (name.includes('_w14')) return { embedDim: [8, 8, 16], numHeads: [1, 2], depth: [1, 1], kernelSizes: [14, 14], downsampling: ['c', 'sc'], mlpRatio: 2, numClasses: 5 };
      if (name === 'regionvit_nano') return { embedDim: [8, 8, 16, 32], numHeads: [1, 2, 2], depth: [1, 1, 1], mlpRatio: 2, numClasses: 5 };
      return { embedDim: [8, 8, 16, 32, 64], numHeads: [1, 2, 2, 4], depth: [1, 1, 1, 1], mlpRatio: 2, numClasses: 5 };
    case 'mrla': {
      const basic = (MRLA_CONFIGS as Record<string, { block?: string }>)[name]!.block === 'basic';
      return { layers: basic ? [2, 1, 1, 1] : [1, 1, 1, 1], stemWidth: 8, widths: [8, 8, 16, 16], dimPerhead: 8, expansion: basic ? undefined : 2, widthPerGroup: basic ? 64 : 32, numClasses: 5 };
    }
    default:
      throw new Error(`no small configuration for ${name} (architecture ${arch}): add one here`);
  }
}

describe('every registered variant: what --to-pytorch writes converts back and forth bit for bit', () => {
  const names = listModels('*');
  it('registers variants of all five architectures', () => {
    expect(new Set(names.map((n) => getModelCard(n).arch))).toEqual(new Set(['cait', 'conv2former', 'litv2', 'regionvit', 'mrla']));
  });

  it.each(names)('%s', async (name) => {
    const options = tinyOptions(name);
    const model = createModel(name, options);
    // A file as `vit convert` writes ours, with non-zero BatchNorm counters (as after PyTorch training).
    const counters: Record<string, number> = {};
    let i = 0;
    for (const k of model.stateEntries().keys()) if (k.endsWith('running_var')) counters[`${k.slice(0, -'running_var'.length)}num_batches_tracked`] = 1000 + i++;
    const ours0 = join(dir, `${name}.0.safetensors`);
    await saveModelWeights(model, ours0, { metadata: { model: name, options: JSON.stringify(options) }, batchCounters: counters });
    model.dispose();

    const p1 = join(dir, `${name}.1.pth`);
    const p1st = join(dir, `${name}.1.safetensors`);
    for (const out of [p1, p1st]) {
      const r = await vit('convert', ours0, '--to-pytorch', '--out', out);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
    }
    // PyTorch layout (safetensors keeps our metadata: the model and its options) → ours → .pth.
    const ours2 = join(dir, `${name}.2.safetensors`);
    const p2 = join(dir, `${name}.2.pth`);
    expect((await vit('convert', p1st, '--out', ours2)).code).toBe(0);
    const b = await vit('convert', ours2, '--to-pytorch', '--out', p2);
    expect(b.err).toBe('');
    expect(b.code).toBe(0);
    expectSamePth(p2, p1);
    const sd = pthStateDict(p1);
    for (const [k, n] of Object.entries(counters)) {
      expect(sd.get(k)!.dtype, k).toBe('I64');
      expect(sd.get(k)!.toRaw().data[0], k).toBe(n);
    }
    // The .pth and the safetensors file hold the same; ours came back unchanged.
    const st = await readSafetensorsFile(p1st);
    expect([...st.tensors.keys()].sort()).toEqual([...sd.keys()].sort());
    for (const [k, t] of sd) expect(Array.from(st.tensors.get(k)!.data), k).toEqual(Array.from(t.toRaw(k).data));
    const [a0, a2] = await Promise.all([loadSafetensorsFile(ours0), loadSafetensorsFile(ours2)]);
    try {
      expect([...a2.tensors.keys()]).toEqual([...a0.tensors.keys()]);
      for (const [k, t] of a0.tensors) expect(Array.from(a2.tensors.get(k)!.dataSync()), k).toEqual(Array.from(t.dataSync()));
      expect(JSON.parse(a2.metadata.num_batches_tracked ?? '{}')).toEqual(counters);
    } finally {
      for (const t of [...a0.tensors.values(), ...a2.tensors.values()]) t.dispose();
    }
    torchJobs.push({ exported: p2, original: p1 });
  });
});

describe('PyTorch accepts what we export', () => {
  it('torch.load(weights_only=True), equal to the original state dict, load_state_dict(strict=True) into the official model', async (ctx) => {
    const why = torchAvailable();
    if (why) {
      console.log(`skipped: ${why}; the torch check of exported .pth files needs python3 with torch`);
      ctx.skip();
      return;
    }
    expect(torchJobs.length).toBeGreaterThan(0);
    const r = await runProcess('python3', [join(HERE, '__fixtures__/torch_check.py')], {
      input: JSON.stringify(torchJobs),
      env: { ...process.env, REF_ROOT: join(REPO, '..', 'ref'), SHIM: join(REPO, '..', 'shared', 'perf', 'shim') },
    });
    const lines = r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { exported: string; loaded?: number; equal?: boolean; official?: string; error?: string });
    const errors = lines.filter((l) => l.error);
    expect(errors, r.stderr).toEqual([]);
    expect(r.status, r.stderr).toBe(0);
    expect(lines.length).toBe(torchJobs.length);
    expect(lines.every((l) => l.loaded! > 0 && l.equal === true)).toBe(true);
    const official = lines.filter((l) => l.official !== undefined);
    expect(official.length).toBe(torchJobs.filter((j) => j.golden).length);
    const strict = official.filter((l) => l.official === 'strict ok');
    const skipped = official.filter((l) => l.official !== 'strict ok');
    console.log(
      `torch ${lines.length} exported .pth files: weights_only load and equality ok; official load_state_dict(strict=True) ok for ${strict.length}` +
        (skipped.length ? `, skipped for ${skipped.length} (${[...new Set(skipped.map((l) => l.official))].join('; ')})` : ''),
    );
  });
});
