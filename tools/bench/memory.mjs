#!/usr/bin/env node
// Where a training step's memory goes: runs one forward + backward of a registered model and, at
// the end of the forward pass (where autodiff holds the most), attributes every live tensor buffer
// to the kernel type that produced it and to the module whose forward produced it, and says which
// buffers the tape keeps for the backward pass. Also reports the step's peak (tf.profile).
//
//   node tools/bench/memory.mjs --model resnet18_mrlal_cifar [--batch 32] [--size 32] [--backend wasm]
//        [--depth 2] [--top 25] [--grad-checkpointing] [--json FILE]
//
// Bytes are distinct buffers (@vit/core trackBuffers), not tf.memory()'s per-tensor count.
// Buffers are counted once per data id (tfjs's clones and reshapes share data). "saved" = held by
// a tape node for the backward pass; "scope" = alive only because a tidy scope has not ended.
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { bundleVitTool } from './bundle.mjs';

const { values: opt } = parseArgs({
  options: {
    model: { type: 'string' },
    batch: { type: 'string', default: '8' },
    size: { type: 'string' },
    backend: { type: 'string', default: 'cpu' },
    depth: { type: 'string', default: '2' },
    top: { type: 'string', default: '25' },
    'grad-checkpointing': { type: 'boolean', default: false },
    engine: { type: 'string', default: 'vit' },
    'model-options': { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (opt.help || !opt.model) {
  console.error('usage: node tools/bench/memory.mjs --model NAME [--batch 8] [--size PX] [--backend cpu|wasm|tensorflow] [--depth 2] [--top 25] [--grad-checkpointing] [--json FILE]');
  process.exit(opt.help ? 0 : 2);
}

const outfile = await bundleVitTool('memory', ['initBackend', 'createModel', 'getModelCard', 'Module', 'valueAndGrads', 'trackBuffers']);
const vit = await import(pathToFileURL(outfile).href);
const { tf } = vit;
await vit.initBackend(opt.backend, { env: false, quiet: true });

const card = vit.getModelCard(opt.model);
const size = opt.size ? Number(opt.size) : card.inputSize[0];
const batch = Number(opt.batch);
const model = vit.createModel(opt.model, opt['model-options'] ? JSON.parse(opt['model-options']) : {});
if (opt['grad-checkpointing']) model.setGradCheckpointing(true);
model.train();
const depth = Number(opt.depth);

// Module paths: wrap every module's forward; tape nodes created while a forward is innermost belong to it.
const engine = tf.engine();
const stack = ['(top)'];
const nodeModule = new Map();
let seen = 0;
const claim = () => {
  const tape = engine.state.activeTape;
  if (!tape) return;
  for (; seen < tape.length; seen++) nodeModule.set(tape[seen], stack[stack.length - 1]);
};
for (const [name, m] of model.namedModules()) {
  const orig = m.forward;
  const path = name === '' ? '(model)' : name;
  m.forward = function (...args) {
    claim();
    stack.push(path);
    try {
      return orig.apply(this, args);
    } finally {
      claim();
      stack.pop();
    }
  };
}

const x = tf.randomNormal([batch, size, size, card.inputSize[2]], 0, 1, 'float32', 0);
const labels = tf.oneHot(tf.randomUniform([batch], 0, card.numClasses ?? 1000, 'int32', 1), card.numClasses ?? 1000);
const vars = model.parameters({ trainableOnly: true });
const bytesOf = (t) => t.size * (t.dtype === 'bool' ? 1 : 4);
const baseBytes = tf.memory().numBytes;
let snapshot;
const tracker = vit.trackBuffers();
const trackedBase = tracker.current;

const lossFn = () => {
  const logits = model.forward(x);
  const loss = tf.losses.softmaxCrossEntropy(labels, logits);
  claim();
  const tape = engine.state.activeTape ?? [];
  // Who produced each buffer, and which buffers the tape keeps.
  const producer = new Map();
  const saved = new Set();
  for (const node of tape) {
    // A customGrad op (our fused norms, GELU, attention; tfjs's fused conv/matMul) records its tidy scope's name.
    const kernel = node.kernelName === 'unnamed scope' ? 'fused op (customGrad)' : node.kernelName;
    for (const o of node.outputs ?? []) if (o && !producer.has(o.dataId)) producer.set(o.dataId, { kernel, module: nodeModule.get(node) ?? '(top)', shape: o.shape, bytes: bytesOf(o) });
    for (const s of node.saved ?? []) saved.add(s.dataId);
  }
  // Every live tensor buffer in the engine's registry (weights included; they are excluded below).
  const live = new Map();
  for (const t of Object.values(engine.state.registeredVariables)) live.set(t.dataId, 'variable');
  snapshot = { producer, saved, live, liveBytes: tracker.current, tapeNodes: tape.length };
  return loss;
};

{
  const { value, grads } = opt.engine === 'tfjs' ? tf.variableGrads(lossFn, vars) : vit.valueAndGrads(lossFn, vars);
  await value.data();
  tf.dispose([value, ...Object.values(grads)]);
}
const info = { peakBytes: tracker.peak - trackedBase + baseBytes };
tracker.stop();

const agg = (keyOf) => {
  const m = new Map();
  for (const [id, p] of snapshot.producer) {
    if (snapshot.live.get(id) === 'variable') continue;
    const k = keyOf(p);
    const e = m.get(k) ?? { key: k, saved: 0, count: 0 };
    if (snapshot.saved.has(id)) {
      e.saved += p.bytes;
      e.count++;
    }
    m.set(k, e);
  }
  return [...m.values()].filter((e) => e.saved > 0).sort((a, b) => b.saved - a.saved);
};
const trim = (path) => path.split('.').slice(0, depth).join('.');
const byKernel = agg((p) => p.kernel);
const byModule = agg((p) => trim(p.module));
const byLeaf = agg((p) => `${p.module.split('.').slice(-1)[0].replace(/^\d+$/, '#')} ${p.kernel}`);
const savedBytes = byKernel.reduce((s, e) => s + e.saved, 0);
const mb = (n) => (n / 2 ** 20).toFixed(1);
const top = Number(opt.top);

const out = {
  model: opt.model,
  backend: tf.getBackend(),
  batch,
  size,
  gradCheckpointing: !!opt['grad-checkpointing'],
  paramsMB: +mb(baseBytes),
  afterForwardMB: +mb(snapshot.liveBytes - trackedBase),
  savedForBackwardMB: +mb(savedBytes),
  stepPeakMB: +mb(info.peakBytes - baseBytes),
  tapeNodes: snapshot.tapeNodes,
  byKernel: byKernel.map((e) => ({ kernel: e.key, mb: +mb(e.saved), buffers: e.count })),
  byModule: byModule.map((e) => ({ module: e.key, mb: +mb(e.saved), buffers: e.count })),
};
console.log(`${opt.model} batch ${batch} ${size}px on ${out.backend}, ${opt.engine === 'tfjs' ? "tfjs's tf.variableGrads" : 'valueAndGrads'}${out.gradCheckpointing ? ' (grad checkpointing)' : ''}`);
console.log(`  weights ${out.paramsMB} MB; after forward +${out.afterForwardMB} MB live, ${out.savedForBackwardMB} MB of it saved for backward; step peak +${out.stepPeakMB} MB (over weights); ${out.tapeNodes} tape nodes`);
console.log('\n  saved for backward, by producing kernel:');
for (const e of byKernel.slice(0, top)) console.log(`    ${e.key.padEnd(32)} ${mb(e.saved).padStart(9)} MB  ${String(e.count).padStart(5)} buffers`);
console.log(`\n  by module (depth ${depth}):`);
for (const e of byModule.slice(0, top)) console.log(`    ${e.key.padEnd(32)} ${mb(e.saved).padStart(9)} MB  ${String(e.count).padStart(5)} buffers`);
console.log('\n  by leaf module × kernel:');
for (const e of byLeaf.slice(0, top)) console.log(`    ${e.key.padEnd(40)} ${mb(e.saved).padStart(9)} MB  ${String(e.count).padStart(5)} buffers`);
if (opt.json) writeFileSync(opt.json, `${JSON.stringify(out, null, 2)}\n`);
