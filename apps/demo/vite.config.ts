// The demo imports the @vit packages from their sources, as the tests do (vitest.shared.ts), so a
// change in a package shows here without rebuilding it.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import { packageVersion } from '../../tsup.shared';
import { alias } from '../../vitest.shared';

// Cross-origin isolation gives the page SharedArrayBuffer, which tfjs-backend-wasm's threaded
// build needs; everything the page loads is same-origin, so require-corp costs nothing.
const isolation = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  // Relative asset URLs: the built app works from any folder it is served from.
  base: './',
  // core's `#node-builtins` is its browser module here (the shared aliases map it to Node's for the tests).
  resolve: { alias: [{ find: /^#node-builtins$/, replacement: fileURLToPath(new URL('../../packages/core/src/platform/browser.ts', import.meta.url)) }, ...alias] },
  define: { __VIT_VERSION__: JSON.stringify(packageVersion(fileURLToPath(new URL('../../packages/core', import.meta.url)))) },
  server: { host: '127.0.0.1', headers: isolation },
  preview: { host: '127.0.0.1', headers: isolation },
  build: { target: 'es2022', chunkSizeWarningLimit: 4096 },
});
