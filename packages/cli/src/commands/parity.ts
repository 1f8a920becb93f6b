import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { formatParityRow, formatParitySummary, loadSafetensorsFile, runParity, type ParityResult } from '@vit/core';
import type { Command } from '../main.js';
import { EXIT, UsageError } from '../exit-codes.js';
import { useBackend } from '../setup.js';

/** Files given, with folders expanded to the `.safetensors` files under them (sorted). */
function expand(paths: string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    if (statSync(p).isDirectory()) {
      const entries = readdirSync(p, { recursive: true, encoding: 'utf8' })
        .filter((f) => f.endsWith('.safetensors'))
        .sort();
      if (!entries.length) throw new UsageError(`no .safetensors files under ${p}`);
      out.push(...entries.map((f) => join(p, f)));
    } else out.push(p);
  }
  return out;
}

function tolerance(v: unknown, flag: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!(n > 0)) throw new UsageError(`--${flag} expects a positive number, got '${v}'`);
  return n;
}

export const parityCommand: Command = {
  name: 'parity',
  summary: 'Check a model against golden outputs of the official PyTorch code',
  usage: 'vit parity <golden.safetensors|dir…> [--backend cpu|wasm|webgpu|tensorflow] [--json] [--tol 1e-4] [--grad-tol 1e-3] [--grad-checkpointing]',
  options: { backend: { type: 'string' }, json: { type: 'boolean' }, tol: { type: 'string' }, 'grad-tol': { type: 'string' }, 'grad-checkpointing': { type: 'boolean' } },
  help: [
    'Reads the golden\'s `arch` and `config` metadata, builds the model through that architecture\'s',
    'official adapter, loads the official state dict, runs golden.input and compares logits (eval and',
    'train), stage features and the input gradient. Prints one line per tensor and a last line',
    '`PASS|FAIL <arch>/<case> …` per file; exits 0 only if every file passes.',
    'Defaults: --tol 1e-4 (max|a−r|/max(1,max|r|)), --grad-tol 1e-3 (norm-relative). GPU backends may need --tol 1e-3.',
    '--grad-checkpointing builds the model with activation checkpointing, so the input gradient comes',
    'through blocks recomputed in the backward pass (it must match as well).',
    '',
    'Examples:',
    '  vit parity ../shared/golden/cait/p8_d2.safetensors',
    '  vit parity packages/cait/test/fixtures --json',
  ].join('\n'),
  async run({ values, positionals }, io) {
    if (!positionals.length) throw new UsageError('expects at least one golden .safetensors file or folder');
    const tol = tolerance(values.tol, 'tol', 1e-4);
    const gradTol = tolerance(values['grad-tol'], 'grad-tol', 1e-3);
    const files = expand(positionals);
    const backend = await useBackend(values.backend);
    const results: Array<ParityResult & { file: string; backend: string }> = [];
    for (const file of files) {
      const golden = await loadSafetensorsFile(file);
      try {
        const res = runParity(golden, { tolerance: tol, gradTolerance: gradTol, gradCheckpointing: values['grad-checkpointing'] === true });
        results.push({ ...res, file, backend });
        if (!values.json) {
          io.out(`${file} (${backend})`);
          for (const r of res.rows) io.out(`  ${formatParityRow(r)}`);
          io.out(formatParitySummary(res));
        }
      } finally {
        for (const t of golden.tensors.values()) t.dispose();
      }
    }
    if (values.json) io.out(JSON.stringify(results.length === 1 ? results[0] : results, null, 2));
    return results.every((r) => r.pass) ? EXIT.OK : EXIT.FAILED;
  },
};
