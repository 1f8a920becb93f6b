import { VitError } from '../errors.js';

/** A backend could not be initialised, or kernels were installed before their backend was loaded. */
export class BackendError extends VitError {
  constructor(message: string) {
    super(message, 'VIT_BACKEND');
  }
}

/** An allocation `guardWasmMalloc` (wasm_threads.ts) refused before anything was written: the backend stays usable. */
export class WasmAllocationError extends Error {
  override name = 'WasmAllocationError';
}
