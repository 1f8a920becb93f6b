import '@tensorflow/tfjs';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { Linear, Module, loadSafetensorsFile, modelCard, registerModel, saveSafetensorsFile } from '@vit/core';
import { setTestBackend } from '@vit/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { microConv2Former as micro, testBackend as backend, vit } from './__fixtures__/vit.js';
import { EXIT } from './exit-codes.js';

/**
 * The exit-code contract (`vit --help`), command by command and error class by error class:
 * 2 usage (flags, unknown models, options a model does not take), 3 input files (missing,
 * unreadable, malformed: data, checkpoints, weights, images), 4 backend, 5 out of memory,
 * 1 a check that failed. Every case also checks that the message names the problem and that no
 * stack trace is printed. Interrupted training (130) is in train_resume.test.ts, a real wasm heap
 * running out in train_memory.test.ts.
 */

/** A model whose forward pass asks the backend for a 4.9e9-element tensor per image: a real allocation failure. */
class Huge extends Module {
  fc = this.register('fc', new Linear(3, 10));
  forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => tf.sum(tf.zeros([x.shape[0], 70_000, 70_000]), [2]).slice([0, 0], [-1, 10]) as tf.Tensor2D);
  }
}
registerModel('clitoy_huge', () => new Huge(), modelCard({ name: 'clitoy_huge', arch: 'clitoy', inputSize: [8, 8, 3], numClasses: 10, firstConv: 'fc', classifier: 'fc' }));

/** The same allocation in `forwardFeatures` of a model with the VisionModel methods Grad-CAM splits at. */
class HugeVision extends Huge {
  readonly featureInfo = [];
  forwardFeatures(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => tf.reshape(this.forward(x), [x.shape[0], 1, 1, 10]) as tf.Tensor4D);
  }
  forwardHead(f: tf.Tensor): tf.Tensor2D {
    return tf.reshape(f, [f.shape[0]!, 10]) as tf.Tensor2D;
  }
  forwardIntermediates(): tf.Tensor4D[] {
    return [];
  }
}
registerModel('clitoy_huge_vision', () => new HugeVision(), modelCard({ name: 'clitoy_huge_vision', arch: 'clitoy', inputSize: [8, 8, 3], numClasses: 10, firstConv: 'fc', classifier: 'fc' }));


type Case = { argv: (d: string) => string[]; code: number; err: RegExp; env?: Record<string, string>; after?: (d: string) => void };

