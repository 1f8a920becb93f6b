import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {"index": "src/index.ts"},
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  // Backends and sibling packages are the user's install, never bundled.
  external: [/^@tensorflow\//, /^@vit\//, 'vitest'],
});
