import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTestBackend } from '../testing/backend.js';
import { loadModelWeights } from '../weights/io.js';
import { AdamW } from '../optim/index.js';
import { TinyMlp } from './__fixtures__/toy.js';
import { loadCheckpoint, resolveCheckpointDir, saveCheckpoint, type CheckpointStage } from './index.js';

let root: string;
let child: string;

beforeAll(async () => {
  await setTestBackend();
  root = mkdtempSync(join(tmpdir(), 'vit-ckpt-'));
  // The child runs our TypeScript sources: bundle them (tfjs included) into one .mjs.
  const esbuild = await import('esbuild');
  child = join(root, 'child.mjs');
  await esbuild.build({
    entryPoints: [fileURLToPath(new URL('./__fixtures__/checkpoint_child.ts', import.meta.url))],
    bundle: true,
    platform: 'node',
    format: 'esm',
    outfile: child,
    logLevel: 'silent',
    mainFields: ['module', 'main'],
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Versioned content: every weight = v, optimizer stepCount = v, trainer.json/config say v. */
function versioned(v: number) {
  const model = new TinyMlp(32, 8, 4);
  const opt = new AdamW(model, { lr: 0.1 });
  for (let i = 0; i < v; i++) tf.dispose(opt.minimize(() => tf.sum(tf.square(model.fc1.weight)) as tf.Scalar));
  for (const p of model.parameters()) tf.tidy(() => p.assign(tf.fill(p.shape, v)));
  return { model, optimizer: opt, trainer: { version: v }, config: { meta: { version: v } }, dispose: () => (model.dispose(), opt.dispose()) };
}

/** Loads `dir` and returns its version after checking every part agrees. */
async function versionOf(dir: string): Promise<number> {
  const ck = await loadCheckpoint(dir);
  try {
    const v = (ck.trainer as { version: number }).version;
    expect(ck.config.meta).toEqual({ version: v });
    expect(ck.optimizer!.stepCount).toBe(v);
    for (const [k, t] of ck.weights) expect(Array.from(new Set(t.dataSync())), k).toEqual([v]);
    expect(Object.keys(ck.optimizer!.tensors).length).toBeGreaterThan(0);
    return v;
  } finally {
    ck.dispose();
  }
}

const siblings = (parent: string) => readdirSync(parent).filter((n) => n.startsWith('.'));

function runChild(args: string[], onLine?: (line: string, kill: () => void) => void): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const lines = out.split('\n');
      if (onLine) onLine(lines[lines.length - 2] ?? '', () => p.kill('SIGKILL'));
    });
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', (code, signal) => resolve({ code, signal, out }));
  });
}

