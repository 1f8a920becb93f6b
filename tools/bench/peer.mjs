#!/usr/bin/env node
// @vit against PyTorch on this machine, the same model, batch and input, interleaved
// (PyTorch, ours, PyTorch, ours…: this machine's speed drifts by 10–20% between runs), with the
// ratios the training-scale targets are stated in (docs/performance.md).
//
//   node tools/bench/peer.mjs [--specs resnet18_mrlal_cifar:32:32,conv2former_n_cifar:32:32]
//        [--backends wasm,tensorflow] [--rounds 2] [--runs 3] [--ref-root DIR] [--perf-dir DIR]
//        [--no-checkpointing | --checkpointing-backends wasm] [--no-forward] [--json FILE] [--md FILE]
//
// PyTorch side, each in its own process: ../shared/perf/torch_peer.py (forward and training-step
// images/s, `train_extra_mb`) and tools/bench/torch_memory.py (a fresh process: the bytes autograd
// saves and the peak RSS of two training steps over the built model). SPEC is name:batch:img as
// there; the official model classes need the official repositories under --ref-root
// (<owner>+<repo>, see ../shared/perf/README.md), the seeds' CIFAR models do not.
// Our side, each in its own process: @vit/core's benchmarkModel on each backend (SGD at lr 1e-3,
// as torch_peer), once plain and once with activation checkpointing. Memory: the peak of distinct
// tensor buffers a training step adds to what was alive before it (weights, input).
// Ratios are ours ÷ PyTorch: images/s (higher is better) and memory (lower is better).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const DEFAULT_SPECS = 'resnet18_mrlal_cifar:32:32,conv2former_n_cifar:32:32';

