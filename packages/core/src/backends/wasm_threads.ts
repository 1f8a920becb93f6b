import * as tf from '@tensorflow/tfjs-core';
import { BackendError, WasmAllocationError } from './errors.js';
import { refreshHeapViews } from './matmul_wasm.js';
import { importByName, isNodeRuntime, nodeBuiltins, requireNode, type NodeBuiltins } from '../platform/index.js';
import { WASM_HEAP_LIMIT } from '../train/memory.js';

/*
 * tfjs-backend-wasm on several threads in Node.
 *
 * tfjs 4.22 runs one thread under Node for three reasons: its WASM_HAS_MULTITHREAD_SUPPORT flag is
 * false there (tfjs#3830); forcing it fails because its loader hands emscripten Blob URLs for the
 * pthread worker and the main script, which Node's Worker refuses (ERR_WORKER_PATH); and its C++
 * caps the thread count at emscripten_num_logical_cores() / 2 (1 on a 2-core machine).
 *
 * So in Node we load the threaded SIMD build ourselves and give the module to the package's own
 * exported `BackendWasm`, registered as the 'wasm' backend in place of the package's factory:
 * - The emscripten glue is the file the package ships in wasm-out/ (the bundled copy is the same
 *   code, rewritten by rollup and not exported); workers load it from that path
 *   (`mainScriptUrlOrBlob`), so no Blob and no temporary file is involved.
 * - The glue creates its pool of 8 pthread workers synchronously inside the factory call, with
 *   `new Worker(url)` on the global `Worker` it assigns itself. For that call only, a getter on
 *   `globalThis.Worker` gives it our constructor (the global is restored right after), which
 *   returns a stand-in (`PoolWorker`): the threads − 1 that XNNPACK's pool will take run the
 *   package's worker script (wasm-out/…worker.js) as eval'd Node workers; the others are never
 *   started (80 ms and 10 MB saved each).
 * - `instantiateWasm` instantiates the binary with `emscripten_num_logical_cores` reporting
 *   2 × threads: the C++ reads it once, halves it and caps the pool with it.
 * - Workers never keep the process alive once the module has started: emscripten refs a worker
 *   for as long as its pthread runs, and XNNPACK's pool threads run forever (the process would
 *   never exit).
 * Where anything is missing or fails, the reason is recorded and the package's own
 * single-threaded build is used.
 *
 * What this depends on in tfjs-backend-wasm 4.22.0 (check on a version bump; the checks below say
 * "does not have the layout this was written for" where they can tell): the exports `BackendWasm`,
 * `setThreadsCount`, `getThreadsCount`; the files wasm-out/tfjs-backend-wasm-threaded-simd.js
 * (CommonJS, exporting the emscripten factory) and …worker.js (exporting `wasmWorkerContents`),
 * dist/tfjs-backend-wasm-threaded-simd.wasm (importing env.memory and
 * env.emscripten_num_logical_cores); the C functions init_with_threads_count, get_threads_count,
 * register_tensor, dispose_data, dispose (the `tfjs` bridge BackendWasm calls); and emscripten's
 * Module API of that build (locateFile, mainScriptUrlOrBlob, instantiateWasm, onAbort, a pool
 * created in the factory call and handed out last-created first).
 *
 * In a browser, tfjs's own flag already loads the threaded build where the page is cross-origin
 * isolated; we pass the thread count, and lift the same hardwareConcurrency / 2 cap by wrapping the
 * package's factory (navigator.hardwareConcurrency reads 2 × threads while it runs).
 * wasm_threads.browser.test.ts checks it in Chromium.
 *
 * Our kernels run on this backend's heap (wasm_asm.ts imports a shared memory as shared;
 * matmul_wasm.ts `refreshHeapViews` re-creates heap views after growth).
 */

/** tfjs 4.22's ceiling: its C++ caps XNNPACK's pool at 8 threads, and emscripten pre-creates 8 workers. */
export const MAX_WASM_THREADS = 8;

