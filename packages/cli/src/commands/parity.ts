import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { formatParityRow, formatParitySummary, loadSafetensorsFile, runParity, type ParityResult } from '@vit/core';
import { JSON_OPTION, type Command } from '../command.js';
import { EXIT, UsageError } from '../exit-codes.js';
import { posNum } from '../flags.js';
import { BACKEND_OPTION, useBackend } from '../setup.js';

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

const DEFAULT_TOL = 1e-4;
const DEFAULT_GRAD_TOL = 1e-3;

export const parityCommand: Command = {
  name: 'parity',
  summary: 'Check a model against golden outputs of the official PyTorch code',
  usage: 'vit parity <golden.safetensors|dir…> [--backend <name>] [--json] [--tol X] [--grad-tol X] [--grad-checkpointing]',
  options: {
    backend: BACKEND_OPTION,
    json: JSON_OPTION,
    tol: { type: 'string', value: '<x>', description: `tolerance of logits and features: max|a−r| / max(1, max|r|) (default ${DEFAULT_TOL.toExponential()})` },
    'grad-tol': { type: 'string', value: '<x>', description: `tolerance of the input gradient, relative to its norm (default ${DEFAULT_GRAD_TOL.toExponential()})` },
    'grad-checkpointing': { type: 'boolean', description: 'build the model with activation checkpointing (the gradient must match as well)' },
  },
  help: [
    'Reads the golden\'s `arch` and `config` metadata, builds the model through that architecture\'s',
    'official adapter, loads the official state dict, runs golden.input and compares logits (eval and',
    'train), stage features and the input gradient. Prints one line per tensor and a last line',
    '`PASS|FAIL <arch>/<case> …` per file; exits 0 only if every file passes.',
    'GPU backends may need --tol 1e-3.',
    '--grad-checkpointing builds the model with activation checkpointing, so the input gradient comes',
    'through blocks recomputed in the backward pass (it must match as well).',
    '',
    'Examples:',
    '  vit parity ../shared/golden/cait/p8_d2.safetensors',
    '  vit parity packages/cait/test/fixtures --json',
  ].join('\n'),
  async run({ values, positionals }, io) {
    if (!positionals.length) throw new UsageError('expects at least one golden .safetensors file or folder');
    const tol = posNum(values.tol, 'tol') ?? DEFAULT_TOL;
    const gradTol = posNum(values['grad-tol'], 'grad-tol') ?? DEFAULT_GRAD_TOL;
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
