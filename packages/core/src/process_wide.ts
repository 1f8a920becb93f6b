/**
 * State that must exist once per process. A program that `require()`s one @vit package and
 * `import`s another loads both the CommonJS and the ESM build of @vit/core (and the CommonJS
 * `@vit/core/testing` bundles a copy of its own): module-level state would then exist two or three
 * times, so models registered through one copy were invisible to the other, and two copies
 * numbering TF.js variables from 1 gave clashing names. Keyed with `Symbol.for`, so every copy
 * finds the same object on `globalThis`.
 */
export function processWide<T extends object>(name: string, init: () => T): T {
  const g = globalThis as Record<symbol, unknown>;
  const key = Symbol.for(`@vit/core.${name}`);
  return (g[key] ??= init()) as T;
}