export interface WasmThreadsOptions {
  /**
   * Threads for XNNPACK (main thread included): a number ≥ 1, or `'auto'` (default) for every core
   * (`os.availableParallelism()`, `navigator.hardwareConcurrency` in a browser). At most 8.
   */
  threads?: number | 'auto';
  /** The threaded binary (Node). Default: `dist/tfjs-backend-wasm-threaded-simd.wasm` of the installed package. */
  wasmPath?: string;
  /** Give up on the threaded build when its workers have not started after this many ms (default 60 000). */
  timeoutMs?: number;
}

export type WasmThreadsResult = { ok: true; threads: number } | { ok: false; reason: string };

export interface WasmThreadsStatus {
  /** Threads asked for (1 when threads are off). */
  requested: number;
  /** Threads the backend runs, once the threaded build has initialised (null before, or when it was not used). */
  threads: number | null;
  /** `threaded-simd` once our threaded build is initialised; `stock` when it fell back to the package's own. */
  build: 'threaded-simd' | 'stock' | null;
  /** Node workers started for XNNPACK's pool (threads − 1), once initialised. */
  workers: number;
  /** Why fewer threads than the machine has run (or will), when they do. */
  reason?: string;
}

interface WasmPackage {
  BackendWasm?: new (wasm: unknown) => tf.KernelBackend;
  setThreadsCount?: (n: number) => void;
  getThreadsCount?: () => number;
  version_wasm?: string;
}

interface RegistryEntry {
  factory: () => tf.KernelBackend | Promise<tf.KernelBackend>;
  priority: number;
}
interface EngineRegistry {
  registry: Record<string, tf.KernelBackend | undefined>;
  registryFactory: Record<string, RegistryEntry | undefined>;
}

interface EmscriptenModule {
  cwrap(name: string, ret: string | null, args: string[]): (...args: number[]) => number;
  tfjs?: Record<string, unknown>;
}

type EmscriptenFactory = (config: Record<string, unknown>) => Promise<EmscriptenModule>;

interface ThreadedBuild {
  factory: EmscriptenFactory;
  gluePath: string;
  wasmPath: string;
  workerSource: string;
  module: WebAssembly.Module;
}

const GLUE = 'wasm-out/tfjs-backend-wasm-threaded-simd.js';
const WORKER = 'wasm-out/tfjs-backend-wasm-threaded-simd.worker.js';
const BINARY = 'tfjs-backend-wasm-threaded-simd.wasm';
/** What our locateFile returns for the worker script; only our Worker constructor understands it. */
const WORKER_URL = 'vit-pthread-worker:tfjs-backend-wasm-threaded-simd.worker.js';

const firstLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0]!.trim();
const engine = () => tf.engine() as unknown as EngineRegistry;
const plural = (n: number) => `${n} thread${n === 1 ? '' : 's'}`;

let status: WasmThreadsStatus = { requested: 1, threads: null, build: null, workers: 0 };
/** The package's own factory while ours is registered in its place. */
let replaced: RegistryEntry | undefined;

/** Where the threaded build stands (what `initBackend` reports). */
export function wasmThreadsStatus(): WasmThreadsStatus {
  return { ...status };
}

async function importWasmPackage(): Promise<WasmPackage | null> {
  try {
    return (await importByName('@tensorflow/tfjs-backend-wasm')) as WasmPackage;
  } catch {
    return null;
  }
}

async function coreCount(): Promise<number> {
  const node = nodeBuiltins();
  if (node) {
    const { os } = node;
    return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  }
  return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;
}

/** The thread count for `threads`, and why it is 1 when it is. */
async function resolveThreads(threads: number | 'auto' | undefined): Promise<{ n: number; why?: string }> {
  if (threads === undefined || threads === 'auto') {
    const cores = await coreCount();
    if (cores <= 1) return { n: 1, why: `one CPU core (${isNodeRuntime() ? 'os.availableParallelism()' : 'navigator.hardwareConcurrency'} is ${cores})` };
    return { n: Math.min(cores, MAX_WASM_THREADS) };
  }
  if (!Number.isInteger(threads) || threads < 1) throw new BackendError(`enableWasmThreads: threads must be 'auto' or an integer ≥ 1, got ${String(threads)}`);
  if (threads === 1) return { n: 1, why: '1 thread asked for' };
  return { n: Math.min(threads, MAX_WASM_THREADS) };
}

