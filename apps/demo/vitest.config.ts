import { defineConfig } from 'vitest/config';

// Only the end-to-end test: it builds the app with Vite and drives it in Chromium.
export default defineConfig({
  test: { include: ['test/**/*.test.ts'], testTimeout: 180_000, hookTimeout: 180_000, pool: 'forks' },
});
