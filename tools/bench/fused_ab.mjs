#!/usr/bin/env node
// Interleaved A/B of our fused wasm kernels against the composed tfjs kernels they replace, in one
// process (old and new alternate, so a busy machine disturbs both alike): the kernels are
// unregistered for "old" and registered again for "new" (ops fall back to their composed form).
//
//   node tools/bench/fused_ab.mjs --ops [--rounds 15]
//   node tools/bench/fused_ab.mjs --model conv2former_n [--batch 8] [--size 224] [--rounds 5]
//                                 [--kernels VitLayerNorm,VitLayerNormGrad,…] [--no-train] [--no-forward]
//
// --ops: LayerNorm and training BatchNorm forward and backward (the composed functions of
// ops/norm.ts against the fused ones) on activation shapes of the 224-px and CIFAR models, ms per
// call (median and min over rounds, wall and CPU time; no read-back: wasm kernels are synchronous). --model: forward (eval) and training step (valueAndGrads + SGD) of a registered
// model. Runs one wasm thread unless VIT_WASM_THREADS says otherwise.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { archPackages, bundle, root } from './bundle.mjs';
import { modelSteps } from './steps.mjs';

const { values: opt } = parseArgs({
  options: {
    ops: { type: 'boolean', default: false },
    model: { type: 'string' },
    batch: { type: 'string', default: '8' },
    size: { type: 'string', default: '224' },
    rounds: { type: 'string' },
    kernels: { type: 'string', default: 'VitLayerNorm,VitLayerNormGrad,VitBatchNormTrain,VitBatchNormTrainGrad' },
    'no-train': { type: 'boolean', default: false },
    'no-forward': { type: 'boolean', default: false },
  },
});
if (!opt.ops && !opt.model) throw new Error('fused_ab: --ops or --model NAME');

const outfile = join(root, 'node_modules', '.cache', 'vit-bench', 'fused_ab.mjs');
await bundle({
  contents: [
    "import '@tensorflow/tfjs';",
    "export * as tf from '@tensorflow/tfjs-core';",
    "export { initBackend, createModel, valueAndGrads } from '@vit/core';",
    "export * as norm from './packages/core/src/ops/norm.ts';",
    ...archPackages().map((p) => `import '@vit/${p}';`),
  ].join('\n'),
  outfile,
});
const { tf, initBackend, createModel, valueAndGrads, norm } = await import(pathToFileURL(outfile).href);
await initBackend('wasm', { quiet: true, wasmThreads: Number(process.env.VIT_WASM_THREADS ?? 1) });