/**
 * The wasm backend's thread count when it is initialised: from the package, or (a bundle where
 * @vit/core cannot import it by name) from the threaded build's pthread pool: threads − 1 workers.
 */
export function initialisedThreads(mod: WasmPackage | null | undefined): number {
  try {
    const n = mod?.getThreadsCount?.();
    if (n !== undefined) return n;
    const pool = (tf.findBackend('wasm') as unknown as { wasm?: { PThread?: { runningWorkers?: unknown[] } } } | null)?.wasm?.PThread;
    return pool?.runningWorkers ? pool.runningWorkers.length + 1 : 1;
  } catch {
    return 1;
  }
}

/**
 * Makes tfjs-backend-wasm run its threaded SIMD build with `threads` threads (default: every core,
 * at most 8) when it initialises. Call before the wasm backend initialises (before
 * `tf.setBackend('wasm')` or `initBackend`, before any tensor exists). Resolves `{ ok: false,
 * reason }` when threads cannot be used here (no SharedArrayBuffer, no SIMD, a page that is not
 * cross-origin isolated, a package layout this does not know, a backend already initialised…);
 * tfjs then loads its single-threaded build as usual. A failure while the threaded build starts
 * (at `setBackend`) also falls back to that build; `wasmThreadsStatus()` says which ran and why.
 * `threads: 1` turns threads off again (before initialisation).
 */
export async function enableWasmThreads(options: WasmThreadsOptions = {}): Promise<WasmThreadsResult> {
  const { n, why } = await resolveThreads(options.threads);
  const fail = (reason: string): WasmThreadsResult => {
    status = { requested: n, threads: null, build: null, workers: 0, reason };
    return { ok: false, reason };
  };
  const mod = await importWasmPackage();
  if (engine().registry.wasm) {
    const have = initialisedThreads(mod);
    if (status.build === 'threaded-simd' && have === n) return { ok: true, threads: n };
    return { ok: false, reason: `the wasm backend was already initialised (${plural(have)}); the thread count is fixed then: enable threads before creating any tensor` };
  }
  const notThere = '@tensorflow/tfjs-backend-wasm is not installed, or registered its backend in another copy of @tensorflow/tfjs-core';
  if (!tf.findBackendFactory('wasm')) return fail(notThere);
  if (n === 1) {
    disableWasmThreads();
    return fail(why ?? '1 thread asked for');
  }
  // A browser bundle registers the backend without @vit/core being able to import the package.
  if (!isNodeRuntime()) return enableInBrowser(mod, n, fail);
  if (!mod) return fail(notThere);
  return enableInNode(mod, n, options, fail);
}

/** Puts the package's own 'wasm' factory back (before the backend initialises). False when there was nothing to undo or it is too late. */
export function disableWasmThreads(): boolean {
  const e = engine();
  if (!replaced || e.registry.wasm) return false;
  tf.removeBackend('wasm');
  tf.registerBackend('wasm', replaced.factory, replaced.priority);
  replaced = undefined;
  status = { requested: 1, threads: null, build: null, workers: 0 };
  return true;
}

