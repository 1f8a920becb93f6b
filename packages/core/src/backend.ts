import * as tf from '@tensorflow/tfjs-core';
import { VitError } from './errors.js';

/** Backends the selector knows; `auto` picks the fastest one present. */
export type BackendName = 'auto' | 'tensorflow' | 'wasm' | 'webgpu' | 'cpu';

export class BackendError extends VitError {
  constructor(message: string) {
    super(message, 'VIT_BACKEND');
  }
}

// A variable specifier keeps bundlers from resolving optional peers at build time.
async function tryImport(spec: string): Promise<unknown | undefined> {
  try {
    return await import(/* @vite-ignore */ spec);
  } catch {
    return undefined;
  }
}

const PACKAGES: Record<Exclude<BackendName, 'auto'>, string[]> = {
  // tfjs-node-gpu and tfjs-node both register the 'tensorflow' backend (libtensorflow).
  tensorflow: ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'],
  wasm: ['@tensorflow/tfjs-backend-wasm'],
  webgpu: ['@tensorflow/tfjs-backend-webgpu'],
  cpu: ['@tensorflow/tfjs-backend-cpu'],
};

/**
 * Initialises a backend and makes it current. Must run before any tensor is created (importing
 * the wasm backend makes it the highest-priority backend). `auto` prefers the TensorFlow backend
 * when @tensorflow/tfjs-node(-gpu) is installed, else the embedded pure-JS `cpu` backend.
 */
export async function selectBackend(name: BackendName = 'auto', options: { quiet?: boolean } = {}): Promise<string> {
  const order: Array<Exclude<BackendName, 'auto'>> = name === 'auto' ? ['tensorflow', 'cpu'] : [name];
  const tried: string[] = [];
  for (const b of order) {
    if (!tf.findBackendFactory(b)) {
      for (const spec of PACKAGES[b]) {
        if (await tryImport(spec)) break;
      }
    }
    if (!tf.findBackendFactory(b)) {
      tried.push(`${b} (install ${PACKAGES[b].join(' or ')})`);
      continue;
    }
    if (await tf.setBackend(b)) {
      await tf.ready();
      // The cpu backend advertises tfjs-node on its first tensor; a CLI that already reports
      // its backend does not need that banner.
      if (options.quiet && b === 'cpu') (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
      return tf.getBackend();
    }
    tried.push(`${b} (failed to initialise)`);
  }
  throw new BackendError(`No usable backend for '${name}': tried ${tried.join(', ')}`);
}

/** Backends whose factories are registered in this process now. */
export function registeredBackends(): string[] {
  return (['tensorflow', 'webgpu', 'wasm', 'cpu'] as const).filter((b) => tf.findBackendFactory(b));
}
