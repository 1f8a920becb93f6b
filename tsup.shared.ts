// Shared tsup settings for every package (run from the package's folder: nx calls `tsup` there).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defineConfig } from 'tsup';

/** The version in the package.json of the package being built (`changeset version` bumps it). */
export function packageVersion(dir = process.cwd()): string {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
}

export function vitTsup(entry: Record<string, string>) {
  return defineConfig({
    entry,
    format: ['esm', 'cjs'],
    // Emits index.d.ts for `import` and index.d.cts for `require` (the package is type: module).
    // core's `#node-builtins` resolves (package.json `imports`) to dist files that a clean build has
    // not written yet: the declaration build reads the browser module's source instead. Only here:
    // in tsconfig.json esbuild would follow the mapping too (the tests' child bundles, which need
    // the Node module).
    dts: { compilerOptions: { paths: { '#node-builtins': ['./src/platform/browser.ts'] } } },
    // Not shipped: they were 2.2 of core's 3.4 MB and pointed at sources the tarball does not hold.
    sourcemap: false,
    clean: true,
    target: 'node20',
    // import.meta.url in the CJS build too: model cards point at weights shipped beside dist/.
    shims: true,
    // Backends and sibling packages are the user's install, never bundled; `#…` subpath imports are
    // resolved by the consumer (core's `#node-builtins`: Node's built-ins or nothing in a browser).
    external: [/^@tensorflow\//, /^@vit\//, 'vitest', /^#/],
    // VERSION is read from package.json when the package is built, never kept by hand.
    define: { __VIT_VERSION__: JSON.stringify(packageVersion()) },
  });
}
