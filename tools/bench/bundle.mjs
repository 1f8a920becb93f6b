// Bundles @vit sources with esbuild (a dependency of tsup) so tools run without building the
// packages: `tools/bench/run.mjs` here (TF.js left external, resolved from node_modules, so an
// installed @tensorflow/tfjs-node is found) and the GPU machine's runner (`tools/gpu/prepare.mjs`:
// TF.js inlined too, since that machine has no node_modules).
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Architecture packages present in this checkout (every package with src/index.ts but core and cli). */
export function archPackages() {
  const dir = join(root, 'packages');
  return ['cait', 'conv2former', 'mrla', 'hilo', 'regionvit', ...listDirs(dir)]
    .filter((p, i, a) => a.indexOf(p) === i && p !== 'core' && p !== 'cli')
    .filter((p) => existsSync(join(dir, p, 'src', 'index.ts')));
}

function listDirs(dir) {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** `@vit/<p>` → that package's `src/index.ts`, core's `#node-builtins` → its Node version (as vitest.shared.ts aliases them). */
export function vitAliases() {
  const alias = { '@vit/core/testing': join(root, 'packages/core/src/testing/index.ts'), '#node-builtins': join(root, 'packages/core/src/platform/node.ts') };
  for (const p of ['core', 'cli', ...archPackages()]) alias[`@vit/${p}`] = join(root, 'packages', p, 'src', 'index.ts');
  return alias;
}

/** What tsup.shared.ts defines when it builds core: VERSION from core's package.json. */
function versionDefine() {
  const { version } = JSON.parse(readFileSync(join(root, 'packages', 'core', 'package.json'), 'utf8'));
  return { __VIT_VERSION__: JSON.stringify(version) };
}

/** Exact-name resolution (esbuild's `alias` would also rewrite `@vit/core/testing` by prefix). */
function exactResolvePlugin(map) {
  const esc = Object.keys(map).map((k) => k.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
  return {
    name: 'exact-resolve',
    setup(b) {
      if (esc.length) b.onResolve({ filter: new RegExp(`^(${esc.join('|')})$`) }, (args) => ({ path: map[args.path] }));
    },
  };
}

/**
 * esbuild plugin: in the matching files, `import.meta.url` becomes the URL the source file has in
 * the checkout the bundle runs from (`$VIT_REPO_ROOT`, else the working directory), so
 * `new URL('../test/fixtures/…', import.meta.url)` still finds fixtures from a bundle.
 */
export function sourceUrlPlugin(filter = /\.gpu\.test\.ts$/) {
  return {
    name: 'source-import-meta-url',
    setup(b) {
      b.onLoad({ filter }, (args) => {
        const rel = relative(root, args.path).split('\\').join('/');
        const url = `new URL(${JSON.stringify(rel)}, 'file://' + (process.env.VIT_REPO_ROOT || process.cwd()).replace(/\\/?$/, '/')).href`;
        const src = readFileSync(args.path, 'utf8').replaceAll('import.meta.url', url);
        return { contents: src, loader: 'ts', resolveDir: dirname(args.path) };
      });
    },
  };
}

/**
 * Builds one ESM bundle. `inlineTfjs` bundles TF.js as well (only `webgpu`, whose native addon
 * cannot be bundled, and the optional tfjs-node packages stay external).
 */
export async function bundle({ contents, outfile, inlineTfjs = false, plugins = [], alias = {} }) {
  const { build } = await import('esbuild');
  mkdirSync(dirname(outfile), { recursive: true });
  const external = ['webgpu', 'sharp', 'vega', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'vitest'];
  if (!inlineTfjs) external.push('@tensorflow/*');
  else external.splice(external.indexOf('vitest'), 1);
  await build({
    stdin: { contents, resolveDir: root, loader: 'ts', sourcefile: 'entry.ts' },
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    outfile,
    external,
    define: versionDefine(),
    plugins: [exactResolvePlugin({ ...vitAliases(), ...alias }), ...plugins],
    // CommonJS inside an ESM bundle (TF.js's node builds) needs a real `require` and `__dirname`.
    banner: {
      js: "import { createRequire as __vitCreateRequire } from 'node:module'; import { fileURLToPath as __vitFileURLToPath } from 'node:url'; const require = __vitCreateRequire(import.meta.url); const __filename = __vitFileURLToPath(import.meta.url); const __dirname = __vitFileURLToPath(new URL('.', import.meta.url));",
    },
    logLevel: 'error',
    legalComments: 'none',
  });
  return outfile;
}

/**
 * Several entry points sharing chunks (one copy of TF.js for all of them: tfjs-core keeps its
 * engine in module state, so two copies would be two engines). `entries` maps an output name to
 * the entry's source text; everything is inlined except `external`.
 */
export async function bundleSplit({ entries, outdir, plugins = [], alias = {}, external = ['webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'sharp', 'vega'], minify = true }) {
  const { build } = await import('esbuild');
  const { writeFileSync, rmSync } = await import('node:fs');
  const srcDir = join(root, 'node_modules', '.cache', 'vit-bundle-entries');
  rmSync(srcDir, { recursive: true, force: true });
  mkdirSync(srcDir, { recursive: true });
  const entryPoints = {};
  for (const [name, contents] of Object.entries(entries)) {
    const f = join(srcDir, `${name}.ts`);
    writeFileSync(f, contents);
    entryPoints[name] = f;
  }
  mkdirSync(outdir, { recursive: true });
  const res = await build({
    entryPoints,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    outdir,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    external,
    define: versionDefine(),
    plugins: [exactResolvePlugin({ ...vitAliases(), ...alias }), ...plugins],
    banner: {
      js: "import { createRequire as __vitCreateRequire } from 'node:module'; import { fileURLToPath as __vitFileURLToPath } from 'node:url'; const require = __vitCreateRequire(import.meta.url); const __filename = __vitFileURLToPath(import.meta.url); const __dirname = __vitFileURLToPath(new URL('.', import.meta.url));",
    },
    minify,
    // Test files and registration modules are imported for their side effects; packages declare
    // `sideEffects: false`/lists for users' bundlers, which would drop them here.
    ignoreAnnotations: true,
    logLevel: 'error',
    legalComments: 'none',
    metafile: true,
  });
  rmSync(srcDir, { recursive: true, force: true });
  return res.metafile;
}

/**
 * Bundles a tool's view of @vit: `tf` (tfjs-core, with @tensorflow/tfjs's gradients registered),
 * the named @vit/core exports, and every architecture package (their models registered), to
 * node_modules/.cache/vit-bench/<name>.mjs. Returns the bundle's path.
 */
export async function bundleVitTool(name, coreExports) {
  const outfile = join(root, 'node_modules', '.cache', 'vit-bench', `${name}.mjs`);
  await bundle({
    contents: [
      "import '@tensorflow/tfjs';",
      "export * as tf from '@tensorflow/tfjs-core';",
      `export { ${coreExports.join(', ')} } from '@vit/core';`,
      ...archPackages().map((p) => `import '@vit/${p}';`),
    ].join('\n'),
    outfile,
  });
  return outfile;
}
