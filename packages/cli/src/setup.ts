// The union package registers the cpu backend and every gradient (tfjs-core alone has none in Node).
import '@tensorflow/tfjs';
// Importing the architecture packages registers their models and official adapters.
import '@vit/cait';
import '@vit/conv2former';
import '@vit/hilo';
import '@vit/mrla';
import '@vit/regionvit';
import { initBackend, type BackendName } from '@vit/core';
import { UsageError } from './exit-codes.js';

const BACKENDS = ['auto', 'tensorflow', 'wasm', 'webgpu', 'cpu'];

/** Initialises the backend a command asked for (`auto` by default: tensorflow → hardware webgpu → hardware webgl → wasm → software webgl → cpu). */
export async function useBackend(name: unknown): Promise<string> {
  const b = (name as string | undefined) ?? 'auto';
  if (!BACKENDS.includes(b)) throw new UsageError(`unknown backend '${b}': expected one of ${BACKENDS.join(', ')}`);
  const r = await initBackend(b as BackendName, { quiet: true });
  return r.backend;
}
