#!/usr/bin/env node
// Model throughput and peak memory per registered model × backend, through @vit/core's
// `benchmarkModel` (median of timed runs after warm-up; peak tensor bytes from tf.profile).
//
//   node tools/bench/run.mjs [--models GLOB[,GLOB…]] [--backends cpu,wasm,tensorflow,webgpu]
//                            [--batch 8] [--size 224|HxW] [--runs 5] [--warmup 2] [--no-train]
//                            [--json FILE] [--md FILE] [--model-options JSON] [--max-phase-ms MS]
//
// Each backend × model runs in its own process (tfjs-node and Dawn take a process over; a wasm abort
// kills it); a backend that is not present is reported with the reason and skipped. Ratios are against the
// `tensorflow` backend (@tensorflow/tfjs-node, tools/provision-tfjs-node.mjs) of the same run.
// The @vit sources are bundled on the fly with esbuild, so nothing needs building. Default
// models: the smallest registered variant of each architecture (by the card's parameter count).
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const BACKENDS = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

const HELP = `tools/bench/run.mjs: forward and training-step throughput and peak memory per model × backend

  --models GLOBS        comma-separated globs of registered names (default: smallest variant of each architecture)
  --backends LIST       comma-separated, from ${BACKENDS.join(', ')} (default: all; absent ones are skipped with the reason)
  --batch N             images per step (default 8)
  --size S              input size, 224 or 160x224 (default: each model's card input size)
  --runs N              timed runs per phase; the median is reported (default 5)
  --warmup N            untimed runs before timing (default 2)
  --max-phase-ms MS     stop a phase's timed runs once this much time is spent (at least one run)
  --no-train            forward only        --no-forward   training step only
  --no-memory           skip the tf.profile run that measures peak tensor bytes
  --model-options JSON  options for createModel, e.g. '{"numClasses":10}'
  --json FILE           write the results (default runs/bench/bench-<time>.json)
  --md FILE             also write the table as Markdown
  --timeout S           limit per model × backend process, in seconds (default 3600)
  --list                print the models that would run and exit
  --bundle FILE         use a prebuilt bundle of the @vit sources (the GPU machine's runner passes one)
  -h, --help`;