function enableInBrowser(mod: WasmPackage | null, n: number, fail: (reason: string) => WasmThreadsResult): WasmThreadsResult {
  if ((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated !== true || typeof SharedArrayBuffer === 'undefined') {
    return fail('the page is not cross-origin isolated (serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp), so there is no SharedArrayBuffer');
  }
  if (!mod) {
    return fail(
      "@vit/core cannot import '@tensorflow/tfjs-backend-wasm' by name here (a bundle: a browser resolves that only through an import map), so tfjs picks the thread count itself (half the cores)",
    );
  }
  const entry = replaced ?? engine().registryFactory.wasm;
  if (!entry) return fail('the wasm backend is not registered');
  // tfjs's own flag picks the threaded build here; it takes the count from setThreadsCount.
  mod.setThreadsCount?.(n);
  // But its C++ caps the count at emscripten_num_logical_cores() / 2, which the glue reads from
  // navigator.hardwareConcurrency: 1 thread on a 2-core machine whatever we ask. As in Node, report
  // 2 × n cores while the backend initialises (the C++ reads it then), and say what ran.
  const factory = async (): Promise<tf.KernelBackend> => {
    const nav = globalThis.navigator as unknown as Record<string, unknown>;
    let shadowed = false;
    try {
      Object.defineProperty(nav, 'hardwareConcurrency', { configurable: true, get: () => 2 * n });
      shadowed = true;
    } catch {
      // A navigator we cannot shadow: tfjs's cap applies.
    }
    try {
      const backend = await entry.factory();
      const threads = initialisedThreads(mod);
      const pool = (backend as unknown as { wasm?: { PThread?: { runningWorkers: unknown[] } } }).wasm?.PThread;
      const reason = threads < n ? `tfjs-backend-wasm started ${plural(threads)} of ${n}` : undefined;
      status = { requested: n, threads, build: pool ? 'threaded-simd' : 'stock', workers: pool?.runningWorkers.length ?? 0, reason };
      return backend;
    } finally {
      if (shadowed) delete nav.hardwareConcurrency;
    }
  };
  replaced = entry;
  tf.removeBackend('wasm');
  tf.registerBackend('wasm', factory, entry.priority);
  status = { requested: n, threads: null, build: null, workers: 0 };
  return { ok: true, threads: n };
}

function sharedMemoryWorks(): boolean {
  try {
    return typeof SharedArrayBuffer !== 'undefined' && new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer;
  } catch {
    return false;
  }
}

async function enableInNode(mod: WasmPackage, n: number, options: WasmThreadsOptions, fail: (reason: string) => WasmThreadsResult): Promise<WasmThreadsResult> {
  if (!sharedMemoryWorks()) return fail('this runtime has no SharedArrayBuffer or shared WebAssembly.Memory');
  if (!(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'))) return fail('this runtime has no WebAssembly SIMD, which the threaded build needs');
  const { BackendWasm, setThreadsCount, getThreadsCount } = mod;
  if (typeof BackendWasm !== 'function' || typeof setThreadsCount !== 'function' || typeof getThreadsCount !== 'function') {
    return fail(`@tensorflow/tfjs-backend-wasm ${mod.version_wasm ?? '(unknown version)'} no longer exports BackendWasm, setThreadsCount and getThreadsCount`);
  }
  const found = await loadThreadedBuild(mod, options.wasmPath);
  if (typeof found === 'string') return fail(found);
  const e = engine();
  const entry = replaced ?? e.registryFactory.wasm;
  if (!entry) return fail('the wasm backend is not registered');
  const timeoutMs = options.timeoutMs ?? 60_000;
  const factory = async (): Promise<tf.KernelBackend> => {
    try {
      const started = await startThreadedModule(found, n, timeoutMs);
      setThreadsCount(n);
      const backend = new BackendWasm(started.module);
      guardHeapViews(backend);
      const threads = getThreadsCount();
      const workers = started.workersStarted();
      const reason = threads < n ? `tfjs-backend-wasm started ${plural(threads)} of ${n}` : undefined;
      status = { requested: n, threads, build: 'threaded-simd', workers, reason };
      return backend;
    } catch (err) {
      status = { requested: n, threads: 1, build: 'stock', workers: 0, reason: `the threaded build failed to start (${firstLine(err)}); running the single-threaded build` };
      return entry.factory();
    }
  };
  replaced = entry;
  tf.removeBackend('wasm');
  tf.registerBackend('wasm', factory, entry.priority);
  status = { requested: n, threads: null, build: null, workers: 0 };
  return { ok: true, threads: n };
}

/** Finds and checks the package's threaded build; a string says what is wrong. */
async function loadThreadedBuild(mod: WasmPackage, wasmPath: string | undefined): Promise<ThreadedBuild | string> {
  const layout = (what: string) => `@tensorflow/tfjs-backend-wasm ${mod.version_wasm ?? ''} does not have the layout this was written for (4.22.0): ${what}`;
  try {
    const { require: req, path, fs } = requireNode('The threaded wasm build in Node');
    const root = path.dirname(req.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
    const version = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version?: string }).version;
    if (mod.version_wasm && version !== mod.version_wasm) {
      return `the @tensorflow/tfjs-backend-wasm files found (${version}, ${root}) are not the version loaded (${mod.version_wasm})`;
    }
    const gluePath = path.join(root, GLUE);
    const workerPath = path.join(root, WORKER);
    const binary = wasmPath ?? path.join(root, 'dist', BINARY);
    for (const f of [gluePath, workerPath, binary]) if (!fs.existsSync(f)) return layout(`${f} is missing`);
    const factory = req(gluePath) as unknown;
    if (typeof factory !== 'function') return layout(`${GLUE} does not export the emscripten factory`);
    const contents = (req(workerPath) as { wasmWorkerContents?: unknown }).wasmWorkerContents;
    if (typeof contents !== 'string' || !contents.includes('importScripts')) return layout(`${WORKER} does not export wasmWorkerContents`);
    const module = await WebAssembly.compile(await fs.promises.readFile(binary));
    const imports = WebAssembly.Module.imports(module);
    const has = (name: string, kind: string) => imports.some((i) => i.module === 'env' && i.name === name && i.kind === kind);
    if (!has('memory', 'memory') || !has('emscripten_num_logical_cores', 'function')) return layout(`${binary} does not import env.memory and env.emscripten_num_logical_cores`);
    return {
      factory: factory as EmscriptenFactory,
      gluePath,
      wasmPath: binary,
      // As tfjs does before making a Blob of it: the template literal turned "\n" escapes into newlines.
      workerSource: contents.replace(/\n/g, '\\n'),
      module,
    };
  } catch (e) {
    return layout(firstLine(e));
  }
}

type NodeWorker = InstanceType<NodeBuiltins['workerThreads']['Worker']>;
type Listener = (...args: unknown[]) => void;

const isCmd = (msg: unknown, cmd: string) => typeof msg === 'object' && msg !== null && (msg as { cmd?: unknown }).cmd === cmd;

/**
 * What the glue gets for each `new Worker(url)`. emscripten pre-creates a pool of 8 workers and
 * waits until every one has loaded the module, but XNNPACK's pool takes only threads − 1 of them.
 * So a stand-in starts its Node worker either at once (`start()`, for the ones pthreads will take)
 * or when the glue first sends it anything but 'load' (a pthread to run); until then it answers
 * 'load' with 'loaded' itself. Each worker not started saves about 10 MB and 80 ms of start-up.
 * Once the module has started, it never keeps the process alive (see the top of this file):
 * `ref()` does nothing.
 */
class PoolWorker {
  private real: NodeWorker | null = null;
  private load: { msg: unknown; transfer?: readonly unknown[] } | null = null;
  /** The 'loaded' the real worker will send after we answered for it. */
  private dropLoaded = false;
  private readonly listeners: Array<[string, Listener]> = [];
  private readonly forwarded = new Set<string>();

  constructor(
    private readonly hooks: {
      spawn: () => NodeWorker;
      /** While true, a started worker keeps the process alive (the module waits for it to load). */
      starting: () => boolean;
      /** Takes an error while the module starts (true: consumed). */
      onStartError: (e: unknown) => boolean;
    },
  ) {}

  get started(): boolean {
    return this.real !== null;
  }

  on(event: string, listener: Listener): this {
    this.listeners.push([event, listener]);
    if (this.real) this.forward(event);
    return this;
  }

  postMessage(msg: unknown, transfer?: readonly unknown[]): void {
    if (!this.real && isCmd(msg, 'load')) {
      this.load = { msg, transfer };
      this.dropLoaded = true;
      setImmediate(() => this.emit('message', { cmd: 'loaded' }));
      return;
    }
    this.start();
    this.real!.postMessage(msg, transfer as never);
  }

  start(): void {
    if (this.real) return;
    this.real = this.hooks.spawn();
    for (const [event] of this.listeners) this.forward(event);
    if (this.load) this.real.postMessage(this.load.msg, this.load.transfer as never);
  }

  terminate(): Promise<number> {
    return this.real ? this.real.terminate() : Promise.resolve(0);
  }

  ref(): void {}

  unref(): void {}

  private forward(event: string): void {
    if (this.forwarded.has(event)) return;
    this.forwarded.add(event);
    this.real!.on(event, (...args: unknown[]) => this.emit(event, ...args));
    // (After the listener: a 'message' listener refs the worker again.)
    if (!this.hooks.starting()) this.real!.unref();
  }

  /** Lets the process exit with this worker running (once the module has started). */
  release(): void {
    this.real?.unref();
  }

  private emit(event: string, ...args: unknown[]): void {
    if (event === 'message' && this.dropLoaded && this.real && isCmd(args[0], 'loaded')) {
      this.dropLoaded = false;
      return;
    }
    if (event === 'error' && this.hooks.onStartError(args[0])) return;
    for (const [e, l] of this.listeners) if (e === event) l.apply(this, args);
  }
}

/**
 * Runs `make` with `globalThis.Worker` reading as `ctor` (assignments to it are ignored), then
 * restores the global as it was.
 */
function withGlobalWorker<T>(ctor: unknown, make: () => T): T {
  const g = globalThis as Record<string, unknown>;
  const before = Object.getOwnPropertyDescriptor(g, 'Worker');
  Object.defineProperty(g, 'Worker', { configurable: true, get: () => ctor, set: () => {} });
  try {
    return make();
  } finally {
    if (before) Object.defineProperty(g, 'Worker', before);
    else delete g.Worker;
  }
}

/** `argv` without `--input-type …` and `--experimental-default-type …`. */
function withoutModuleTypeFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (/^--(input-type|experimental-default-type)=/.test(a)) continue;
    if (a === '--input-type' || a === '--experimental-default-type') {
      i++;
      continue;
    }
    out.push(a);
  }
  return out;
}

