import { ConfigError, nearestNames } from '../errors.js';
import type { Module } from './module.js';

/**
 * Called after a hooked module's forward with the module, its arguments and its output; a return
 * value other than `undefined` replaces the output (PyTorch's `register_forward_hook`).
 */
export type ForwardHook = (module: Module, args: unknown[], output: unknown) => unknown;

/**
 * The submodule at a dotted path (`blocks.3.attn`; '' is the model itself), following every name
 * a child is registered under. Throws a `ConfigError` naming the nearest existing paths.
 */
export function getSubmodule(model: Module, path: string): Module {
  if (path === '') return model;
  let m: Module = model;
  for (const part of path.split('.')) {
    const child = [...m.namedChildren()].find(([n]) => n === part)?.[1];
    if (!child) {
      const names = model.namedModules().map(([n]) => n).filter((n) => n !== '');
      throw new ConfigError(`${model.typeName} has no module '${path}'${hint(nearestNames(path, names))}`);
    }
    m = child;
  }
  return m;
}

function hint(near: string[]): string {
  return near.length ? `. Did you mean: ${near.join(', ')}?` : '';
}

/**
 * Runs `fn` with `hooks` (dotted module path → hook) wrapped around those modules' forwards, then
 * restores them, also when `fn` throws. Lets tools read or replace what a layer computes (Grad-CAM
 * targets, attention inputs) without the model's code knowing. Tensors a hook keeps beyond the
 * enclosing `tf.tidy` must be `tf.keep`-ed by the hook (or cloned and kept).
 */
export function withForwardHooks<T>(model: Module, hooks: Record<string, ForwardHook>, fn: () => T): T {
  const restore: Array<() => void> = [];
  try {
    for (const [path, hook] of Object.entries(hooks)) {
      const m = getSubmodule(model, path);
      // An own `forward` (summary, checkpointing) is put back as it was; otherwise the prototype's shows through again.
      const own = Object.prototype.hasOwnProperty.call(m, 'forward') ? m.forward : undefined;
      const inner = m.forward;
      (m as { forward: unknown }).forward = (...args: unknown[]) => {
        const out = inner.apply(m, args);
        const replaced = hook(m, args, out);
        return replaced === undefined ? out : replaced;
      };
      restore.push(() => {
        if (own === undefined) delete (m as { forward?: unknown }).forward;
        else (m as { forward: unknown }).forward = own;
      });
    }
    return fn();
  } finally {
    for (const r of restore.reverse()) r();
  }
}