const { values: opt } = parseArgs({
  options: {
    models: { type: 'string' },
    backends: { type: 'string' },
    batch: { type: 'string', default: '8' },
    size: { type: 'string' },
    runs: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    'max-phase-ms': { type: 'string' },
    'no-train': { type: 'boolean', default: false },
    'no-forward': { type: 'boolean', default: false },
    'no-memory': { type: 'boolean', default: false },
    'model-options': { type: 'string' },
    json: { type: 'string' },
    md: { type: 'string' },
    timeout: { type: 'string', default: '3600' },
    list: { type: 'boolean', default: false },
    bundle: { type: 'string' },
    child: { type: 'string' },
    'child-model': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

function usage(msg) {
  console.error(`tools/bench/run.mjs: ${msg}\n\n${HELP}`);
  process.exit(2);
}
const int = (name, s, min = 1) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < min) usage(`--${name} must be an integer ≥ ${min}, got '${s}'`);
  return n;
};

function parseSize(s) {
  if (s === undefined) return undefined;
  const m = /^(\d+)(?:x(\d+))?$/.exec(s);
  if (!m) usage(`--size must be N or HxW, got '${s}'`);
  return m[2] ? [Number(m[1]), Number(m[2])] : Number(m[1]);
}

const settings = {
  batchSize: int('batch', opt.batch),
  inputSize: parseSize(opt.size),
  runs: int('runs', opt.runs),
  warmup: int('warmup', opt.warmup, 0),
  maxPhaseMs: opt['max-phase-ms'] === undefined ? undefined : int('max-phase-ms', opt['max-phase-ms'], 0),
  train: !opt['no-train'],
  forward: !opt['no-forward'],
  memory: !opt['no-memory'],
};
let modelOptions = {};
if (opt['model-options']) {
  try {
    modelOptions = JSON.parse(opt['model-options']);
  } catch (e) {
    usage(`--model-options is not JSON: ${e.message}`);
  }
}

// -----------------------------------------------------------------------------------------------
// The bundle of @vit sources

async function makeBundle() {
  if (opt.bundle) return resolve(opt.bundle);
  const { archPackages, bundle } = await import('./bundle.mjs');
  const outfile = join(repo, 'node_modules', '.cache', 'vit-bench', 'bench.mjs');
  let pkgs = archPackages();
  for (;;) {
    const contents = [
      "import '@tensorflow/tfjs';",
      "export * as tf from '@tensorflow/tfjs-core';",
      "export { initBackend, benchmarkModel, createModel, listModels, getModelCard, formatBytes, VERSION } from '@vit/core';",
      ...pkgs.map((p) => `import '@vit/${p}';`),
    ].join('\n');
    try {
      await bundle({ contents, outfile });
      return outfile;
    } catch (e) {
      // A package that does not compile (work in progress) is left out, not the whole run.
      const bad = pkgs.filter((p) => (e.errors ?? []).some((x) => x.location?.file?.includes(`packages/${p}/`)));
      if (!bad.length) throw e;
      console.error(`[bench] leaving out ${bad.join(', ')}: ${e.errors[0].text} (${e.errors[0].location.file}:${e.errors[0].location.line})`);
      pkgs = pkgs.filter((p) => !bad.includes(p));
    }
  }
}

function selectModels(vit) {
  if (opt.models) {
    const names = vit.listModels(opt.models.split(',').map((s) => s.trim()).filter(Boolean));
    if (!names.length) usage(`--models '${opt.models}' matches no registered model (try --list with --models '*')`);
    return names;
  }
  const byArch = new Map();
  for (const name of vit.listModels('*')) {
    const card = vit.getModelCard(name);
    const best = byArch.get(card.arch);
    const size = card.paramCount ?? Infinity;
    if (!best || size < best.size) byArch.set(card.arch, { name, size });
  }
  return [...byArch.values()].map((v) => v.name).sort();
}

// -----------------------------------------------------------------------------------------------
// Child: one backend, every model

const emit = (o) => process.stdout.write(`@@VIT ${JSON.stringify(o)}\n`);

async function child(backend, bundlePath, only) {
  const vit = await import(pathToFileURL(bundlePath).href);
  let init;
  try {
    init = await vit.initBackend(backend, {
      env: false,
      quiet: true,
      allowSoftwareWebGPU: true,
      ...(process.env.VIT_WASM_PATHS ? { wasmPaths: process.env.VIT_WASM_PATHS } : {}),
    });
  } catch (e) {
    emit({ type: 'skip', backend, reason: String(e.message ?? e).split('\n')[0] });
    return;
  }
  emit({ type: 'backend', backend, detail: init.detail, kernels: init.kernels.length, tfjs: vit.tf.version_core });
  for (const name of only ? [only] : selectModels(vit)) {
    const card = vit.getModelCard(name);
    const inputSize = settings.inputSize ?? [card.inputSize[0], card.inputSize[1]];
    let model;
    try {
      model = vit.createModel(name, modelOptions);
      const r = await vit.benchmarkModel(model, { ...settings, inputSize, channels: card.inputSize[2] });
      emit({ type: 'result', backend, model: name, arch: card.arch, ...r });
    } catch (e) {
      emit({ type: 'error', backend, model: name, message: String(e.message ?? e).split('\n')[0] });
    } finally {
      model?.dispose();
    }
  }
}

// -----------------------------------------------------------------------------------------------
// Parent: run the backends, print the table, write JSON

// One process per backend × model: a wasm abort (out of memory: wasm32 has 4 GiB) or a GPU device
// loss then costs one row, not the rest of the backend's models.
function runChild(backend, bundlePath, model, quietBackend) {
  return new Promise((res) => {
    const events = [];
    const p = spawn(process.execPath, [fileURLToPath(import.meta.url), ...process.argv.slice(2).filter((a) => a !== '--list'), '--child', backend, '--child-model', model, '--bundle', bundlePath], {
      env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: process.env.TF_CPP_MIN_LOG_LEVEL ?? '2' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const timer = setTimeout(() => {
      events.push({ type: 'error', backend, model, message: `timed out after ${opt.timeout} s` });
      p.kill('SIGKILL');
    }, Number(opt.timeout) * 1000);
    let buf = '';
    let errTail = '';
    p.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.startsWith('@@VIT ')) continue;
        const ev = JSON.parse(line.slice(6));
        events.push(ev);
        if (ev.type === 'backend' && !quietBackend) console.error(`[bench] ${backend}: ${ev.detail}`);
        if (ev.type === 'skip') console.error(`[bench] ${backend}: skipped: ${ev.reason}`);
        if (ev.type === 'error') console.error(`[bench] ${backend} ${ev.model}: error: ${ev.message}`);
        if (ev.type === 'result') {
          const f = ev.forward ? `${ev.forward.imagesPerSec.toFixed(1)} img/s fwd` : '';
          const t = ev.train ? `${ev.train.imagesPerSec.toFixed(1)} img/s train` : '';
          console.error(`[bench] ${backend} ${ev.model}: ${[f, t].filter(Boolean).join(', ')}`);
        }
      }
    });
    p.stderr.on('data', (d) => {
      errTail = (errTail + d).slice(-2000);
    });
    p.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0 && !events.some((e) => e.type === 'skip' || e.type === 'error')) {
        const why = errTail.trim().split('\n').filter((l) => !/^\s+at /.test(l)).slice(-3).join(' | ');
        events.push({ type: 'error', backend, model, message: `process exited with ${code}: ${why}` });
        console.error(`[bench] ${backend} ${model}: process exited with ${code}: ${why}`);
      }
      res(events);
    });
  });
}

const fmt = (n, d = 1) => (n === undefined || !Number.isFinite(n) ? '-' : n >= 100 ? n.toFixed(0) : n < 1 ? n.toPrecision(2) : n.toFixed(d));
function mib(n) {
  return n === undefined ? '-' : `${(n / 2 ** 20).toFixed(n < 10 * 2 ** 20 ? 2 : 0)}`;
}