interface StartedModule {
  module: EmscriptenModule;
  /** Node workers started so far (grows if a pthread lands on a stand-in). */
  workersStarted(): number;
}

/**
 * Starts the threaded module: the glue, its worker pool, the instance. Rejects (workers
 * terminated) on any failure or after `timeoutMs`.
 */
async function startThreadedModule(build: ThreadedBuild, threads: number, timeoutMs: number): Promise<StartedModule> {
  const { Worker } = requireNode('The threaded wasm build in Node').workerThreads;
  const pool: PoolWorker[] = [];
  let starting = true;
  return new Promise<StartedModule>((resolve, reject) => {
    let settled = false;
    const fail = (e: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const w of pool) void w.terminate();
      reject(e instanceof Error ? e : new Error(String(e)));
    };
    const timer = setTimeout(() => fail(new Error(`its pthread workers had not started after ${timeoutMs} ms`)), timeoutMs);
    timer.unref?.();

    // The worker script is CommonJS; an eval'd worker inherits the flags that would make it ESM.
    const execArgv = withoutModuleTypeFlags(process.execArgv);
    const spawn = () => new Worker(build.workerSource, { eval: true, execArgv });
    // A worker that fails while the module starts fails the start (the glue's handler would throw it uncaught).
    const onStartError = (e: unknown) => {
      if (starting) fail(e);
      return starting;
    };
    // Called with `new` by the glue: a constructor function that returns an object returns that object.
    function PthreadWorker(url: string): PoolWorker {
      if (url !== WORKER_URL) throw new Error(`unexpected worker script ${url}`);
      const w = new PoolWorker({ spawn, onStartError, starting: () => starting });
      pool.push(w);
      return w;
    }

    const config: Record<string, unknown> = {
      locateFile: (file: string, prefix: string) => (file.endsWith('.worker.js') ? WORKER_URL : file.endsWith('.wasm') ? build.wasmPath : prefix + file),
      mainScriptUrlOrBlob: build.gluePath,
      instantiateWasm: (info: Record<string, WebAssembly.ModuleImports>, receive: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void) => {
        // The C++ sizes its pool from min(threads asked, this / 2), once, at start-up.
        const env = { ...info.env, emscripten_num_logical_cores: () => 2 * threads };
        WebAssembly.instantiate(build.module, { ...info, env, wasi_snapshot_preview1: env }).then((instance) => receive(instance, build.module), fail);
        return {};
      },
      onAbort: (what: unknown) => fail(new Error(`aborted: ${String(what)}`)),
    };
    let ready: Promise<EmscriptenModule>;
    try {
      ready = withGlobalWorker(PthreadWorker, () => build.factory(config));
    } catch (e) {
      fail(e);
      return;
    }
    // The glue created its pool inside that call, and hands pthreads the most recently created idle
    // workers (PThread.unusedWorkers.pop()): start those now, so that one which cannot start fails
    // here, with a reason, and not inside XNNPACK's pool creation, which would wait for it forever.
    for (const w of pool.slice(pool.length - (threads - 1))) w.start();
    ready.then((m) => {
      if (settled) return;
      settled = true;
      starting = false;
      clearTimeout(timer);
      for (const w of pool) w.release();
      // The bridge tfjs's own init() adds (tf-backend-wasm.node.js `init`), which BackendWasm uses.
      m.tfjs = {
        init: m.cwrap('init', null, []),
        initWithThreadsCount: m.cwrap('init_with_threads_count', null, ['number']),
        getThreadsCount: m.cwrap('get_threads_count', 'number', []),
        registerTensor: m.cwrap('register_tensor', null, ['number', 'number', 'number']),
        disposeData: m.cwrap('dispose_data', null, ['number']),
        dispose: m.cwrap('dispose', null, []),
      };
      resolve({ module: m, workersStarted: () => pool.filter((w) => w.started).length });
    }, fail);
  });
}