const sorted = (v) => [...v].sort((a, b) => a - b);
const median = (v) => {
  const s = sorted(v);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const names = opt.kernels.split(',');
const configs = names.map((n) => tf.getKernel(n, 'wasm'));
if (configs.some((k) => !k)) throw new Error(`fused_ab: not registered on wasm: ${names.filter((_, i) => !configs[i]).join(', ')}`);
/** In --ops mode the old/new choice goes to the step itself (it calls the composed or the fused functions). */
let setVariant = null;
function setFused(on) {
  if (setVariant) return setVariant(on ? 'new' : 'old');
  for (const [i, n] of names.entries()) {
    const k = tf.getKernel(n, 'wasm');
    if (on && !k) tf.registerKernel(configs[i]);
    if (!on && k) tf.unregisterKernel(n, 'wasm');
  }
}

/**
 * Runs old/new alternately (order swapped every round); returns ms per variant: wall time, and
 * the process's CPU time (user + system), which other processes on the same cores disturb far
 * less (the wasm backend runs one thread here, so CPU time is the run's own work).
 */
async function ab(rounds, step) {
  const t = { old: [], new: [], cpu: { old: [], new: [] } };
  for (const v of ['old', 'new']) {
    setFused(v === 'new');
    await step();
  }
  for (let r = 0; r < rounds; r++) {
    for (const v of r % 2 ? ['new', 'old'] : ['old', 'new']) {
      setFused(v === 'new');
      const [t0, c0] = [performance.now(), process.cpuUsage()];
      await step();
      const c = process.cpuUsage(c0);
      t[v].push(performance.now() - t0);
      t.cpu[v].push((c.user + c.system) / 1000);
    }
  }
  setFused(true);
  return t;
}

const line = (what, t) => {
  const [o, n] = [median(t.old), median(t.new)];
  const [co, cn] = [median(t.cpu.old), median(t.cpu.new)];
  const [om, nm] = [sorted(t.old)[0], sorted(t.new)[0]];
  console.log(`| ${what} | ${o.toFixed(1)} → ${n.toFixed(1)} | ${(o / n).toFixed(2)}× | ${(om / nm).toFixed(2)}× | ${co.toFixed(1)} → ${cn.toFixed(1)} | ${(co / cn).toFixed(2)}× |`);
  if (process.env.VIT_AB_RUNS) console.error(`  CPU ms, composed: ${t.cpu.old.map((x) => x.toFixed(0)).join(' ')}; fused: ${t.cpu.new.map((x) => x.toFixed(0)).join(' ')}`);
};
const HEAD = 'median ms composed → fused | ratio (median) | ratio (min) | CPU ms composed → fused (median) | CPU ratio |\n|---|---:|---:|---:|---:|---:|';

if (opt.ops) {
  const rounds = Number(opt.rounds ?? 15);
  console.log(`| op, shape | ${HEAD}`);
  const cases = [
    ['LayerNorm', [8, 56, 56, 64]],
    ['LayerNorm', [8, 3136, 64]],
    ['LayerNorm', [8, 14, 14, 256]],
    ['LayerNorm', [8, 196, 320]],
    ['BatchNorm', [32, 32, 32, 64]],
    ['BatchNorm', [32, 4, 4, 512]],
    ['BatchNorm', [8, 56, 56, 256]],
    ['BatchNorm', [8, 7, 7, 2048]],
  ];
  for (const [op, shape] of cases) {
    const c = shape.at(-1);
    const [x, dy] = [tf.randomNormal(shape), tf.randomNormal(shape)];
    const [g, b] = [tf.randomNormal([c]), tf.randomNormal([c])];
    const ln = op === 'LayerNorm';
    // The composed and the fused forward and backward functions the ops choose between.
    const [fwdOld, fwdNew] = ln ? [norm.layerNormForwardComposed, norm.layerNormForwardWasm] : [norm.batchNormForwardComposed, norm.batchNormForwardWasm];
    const [bwdOld, bwdNew] = ln ? [norm.layerNormBackwardComposed, norm.layerNormBackwardWasm] : [norm.batchNormBackwardComposed, norm.batchNormBackwardWasm];
    const eps = ln ? 1e-6 : 1e-5;
    const st = fwdNew(x, g, b, eps);
    const pick = (f, o) => () => tf.dispose(tf.tidy(() => (variant === 'new' ? f : o)()));
    let variant = 'old';
    const step = (fOld, fNew) => async () => pick(fNew, fOld)();
    setVariant = (v) => (variant = v);
    line(`${op} forward [${shape}]`, await ab(rounds, step(() => fwdOld(x, g, b, eps).y, () => fwdNew(x, g, b, eps).y)));
    const bwdArgs = ln ? (f) => f(dy, x, st.mean, st.rstd, g, true) : (f) => f(dy, x, st.mean, st.rstd, g);
    line(`${op} backward [${shape}]`, await ab(rounds, step(() => bwdArgs(bwdOld), () => bwdArgs(bwdNew))));
    setVariant = null;
    tf.dispose([st.y, st.mean, st.rstd, st.variance].filter(Boolean));
    tf.dispose([x, dy, g, b]);
  }
}

if (opt.model) {
  const rounds = Number(opt.rounds ?? 5);
  const [batch, size] = [Number(opt.batch), Number(opt.size)];
  const model = createModel(opt.model);
  const { forward, train } = modelSteps({ tf, valueAndGrads }, model, batch, size, 1e-6);
  console.log(`${opt.model}, batch ${batch}, ${size} px, ${rounds} rounds, kernels ${names.join(', ')}`);
  console.log(`| phase | ${HEAD}`);
  if (!opt['no-forward']) {
    model.eval();
    line('forward', await ab(rounds, forward));
  }
  if (!opt['no-train']) {
    model.train();
    line('training step', await ab(rounds, train));
  }
}
