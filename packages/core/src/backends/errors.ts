import { VitError } from '../errors.js';

/** A backend could not be initialised, or kernels were installed before their backend was loaded. */
export class BackendError extends VitError {
  constructor(message: string) {
    super(message, 'VIT_BACKEND');
  }
}