/**
 * tfjs's own heap reads and writes (`readSync`, `typedArrayFromHeap`, the copy after `_malloc` in
 * `move`) go through `Module.HEAPU8`; with a shared memory that view is stale after growth on
 * another thread. Refresh it first.
 */
function guardHeapViews(backend: tf.KernelBackend): void {
  const b = backend as unknown as {
    readSync(...args: unknown[]): unknown;
    typedArrayFromHeap(...args: unknown[]): unknown;
  };
  guardWasmMalloc(backend, () => refreshHeapViews(backend));
  for (const name of ['readSync', 'typedArrayFromHeap'] as const) {
    const f = b[name];
    b[name] = (...args: unknown[]) => {
      refreshHeapViews(backend);
      return f.apply(backend, args);
    };
  }
}

const MALLOC_GUARDED = Symbol.for('vit.wasmMallocGuard');

/**
 * Makes the wasm backend's `_malloc` throw when the heap cannot grow, instead of returning 0: tfjs
 * would then place the tensor at address 0 and the kernels write over the heap's start (the
 * threaded build's workers then crash with "table index is out of bounds" or spin forever). A JS
 * error unwinds tfjs's engine cleanly, and `isOutOfMemory` knows it. `after` runs after each
 * allocation. A request of 4 GiB or more fails the same way (wasm32's malloc would take it modulo
 * 2³² and return a buffer far too small). Idempotent.
 */
