/**
 * WebGPU in Node through Dawn (the optional `webgpu` npm package): finds an adapter, installs
 * `navigator.gpu` and the WebGPU globals (`GPUBufferUsage`, …) so `@tensorflow/tfjs-backend-webgpu`
 * can run unchanged. Browsers and Deno already have `navigator.gpu`; then nothing is loaded.
 *
 * Dawn backends, in the order tried (docs/backends.md has the measurements behind it):
 * 1. Vulkan, the path on real GPUs (NVIDIA, AMD, Intel). A software Vulkan device (lavapipe,
 *    SwiftShader) is kept only as a last resort: it is slower than llvmpipe through GLES.
 * 2. OpenGL ES on Mesa (llvmpipe on machines without a GPU). Needs `EGL_PLATFORM=surfaceless`
 *    without a display (set here when unset) and only offers a *compatibility* adapter, which
 *    plain `requestAdapter()` calls do not get; the installed `navigator.gpu` adds
 *    `featureLevel: 'compatibility'` for them.
 * `VIT_DAWN_BACKEND=vulkan|opengles|opengl|null` (comma-separated list) overrides the order.
 */
import * as tf from '@tensorflow/tfjs-core';
import { importByName } from '../platform/index.js';

/** What `installNodeWebGPU` found. `adapter` is the adapter's description (e.g. "NVIDIA H100 …"). */
export type DawnResult =
  | {
      ok: true;
      adapter: string;
      /** Dawn backend (`vulkan`, `opengles`, …); `navigator` when the runtime already had WebGPU. */
      backend: string;
      /** True for llvmpipe/lavapipe/SwiftShader: WebGPU runs, but on the CPU. */
      software: boolean;
      /** `core`, or `compatibility` for the GLES path. */
      featureLevel: 'core' | 'compatibility';
    }
  | { ok: false; reason: string };

export interface NodeWebGPUOptions {
  /** Dawn backends to try, in order; default `VIT_DAWN_BACKEND` or `['vulkan', 'opengles']`. */
  backends?: string[];
  /** Extra Dawn toggles passed to `create()`, e.g. `enable-dawn-features=…`. */
  dawnOptions?: string[];
}

// Minimal structural types: the DOM lib of TypeScript 5.9 has no WebGPU types and core must not
// depend on @webgpu/types.
interface AdapterInfoLike {
  description?: string;
  vendor?: string;
  architecture?: string;
  device?: string;
  isFallbackAdapter?: boolean;
}
interface AdapterLike {
  info?: AdapterInfoLike;
  featureLevel?: string;
  features: { has(name: string): boolean };
  limits: Record<string, number>;
  requestDevice(desc?: Record<string, unknown>): Promise<unknown>;
}
interface GpuLike {
  requestAdapter(opts?: Record<string, unknown>): Promise<AdapterLike | null>;
}
interface DawnModule {
  create(options: string[]): GpuLike;
  globals?: Record<string, unknown>;
}

const SOFTWARE = /llvmpipe|lavapipe|swiftshader|softpipe/i;

function describeAdapter(a: AdapterLike): string {
  const i = a.info ?? {};
  const norm = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '');
  // Dawn's GLES adapter describes the GL version and names the renderer (llvmpipe) in `device`;
  // Chromium's SwiftShader adapter gives only vendor and architecture (google, swiftshader).
  const extra = [i.device, i.vendor, i.architecture].filter((s): s is string => Boolean(s) && !norm(i.description ?? '').includes(norm(s!)));
  const s = [i.description, extra.length ? `[${extra.join(', ')}]` : ''].filter(Boolean).join(' ').trim();
  return s || i.architecture || 'unnamed adapter';
}

function isSoftware(a: AdapterLike): boolean {
  const i = a.info ?? {};
  return Boolean(i.isFallbackAdapter) || SOFTWARE.test(`${i.description ?? ''} ${i.vendor ?? ''} ${i.architecture ?? ''} ${i.device ?? ''}`);
}

