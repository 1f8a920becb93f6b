/** Exit codes scripts can rely on (also listed in `vit --help`). */
export const EXIT = {
  OK: 0,
  /** The command ran and its check failed (parity FAIL). */
  FAILED: 1,
  /** Bad flags, unknown command or model name. */
  USAGE: 2,
  /** Missing or malformed input file (weights, golden, data), or weights that could not be downloaded. */
  INPUT: 3,
  /** The requested backend cannot be used here. */
  BACKEND: 4,
  /** The backend ran out of memory (wasm: its 4 GiB heap); the message says what to try. */
  MEMORY: 5,
  /** Interrupted (Ctrl-C / SIGINT), as shells report it: 128 + 2. `vit train` saved last/ first. */
  INTERRUPTED: 130,
  /** A bug: an unexpected exception. */
  INTERNAL: 70,
} as const;

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A missing, unreadable or malformed input (data set, checkpoint, image): exit code 3. */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}