export function guardWasmMalloc(backend: tf.KernelBackend, after?: () => void): void {
  const w = (backend as unknown as { wasm?: Record<string | symbol, unknown> & { _malloc(bytes: number): number; HEAPU8?: Uint8Array } }).wasm;
  if (!w || typeof w._malloc !== 'function' || w[MALLOC_GUARDED]) return;
  w[MALLOC_GUARDED] = true;
  // The glue's `Module._malloc` is a stub that, on its first call, overwrites `Module._malloc` with
  // the raw export: keep ours in front whatever it assigns.
  let malloc = w._malloc;
  const guarded = (bytes: number) => {
    // wasm32's malloc takes a u32: a request of 4 GiB or more would wrap to a small buffer.
    const p = bytes >= 2 ** 32 ? 0 : malloc(bytes);
    if (p === 0 && bytes > 0) {
      const heap = w.HEAPU8?.buffer.byteLength;
      throw new WasmAllocationError(
        `Out of memory: the wasm heap cannot grow to allocate ${(bytes / 2 ** 20).toFixed(1)} MB more${heap ? ` (${(heap / 2 ** 20).toFixed(0)} MB in use of ${WASM_HEAP_LIMIT / 2 ** 20} MB)` : ''}`,
      );
    }
    after?.();
    return p;
  };
  Object.defineProperty(w, '_malloc', {
    configurable: true,
    enumerable: true,
    get: () => guarded,
    set: (f: (bytes: number) => number) => {
      malloc = f;
    },
  });
}
