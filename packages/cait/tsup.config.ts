import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {"index": "src/index.ts"},
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  // import.meta.url in the CJS build too: the cards point at weights shipped beside dist/.
  shims: true,
  // Backends and sibling packages are the user's install, never bundled.
  external: [/^@tensorflow\//, /^@vit\//, 'vitest'],
});
