import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { BackendError, initBackend, type InitBackendResult } from '../backend.js';
import { runWork, type WorkResult } from './__fixtures__/wasm_threads_work.js';
import { installedKernels } from './install.js';
import { wasmMemory } from './matmul_wasm.js';
import { dwConvFor, dwFilterFor } from './wasm_dwconv.js';
import { gemmFor } from './wasm_gemm.js';
import { colSumFor } from './wasm_reduce.js';
import { enableWasmThreads, wasmThreadsStatus } from './wasm_threads.js';
import { unaryFor } from './wasm_unary.js';

// This file's process runs wasm on the threaded build (2 threads). The single-threaded reference
// runs in a child process: tfjs has one 'wasm' backend per process, and its thread count is fixed
// when it initialises.

const cores = os.availableParallelism();
const TOL = 1e-6;

let init: InitBackendResult;

beforeAll(async () => {
  // env: false, so VIT_BACKEND / VIT_WASM_THREADS from the shell cannot change what is tested.
  init = await initBackend('wasm', { quiet: true, wasmThreads: 2, env: false });
});

/** CPU time (clock ticks) of each thread of this process, from /proc (Linux); null elsewhere. */
function threadTicks(): Map<string, number> | null {
  if (process.platform !== 'linux') return null;
  try {
    const ticks = new Map<string, number>();
    for (const tid of readdirSync('/proc/self/task')) {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      // Fields after the ")" closing the thread name: utime and stime are the 12th and 13th.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks.set(tid, Number(f[11]) + Number(f[12]));
    }
    return ticks;
  } catch {
    return null;
  }
}

interface ChildResult extends WorkResult {
  detail: string;
  wasmThreads: InitBackendResult['wasmThreads'];
  threads: number;
}

/**
 * Runs __fixtures__/wasm_threads_child.ts in a fresh Node process with `env` added: bundled by
 * esbuild (vite's own; the tfjs packages stay external) and fed to node on stdin. The process must
 * exit by itself.
 */
async function runChild(env: Record<string, string>): Promise<ChildResult> {
  const { build } = await import('esbuild');
  const entry = fileURLToPath(new URL('./__fixtures__/wasm_threads_child.ts', import.meta.url));
  const bundle = await build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', write: false, logLevel: 'silent' });
  const code = bundle.outputFiles[0]!.text;
  const cwd = fileURLToPath(new URL('../..', import.meta.url));
  const { VIT_BACKEND: _b, VIT_WASM_THREADS: _t, ...inherited } = process.env;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module'], { cwd, env: { ...inherited, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) reject(new Error(`child (${JSON.stringify(env)}) ended with ${signal ?? code}${signal ? ' (it did not exit by itself)' : ''}:\n${out}\n${err}`));
      else resolve(JSON.parse(line.slice('RESULT '.length)) as ChildResult);
    });
    child.stdin.end(code);
  });
}

