import * as tf from '@tensorflow/tfjs-core';
import { installNodeWebGPU, registerWebGPUBackend } from './backends/dawn.js';
import { probeWebGL } from './backends/webgl.js';
import { BackendError } from './backends/errors.js';
import { importByName, isNodeRuntime, nodeBuiltins } from './platform/index.js';
import { installGradientFixes } from './backends/gradients.js';
import { installCpuKernels, installWasmKernels } from './backends/install.js';
import { installTensorflowKernels, oneDnnRequested } from './backends/tensorflow_kernels.js';
import { disableWasmThreads, enableWasmThreads, guardWasmMalloc, initialisedThreads, MAX_WASM_THREADS, wasmThreadsStatus } from './backends/wasm_threads.js';

export { BackendError };

/** Backends the selector knows; `auto` tries them fastest first. */
export type BackendName = 'auto' | 'tensorflow' | 'wasm' | 'webgpu' | 'webgl' | 'cpu';
export type ConcreteBackend = Exclude<BackendName, 'auto'>;

/**
 * The order `auto` tries: libtensorflow (Node), a real GPU through WebGPU then WebGL (browsers),
 * XNNPACK in wasm, plain JS. A WebGPU or WebGL that renders on the CPU (SwiftShader, llvmpipe) is
 * passed over for wasm, which measured faster (docs/browser.md); such a WebGL is tried again before
 * cpu (faster than it), such a WebGPU never (slower than cpu).
 */
export const BACKEND_ORDER: readonly ConcreteBackend[] = ['tensorflow', 'webgpu', 'webgl', 'wasm', 'cpu'];

export interface InitBackendOptions {
  /** Silence the cpu backend's "install tfjs-node" banner and libtensorflow's start-up log (for CLIs that report their backend). */
  quiet?: boolean;
  /**
   * Accept a WebGPU adapter that is a CPU software renderer (llvmpipe, lavapipe, SwiftShader, or
   * `isFallbackAdapter`). Default: only when `webgpu` is asked for by name; in automatic mode such
   * an adapter is skipped because wasm is several times faster than it.
   */
  allowSoftwareWebGPU?: boolean;
  /**
   * Accept a WebGL renderer that runs on the CPU (SwiftShader, llvmpipe) ahead of wasm. Default:
   * only when `webgl` is asked for by name; in automatic mode it is tried after wasm, before cpu.
   */
  allowSoftwareWebGL?: boolean;
  /** Install our replacement kernels when the result is wasm, cpu or tensorflow (default true). */
  kernels?: boolean;
  /** Install the gradient fixes (default true; they are backend-independent). */
  gradientFixes?: boolean;
  /**
   * Where the wasm binaries (`tfjs-backend-wasm*.wasm`) are, as for tfjs's `setWasmPaths`: a folder
   * ending in `/`, or a map from file name to path. Default: the `dist/` folder of the
   * `@tensorflow/tfjs-backend-wasm` that resolves from here, which also works when this library
   * is bundled. `false` leaves tfjs's own lookup (and any `setWasmPaths` you made) alone.
   */
  wasmPaths?: string | Record<string, string> | false;
  /**
   * Threads for the wasm backend: `'auto'` (default) runs its threaded SIMD build on every core (at
   * most 8; see backends/wasm_threads.ts), a number that many, `1` the single-threaded build. The
   * env variable `VIT_WASM_THREADS` (`auto`, a number, `1`/`off`) overrides it. Threads are fixed
   * when the backend initialises: this has no effect once wasm is initialised.
   */
  wasmThreads?: number | 'auto';
  /** Where `VIT_BACKEND` and `VIT_WASM_THREADS` are read (default `process.env`); `false` ignores them. */
  env?: Record<string, string | undefined> | false;
}

export interface InitBackendResult {
  /** The backend now current. */
  backend: ConcreteBackend;
  /** What it is: the package or adapter behind it. */
  detail: string;
  /** Why each backend tried before it was passed over. */
  reasons: Partial<Record<ConcreteBackend, string>>;
  /** Where the preference came from. */
  source: 'argument' | 'env' | 'default';
  /** Our replacement kernels now registered for this backend (wasm, cpu, tensorflow). */
  kernels: string[];
  /** Kernel names whose gradients we registered. */
  gradients: string[];
  /** Things worth knowing that did not stop the choice. */
  warnings: string[];
  /** On wasm: the threads it runs, those asked for, and why fewer run when they do. */
  wasmThreads?: { threads: number; requested: number; reason?: string };
}

