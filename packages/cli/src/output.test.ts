import '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runProcess, setTestBackend, type ProcessResult } from '@vit/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { vit } from './__fixtures__/vit.js';
import { EXIT } from './exit-codes.js';

const root = fileURLToPath(new URL('..', import.meta.url));
/** Runs the real `vit` entry point (src/bin.ts through vite-node) in a shell, so pipes and stderr are real. */
function shell(command: string): Promise<ProcessResult> {
  const bin = `${join(root, '..', '..', 'node_modules', '.bin', 'vite-node')} -c vitest.config.ts src/bin.ts --`;
  return runProcess('bash', ['-o', 'pipefail', '-c', command.replaceAll('VIT', bin)], { cwd: root, timeout: 120_000 });
}

function hasTfjsNode(): boolean {
  try {
    return spawnSync(process.execPath, ['-e', "require.resolve('@tensorflow/tfjs-node')"], { cwd: root }).status === 0;
  } catch {
    return false;
  }
}

describe('what the CLI prints', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it('a mistyped flag gets the nearest flags; a negative number is a value, not an "ambiguous" flag', async () => {
    const typo = await vit('train', '--epoch', '3');
    expect(typo.code).toBe(EXIT.USAGE);
    expect(typo.err).toMatch(/^vit train: Unknown option '--epoch'\. Did you mean --epochs\?/);
    expect(typo.err).toMatch(/Run `vit train --help`/);
    expect((await vit('bench', '--modle', 'cait_nano')).err).toMatch(/Did you mean --model\?/);
    expect((await vit('models', '--zzzzzzzz')).err).not.toMatch(/Did you mean/);
    const negative = await vit('train', '--model', 'cait_nano', '--data', 'synthetic', '--epochs', '-1');
    expect(negative.code).toBe(EXIT.USAGE);
    expect(negative.err).toMatch(/--epochs expects a positive integer, got '-1'/);
    expect(negative.err).not.toMatch(/ambiguous/);
    expect((await vit('train', '--epochs')).err).toMatch(/--epochs needs a value/);
  });

  it('`vit models | head -1` ends quietly when the reader goes away', async () => {
    const r = await shell('VIT models | head -1');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/EPIPE|Error/);
  }, 120_000);

  it("no TensorFlow start-up log on the tensorflow backend (where tfjs-node is installed)", async (ctx) => {
    if (!hasTfjsNode()) {
      console.log('skipped: @tensorflow/tfjs-node is not installed here (optional peer)');
      ctx.skip();
    }
    const r = await shell('VIT summary cait_nano --backend tensorflow');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/cait_nano/);
    expect(r.stderr).not.toMatch(/cpu_feature_guard|absl::InitializeLog|rebuild TensorFlow|looks like you are running TensorFlow\.js/);
  }, 120_000);
});