const TABLE: Record<string, Record<string, Case>> = {
  models: {
    'unknown flag': { argv: () => ['models', '--bogus'], code: EXIT.USAGE, err: /Unknown option '--bogus'/ },
    'nothing matches (check failed)': { argv: () => ['models', 'nothing_*'], code: EXIT.FAILED, err: /No registered model matches nothing_\*/ },
  },
  summary: {
    'unknown flag': { argv: () => ['summary', 'cait_nano', '--bogus'], code: EXIT.USAGE, err: /Unknown option '--bogus'/ },
    'unknown model': { argv: () => ['summary', 'cait_nanno'], code: EXIT.USAGE, err: /Unknown model 'cait_nanno'.*cait_nano/ },
  },
  train: {
    'unknown flag': { argv: () => ['train', '--epoch', '1'], code: EXIT.USAGE, err: /Unknown option '--epoch'/ },
    'unknown model': { argv: (d) => ['train', '--model', 'resnet18_mrla_cifar', '--data', 'synthetic', '--out', join(d, 'r1')], code: EXIT.USAGE, err: /Unknown model 'resnet18_mrla_cifar'/ },
    'an option the model does not take, no run folder left': {
      argv: (d) => ['train', '--model', 'conv2former_n_cifar', '--model-opts', '{"dims":[8,16]}', '--data', 'synthetic', '--backend', backend, '--out', join(d, 'r2')],
      code: EXIT.USAGE,
      err: /dims/,
      after: (d) => expect(existsSync(join(d, 'r2'))).toBe(false),
    },
    'missing data folder': { argv: (d) => ['train', ...micro, '--data', `folder:${join(d, 'nowhere')}`, '--backend', backend, '--out', join(d, 'r3')], code: EXIT.INPUT, err: /Cannot read image folder .*nowhere/ },
    'missing IDX files': { argv: (d) => ['train', ...micro, '--data', `fashion-mnist:${join(d, 'nowhere')}`, '--backend', backend, '--out', join(d, 'r4')], code: EXIT.INPUT, err: /nowhere does not exist/ },
    'malformed IDX file': { argv: (d) => ['train', ...micro, '--data', `mnist:${join(d, 'idx')}`, '--backend', backend, '--out', join(d, 'r5')], code: EXIT.INPUT, err: /not an IDX file|bad IDX magic/ },
    'bad images in a folder: all listed, nothing written': {
      argv: (d) => ['train', ...micro, '--data', `folder:${join(d, 'imgs')}`, '--img-size', '8', '--backend', backend, '--out', join(d, 'r6')],
      code: EXIT.INPUT,
      err: /2 of 22 image files cannot be read.*\n {2}.*imgs\/a\/text\.jpg: cannot decode image.*\n {2}.*imgs\/b\/cut\.png: cannot decode image/s,
      after: (d) => expect(existsSync(join(d, 'r6'))).toBe(false),
    },
    'a weight larger than memory can hold': {
      argv: (d) => ['train', '--model', 'conv2former_n_cifar', '--model-opts', '{"dims":[5000000000,8,8,8],"depths":[1,1,1,1]}', '--data', 'synthetic', '--backend', backend, '--out', join(d, 'r7')],
      code: EXIT.MEMORY,
      err: /Out of memory: vit train/,
      after: (d) => expect(existsSync(join(d, 'r7'))).toBe(false),
    },
    'resume with a corrupt last/: points to best/': {
      argv: (d) => ['train', '--out', join(d, 'corrupt-run'), '--resume', '--backend', backend],
      code: EXIT.INPUT,
      err: /cannot resume from .*corrupt-run\/last: .*invalid JSON.*vit eval --checkpoint .*corrupt-run\/best/,
    },
  },
  eval: {
    'unknown flag': { argv: () => ['eval', '--checkpoints', 'x'], code: EXIT.USAGE, err: /Unknown option '--checkpoints'/ },
    'unknown model': { argv: () => ['eval', '--model', 'cait_nanno', '--data', 'synthetic'], code: EXIT.USAGE, err: /Unknown model 'cait_nanno'/ },
    'missing checkpoint': { argv: (d) => ['eval', '--checkpoint', join(d, 'nonexistent'), '--data', 'synthetic', '--backend', backend], code: EXIT.INPUT, err: /no such checkpoint: .*nonexistent/ },
    'a folder that is not a checkpoint': { argv: (d) => ['eval', '--checkpoint', join(d, 'idx'), '--data', 'synthetic', '--backend', backend], code: EXIT.INPUT, err: /is not a checkpoint/ },
    'config.json not JSON': { argv: (d) => ['eval', '--checkpoint', join(d, 'corrupt-run', 'last'), '--data', 'synthetic', '--backend', backend], code: EXIT.INPUT, err: /config\.json: invalid JSON/ },
    'config.json asking for depth 100000': { argv: (d) => ['eval', '--checkpoint', join(d, 'deep'), '--data', 'synthetic', '--backend', backend], code: EXIT.INPUT, err: /config\.json: cannot rebuild its model: .*asks for a model with more than [\d,]+ parameter and buffer elements/ },
    'missing data': { argv: (d) => ['eval', '--checkpoint', join(d, 'run'), '--data', `cifar10:${join(d, 'nowhere')}`, '--backend', backend], code: EXIT.INPUT, err: /CIFAR-10 path .*nowhere does not exist/ },
    'out of memory': { argv: () => ['eval', '--model', 'clitoy_huge', '--data', 'synthetic:20', '--batch-size', '4', '--backend', backend], code: EXIT.MEMORY, err: /Out of memory: evaluating clitoy_huge at batch size 4 did not fit/ },
  },
  predict: {
    'unknown flag': { argv: () => ['predict', '--topk', '3', 'x.png'], code: EXIT.USAGE, err: /Unknown option '--topk'/ },
    'missing image': { argv: (d) => ['predict', '--checkpoint', join(d, 'run'), join(d, 'none.png'), '--backend', backend], code: EXIT.INPUT, err: /no such image: .*none\.png/ },
    'a folder given as an image': { argv: (d) => ['predict', '--checkpoint', join(d, 'run'), join(d, 'imgs'), '--backend', backend], code: EXIT.INPUT, err: /imgs: a folder, not an image file/ },
    'corrupt image': { argv: (d) => ['predict', '--checkpoint', join(d, 'run'), join(d, 'imgs', 'b', 'cut.png'), '--backend', backend], code: EXIT.INPUT, err: /cut\.png: cannot decode image/ },
    'config.json asking for 100000-px images': { argv: (d) => ['predict', '--checkpoint', join(d, 'wide'), join(d, 'imgs', 'a', '0.png'), '--backend', backend], code: EXIT.INPUT, err: /config\.json: meta\.imgSize must be an integer in \[1, 2048\], got 100000/ },
    'out of memory': { argv: (d) => ['predict', '--model', 'clitoy_huge', join(d, 'imgs', 'a', '0.png'), '--backend', backend], code: EXIT.MEMORY, err: /Out of memory: predicting with clitoy_huge/ },
    'corrupt pretrained weights file': { argv: (d) => ['predict', '--model', 'cait_nano', '--weights-url', join(d, 'corrupt.pth'), join(d, 'imgs', 'a', '0.png'), '--backend', backend], code: EXIT.INPUT, err: /corrupt\.pth/ },
    'pretrained tag that does not exist': { argv: (d) => ['predict', '--model', 'conv2former_nano', '--pretrained', '--tag', 'in1k', join(d, 'imgs', 'a', '0.png')], code: EXIT.USAGE, err: /conv2former_nano has no pretrained tag 'in1k'.*fashion_mnist/ },
  },
  explain: {
    'unknown flag': { argv: () => ['explain', '--clas', '3', 'x.png'], code: EXIT.USAGE, err: /Unknown option '--clas'.*--class/ },
    'no image': { argv: (d) => ['explain', '--checkpoint', join(d, 'run'), '--backend', backend], code: EXIT.USAGE, err: /give at least one image file/ },
    'two images': { argv: (d) => ['explain', '--checkpoint', join(d, 'run'), join(d, 'imgs', 'a', '0.png'), join(d, 'imgs', 'a', '1.png')], code: EXIT.USAGE, err: /give one image, got 2/ },
    'unknown method': { argv: (d) => ['explain', '--checkpoint', join(d, 'run'), join(d, 'imgs', 'a', '0.png'), '--method', 'lime'], code: EXIT.USAGE, err: /--method expects auto, gradcam or rollout, got 'lime'/ },
    'class not an index': { argv: (d) => ['explain', '--checkpoint', join(d, 'run'), join(d, 'imgs', 'a', '0.png'), '--class', '-1'], code: EXIT.USAGE, err: /--class expects an integer ≥ 0, got '-1'/ },
    'class beyond the model': { argv: (d) => ['explain', '--checkpoint', join(d, 'run'), join(d, 'imgs', 'a', '0.png'), '--class', '10', '--backend', backend, '--out', join(d, 'o.png')], code: EXIT.USAGE, err: /classIndex must be an integer in \[0, 9\].*got 10/ },
    'rollout on a convolutional model': {
      argv: (d) => ['explain', '--checkpoint', join(d, 'run'), join(d, 'imgs', 'a', '0.png'), '--method', 'rollout', '--backend', backend, '--out', join(d, 'o.png')],
      code: EXIT.USAGE,
      err: /Conv2Former has no global attention maps to roll out: Conv2Former is convolutional/,
      after: (d) => expect(existsSync(join(d, 'o.png'))).toBe(false),
    },
    'alpha outside [0, 1]': { argv: (d) => ['explain', '--checkpoint', join(d, 'run'), join(d, 'imgs', 'a', '0.png'), '--alpha', '3'], code: EXIT.USAGE, err: /--alpha expects a number in \[0, 1\], got '3'/ },
    'out is the image itself': { argv: (d) => ['explain', '--checkpoint', join(d, 'run'), join(d, 'imgs', 'a', '0.png'), '--out', join(d, 'imgs', 'a', '0.png')], code: EXIT.USAGE, err: /would overwrite the image/ },
    'missing image': { argv: (d) => ['explain', '--checkpoint', join(d, 'run'), join(d, 'none.png'), '--backend', backend], code: EXIT.INPUT, err: /no such image: .*none\.png/ },
    'a folder given as an image': { argv: (d) => ['explain', '--checkpoint', join(d, 'run'), join(d, 'imgs'), '--backend', backend], code: EXIT.INPUT, err: /imgs: a folder, not an image file/ },
    'corrupt image': { argv: (d) => ['explain', '--checkpoint', join(d, 'run'), join(d, 'imgs', 'b', 'cut.png'), '--backend', backend, '--out', join(d, 'o.png')], code: EXIT.INPUT, err: /cut\.png: cannot decode image/ },
    'missing checkpoint': { argv: (d) => ['explain', '--checkpoint', join(d, 'nonexistent'), join(d, 'imgs', 'a', '0.png'), '--backend', backend], code: EXIT.INPUT, err: /no such checkpoint: .*nonexistent/ },
    'out of memory': { argv: (d) => ['explain', '--model', 'clitoy_huge_vision', join(d, 'imgs', 'a', '0.png'), '--backend', backend, '--out', join(d, 'o.png')], code: EXIT.MEMORY, err: /Out of memory: explaining with clitoy_huge_vision/ },
  },
  download: {
    'unknown flag': { argv: () => ['download', 'cait_nano', '--tags', 'x'], code: EXIT.USAGE, err: /Unknown option '--tags'.*--tag/ },
    'unknown model': { argv: () => ['download', 'cait_nanno'], code: EXIT.USAGE, err: /Unknown model 'cait_nanno'/ },
    'no published weights': { argv: () => ['download', 'resnet50_mrlal'], code: EXIT.USAGE, err: /resnet50_mrlal has no published pretrained weights/ },
    'offline, not cached': {
      argv: (d) => ['download', 'cait_xxs24_224', '--cache-dir', join(d, 'cache')],
      env: { VIT_OFFLINE: '1' },
      code: EXIT.INPUT,
      err: /XXS24_224\.pth is not in the cache .* refuses the network/,
      after: (d) => expect(existsSync(join(d, 'cache'))).toBe(false),
    },
  },
  bench: {
    'unknown flag': { argv: () => ['bench', '--model', 'cait_nano', '--batches', '2'], code: EXIT.USAGE, err: /Unknown option '--batches'/ },
    'unknown model': { argv: () => ['bench', '--model', 'cait_nanno'], code: EXIT.USAGE, err: /Unknown model 'cait_nanno'/ },
    'out of memory': { argv: () => ['bench', '--model', 'clitoy_huge', '--batch', '2', '--runs', '1', '--warmup', '0', '--backend', backend], code: EXIT.MEMORY, err: /Out of memory: benchmarking clitoy_huge at batch 2 did not fit.*Try: a smaller --batch/ },
    'backend unusable as configured': { argv: () => ['bench', '--model', 'cait_nano', '--backend', backend], env: { VIT_WASM_THREADS: 'many' }, code: EXIT.BACKEND, err: /VIT_WASM_THREADS: expected 'auto', a number of threads/ },
  },
  parity: {
    'missing golden': { argv: (d) => ['parity', join(d, 'none.safetensors')], code: EXIT.INPUT, err: /none\.safetensors/ },
    'corrupt golden': { argv: (d) => ['parity', join(d, 'corrupt.safetensors')], code: EXIT.INPUT, err: /corrupt\.safetensors/ },
  },
  convert: {
    'unknown model': { argv: (d) => ['convert', join(d, 'corrupt.pth'), '--model', 'cait_nanno', '--out', join(d, 'c.safetensors')], code: EXIT.USAGE, err: /Unknown model 'cait_nanno'/ },
    'missing checkpoint': { argv: (d) => ['convert', join(d, 'none.pth'), '--model', 'cait_nano', '--out', join(d, 'c.safetensors')], code: EXIT.INPUT, err: /none\.pth/ },
    'corrupt checkpoint': { argv: (d) => ['convert', join(d, 'corrupt.pth'), '--model', 'cait_nano', '--out', join(d, 'c.safetensors')], code: EXIT.INPUT, err: /corrupt\.pth/, after: (d) => expect(existsSync(join(d, 'c.safetensors'))).toBe(false) },
  },
};