function table(results, skipped, meta) {
  const tf = new Map(results.filter((r) => r.backend === 'tensorflow').map((r) => [r.model, r]));
  const ratio = (r, phase) => {
    const ref = tf.get(r.model)?.[phase]?.imagesPerSec;
    const v = r[phase]?.imagesPerSec;
    return ref && v ? `${(v / ref).toFixed(v / ref < 0.1 ? 3 : 2)}×` : '-';
  };
  const head = ['model', 'backend', 'params', 'input', 'fwd img/s', 'train img/s', 'fwd ms', 'train ms', 'first fwd ms', 'peak fwd MiB', 'peak train MiB', 'fwd vs tf', 'train vs tf'];
  const rows = results.map((r) => [
    r.model,
    r.backend,
    `${(r.params / 1e6).toFixed(2)}M`,
    r.inputShape.join('×'),
    fmt(r.forward?.imagesPerSec),
    fmt(r.train?.imagesPerSec),
    fmt(r.forward?.medianMs),
    fmt(r.train?.medianMs),
    fmt(r.forward?.firstMs),
    mib(r.forward?.peakBytes),
    mib(r.train?.peakBytes),
    ratio(r, 'forward'),
    ratio(r, 'train'),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (i < 2 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join('  ');
  const text = [line(head), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)];
  const md = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
  const notes = [
    ...meta.backends.map((b) => `${b.backend}: ${b.detail}`),
    ...skipped.map((s) => `${s.backend}: skipped (${s.reason})`),
  ];
  return { text: text.join('\n'), md: md.join('\n'), notes };
}

async function main() {
  if (opt.child) return child(opt.child, opt.bundle, opt['child-model']);
  const bundlePath = await makeBundle();
  // Registering models creates no tensors: the parent can list them without a backend.
  const models = selectModels(await import(pathToFileURL(bundlePath).href));
  if (opt.list) {
    console.log(models.join('\n'));
    return;
  }
  const backends = (opt.backends ?? BACKENDS.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  for (const b of backends) if (!BACKENDS.includes(b)) usage(`unknown backend '${b}' (expected ${BACKENDS.join(', ')})`);
  const started = new Date();
  const results = [];
  const skipped = [];
  const errors = [];
  const meta = {
    date: started.toISOString(),
    host: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30), platform: `${process.platform}-${process.arch}`, node: process.version, loadavgAtStart: os.loadavg().map((x) => +x.toFixed(2)) },
    settings: { ...settings, modelOptions, models: opt.models ?? 'smallest per architecture' },
    backends: [],
  };
  for (const b of backends) {
    const t = Date.now();
    for (const model of models) {
      const events = await runChild(b, bundlePath, model, meta.backends.some((x) => x.backend === b));
      for (const e of events) {
        if (e.type === 'result') results.push(e);
        if (e.type === 'skip') skipped.push({ backend: e.backend, reason: e.reason });
        if (e.type === 'error') errors.push(e);
        if (e.type === 'backend' && !meta.backends.some((x) => x.backend === b)) meta.backends.push({ backend: e.backend, detail: e.detail, tfjs: e.tfjs, seconds: 0 });
      }
      // A backend that is not there is not there for the next model either.
      if (events.some((e) => e.type === 'skip')) break;
    }
    const m = meta.backends.find((x) => x.backend === b);
    if (m) m.seconds = Math.round((Date.now() - t) / 1000);
  }
  const { text, md, notes } = table(results, skipped, meta);
  console.log(`\n${text}\n`);
  for (const n of notes) console.log(`  ${n}`);
  for (const e of errors) console.log(`  ${e.backend} ${e.model}: error: ${e.message}`);
  console.log(`  host: ${meta.host.cpu}, ${meta.host.cores} cores, load average ${meta.host.loadavgAtStart.join(' ')} at start (other processes skew timings)`);
  console.log(`  batch ${settings.batchSize}, median of ${settings.runs} after ${settings.warmup} warm-up; peak = live tensor bytes (weights included) from tf.profile; vs tf = images/s ÷ tensorflow's`);
  const json = resolve(opt.json ?? join(repo, 'runs', 'bench', `bench-${started.toISOString().replace(/[:.]/g, '-')}.json`));
  mkdirSync(dirname(json), { recursive: true });
  writeFileSync(json, `${JSON.stringify({ ...meta, results, skipped, errors }, null, 2)}\n`);
  console.log(`  wrote ${json}`);
  if (opt.md) {
    mkdirSync(dirname(resolve(opt.md)), { recursive: true });
    writeFileSync(resolve(opt.md), `${md}\n\n${[...notes, ...errors.map((e) => `${e.backend} ${e.model}: error: ${e.message}`)].map((n) => `- ${n}`).join('\n')}\n`);
    console.log(`  wrote ${resolve(opt.md)}`);
  }
  if (!results.length) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e.stack ?? String(e));
  process.exit(1);
});
