/**
 * Node's built-in modules, reached only through here. `#node-builtins` is a subpath import of
 * @vit/core (package.json `imports`): `./node.ts` under the `node` condition, `./browser.ts`
 * otherwise, so the package bundles for a browser with no bundler configuration.
 */
import { node } from '#node-builtins';
import { VitError } from '../errors.js';
import type { NodeBuiltins } from './types.js';

export type { NodeBuiltins };

/** Whether this runtime is Node (the file cache, libtensorflow, Dawn) rather than a browser or worker. */
export function isNodeRuntime(): boolean {
  return node !== undefined;
}

/** Node's built-ins, or undefined in a browser. */
export function nodeBuiltins(): NodeBuiltins | undefined {
  return node;
}

/** Node's built-ins, or a `VitError` saying that `what` needs Node and, with `hint`, what to do instead. */
export function requireNode(what: string, hint?: string): NodeBuiltins {
  if (node) return node;
  throw new VitError(`${what} needs Node.js (node:fs)${hint ? `; ${hint}` : ''}`, 'VIT_IO');
}

/**
 * `import()` of a package named at run time (an optional peer: a backend, sharp, Dawn). Bundlers
 * leave it alone (the magic comments silence Vite and webpack), so an optional peer is never pulled
 * into a bundle; in a browser bundle it resolves only through an import map.
 */
export function importByName(spec: string): Promise<unknown> {
  return import(/* @vite-ignore */ /* webpackIgnore: true */ spec);
}