/**
 * tfjs-backend-webgpu 4.22 pushes `['bgra8unorm-storage']` (an array) into `requiredFeatures` and
 * asks for adapters without `featureLevel`; wrapping the adapter and the GPU object fixes both
 * without touching tfjs. Methods are bound to the native object (Dawn checks `this`).
 */
function wrapAdapter(a: AdapterLike): AdapterLike {
  return new Proxy(a, {
    get(target, prop) {
      if (prop === 'requestDevice') {
        return (desc: Record<string, unknown> = {}) => {
          const feats = desc.requiredFeatures as Iterable<unknown> | undefined;
          const flat = feats ? [...new Set([...feats].flat().map(String))] : undefined;
          return target.requestDevice(flat ? { ...desc, requiredFeatures: flat } : desc);
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

function wrapGpu(gpu: GpuLike, adapter: AdapterLike, compat: boolean): GpuLike {
  const wrapped = wrapAdapter(adapter);
  return new Proxy(gpu, {
    get(target, prop) {
      if (prop === 'requestAdapter') {
        // One adapter per process: the one probed (Dawn adapters can be asked for many devices).
        return async (opts: Record<string, unknown> = {}) => {
          if (!compat || opts.featureLevel) {
            const a = await target.requestAdapter(compat ? { featureLevel: 'compatibility', ...opts } : opts);
            return a ? wrapAdapter(a) : null;
          }
          return wrapped;
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

async function importDawn(): Promise<DawnModule | string> {
  const spec = 'webgpu';
  try {
    const m = (await importByName(spec)) as Partial<DawnModule> & { default?: Partial<DawnModule> };
    const mod = typeof m.create === 'function' ? m : m.default;
    if (mod && typeof mod.create === 'function') return mod as DawnModule;
    return 'the `webgpu` package does not export create()';
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (/Cannot find (package|module) 'webgpu'|Could not resolve "webgpu"/.test(msg)) return 'the optional package `webgpu` (Dawn) is not installed';
    return `the \`webgpu\` package failed to load: ${msg.split('\n')[0]}`;
  }
}

type Candidate = { gpu: GpuLike; adapter: AdapterLike; backend: string; compat: boolean };

async function probe(dawn: DawnModule, backend: string, extra: string[]): Promise<Candidate | string> {
  if (backend === 'opengles' || backend === 'opengl') process.env.EGL_PLATFORM ??= 'surfaceless';
  let gpu: GpuLike;
  try {
    gpu = dawn.create([`backend=${backend}`, ...extra]);
  } catch (e) {
    return `${backend}: create() failed: ${e instanceof Error ? e.message : String(e)}`;
  }
  const ask = async (o?: Record<string, unknown>) => gpu.requestAdapter(o).catch(() => null);
  const core = await ask({ powerPreference: 'high-performance' });
  if (core) return { gpu, adapter: core, backend, compat: false };
  const compat = await ask({ featureLevel: 'compatibility', powerPreference: 'high-performance' });
  if (compat) return { gpu, adapter: compat, backend, compat: true };
  return `${backend}: no adapter`;
}

function defaultBackends(): string[] {
  const env = process.env.VIT_DAWN_BACKEND?.trim();
  if (env) return env.split(',').map((s) => s.trim()).filter(Boolean);
  return ['vulkan', 'opengles'];
}

function installGlobals(gpu: GpuLike, globals: Record<string, unknown> | undefined): void {
  const g = globalThis as unknown as Record<string, unknown> & { navigator?: Record<string, unknown> };
  for (const [k, v] of Object.entries(globals ?? {})) if (!(k in g)) g[k] = v;
  if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
  // Node ≥ 21 has a navigator whose properties are getters on the prototype; define an own one.
  Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true, enumerable: true });
}

let pending: Promise<DawnResult> | undefined;

/**
 * Makes WebGPU available in this process (idempotent: later calls return the first result).
 * Never throws: without Dawn or without an adapter it returns `{ ok: false, reason }`, each
 * backend tried named with what went wrong.
 */
export function installNodeWebGPU(options: NodeWebGPUOptions = {}): Promise<DawnResult> {
  pending ??= install(options);
  return pending;
}

async function install(options: NodeWebGPUOptions): Promise<DawnResult> {
  const nav = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator;
  if (nav?.gpu) {
    const a = (await nav.gpu.requestAdapter().catch(() => null)) ?? (await nav.gpu.requestAdapter({ featureLevel: 'compatibility' }).catch(() => null));
    if (!a) return { ok: false, reason: 'navigator.gpu exists but gives no adapter' };
    return { ok: true, adapter: describeAdapter(a), backend: 'navigator', software: isSoftware(a), featureLevel: a.featureLevel === 'compatibility' ? 'compatibility' : 'core' };
  }
  const dawn = await importDawn();
  if (typeof dawn === 'string') return { ok: false, reason: dawn };
  const reasons: string[] = [];
  let fallback: Candidate | undefined;
  let chosen: Candidate | undefined;
  for (const backend of options.backends ?? defaultBackends()) {
    const c = await probe(dawn, backend, options.dawnOptions ?? []);
    if (typeof c === 'string') {
      reasons.push(c);
      continue;
    }
    // A software Vulkan device only if nothing better turns up (llvmpipe GLES is faster).
    if (backend === 'vulkan' && isSoftware(c.adapter)) {
      reasons.push(`vulkan: only a software device (${describeAdapter(c.adapter)})`);
      fallback ??= c;
      continue;
    }
    chosen = c;
    break;
  }
  chosen ??= fallback;
  if (!chosen) return { ok: false, reason: `Dawn found no WebGPU adapter (${reasons.join('; ')})` };
  installGlobals(wrapGpu(chosen.gpu, chosen.adapter, chosen.compat), dawn.globals);
  return {
    ok: true,
    adapter: describeAdapter(chosen.adapter),
    backend: chosen.backend,
    software: isSoftware(chosen.adapter),
    featureLevel: chosen.compat ? 'compatibility' : 'core',
  };
}

/**
 * Makes the tfjs `webgpu` backend available: installs Dawn's `navigator.gpu` when needed, imports
 * `@tensorflow/tfjs-backend-webgpu` (which registers its backend only if `navigator.gpu` exists at
 * import time) and, when it was imported earlier without WebGPU, registers the backend itself.
 * Returns the adapter found, or why there is none. Does not switch backends.
 */
export async function registerWebGPUBackend(options: NodeWebGPUOptions = {}): Promise<DawnResult> {
  const res = await installNodeWebGPU(options);
  if (!res.ok) return res;
  // Registered already (an app that imports the package; in a browser bundle the import by name below cannot work).
  if (tf.findBackendFactory('webgpu')) return res;
  let mod: { WebGPUBackend?: new (device: unknown, info?: unknown) => unknown };
  try {
    mod = (await importByName('@tensorflow/tfjs-backend-webgpu')) as typeof mod;
  } catch (e) {
    return { ok: false, reason: `@tensorflow/tfjs-backend-webgpu is not installed (${e instanceof Error ? e.message.split('\n')[0] : String(e)})` };
  }
  if (!tf.findBackendFactory('webgpu')) {
    const Backend = mod.WebGPUBackend;
    if (!Backend) return { ok: false, reason: '@tensorflow/tfjs-backend-webgpu does not export WebGPUBackend' };
    tf.registerBackend(
      'webgpu',
      async () => {
        const gpu = (globalThis as unknown as { navigator: { gpu: GpuLike } }).navigator.gpu;
        const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
        if (!adapter) throw new Error('navigator.gpu gave no adapter');
        const feats = ['timestamp-query'].filter((f) => adapter.features.has(f));
        const l = adapter.limits;
        const device = await adapter.requestDevice({
          requiredFeatures: feats,
          requiredLimits: {
            maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
            maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
            maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
            maxBufferSize: l.maxBufferSize,
            maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
            maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
          },
        });
        return new Backend(device, adapter.info) as never;
      },
      3,
    );
  }
  return res;
}