describe('saveCheckpoint / loadCheckpoint', () => {
  it('round-trips weights (loadable by loadModelWeights), optimizer state, trainer JSON and config', async () => {
    const dir = join(root, 'plain', 'ck');
    const c = versioned(3);
    await saveCheckpoint(dir, c);
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors', 'optimizer.safetensors', 'trainer.json']);
    expect(await versionOf(dir)).toBe(3);
    const ck = await loadCheckpoint(dir);
    expect(ck.config).toMatchObject({ format: 'vit-checkpoint', formatVersion: 1, library: '@vit/core' });
    const opt2 = new AdamW(c.model, { lr: 0.1 });
    opt2.loadStateDict(ck.optimizer!);
    expect(opt2.stepCount).toBe(3);
    ck.dispose();
    opt2.dispose();
    const other = new TinyMlp(32, 8, 4);
    const r = await loadModelWeights(other, join(dir, 'model.safetensors'));
    expect(r.layout).toBe('ours');
    expect(Array.from(new Set(other.fc2.bias!.dataSync()))).toEqual([3]);
    other.dispose();
    c.dispose();
    expect(siblings(join(root, 'plain'))).toEqual([]);
  });

  it('refuses to replace a directory that is not a checkpoint, and reports a missing one', async () => {
    const dir = join(root, 'notmine');
    mkdirSync(dir);
    writeFileSync(join(dir, 'thesis.tex'), 'precious');
    const c = versioned(1);
    await expect(saveCheckpoint(dir, c)).rejects.toThrow(/Refusing to replace .*notmine.*not a vit-checkpoint directory/);
    expect(readdirSync(dir)).toEqual(['thesis.tex']);
    await expect(loadCheckpoint(join(root, 'nothing'))).rejects.toThrow(/No checkpoint at .*nothing/);
    c.dispose();
  });

  it('a save that fails at any stage leaves the previous checkpoint loadable', async () => {
    const stages: CheckpointStage[] = ['staging', 'weights-written', 'files-written', 'old-moved', 'new-installed'];
    for (const stage of stages) {
      const parent = join(root, `fail-${stage}`);
      const dir = join(parent, 'last');
      const v1 = versioned(1);
      await saveCheckpoint(dir, v1);
      v1.dispose();
      const v2 = versioned(2);
      const boom = saveCheckpoint(dir, v2, {
        onStage: (s) => {
          if (s === stage) throw new Error(`injected failure at ${s}`);
        },
      });
      await expect(boom).rejects.toThrow(`injected failure at ${stage}`);
      v2.dispose();
      // Before the new directory is in place the old one is what loads; after, the new one.
      expect(await versionOf(dir)).toBe(stage === 'new-installed' ? 2 : 1);
      // The next save recovers whatever the failure left and cleans the leftovers.
      const v3 = versioned(3);
      await saveCheckpoint(dir, v3);
      v3.dispose();
      expect(await versionOf(dir)).toBe(3);
      expect(siblings(parent)).toEqual([]);
    }
  });

  it('SIGKILL of a child process at every stage of a save leaves a whole checkpoint (old or new)', async () => {
    const stages: CheckpointStage[] = ['staging', 'weights-written', 'files-written', 'old-moved', 'new-installed'];
    const results = await Promise.all(
      stages.map(async (stage) => {
        const parent = join(root, `kill-${stage}`);
        const r = await runChild([join(parent, 'last'), 'stage', stage]);
        return { stage, parent, r };
      }),
    );
    for (const { stage, parent, r } of results) {
      expect(r.signal, `${stage}: ${r.out}`).toBe('SIGKILL');
      const left = siblings(parent);
      // The crash leaves debris (.last.tmp-*, .last.old) that must not matter to readers.
      if (stage === 'old-moved') {
        expect(existsSync(join(parent, 'last'))).toBe(false);
        expect(await resolveCheckpointDir(join(parent, 'last'))).toBe(join(parent, '.last.old'));
      }
      expect(await versionOf(join(parent, 'last'))).toBe(stage === 'new-installed' ? 2 : 1);
      const v3 = versioned(3);
      await saveCheckpoint(join(parent, 'last'), v3);
      v3.dispose();
      expect(await versionOf(join(parent, 'last'))).toBe(3);
      expect(siblings(parent)).toEqual([]);
      if (stage !== 'new-installed') expect(left.length).toBeGreaterThan(0);
    }
  });

  it('SIGKILL at random moments of back-to-back saves never leaves a broken checkpoint', async () => {
    const parent = join(root, 'kill-random');
    const dir = join(parent, 'last');
    let start = 1;
    let midSave = 0;
    const delays = [0, 1, 3, 6];
    for (const delay of delays) {
      let lastSaved = 0;
      const r = await runChild([dir, 'loop', String(start)], (line, kill) => {
        const saved = /^saved (\d+)$/.exec(line);
        if (saved) lastSaved = Number(saved[1]);
        // Kill some milliseconds into the second save of this child.
        if (line === `begin ${start + 1}`) setTimeout(kill, delay);
      });
      expect(r.signal, r.out).toBe('SIGKILL');
      if (siblings(parent).length > 0) midSave += 1; // the kill hit a save: staging / .old debris
      const v = await versionOf(dir);
      // Whatever was reported saved is there, or the whole next version.
      expect(v).toBeGreaterThanOrEqual(lastSaved);
      expect(v).toBeLessThanOrEqual(start + 1);
      start = v + 1;
    }
    // Timing-dependent, so reported rather than asserted (the staged test above hits every stage).
    console.log(`random kills: ${midSave} of ${delays.length} landed inside a save`);
  });
});