const { values: opt } = parseArgs({
  options: {
    specs: { type: 'string', default: DEFAULT_SPECS },
    backends: { type: 'string', default: 'wasm,tensorflow' },
    rounds: { type: 'string', default: '2' },
    runs: { type: 'string', default: '3' },
    threads: { type: 'string', default: String(os.availableParallelism?.() ?? os.cpus().length) },
    'ref-root': { type: 'string', default: resolve(repo, '..', 'ref') },
    'perf-dir': { type: 'string', default: resolve(repo, '..', 'shared', 'perf') },
    python: { type: 'string', default: process.env.PYTHON ?? 'python3' },
    'no-checkpointing': { type: 'boolean', default: false },
    'checkpointing-backends': { type: 'string' },
    'no-forward': { type: 'boolean', default: false },
    timeout: { type: 'string', default: '3600' },
    json: { type: 'string' },
    md: { type: 'string' },
    child: { type: 'string' },
    bundle: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (opt.help) {
  console.log(fileURLToPath(import.meta.url).replace(repo + '/', '') + ': see the comment at its top for options');
  process.exit(0);
}
const int = (name, s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`peer.mjs: --${name} must be a positive integer, got '${s}'`);
    process.exit(2);
  }
  return n;
};
const rounds = int('rounds', opt.rounds);
const runs = int('runs', opt.runs);

function parseSpec(s) {
  const m = /^([a-z0-9_]+):(\d+):(\d+)$/.exec(s.trim());
  if (!m) {
    console.error(`peer.mjs: a spec is name:batch:img (e.g. resnet18_mrlal_cifar:32:32), got '${s}'`);
    process.exit(2);
  }
  return { name: m[1], batch: Number(m[2]), img: Number(m[3]), spec: `${m[1]}:${m[2]}:${m[3]}` };
}

// ---------------------------------------------------------------------------------------------
// Child: one backend × spec × mode on our side

const emit = (o) => process.stdout.write(`@@VIT ${JSON.stringify(o)}\n`);

async function child() {
  const { backend, spec, checkpointing, forward } = JSON.parse(opt.child);
  const vit = await import(pathToFileURL(opt.bundle).href);
  try {
    await vit.initBackend(backend, { env: false, quiet: true });
  } catch (e) {
    emit({ type: 'skip', reason: String(e.message ?? e).split('\n')[0] });
    return;
  }
  const { name, batch, img } = parseSpec(spec);
  const model = vit.createModel(name);
  try {
    const r = await vit.benchmarkModel(model, { batchSize: batch, inputSize: img, runs, warmup: 1, forward, train: true, gradCheckpointing: checkpointing });
    emit({ type: 'result', ...r, heapBytes: vit.tf.backend().wasm?.HEAPU8?.buffer?.byteLength });
  } catch (e) {
    emit({ type: 'error', message: String(e.message ?? e).split('\n')[0] });
  } finally {
    model.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Parent

function run(cmd, args, env = {}) {
  return new Promise((res) => {
    const p = spawn(cmd, args, { env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2', OMP_WAIT_POLICY: 'PASSIVE', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), Number(opt.timeout) * 1000);
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err = (err + d).slice(-4000)));
    p.on('close', (code) => {
      clearTimeout(timer);
      res({ code, out, err });
    });
  });
}

async function torchPeer(spec) {
  const r = await run(opt.python, [join(opt['perf-dir'], 'torch_peer.py'), '--ref-root', opt['ref-root'], '--threads', opt.threads, '--runs', String(runs), `${spec}:train`]);
  const line = r.out.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) return { error: `torch_peer.py exited with ${r.code}: ${r.err.trim().split('\n').slice(-2).join(' | ')}` };
  return JSON.parse(line);
}

async function torchMemory(spec) {
  const r = await run(opt.python, [join(here, 'torch_memory.py'), '--ref-root', opt['ref-root'], '--perf-dir', opt['perf-dir'], '--threads', opt.threads, spec]);
  const line = r.out.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) return { error: `torch_memory.py exited with ${r.code}: ${r.err.trim().split('\n').slice(-2).join(' | ')}` };
  return JSON.parse(line);
}

async function ours(bundlePath, backend, spec, checkpointing, forward) {
  const r = await run(process.execPath, [fileURLToPath(import.meta.url), '--child', JSON.stringify({ backend, spec, checkpointing, forward }), '--bundle', bundlePath, '--runs', String(runs)]);
  const events = r.out
    .split('\n')
    .filter((l) => l.startsWith('@@VIT '))
    .map((l) => JSON.parse(l.slice(6)));
  const ev = events.find((e) => e.type === 'result' || e.type === 'skip' || e.type === 'error');
  if (!ev) return { type: 'error', message: `exited with ${r.code}: ${r.err.trim().split('\n').filter((l) => !/^\s+at /.test(l)).slice(-2).join(' | ')}` };
  return ev;
}

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return undefined;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const MB = 2 ** 20;
const f1 = (x) => (x === undefined ? '-' : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const ratio = (a, b) => (a === undefined || b === undefined || !b ? '-' : `${(a / b).toFixed(2)}×`);

async function main() {
  if (opt.child) return child();
  const specs = opt.specs.split(',').filter(Boolean).map(parseSpec);
  const backends = opt.backends.split(',').map((s) => s.trim()).filter(Boolean);
  const { bundleVitTool } = await import('./bundle.mjs');
  const bundlePath = await bundleVitTool('peer', ['initBackend', 'benchmarkModel', 'createModel']);
  if (!existsSync(join(opt['perf-dir'], 'torch_peer.py'))) {
    console.error(`peer.mjs: no torch_peer.py in ${opt['perf-dir']} (--perf-dir)`);
    process.exit(2);
  }
  const started = new Date();
  const rows = [];
  for (const s of specs) {
    const acc = { torch: [], torchMem: [], ours: {} };
    for (let round = 0; round < rounds; round++) {
      // A B A B: PyTorch, then ours on every backend, then again.
      const t = await torchPeer(s.spec);
      acc.torch.push(t);
      console.error(`[peer] ${s.spec} round ${round + 1}: torch ${t.error ?? `fwd ${t.fwd_img_s} img/s, train ${t.train_img_s} img/s, train_extra ${t.train_extra_mb} MB`}`);
      if (round === 0) {
        const m = await torchMemory(s.spec);
        acc.torchMem.push(m);
        console.error(`[peer] ${s.spec}: torch fresh process ${m.error ?? `saved ${m.saved_mb} MB, peak ${m.peak_extra_mb} MB`}`);
      }
      for (const b of backends) {
        const ckOn = !opt['no-checkpointing'] && (!opt['checkpointing-backends'] || opt['checkpointing-backends'].split(',').includes(b));
        for (const ck of ckOn ? [false, true] : [false]) {
          const key = `${b}${ck ? '+ckpt' : ''}`;
          const r = await ours(bundlePath, b, s.spec, ck, !ck && !opt['no-forward']);
          (acc.ours[key] ??= []).push(r);
          const msg =
            r.type === 'result'
              ? `${r.forward ? `fwd ${r.forward.imagesPerSec.toFixed(2)} img/s, ` : ''}train ${r.train.imagesPerSec.toFixed(2)} img/s, step ${(r.train.stepBytes / MB).toFixed(0)} MB`
              : `${r.type}: ${r.reason ?? r.message}`;
          console.error(`[peer] ${s.spec} round ${round + 1}: ${key} ${msg}`);
        }
      }
    }
    const tFwd = median(acc.torch.map((t) => t.fwd_img_s));
    const tTrain = median(acc.torch.map((t) => t.train_img_s));
    const tExtra = median(acc.torch.map((t) => t.train_extra_mb));
    const tm = acc.torchMem[0] ?? {};
    for (const [key, list] of Object.entries(acc.ours)) {
      const ok = list.filter((r) => r.type === 'result');
      const why = list.find((r) => r.type !== 'result');
      const fwd = median(ok.map((r) => r.forward?.imagesPerSec));
      const train = median(ok.map((r) => r.train.imagesPerSec));
      const stepMB = median(ok.map((r) => r.train.stepBytes / MB));
      rows.push({
        spec: s.spec,
        side: key,
        torch: { fwd: tFwd, train: tTrain, trainExtraMB: tExtra, savedMB: tm.saved_mb, freshPeakMB: tm.peak_extra_mb },
        ours: { fwd, train, stepMB, runs: ok.length, note: ok.length ? undefined : `${why?.type}: ${why?.reason ?? why?.message}` },
        ratios: {
          fwd: fwd && tFwd ? fwd / tFwd : undefined,
          train: train && tTrain ? train / tTrain : undefined,
          memVsTrainExtra: stepMB && tExtra ? stepMB / tExtra : undefined,
          memVsFreshPeak: stepMB && tm.peak_extra_mb ? stepMB / tm.peak_extra_mb : undefined,
        },
      });
    }
  }
  const head = ['model:batch:img', 'ours', 'PyTorch fwd/train img/s', 'ours fwd/train img/s', 'fwd ratio', 'train ratio', 'PyTorch MB (train_extra / fresh peak / saved)', 'ours step MB', 'memory vs train_extra', 'memory vs fresh peak'];
  const lines = rows.map((r) => [
    r.spec,
    r.side,
    `${f1(r.torch.fwd)} / ${f1(r.torch.train)}`,
    r.ours.note ?? `${f1(r.ours.fwd)} / ${f1(r.ours.train)}`,
    ratio(r.ours.fwd, r.torch.fwd),
    ratio(r.ours.train, r.torch.train),
    `${f1(r.torch.trainExtraMB)} / ${f1(r.torch.freshPeakMB)} / ${f1(r.torch.savedMB)}`,
    f1(r.ours.stepMB),
    ratio(r.ours.stepMB, r.torch.trainExtraMB),
    ratio(r.ours.stepMB, r.torch.freshPeakMB),
  ]);
  const md = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`, ...lines.map((l) => `| ${l.join(' | ')} |`)].join('\n');
  const meta = {
    date: started.toISOString(),
    host: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version, loadavgAtStart: os.loadavg().map((x) => +x.toFixed(2)) },
    settings: { rounds, runs, threads: opt.threads, backends, specs: specs.map((s) => s.spec) },
  };
  console.log(`\n${md}\n`);
  console.log(`  ${rounds} round(s) interleaved (PyTorch ${acc0(rows)}), medians; ${runs} timed runs per measurement after 1 warm-up; PyTorch ${opt.threads} threads; ratios are ours ÷ PyTorch`);
  const json = resolve(opt.json ?? join(repo, 'runs', 'bench', `peer-${started.toISOString().replace(/[:.]/g, '-')}.json`));
  mkdirSync(dirname(json), { recursive: true });
  writeFileSync(json, `${JSON.stringify({ ...meta, rows }, null, 2)}\n`);
  console.log(`  wrote ${json}`);
  if (opt.md) {
    mkdirSync(dirname(resolve(opt.md)), { recursive: true });
    writeFileSync(resolve(opt.md), `${md}\n`);
    console.log(`  wrote ${resolve(opt.md)}`);
  }
}

const acc0 = (rows) => (rows.length ? 'then ours on each backend' : 'no rows');

main().catch((e) => {
  console.error(e.stack ?? String(e));
  process.exit(1);
});
