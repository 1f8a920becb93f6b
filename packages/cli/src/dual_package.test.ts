// The dual-package hazard on the built packages (dist/, as users get them; vitest would alias
// @vit/* to the sources): a program that require()s @vit/cait gets the CommonJS build of
// @vit/core, and its own `import '@vit/core'` the ESM build. Both must see one registry and
// number TF.js variables from one counter.
import { fileURLToPath } from 'node:url';
import { runProcess } from '@vit/core/testing';
import { describe, expect, it } from 'vitest';

const cliDir = fileURLToPath(new URL('..', import.meta.url));

const script = `
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');
await tf.setBackend('cpu');
const cjsCore = require('@vit/core');
require('@vit/cait');
const esmCore = await import('@vit/core');
if (cjsCore === esmCore || typeof cjsCore.listModels !== 'function') throw new Error('expected two builds of @vit/core');
// Each build's first Module: with two counters both would be named vit_1_weight and TF.js throws.
const a = new cjsCore.Linear(2, 2);
const b = new esmCore.Linear(2, 2);
const model = esmCore.createModel('cait_nano');
const out = tf.tidy(() => model.eval().forward(tf.zeros([1, 32, 32, 3])));
console.log(JSON.stringify({
  esm: esmCore.listModels('cait_*'),
  cjs: cjsCore.listModels('cait_*'),
  esmArchitectures: esmCore.listArchitectures(),
  names: [a.stateDict().weight.name, b.stateDict().weight.name],
  out: out.shape,
}));
`;

describe('one registry for the CommonJS and ESM builds', () => {
  it("require('@vit/cait') registers models that ESM @vit/core lists and builds", async () => {
    const r = await runProcess(process.execPath, ['--input-type=module', '-e', script], { cwd: cliDir, timeout: 120_000 });
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.status).toBe(0);
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(res.esm.length).toBeGreaterThanOrEqual(11);
    expect(res.esm).toContain('cait_nano');
    expect(res.esm).toEqual(res.cjs);
    expect(res.esmArchitectures).toContain('cait');
    expect(new Set(res.names).size).toBe(2);
    expect(res.out).toEqual([1, 10]);
  });
});
