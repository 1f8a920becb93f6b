// The union package registers the cpu backend and every gradient (tfjs-core alone has none in Node).
import '@tensorflow/tfjs';
// Importing the architecture packages registers their models and official adapters.
import '@vit/cait';
import '@vit/conv2former';
import '@vit/hilo';
import '@vit/mrla';
import '@vit/regionvit';
import { initBackend, type BackendName } from '@vit/core';
import type { StringOption } from './command.js';
import { UsageError } from './exit-codes.js';
import { orList } from './flags.js';

const BACKENDS = ['auto', 'tensorflow', 'wasm', 'webgpu', 'cpu'];

/** `--backend`, as every command that computes takes it. */
export const BACKEND_OPTION: StringOption = {
  type: 'string',
  value: '<name>',
  description: `the TensorFlow.js backend: ${orList(BACKENDS)} (default auto: the first that works of tensorflow, webgpu, wasm, cpu)`,
};

/** Initialises the backend a command asked for (`auto` by default: tensorflow → hardware webgpu → wasm → cpu; WebGL exists only in browsers). */
export async function useBackend(name: unknown): Promise<string> {
  const b = (name as string | undefined) ?? 'auto';
  if (!BACKENDS.includes(b)) throw new UsageError(`unknown backend '${b}': expected one of ${BACKENDS.join(', ')}`);
  const r = await initBackend(b as BackendName, { quiet: true });
  return r.backend;
}