type Attempt =
  | { ok: true; detail: string; warnings?: string[]; wasmThreads?: InitBackendResult['wasmThreads'] }
  /** `fallback`: usable but slower than what comes next (a software renderer): `auto` tries it again before cpu. */
  | { ok: false; reason: string; fallback?: boolean };

interface Context {
  explicit: boolean;
  /** The second try of a backend passed over as slower (see `fallback`): a software renderer is taken now. */
  lastResort?: boolean;
  options: InitBackendOptions;
  /** Threads for wasm and where that came from (for the reason when it is 1). */
  wasmThreads: { threads: number | 'auto'; source: string };
}

const firstLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0]!.trim();
const notInstalled = (msg: string) => /Cannot find (package|module)|ERR_MODULE_NOT_FOUND|MODULE_NOT_FOUND|Could not resolve|Failed to load url/.test(msg);

async function importOptional(spec: string): Promise<{ ok: true; mod: unknown } | { ok: false; error: string; missing: boolean }> {
  try {
    return { ok: true, mod: await importByName(spec) };
  } catch (e) {
    const error = firstLine(e);
    return { ok: false, error, missing: notInstalled(error) && error.includes(spec) };
  }
}

// -----------------------------------------------------------------------------------------------

/** Where optional backends come from in a browser: @vit/core imports them by name, which only an import map resolves there. */
const IMPORT_IN_APP = (pkg: string) => `not registered: import '${pkg}' in the app (a browser resolves @vit/core's import of it by name only through an import map)`;

async function tryTensorflow(ctx: Context): Promise<Attempt> {
  if (!isNodeRuntime() && !tf.findBackendFactory('tensorflow')) return { ok: false, reason: 'libtensorflow (@tensorflow/tfjs-node) runs only in Node' };
  const specs = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];
  // libtensorflow logs its start-up (CPU features, absl) to stderr unless told not to; `quiet`
  // asks for no banners. A value the user set is kept.
  if (ctx.options.quiet && typeof process !== 'undefined' && process.env && process.env.TF_CPP_MIN_LOG_LEVEL === undefined) process.env.TF_CPP_MIN_LOG_LEVEL = '2';
  const problems: string[] = [];
  let loaded: string | undefined;
  if (!tf.findBackendFactory('tensorflow')) {
    for (const spec of specs) {
      const r = await importOptional(spec);
      if (r.ok) {
        loaded = spec;
        break;
      }
      if (!r.missing) problems.push(`${spec} failed to load: ${r.error}`);
    }
    if (!tf.findBackendFactory('tensorflow')) {
      if (loaded)
        return { ok: false, reason: `${loaded} loaded but registered its backend in another copy of @tensorflow/tfjs-core (install matching versions)` };
      return {
        ok: false,
        reason: problems.length
          ? problems.join('; ')
          : `not installed (install @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node; offline, build it against a local TensorFlow wheel)`,
      };
    }
  }
  if (!(await setBackendSafely('tensorflow'))) return { ok: false, reason: 'libtensorflow failed to initialise' };
  const gpu = (tf.backend() as unknown as { isUsingGpuDevice?: boolean }).isUsingGpuDevice;
  return { ok: true, detail: `${loaded ?? 'tfjs-node'}${gpu ? ' (CUDA)' : ' (CPU)'}${oneDnnRequested() ? ', oneDNN' : ''}` };
}

// On Linux without any GPU device node, WebGPU can only be a CPU rasterizer: skip without loading Dawn.
async function linuxHasNoGpuDevice(): Promise<boolean> {
  const node = nodeBuiltins();
  if (!node || process.platform !== 'linux') return false;
  try {
    const { fs } = node;
    const has = (dir: string, re: RegExp) => fs.existsSync(dir) && fs.readdirSync(dir).some((f) => re.test(f));
    return !(has('/dev/dri', /^renderD\d+$/) || has('/dev', /^(nvidia\d+|dxg|kfd)$/));
  } catch {
    return false;
  }
}

const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|softpipe|basic render/i;

