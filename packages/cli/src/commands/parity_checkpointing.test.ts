import '@tensorflow/tfjs';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTestBackend } from '@vit/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { main } from '../main.js';
import '../setup.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const fixtureDirs = ['cait', 'conv2former', 'hilo', 'mrla', 'regionvit'].map((p) => join(root, p, 'test', 'fixtures'));

describe('golden parity with activation checkpointing on', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it('every official-code golden of the five architectures passes with the input gradient through recomputed blocks', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(['parity', ...fixtureDirs, '--grad-checkpointing', '--json', '--backend', process.env.VIT_TEST_BACKEND ?? 'cpu'], {
      out: (l) => out.push(l),
      err: (l) => err.push(l),
    });
    const results = JSON.parse(out.join('\n')) as Array<{ arch: string; case: string; pass: boolean; errors: string[]; rows: Array<{ key: string; pass: boolean }> }>;
    const expected = fixtureDirs.flatMap((d) => readdirSync(d).filter((f) => f.endsWith('.safetensors'))).length;
    expect(results).toHaveLength(expected);
    for (const r of results) {
      expect(r.errors, `${r.arch}/${r.case}`).toEqual([]);
      expect(r.rows.some((row) => row.key === 'golden.grad.input'), `${r.arch}/${r.case} has an input gradient`).toBe(true);
      expect(r.pass, `${r.arch}/${r.case}`).toBe(true);
    }
    expect(code, err.join('\n')).toBe(0);
  });
});