describe('exit codes: every command × every error class', () => {
  let dir = '';
  beforeAll(async () => {
    await setTestBackend();
    dir = mkdtempSync(join(tmpdir(), 'vit-exit-'));
    // A real run, then checkpoints crafted from it.
    const run = await vit('train', ...micro, '--data', 'synthetic:20', '--img-size', '8', '--batch-size', '10', '--epochs', '1', '--no-plots', '--backend', backend, '--out', join(dir, 'run'));
    expect(run.code, run.err).toBe(0);
    const craft = (name: string, edit: (cfg: Record<string, unknown>) => void) => {
      cpSync(join(dir, 'run', 'final'), join(dir, name), { recursive: true });
      const file = join(dir, name, 'config.json');
      const cfg = JSON.parse(readFileSync(file, 'utf8'));
      edit(cfg);
      writeFileSync(file, JSON.stringify(cfg));
    };
    craft('deep', (c) => void ((c.modelOptions as Record<string, unknown>).depths = [1, 1, 100000, 1]));
    craft('wide', (c) => void ((c.meta as Record<string, unknown>).imgSize = 100000));
    cpSync(join(dir, 'run'), join(dir, 'corrupt-run'), { recursive: true });
    writeFileSync(join(dir, 'corrupt-run', 'last', 'config.json'), '{"format": "vit-checkpoint",');
    mkdirSync(join(dir, 'idx'));
    writeFileSync(join(dir, 'idx', 'train-images-idx3-ubyte'), 'not idx');
    for (const f of ['train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) writeFileSync(join(dir, 'idx', f), 'not idx');
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } }).png().toBuffer();
    for (const c of ['a', 'b']) {
      mkdirSync(join(dir, 'imgs', c), { recursive: true });
      for (let i = 0; i < 10; i++) writeFileSync(join(dir, 'imgs', c, `${i}.png`), png);
    }
    writeFileSync(join(dir, 'imgs', 'a', 'text.jpg'), 'a text file named .jpg');
    writeFileSync(join(dir, 'imgs', 'b', 'cut.png'), png.subarray(0, png.length - 20));
    writeFileSync(join(dir, 'corrupt.safetensors'), Buffer.from([1, 2, 3]));
    writeFileSync(join(dir, 'corrupt.pth'), Buffer.from([1, 2, 3]));
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const rows = Object.entries(TABLE).flatMap(([command, cases]) => Object.entries(cases).map(([what, c]) => ({ command, what, ...c })));
  it.each(rows)('$command: $what → $code', async ({ argv, code, err, env, after }) => {
    const saved = Object.fromEntries(Object.keys(env ?? {}).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    try {
      const before = tf.memory().numTensors;
      const r = await vit(...argv(dir));
      expect(r.code, `${r.out}\n${r.err}`).toBe(code);
      expect(r.err).toMatch(err);
      expect(r.err).not.toMatch(/^\s+at /m);
      after?.(dir);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }, 60_000);

  it('every command is in the table', async () => {
    const { commands } = await import('./main.js');
    expect(Object.keys(TABLE).sort()).toEqual(commands.map((c) => c.name).sort());
  });

  it('weights holding NaN: predict and eval still answer (exit 0) but warn, naming the tensors', async () => {
    const nan = join(dir, 'nan');
    cpSync(join(dir, 'run', 'final'), nan, { recursive: true });
    const file = join(nan, 'model.safetensors');
    const { tensors, metadata } = await loadSafetensorsFile(file);
    const [first] = [...tensors.keys()];
    const old = tensors.get(first!)!;
    tensors.set(first!, tf.fill(old.shape, NaN));
    old.dispose();
    await saveSafetensorsFile(file, tensors, metadata);
    tf.dispose([...tensors.values()]);
    const p = await vit('predict', '--checkpoint', nan, join(dir, 'imgs', 'a', '0.png'), '--backend', backend);
    expect(p.code, p.err).toBe(0);
    expect(p.err).toMatch(new RegExp(`warning: .*nan: 1 weight tensor\\(s\\) hold NaN or Inf \\(${first!.replaceAll('.', '\\.')}\\); the outputs will be meaningless`));
    const e = await vit('eval', '--checkpoint', nan, '--data', 'synthetic:20', '--backend', backend);
    expect(e.err).toMatch(/hold NaN or Inf/);
    const clean = await vit('predict', '--checkpoint', join(dir, 'run'), join(dir, 'imgs', 'a', '0.png'), '--backend', backend);
    expect(clean.err).not.toMatch(/warning/);
  }, 60_000);

  it('with --bad-images skip the bad files are left out, each named in a warning, and the run trains', async () => {
    const r = await vit('train', ...micro, '--data', `folder:${join(dir, 'imgs')}`, '--img-size', '8', '--batch-size', '6', '--epochs', '1', '--bad-images', 'skip', '--no-plots', '--backend', backend, '--out', join(dir, 'skip'));
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/warning: skipped .*imgs\/a\/text\.jpg: cannot decode image/);
    expect(r.err).toMatch(/warning: skipped .*imgs\/b\/cut\.png: cannot decode image/);
    expect(r.out).toMatch(/18 train \/ 2 val/);
    expect(JSON.parse(readFileSync(join(dir, 'skip', 'final', 'config.json'), 'utf8')).meta.cli['bad-images']).toBe('skip');
    expect((await vit('train', ...micro, '--data', 'synthetic', '--bad-images', 'ignore')).err).toMatch(/--bad-images expects error or skip, got 'ignore'/);
  }, 60_000);
});
