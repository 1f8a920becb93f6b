/** Node's built-in modules that @vit/core uses (types only: nothing here is loaded). */
export interface NodeBuiltins {
  fs: typeof import('node:fs');
  path: typeof import('node:path');
  os: typeof import('node:os');
  crypto: typeof import('node:crypto');
  url: typeof import('node:url');
  zlib: typeof import('node:zlib');
  workerThreads: typeof import('node:worker_threads');
  v8: typeof import('node:v8');
  /** `require` relative to @vit/core itself: finds the backends' files as this package resolves them. */
  require: NodeJS.Require;
}