async function tryWebGPU(ctx: Context): Promise<Attempt> {
  const allowSoftware = ctx.options.allowSoftwareWebGPU ?? ctx.explicit;
  const hasNavigatorGpu = Boolean((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu);
  if (!hasNavigatorGpu && !isNodeRuntime()) {
    return { ok: false, reason: 'this browser offers no WebGPU (no navigator.gpu: an older browser, a page that is not a secure context, or WebGPU turned off)' };
  }
  if (!hasNavigatorGpu && !allowSoftware && (await linuxHasNoGpuDevice())) {
    return { ok: false, reason: 'no GPU device (/dev/dri/renderD*, /dev/nvidia*, /dev/dxg): WebGPU would run on a CPU rasterizer, slower than wasm' };
  }
  const probe = await installNodeWebGPU();
  if (!probe.ok) return { ok: false, reason: probe.reason };
  const software = probe.software || SOFTWARE_ADAPTER.test(probe.adapter);
  if (software && !allowSoftware) {
    // Not even a fallback: Chromium's SwiftShader WebGPU ran every nano model slower than the cpu backend (docs/browser.md).
    return { ok: false, reason: `the only adapter is a CPU software renderer (${probe.adapter}), slower than wasm; ask for 'webgpu' by name to use it anyway` };
  }
  const reg = await registerWebGPUBackend();
  if (!reg.ok) return { ok: false, reason: reg.reason };
  if (!(await setBackendSafely('webgpu'))) return { ok: false, reason: `the webgpu backend did not initialise on ${probe.adapter}` };
  const how = probe.backend === 'navigator' ? 'navigator.gpu' : `Dawn ${probe.backend}`;
  return {
    ok: true,
    detail: `${probe.adapter} via ${how}${probe.featureLevel === 'compatibility' ? ', compatibility mode' : ''}${software ? ', software' : ''}`,
  };
}

async function tryWebGL(ctx: Context): Promise<Attempt> {
  if (isNodeRuntime()) return { ok: false, reason: 'a browser backend: Node has no WebGL (use tensorflow, webgpu through Dawn, or wasm)' };
  const probe = probeWebGL();
  if (!probe.ok) return { ok: false, reason: probe.reason };
  const allowSoftware = ctx.options.allowSoftwareWebGL ?? (ctx.explicit || ctx.lastResort === true);
  if (probe.software && !allowSoftware) {
    return {
      ok: false,
      reason: `the renderer runs on the CPU (${probe.renderer}), slower than wasm; ask for 'webgl' by name to use it anyway`,
      fallback: ctx.options.allowSoftwareWebGL === undefined,
    };
  }
  if (!tf.findBackendFactory('webgl')) {
    const r = await importOptional('@tensorflow/tfjs-backend-webgl');
    if (!tf.findBackendFactory('webgl')) {
      return { ok: false, reason: r.ok ? '@tensorflow/tfjs-backend-webgl loaded but registered its backend in another copy of @tensorflow/tfjs-core' : IMPORT_IN_APP('@tensorflow/tfjs-backend-webgl') };
    }
  }
  if (!(await setBackendSafely('webgl'))) return { ok: false, reason: `the webgl backend did not initialise on ${probe.renderer}` };
  // tfjs falls back to float16 textures where float32 cannot be rendered (many phones).
  const float32 = tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED');
  const warnings = float32
    ? []
    : [`WebGL here renders float16 only (${probe.renderer}): outputs differ from float32 by about 1e-3 relative, and training is unreliable; prefer wasm for training`];
  if (probe.software && ctx.lastResort) warnings.push(`WebGL runs on the CPU here (${probe.renderer}): chosen because wasm was unavailable`);
  return {
    ok: true,
    detail: `${probe.renderer} (WebGL ${probe.version}${probe.software ? ', software' : ''}${float32 ? '' : ', float16'})`,
    warnings,
  };
}

interface WasmModule {
  setWasmPaths?: (prefixOrFileMap: string | Record<string, string>, usePlatformFetch?: boolean) => void;
  getThreadsCount?: () => number;
}

/** The folder tfjs-backend-wasm's binaries are in, as this module resolves the package. */
async function locateWasmBinaries(): Promise<string | undefined> {
  const node = nodeBuiltins();
  if (!node) return undefined;
  try {
    const { path, fs } = node;
    const main = node.require.resolve('@tensorflow/tfjs-backend-wasm');
    const dir = path.dirname(main);
    return fs.existsSync(path.join(dir, 'tfjs-backend-wasm-simd.wasm')) ? dir + path.sep : undefined;
  } catch {
    return undefined;
  }
}

/** The threaded binary where `wasmPaths` puts the binaries, if it says. */
function threadedWasmPath(paths: InitBackendOptions['wasmPaths']): string | undefined {
  const name = 'tfjs-backend-wasm-threaded-simd.wasm';
  if (typeof paths === 'string') return paths + name;
  if (paths && typeof paths === 'object') return paths[name];
  return undefined;
}

/**
 * Arms (or disarms) the threaded wasm build before the backend initialises; returns why it will
 * run one thread when it will.
 */
async function prepareWasmThreads(ctx: Context): Promise<string | undefined> {
  const { threads, source } = ctx.wasmThreads;
  if (threads === 1) {
    disableWasmThreads();
    return source;
  }
  const r = await enableWasmThreads({ threads, wasmPath: threadedWasmPath(ctx.options.wasmPaths) });
  return r.ok ? undefined : r.reason;
}

async function tryWasm(ctx: Context): Promise<Attempt> {
  let mod: WasmModule | undefined;
  const engine = tf.engine() as unknown as { registry: Record<string, unknown> };
  const registered = Boolean(tf.findBackendFactory('wasm'));
  if (!registered || ctx.options.wasmPaths !== false) {
    // Also when registered already: its module gives setWasmPaths. (A bundle that includes the
    // backend may not be able to import it by name; then tfjs's own lookup has to do.)
    const r = await importOptional('@tensorflow/tfjs-backend-wasm');
    if (r.ok) mod = r.mod as WasmModule;
    else if (!registered) {
      if (!isNodeRuntime()) return { ok: false, reason: IMPORT_IN_APP('@tensorflow/tfjs-backend-wasm') };
      return {
        ok: false,
        reason: r.missing ? 'not installed (install @tensorflow/tfjs-backend-wasm)' : `@tensorflow/tfjs-backend-wasm failed to load: ${r.error}`,
      };
    }
  }
  if (!tf.findBackendFactory('wasm')) {
    return { ok: false, reason: '@tensorflow/tfjs-backend-wasm loaded but registered its backend in another copy of @tensorflow/tfjs-core' };
  }
  // Threads are fixed when the backend initialises.
  const initialisedBefore = Boolean(engine.registry.wasm);
  const oneThreadWhy = initialisedBefore ? undefined : await prepareWasmThreads(ctx);
  let paths: string | Record<string, string> | undefined;
  // setWasmPaths must come before the backend's first initialisation (it throws after a failed one).
  if (ctx.options.wasmPaths !== false && !engine.registry.wasm && mod?.setWasmPaths) {
    paths = ctx.options.wasmPaths ?? (await locateWasmBinaries());
    if (paths !== undefined) {
      try {
        mod.setWasmPaths(paths);
      } catch {
        paths = undefined;
      }
    }
  }
  if (!(await setBackendSafely('wasm'))) {
    const how = mod
      ? "pass initBackend's wasmPaths option (the folder holding them)"
      : "call setWasmPaths() from '@tensorflow/tfjs-backend-wasm' before initBackend";
    if (!isNodeRuntime() && paths === undefined) {
      // tfjs looks beside the script that loaded it: in a bundle, the page's folder.
      const here = (globalThis as { location?: { href: string } }).location;
      const dir = here ? ` (${new URL('.', here.href).href}, unless setWasmPaths said otherwise)` : '';
      return {
        ok: false,
        reason:
          `the wasm backend did not initialise: tfjs fetches its tfjs-backend-wasm*.wasm binaries from beside the page's script${dir}, and a bundler does not copy them there. ` +
          `Serve the files of node_modules/@tensorflow/tfjs-backend-wasm/dist/*.wasm and ${how.replace('the folder holding them', 'their URL folder')}`,
      };
    }
    const where = typeof paths === 'string' ? ` (looked in ${paths})` : '';
    return { ok: false, reason: `the wasm backend did not initialise${where}: the tfjs-backend-wasm*.wasm binaries are not where tfjs looks; ${how}` };
  }
  guardWasmMalloc(tf.backend());
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const threads = initialisedThreads(mod);
  const st = wasmThreadsStatus();
  const asked = ctx.wasmThreads.threads;
  const requested = initialisedBefore ? (typeof asked === 'number' ? Math.min(asked, MAX_WASM_THREADS) : threads) : st.requested;
  const reason = initialisedBefore
    ? 'the wasm backend was initialised before initBackend (its thread count is fixed then)'
    : (oneThreadWhy ?? st.reason);
  // Say why when fewer threads run than were asked for, or only one.
  const explain = threads < Math.max(requested, 2) && reason !== undefined;
  // A threaded build that failed to start is worth a warning; a choice (or one core) is not.
  const warnings = !initialisedBefore && st.build === 'stock' && st.reason ? [st.reason] : [];
  return {
    ok: true,
    detail: `tfjs-backend-wasm (${simd ? 'SIMD' : 'no SIMD'}, ${threads} thread${threads === 1 ? '' : 's'}${explain ? `: ${reason}` : ''})`,
    warnings,
    wasmThreads: { threads, requested, ...(explain ? { reason } : {}) },
  };
}

async function tryCpu(ctx: Context): Promise<Attempt> {
  if (!tf.findBackendFactory('cpu')) {
    const r = await importOptional('@tensorflow/tfjs-backend-cpu');
    if (!r.ok || !tf.findBackendFactory('cpu')) return { ok: false, reason: `not registered (import '@tensorflow/tfjs' or '@tensorflow/tfjs-backend-cpu')` };
  }
  if (!(await setBackendSafely('cpu'))) return { ok: false, reason: 'the cpu backend did not initialise' };
  // The cpu backend advertises tfjs-node on its first tensor; a CLI that reports its backend does not need that.
  if (ctx.options.quiet) (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  return { ok: true, detail: 'tfjs-backend-cpu (JavaScript)' };
}

async function setBackendSafely(name: string): Promise<boolean> {
  try {
    if (!(await tf.setBackend(name))) return false;
    await tf.ready();
    return tf.getBackend() === name;
  } catch {
    return false;
  }
}

const TRY: Record<ConcreteBackend, (ctx: Context) => Promise<Attempt>> = { tensorflow: tryTensorflow, webgpu: tryWebGPU, webgl: tryWebGL, wasm: tryWasm, cpu: tryCpu };

/** `VIT_WASM_THREADS` / the `wasmThreads` option: `auto`, a positive integer, or `1`/`off`/`0` for one thread. */
function parseWasmThreads(value: string | number | undefined, where: string): number | 'auto' {
  if (value === undefined) return 'auto';
  const v = String(value).trim().toLowerCase();
  if (v === '' || v === 'auto') return 'auto';
  if (v === 'off' || v === 'false' || v === '0') return 1;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new BackendError(`${where}: expected 'auto', a number of threads ≥ 1, or 'off'; got '${value}'`);
  return n;
}

function parsePreference(p: BackendName | readonly ConcreteBackend[] | string, where: string): ConcreteBackend[] | 'auto' {
  const items = (typeof p === 'string' ? p.split(',') : [...p]).map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (items.length === 0 || (items.length === 1 && items[0] === 'auto')) return 'auto';
  for (const b of items) {
    if (!(BACKEND_ORDER as readonly string[]).includes(b)) {
      throw new BackendError(`${where}: unknown backend '${b}'; expected 'auto' or one or more of ${BACKEND_ORDER.join(', ')}`);
    }
  }
  return items as ConcreteBackend[];
}

/**
 * Initialises the fastest backend present, or the one(s) asked for, and makes it current.
 * `auto` tries `tensorflow` (@tensorflow/tfjs-node-gpu, then @tensorflow/tfjs-node; Node only),
 * `webgpu` (`navigator.gpu`, or Dawn in Node), `webgl` (browsers), `wasm`, then `cpu`. A WebGPU
 * adapter or WebGL renderer that runs on the CPU (SwiftShader, llvmpipe) is passed over for wasm;
 * such a WebGL is tried again before cpu. A list tries those in its order; one name must work or
 * this throws a `BackendError` saying why.
 * The env variable `VIT_BACKEND` (a name or comma-separated list) overrides `preference`.
 *
 * wasm runs on every core by default (its threaded SIMD build, at most 8 threads);
 * `VIT_WASM_THREADS` or the `wasmThreads` option set the count (`1`: one thread). `detail` and
 * `wasmThreads` say how many run and, when it is one, why.
 *
 * On wasm and cpu it installs our replacement kernels (the backward kernels wasm lacks, fast
 * versions of the ones that are scalar loops), on tensorflow our stride-1 conv gradients;
 * everywhere it installs the gradient fixes.
 *
 * Call it before creating any tensor or model: importing @tensorflow/tfjs-backend-wasm makes wasm
 * the highest-priority backend, and a tensor created before it is initialised throws.
 */
export async function initBackend(preference: BackendName | readonly ConcreteBackend[] = 'auto', options: InitBackendOptions = {}): Promise<InitBackendResult> {
  const env = options.env === false ? undefined : options.env ?? (isNodeRuntime() ? process.env : undefined);
  const fromEnv = env?.VIT_BACKEND?.trim();
  const source: InitBackendResult['source'] = fromEnv ? 'env' : preference === 'auto' ? 'default' : 'argument';
  const parsed = fromEnv ? parsePreference(fromEnv, 'VIT_BACKEND') : parsePreference(preference, 'initBackend');
  const order = parsed === 'auto' ? [...BACKEND_ORDER] : parsed;
  const threadsFromEnv = env?.VIT_WASM_THREADS?.trim();
  const wasmThreads = threadsFromEnv
    ? { threads: parseWasmThreads(threadsFromEnv, 'VIT_WASM_THREADS'), source: `VIT_WASM_THREADS=${threadsFromEnv}` }
    : { threads: parseWasmThreads(options.wasmThreads, 'initBackend wasmThreads'), source: `wasmThreads: ${String(options.wasmThreads)}` };
  const ctx: Context = { explicit: parsed !== 'auto', options, wasmThreads };

  const engine = tf.engine() as unknown as { backendName: string | null; state: { numTensors: number } };
  const before = { backend: engine.backendName, tensors: engine.state.numTensors };
  const reasons: InitBackendResult['reasons'] = {};
  // A backend passed over as slower than what follows (a software renderer) gets a second try
  // before cpu, or at the end.
  const queue = order.map((name) => ({ name, lastResort: false }));
  for (let i = 0; i < queue.length; i++) {
    const { name, lastResort } = queue[i]!;
    const r = await TRY[name]({ ...ctx, lastResort });
    if (!r.ok) {
      if (lastResort) {
        reasons[name] = `${reasons[name]}; tried again before cpu: ${r.reason}`;
      } else {
        reasons[name] = r.reason;
        const cpu = queue.findIndex((q, j) => j > i && q.name === 'cpu');
        if (r.fallback) queue.splice(cpu < 0 ? queue.length : cpu, 0, { name, lastResort: true });
      }
      continue;
    }
    // Chosen on its second try: why it was passed over first is in its warnings.
    if (lastResort) delete reasons[name];
    const warnings: string[] = [...(r.warnings ?? [])];
    if (before.tensors > 0 && before.backend && before.backend !== name) {
      warnings.push(
        `${before.tensors} tensor(s) were created on '${before.backend}' before initBackend; tfjs copies each to '${name}' on first use. Call initBackend before creating tensors or models.`,
      );
    }
    let kernels: string[] = [];
    if (options.kernels !== false && name === 'wasm') kernels = installWasmKernels();
    if (options.kernels !== false && name === 'cpu') kernels = installCpuKernels();
    if (options.kernels !== false && name === 'tensorflow') kernels = installTensorflowKernels();
    const gradients = options.gradientFixes === false ? [] : installGradientFixes();
    return { backend: name, detail: r.detail, reasons, source, kernels, gradients, warnings, ...(r.wasmThreads ? { wasmThreads: r.wasmThreads } : {}) };
  }
  const what = source === 'env' ? `VIT_BACKEND=${fromEnv}` : `'${order.join(',')}'`;
  const tried = order.map((b) => `${b}: ${reasons[b]}`).join('; ');
  let hint = '';
  if (before.tensors > 0 && engine.backendName !== before.backend) hint = ` (${before.tensors} tensor(s) already exist on '${before.backend}')`;
  throw new BackendError(`No usable backend for ${what}: ${tried}${hint}`);
}

/**
 * `initBackend` for one name, returning only the backend's name (the CLI's and tests' form).
 * Kept for compatibility; `initBackend` also says why other backends were passed over.
 */
export async function selectBackend(name: BackendName = 'auto', options: { quiet?: boolean } = {}): Promise<string> {
  return (await initBackend(name, { quiet: options.quiet })).backend;
}

/** Backends whose factories are registered in this process now. */
export function registeredBackends(): string[] {
  return BACKEND_ORDER.filter((b) => tf.findBackendFactory(b));
}
