// Shared vitest settings: tests import sibling @vit packages from source, so a change in core is
// seen by every package's tests without a rebuild. The GPU project runs only `*.gpu.test.ts`.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import { packageVersion } from './tsup.shared';

const root = fileURLToPath(new URL('.', import.meta.url));
const pkgs = ['core', 'hilo', 'conv2former', 'regionvit', 'mrla', 'cait', 'cli'];

export const alias = [
  { find: '@vit/core/testing', replacement: `${root}packages/core/src/testing/index.ts` },
  // core's subpath import, as package.json maps it for Node (the built files are in dist/).
  { find: /^#node-builtins$/, replacement: `${root}packages/core/src/platform/node.ts` },
  ...pkgs.map((p) => ({ find: new RegExp(`^@vit/${p}$`), replacement: `${root}packages/${p}/src/index.ts` })),
];

function testExclude(): string[] {
  return (process.env.VIT_TEST_EXCLUDE ?? '')
    .split(',')
    .map((g) => g.trim())
    .filter(Boolean);
}

export function vitConfig() {
  return defineConfig({
    resolve: { alias },
    // What tsup.shared.ts defines when it builds core (tests import core's sources, not its dist).
    define: { __VIT_VERSION__: JSON.stringify(packageVersion(`${root}packages/core`)) },
    test: {
      testTimeout: 120_000,
      hookTimeout: 120_000,
      pool: 'forks',
      projects: [
        // VIT_TEST_EXCLUDE: comma-separated globs left out of the unit project (CI's tensorflow pass).
        { extends: true, test: { name: 'unit', include: ['src/**/*.test.ts'], exclude: ['src/**/*.gpu.test.ts', ...testExclude()] } },
        { extends: true, test: { name: 'gpu', include: ['src/**/*.gpu.test.ts'] } },
      ],
    },
  });
}
