import { ConfigError } from '../errors.js';
import { importByName } from '../platform/index.js';

// Exported for tests only (not in the barrel).
export async function importOptional(spec: string, purpose: string): Promise<unknown> {
  try {
    return await importByName(spec);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new ConfigError(`${purpose} needs the optional package '${spec}', which is not installed: run \`npm install ${spec}\`.`);
    }
    throw new ConfigError(`${purpose} needs the package '${spec}', which failed to load: ${(e as Error).message}`);
  }
}

/** The parts of sharp this library calls (kept local so our .d.ts files do not need sharp's types). */
export interface SharpInstance {
  resize(width: number, height: number, options?: Record<string, unknown>): SharpInstance;
  removeAlpha(): SharpInstance;
  flatten(options?: Record<string, unknown>): SharpInstance;
  greyscale(): SharpInstance;
  toColourspace(space: string): SharpInstance;
  composite(images: Array<Record<string, unknown>>): SharpInstance;
  extend(options: Record<string, unknown>): SharpInstance;
  png(options?: Record<string, unknown>): SharpInstance;
  raw(): SharpInstance;
  metadata(): Promise<{ width?: number; height?: number; channels?: number; format?: string }>;
  toBuffer(options: { resolveWithObject: true }): Promise<{ data: Uint8Array; info: { width: number; height: number; channels: number } }>;
  toBuffer(): Promise<Uint8Array>;
  toFile(path: string): Promise<unknown>;
}
export type SharpFactory = (input?: Uint8Array | string | Record<string, unknown>, options?: Record<string, unknown>) => SharpInstance;

let sharpPromise: Promise<SharpFactory> | undefined;

/** sharp (libvips), loaded on first use; a clear error if it is not installed. */
export function loadSharp(purpose = 'Decoding images'): Promise<SharpFactory> {
  sharpPromise ??= importOptional('sharp', purpose).then((m) => ((m as { default?: SharpFactory }).default ?? m) as SharpFactory);
  // A failed import is not cached, so installing sharp later in a long-lived process works.
  sharpPromise.catch(() => (sharpPromise = undefined));
  return sharpPromise;
}

/** The parts of vega this library calls. */
export interface VegaModule {
  parse(spec: unknown, config?: unknown): unknown;
  View: new (runtime: unknown, options?: { renderer?: string }) => { toSVG(scale?: number): Promise<string>; finalize(): void };
}

let vegaPromise: Promise<VegaModule> | undefined;

/** vega, loaded on first use; a clear error if it is not installed. */
export function loadVega(purpose = 'Plotting'): Promise<VegaModule> {
  vegaPromise ??= importOptional('vega', purpose) as Promise<VegaModule>;
  vegaPromise.catch(() => (vegaPromise = undefined));
  return vegaPromise;
}
