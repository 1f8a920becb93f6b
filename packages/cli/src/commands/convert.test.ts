import '@tensorflow/tfjs';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import {
  VERSION,
  getArchitecture,
  loadModelWeights,
  loadPytorchStateDict,
  loadSafetensorsFile,
  modelCard,
  readSafetensorsFile,
  registerModel,
  type Module,
} from '@vit/core';
import { setTestBackend } from '@vit/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../main.js';

// Fixtures of @vit/core's reader tests: torch 1.13 checkpoints and the goldens they were saved from.
const FIX = fileURLToPath(new URL('../../../core/test/fixtures/', import.meta.url));
const C2F_GOLDEN = `${FIX}conv2former_k11_d16.safetensors`;
const CAIT_GOLDEN = `${FIX}cait_p8_d2.safetensors`;
const C2F_LEGACY = `${FIX}pth/conv2former_k11_d16_legacy.pth`;
const C2F_WRAPPED = `${FIX}pth/conv2former_k11_d16_wrapped.pth`;
const CAIT_MODULE = `${FIX}pth/cait_p8_d2_wrapped_module.pth`;
const CANARY = '/tmp/pwned_by_pth';

async function vit(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** The official kwargs a golden's metadata records. */
async function goldenConfig(file: string): Promise<{ arch: string; kwargs: Record<string, unknown>; sd: Map<string, tf.Tensor> }> {
  const g = await loadSafetensorsFile(file);
  const sd = new Map([...g.tensors].filter(([k]) => !k.startsWith('golden.')));
  for (const [k, t] of g.tensors) if (k.startsWith('golden.')) t.dispose();
  return { arch: g.metadata.arch!, kwargs: JSON.parse(g.metadata.config!) as Record<string, unknown>, sd };
}

/** A model with the golden's weights loaded through the public loader: the reference for converted files. */
function reference(arch: string, kwargs: Record<string, unknown>, sd: Map<string, tf.Tensor>): Module {
  const m = getArchitecture(arch).fromOfficialConfig(kwargs);
  loadPytorchStateDict(m, sd);
  return m;
}

function expectSameState(a: Module, b: Module, skip: (k: string) => boolean = () => false): void {
  const sa = a.stateDict();
  const sb = b.stateDict();
  expect(Object.keys(sa)).toEqual(Object.keys(sb));
  for (const k of Object.keys(sa)) {
    if (skip(k)) continue;
    expect(sa[k]!.shape, k).toEqual(sb[k]!.shape);
    expect(Array.from(sa[k]!.dataSync()), k).toEqual(Array.from(sb[k]!.dataSync()));
  }
}

describe('vit convert', () => {
  let dir = '';
  let c2f: Awaited<ReturnType<typeof goldenConfig>>;
  let baseline = 0;
  beforeAll(async () => {
    await setTestBackend();
    rmSync(CANARY, { force: true });
    dir = mkdtempSync(join(tmpdir(), 'vit-convert-'));
    c2f = await goldenConfig(C2F_GOLDEN);
    // A registered variant at the golden's size (the real ones are too big for a unit test); its
    // card says 1000 classes, the checkpoint has 10.
    registerModel(
      'c2ftoy_k11',
      (o = {}) => getArchitecture('conv2former').fromOfficialConfig({ ...c2f.kwargs, num_classes: o.numClasses ?? 1000 }),
      modelCard({ name: 'c2ftoy_k11', arch: 'conv2former', inputSize: [32, 32, 3], firstConv: 'downsample_layers.0.0', classifier: 'pred' }),
    );
    baseline = tf.memory().numTensors;
  });
  afterAll(() => {
    expect(tf.memory().numTensors).toBe(baseline);
    for (const t of c2f.sd.values()) t.dispose();
    rmSync(dir, { recursive: true, force: true });
    expect(existsSync(CANARY)).toBe(false);
  });

  it('is listed, and its help has examples', async () => {
    expect((await vit('--help')).out).toMatch(/convert\s+Convert an official PyTorch checkpoint/);
    const h = await vit('convert', '--help');
    expect(h.code).toBe(0);
    expect(h.out).toMatch(/Examples:\n {2}vit convert/);
    expect(h.out).toMatch(/--no-strict/);
  });

  it('converts a legacy .pth from a golden config; the result loads to the same weights, and converts back to the official layout', async () => {
    const out = join(dir, 'k11.safetensors');
    const r = await vit('convert', C2F_LEGACY, '--config', C2F_GOLDEN, '--out', out);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Converted .*conv2former_k11_d16_legacy\.pth \(pth \(legacy\)\) → .*k11\.safetensors/);
    // Every official key but the BatchNorm counters (our BatchNorm keeps none: they go to the metadata).
    const counters = [...c2f.sd.keys()].filter((k) => k.endsWith('num_batches_tracked')).length;
    expect(counters).toBeGreaterThan(0);
    expect(r.out).toMatch(new RegExp(`wrote: {3}${c2f.sd.size - counters} tensors in our layout, [\\d,]+ parameters \\(read ${c2f.sd.size}\\)`));
    expect(r.out).toMatch(new RegExp(`kept: {4}${counters} num_batches_tracked counters in the metadata`));
    expect(r.out).toMatch(/dropped: nothing/);

    const ref = reference('conv2former', c2f.kwargs, c2f.sd);
    const got = getArchitecture('conv2former').fromOfficialConfig(c2f.kwargs);
    try {
      const res = await loadModelWeights(got, out);
      expect(res.layout).toBe('ours');
      expect(res.metadata).toMatchObject({ arch: 'conv2former', config: JSON.stringify(c2f.kwargs), library: '@vit/core', version: VERSION, source: 'conv2former_k11_d16_legacy.pth', layout: 'nhwc-vit' });
      expectSameState(got, ref);
    } finally {
      got.dispose();
      ref.dispose();
    }

    // Back to official keys and layouts, using only the file's own metadata.
    const back = join(dir, 'k11.pytorch.safetensors');
    const b = await vit('convert', out, '--to-pytorch', '--out', back);
    expect(b.code).toBe(0);
    const official = await loadSafetensorsFile(back);
    try {
      expect([...official.tensors.keys()].sort()).toEqual([...c2f.sd.keys()].sort());
      for (const [k, t] of c2f.sd) {
        // The counters too: kept in our file's metadata, written back as read (were 0 before).
        expect(official.tensors.get(k)!.shape, k).toEqual(t.shape);
        expect(Array.from(official.tensors.get(k)!.dataSync()), k).toEqual(Array.from(t.dataSync()));
      }
    } finally {
      for (const t of official.tensors.values()) t.dispose();
    }
  });

  it('reads wrapped checkpoints: the state dict entry, the module. prefix, the other entries', async () => {
    const j = await vit('convert', CAIT_MODULE, '--config', CAIT_GOLDEN, '--out', join(dir, 'cait.safetensors'), '--json');
    expect(j.code).toBe(0);
    expect(JSON.parse(j.out)).toMatchObject({ inputFormat: 'pth (zip)', stateDictKey: 'model', strippedPrefix: 'module.', arch: 'cait', numClasses: 10, tensorsRead: 80, droppedClassifier: [] });
    const w = await vit('convert', C2F_WRAPPED, '--arch', 'conv2former', '--config', JSON.stringify(c2f.kwargs), '--out', join(dir, 'w.safetensors'));
    expect(w.code).toBe(0);
    expect(w.out).toMatch(/state dict 'model'/);
    expect(w.out).toMatch(/checkpoint also holds: epoch=7, args=\{"lr":0\.001,"name":"x"\}/);
  });

  it("official files go through the architecture's checkpoint filter: CaiT at another resolution gets its position table resampled", async () => {
    const cait = await goldenConfig(CAIT_GOLDEN);
    try {
      const out = join(dir, 'cait48.safetensors');
      const r = await vit('convert', CAIT_MODULE, '--arch', 'cait', '--config', JSON.stringify({ ...cait.kwargs, img_size: 48 }), '--out', out, '--json');
      expect(r.code, r.err).toBe(0);
      expect(JSON.parse(r.out)).toMatchObject({ notes: ['pos_embed resampled (bilinear) from a 4x4 grid to 6x6'], droppedClassifier: [] });
      const { tensors } = await loadSafetensorsFile(out);
      expect(tensors.get('pos_embed')!.shape).toEqual([1, 36, cait.kwargs.embed_dim]);
      for (const t of tensors.values()) t.dispose();
    } finally {
      for (const t of cait.sd.values()) t.dispose();
    }
  });

  it('a registered model: the class count comes from the checkpoint, or the classifier is dropped for --num-classes', async () => {
    const out = join(dir, 'toy.safetensors');
    const r = await vit('convert', C2F_LEGACY, '--model', 'c2ftoy_k11', '--out', out);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/model: {3}c2ftoy_k11, 10 classes/);
    expect(r.out).toMatch(/note: {4}10 classes, from the checkpoint's pred\.weight \(the card's default is 1000\)/);
    const meta = (await readSafetensorsFile(out)).metadata;
    expect(meta).toMatchObject({ model: 'c2ftoy_k11', options: '{"numClasses":10}', arch: 'conv2former' });

    const three = join(dir, 'toy3.safetensors');
    const d = await vit('convert', C2F_LEGACY, '--model', 'c2ftoy_k11', '--num-classes', '3', '--out', three);
    expect(d.code).toBe(0);
    expect(d.out).toMatch(/dropped: the classifier pred\.weight \[10, 1280\], pred\.bias \[10\]: the checkpoint has 10 classes, the model 3/);
    const ref = reference('conv2former', c2f.kwargs, c2f.sd);
    const got = getArchitecture('conv2former').fromOfficialConfig({ ...c2f.kwargs, num_classes: 3 });
    try {
      await loadModelWeights(got, three);
      // Everything but the classifier is the checkpoint's.
      const sg = got.stateDict();
      const sr = ref.stateDict();
      for (const k of Object.keys(sr)) {
        if (k.startsWith('pred.')) continue;
        expect(Array.from(sg[k]!.dataSync()), k).toEqual(Array.from(sr[k]!.dataSync()));
      }
      expect(sg['pred.weight']!.shape).toEqual([1280, 3]);
    } finally {
      got.dispose();
      ref.dispose();
    }
  });

  it('refuses wrong keys with the full list (exit 3) and writes nothing; --no-strict loads what matches', async () => {
    const out = join(dir, 'wrong.safetensors');
    const wrong = await vit('convert', CAIT_MODULE, '--config', C2F_GOLDEN, '--arch', 'conv2former', '--out', out);
    expect(wrong.code).toBe(3);
    expect(wrong.err).toMatch(/does not fit conv2former/);
    expect(wrong.err).toMatch(/missing key: downsample_layers\.0\.0\.weight/);
    expect(wrong.err).toMatch(/unexpected key: cls_token/);
    // The hint says what --no-strict does instead of recommending it.
    expect(wrong.err).toMatch(/hint: check that --model \/ --arch --config match the checkpoint first; --no-strict only tolerates missing\/unexpected keys .*keeps its fresh random initialisation, and it refuses a result that fills less than 50% of the parameters \(--min-loaded\)/);
    expect(existsSync(out)).toBe(false);
    // --no-strict with a checkpoint of another architecture: nothing matches, nothing is written.
    const none = await vit('convert', CAIT_MODULE, '--config', C2F_GOLDEN, '--arch', 'conv2former', '--out', out, '--no-strict');
    expect(none.code).toBe(3);
    expect(none.err).toMatch(/it would have loaded 0 of \d+ tensors, 0\.0% of the parameters \(0 of [\d,]+ elements\), less than the minimum of 50\.0%/);
    expect(none.err).toMatch(/hint: check that the checkpoint was made for conv2former/);
    expect(existsSync(out)).toBe(false);

    // One more CaiT block than the checkpoint has.
    const cait = await goldenConfig(CAIT_GOLDEN);
    for (const t of cait.sd.values()) t.dispose();
    const deeper = JSON.stringify({ ...cait.kwargs, depth: 3 });
    const strict = await vit('convert', CAIT_MODULE, '--arch', 'cait', '--config', deeper, '--out', out);
    expect(strict.code).toBe(3);
    expect(strict.err).toMatch(/missing key: blocks\.2\.attn\.qkv\.weight/);
    const loose = await vit('convert', CAIT_MODULE, '--arch', 'cait', '--config', deeper, '--out', out, '--no-strict');
    expect(loose.code).toBe(0);
    expect(loose.out).toMatch(/loaded: {2}loaded \d+ of \d+ tensors, \d+\.\d% of the parameters .*\(--no-strict; at least 50% required\)/);
    expect(loose.out).toMatch(/not in the checkpoint \(left initialised, --no-strict\): blocks\.2\.gamma_1/);
    rmSync(out);
    // Six blocks more than the checkpoint has: under half of the parameters would load.
    const much = JSON.stringify({ ...cait.kwargs, depth: 12, depth_token_only: 6 });
    const mostly = await vit('convert', CAIT_MODULE, '--arch', 'cait', '--config', much, '--out', out, '--no-strict');
    expect(mostly.code).toBe(3);
    expect(mostly.err).toMatch(/it would have loaded (\d+) of (\d+) tensors, (\d+\.\d)% of the parameters/);
    const pct = Number(/(\d+\.\d)% of the parameters/.exec(mostly.err)![1]);
    expect(pct).toBeLessThan(50);
    expect(mostly.err).toMatch(new RegExp(`--min-loaded ${Math.floor(pct)}% accepts this much deliberately`));
    expect(existsSync(out)).toBe(false);
    const deliberate = await vit('convert', CAIT_MODULE, '--arch', 'cait', '--config', much, '--out', out, '--no-strict', '--min-loaded', `${Math.floor(pct)}%`);
    expect(deliberate.code).toBe(0);
    expect(deliberate.out).toMatch(new RegExp(`at least ${Math.floor(pct)}% required`));
    expect(existsSync(out)).toBe(true);

    // Official kwargs with another num_classes drop the classifier too.
    const seven = await vit('convert', CAIT_MODULE, '--arch', 'cait', '--config', JSON.stringify({ ...cait.kwargs, num_classes: 7 }), '--out', out);
    expect(seven.code).toBe(0);
    expect(seven.out).toMatch(/the classifier head\.weight \[10, 32\], head\.bias \[10\]: the checkpoint has 10 classes, the model 7/);
  });

  it('refuses malicious and broken files with exit 3, executing nothing', async () => {
    const out = join(dir, 'bad.safetensors');
    const exec = await vit('convert', `${FIX}pth/bad/exec_reduce.pth`, '--config', C2F_GOLDEN, '--out', out);
    expect(exec.code).toBe(3);
    expect(exec.err).toMatch(/exec_reduce\.pth: refusing global 'os\.system'/);
    const ns = await vit('convert', `${FIX}pth/bad/namespace_args.pth`, '--config', C2F_GOLDEN, '--out', out);
    expect(ns.code).toBe(3);
    expect(ns.err).toMatch(/'argparse\.Namespace'.*--lenient/);
    for (const f of ['not_a_zip.pth', 'truncated.pth', 'truncated_legacy.pth', 'bad_view_bounds.pth']) {
      const r = await vit('convert', `${FIX}pth/bad/${f}`, '--config', C2F_GOLDEN, '--out', out);
      expect(r.code, f).toBe(3);
      expect(r.err, f).toMatch(new RegExp(`${f.replace('.', '\\.')}: `));
    }
    expect((await vit('convert', join(dir, 'missing.pth'), '--config', C2F_GOLDEN, '--out', out)).code).toBe(3);
    // --lenient: unknown objects become inert placeholders; the os.system call is recorded, never made.
    // (Its 2-tensor state dict fills almost nothing of the model: --min-loaded 0 accepts that.)
    const lenient = await vit('convert', `${FIX}pth/bad/exec_reduce.pth`, '--config', C2F_GOLDEN, '--out', join(dir, 'lenient.safetensors'), '--lenient', '--no-strict', '--min-loaded', '0', '--json');
    expect(lenient.code).toBe(0);
    expect(JSON.parse(lenient.out)).toMatchObject({ stateDictKey: 'model', placeholders: ['os.system'], extra: { x: { __placeholder__: 'os.system', args: ['touch /tmp/pwned_by_pth'] } } });
    expect(existsSync(out)).toBe(false);
    expect(existsSync(CANARY)).toBe(false);
  });

  it('names a PyTorch checkpoint given as safetensors (by its magic bytes), exit 3', async () => {
    const disguised = join(dir, 'weights.safetensors');
    copyFileSync(C2F_WRAPPED, disguised);
    const out = join(dir, 'x.safetensors');
    // Read by its content, not its name.
    const ok = await vit('convert', disguised, '--arch', 'conv2former', '--config', JSON.stringify(c2f.kwargs), '--out', out);
    expect(ok.code).toBe(0);
    // Where a safetensors file is required (--config reads a golden's metadata), the format is named.
    const cfg = await vit('convert', C2F_LEGACY, '--config', disguised, '--arch', 'conv2former', '--out', join(dir, 'y.safetensors'));
    expect(cfg.code).toBe(3);
    expect(cfg.err).toMatch(/weights\.safetensors: a PyTorch checkpoint \(zip\), not safetensors: convert it with `vit convert`/);
  });

  it('usage errors exit 2: unknown models (with suggestions), contradictory or missing flags', async () => {
    const typo = await vit('convert', C2F_LEGACY, '--model', 'c2ftoy_k1');
    expect(typo.code).toBe(2);
    expect(typo.err).toMatch(/Unknown model 'c2ftoy_k1'\. Did you mean: c2ftoy_k11/);
    const arch = await vit('convert', C2F_LEGACY, '--arch', 'conv2formr', '--config', '{}');
    expect(arch.code).toBe(2);
    expect(arch.err).toMatch(/Unknown architecture 'conv2formr'\. Did you mean: conv2former/);
    const cases: Array<[string[], RegExp]> = [
      [[C2F_LEGACY], /needs --model <name>/],
      [[], /exactly one input/],
      [[C2F_LEGACY, '--model', 'c2ftoy_k11', '--strict', '--no-strict'], /contradict/],
      [[C2F_LEGACY, '--model', 'c2ftoy_k11', '--num-classes', '0'], /--num-classes expects a positive integer/],
      [[C2F_LEGACY, '--arch', 'conv2former'], /--arch needs --config/],
      [[C2F_LEGACY, '--arch', 'conv2former', '--config', '{oops'], /--config is not valid JSON/],
      [[C2F_LEGACY, '--arch', 'conv2former', '--config', '{"kernel_size": 4}'], /kernel_size=4/],
      [[C2F_LEGACY, '--model', 'c2ftoy_k11', '--arch', 'conv2former'], /either --model/],
      [[C2F_GOLDEN, '--model', 'c2ftoy_k11', '--key', 'model'], /--key applies to \.pth checkpoints only/],
      [[C2F_LEGACY, '--model', 'c2ftoy_k11', '--out', C2F_LEGACY], /--out must differ/],
      [[C2F_LEGACY, '--bogus'], /Unknown option '--bogus'/],
      [[C2F_LEGACY, '--model', 'c2ftoy_k11', '--no-strict', '--min-loaded', '1.5'], /--min-loaded expects a fraction 0–1 or a percentage/],
      [[C2F_LEGACY, '--model', 'c2ftoy_k11', '--no-strict', '--min-loaded', 'half'], /--min-loaded expects/],
      [[C2F_LEGACY, '--model', 'c2ftoy_k11', '--min-loaded', '0.2'], /--min-loaded applies to --no-strict loads/],
      [[C2F_LEGACY, '--model', 'c2ftoy_k11', '--dtype', 'F8'], /--dtype expects keep, F32, F16 or BF16/],
      [[C2F_LEGACY, '--model', 'c2ftoy_k11', '--out', '/tmp/x.pth'], /a \.pth\/\.pt\/\.bin output is a torch\.save file of the official layout; add --to-pytorch/],
    ];
    for (const [args, message] of cases) {
      const r = await vit('convert', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err, args.join(' ')).toMatch(message);
    }
  });
});