function maxAbsDiff(a: number[], b: number[]): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('wasm on two threads (threaded SIMD build)', () => {
  if (cores < 2) console.warn(`skipping 'two threads compute at once': it needs 2 cores, os.availableParallelism() is ${cores}`);

  it('initBackend runs wasm on 2 threads and says so', () => {
    expect(init.backend).toBe('wasm');
    expect(getThreadsCount()).toBe(2);
    expect(init.wasmThreads).toEqual({ threads: 2, requested: 2 });
    expect(init.detail).toBe('tfjs-backend-wasm (SIMD, 2 threads)');
    expect(init.warnings).toEqual([]);
    const st = wasmThreadsStatus();
    expect(st.build).toBe('threaded-simd');
    // XNNPACK's pool: the main thread plus one pthread worker.
    expect(st.workers).toBe(1);
    expect(installedKernels('wasm').length).toBeGreaterThan(10);
  });

  it('its heap is shared memory and every one of our SIMD kernels builds on it', () => {
    const memory = wasmMemory(tf.backend());
    expect(memory).not.toBeNull();
    expect(memory!.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(gemmFor(memory!)).toBeTypeOf('function');
    expect(colSumFor(memory!)).toBeTypeOf('function');
    expect(unaryFor(memory!, 'exp')).toBeTypeOf('function');
    expect(unaryFor(memory!, 'erf')).toBeTypeOf('function');
    expect(dwConvFor(memory!, 16)).toBeTypeOf('function');
    expect(dwFilterFor(memory!, 16, 2)).toBeTypeOf('function');
  });

  it.skipIf(cores < 2)('two threads compute at once: a big matMul keeps two OS threads busy', async () => {
    const a = tf.randomUniform([1024, 1024], -1, 1, 'float32', 1);
    const b = tf.randomUniform([1024, 1024], -1, 1, 'float32', 2);
    const run = (n: number) => {
      for (let i = 0; i < n; i++) {
        const c = tf.matMul(a, b);
        c.dataSync();
        c.dispose();
      }
    };
    run(2);
    const ticks0 = threadTicks();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    run(12);
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const ticks1 = threadTicks();
    tf.dispose([a, b]);
    const ratio = (cpu.user + cpu.system) / 1000 / wall;
    if (ticks0 && ticks1) {
      // XNNPACK splits the product evenly, so the main thread and the pthread worker each get about
      // half of the CPU time, whatever else the machine is running.
      const busy = [...ticks1].map(([tid, t]) => t - (ticks0.get(tid) ?? 0)).sort((x, y) => y - x);
      console.log(`matMul 1024³ ×12: ${wall.toFixed(0)} ms wall, process CPU ${ratio.toFixed(2)}× wall; busiest threads (ticks): ${busy.slice(0, 4).join(', ')}`);
      expect(busy[0]!).toBeGreaterThanOrEqual(5);
      expect(busy[1]!).toBeGreaterThanOrEqual(0.4 * busy[0]!);
    } else {
      console.log(`matMul 1024³ ×12: ${wall.toFixed(0)} ms wall, process CPU ${ratio.toFixed(2)}× wall (no /proc: judged on the ratio)`);
      expect(ratio).toBeGreaterThan(1.3);
    }
  });

  it('a conv, matMuls and one SGD step of a small conv net leak no tensor', () => {
    const r = runWork();
    expect(r.tensors[1]).toBe(r.tensors[0]);
    expect(r.dataIds[1]).toBe(r.dataIds[0]);
  });

  it('results equal the single-threaded build (VIT_WASM_THREADS=1 in a child); a child on 2 threads exits by itself', async () => {
    const here = runWork();
    const [one, two] = await Promise.all([runChild({ VIT_WASM_THREADS: '1' }), runChild({ VIT_WASM_THREADS: '2' })]);
    // The env variable turns threads off, and initBackend says why.
    expect(one.threads).toBe(1);
    expect(one.detail).toBe('tfjs-backend-wasm (SIMD, 1 thread: VIT_WASM_THREADS=1)');
    expect(one.wasmThreads).toEqual({ threads: 1, requested: 1, reason: 'VIT_WASM_THREADS=1' });
    expect(two.threads).toBe(2);
    for (const name of Object.keys(here.outputs)) {
      expect(maxAbsDiff(here.outputs[name]!, one.outputs[name]!), `${name} vs 1 thread`).toBeLessThanOrEqual(TOL);
      expect(maxAbsDiff(two.outputs[name]!, one.outputs[name]!), `${name}, child on 2 threads vs 1 thread`).toBeLessThanOrEqual(TOL);
    }
    expect(one.tensors[1]).toBe(one.tensors[0]);
    expect(two.tensors[1]).toBe(two.tensors[0]);
  });

  it('heap views follow growth made outside the glue (as another thread would)', () => {
    const backend = tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } };
    const memory = wasmMemory(backend)!;
    const bytes = Math.max(memory.buffer.byteLength, 32 << 20);
    // Grow past what the next tensor needs, so its allocation lands beyond the views' length
    // without the glue growing (and re-viewing) the heap itself.
    memory.grow(Math.ceil((bytes + (16 << 20)) / 65536));
    expect(backend.wasm.HEAPU8.buffer.byteLength).toBeLessThan(memory.buffer.byteLength);
    const n = bytes / 4;
    const src = new Float32Array(n).map((_, i) => (i % 1000) / 1000);
    const x = tf.tensor1d(src);
    const y = tf.exp(x); // our SIMD kernel, on views it makes itself
    const xs = x.dataSync();
    const ys = y.dataSync();
    expect(xs[n - 1]).toBeCloseTo(src[n - 1]!, 6);
    expect(ys[n - 1]).toBeCloseTo(Math.exp(src[n - 1]!), 5);
    expect(backend.wasm.HEAPU8.buffer.byteLength).toBe(memory.buffer.byteLength);
    tf.dispose([x, y]);
  });

  it('the thread count is fixed once wasm is initialised; bad settings are refused', async () => {
    const r = await enableWasmThreads({ threads: 1 });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toMatch(/already initialised \(2 threads\)/);
    const again = await initBackend('wasm', { quiet: true, wasmThreads: 4, env: false });
    expect(again.detail).toBe('tfjs-backend-wasm (SIMD, 2 threads: the wasm backend was initialised before initBackend (its thread count is fixed then))');
    await expect(initBackend('wasm', { env: { VIT_WASM_THREADS: 'many' } })).rejects.toThrow(BackendError);
    await expect(initBackend('wasm', { wasmThreads: -1, env: false })).rejects.toThrow(/wasmThreads/);
    await expect(enableWasmThreads({ threads: 2.5 })).rejects.toThrow(BackendError);
  });
});
