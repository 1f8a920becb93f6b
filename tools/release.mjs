#!/usr/bin/env node
// The release: `npm run release -- --registry URL` (docs/releasing.md).
//   changeset version → npm install → build → tests and package checks → commit → changeset publish
// It publishes only to the registry named with --registry; the public npm registry needs --public
// (alone, or with --registry https://registry.npmjs.org/), so a slip never publishes there.
// --skip-tests skips the test suite and the package checks: for the release test in CI, which runs
// both on the same commit just before (running them again would repeat CI's longest step).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { manifest, pendingChangesets, pkgDirs, root, run } from './lib/packages.mjs';

const PUBLIC = 'https://registry.npmjs.org/';
const usage = `usage: npm run release -- --registry URL [--skip-tests]
       npm run release -- --public [--skip-tests]   (the public npm registry)`;

function parseArgs(argv) {
  const opts = { registry: undefined, public: false, skipTests: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--registry') opts.registry = argv[++i];
    else if (a.startsWith('--registry=')) opts.registry = a.slice('--registry='.length);
    else if (a === '--public') opts.public = true;
    else if (a === '--skip-tests') opts.skipTests = true;
    else throw new Error(`unknown argument ${a}\n${usage}`);
  }
  if (opts.public && !opts.registry) opts.registry = PUBLIC;
  if (!opts.registry) throw new Error(`say where to publish: --registry URL (or --public for the public npm registry)\n${usage}`);
  let url;
  try {
    url = new URL(opts.registry);
  } catch {
    throw new Error(`--registry ${opts.registry}: not a URL`);
  }
  if (/(^|\.)(npmjs\.org|npmjs\.com|yarnpkg\.com)$/.test(url.hostname) && !opts.public) {
    throw new Error(`${opts.registry} is the public npm registry: add --public to publish there`);
  }
  opts.registry = url.href.endsWith('/') ? url.href : `${url.href}/`;
  return opts;
}

function step(title) {
  console.log(`\n== release: ${title}`);
}

/** Runs a command with output shown (the long steps print progress). */
function sh(cmd, args, env) {
  run(cmd, args, root, { env, stdio: 'inherit' });
}

try {
  const opts = parseArgs(process.argv.slice(2));
  const dirty = run('git', ['status', '--porcelain'], root).trim();
  if (dirty) throw new Error(`the checkout has uncommitted changes; a release is made from a commit:\n${dirty}`);
  const pending = pendingChangesets();
  const before = manifest('core').version;
  console.log(`releasing @vit/* ${before} + ${pending.length} changesets to ${opts.registry}`);

  // Both the registry and the @vit scope's registry (a user's .npmrc may set `@vit:registry`),
  // checked below through npm itself.
  const publishEnv = { npm_config_registry: opts.registry, 'npm_config_@vit:registry': opts.registry };
  const scoped = run('npm', ['config', 'get', '@vit:registry'], root, { env: publishEnv }).trim();
  if (scoped.replace(/\/?$/, '/') !== opts.registry) throw new Error(`npm would publish @vit/* to ${scoped}, not ${opts.registry}: check your .npmrc`);

  step('changeset version');
  if (pending.length) sh('npx', ['changeset', 'version']);
  const version = manifest('core').version;
  const versions = pkgDirs.map((d) => `${manifest(d).name}@${manifest(d).version}`);
  if (pkgDirs.some((d) => manifest(d).version !== version)) throw new Error(`the fixed group has several versions: ${versions.join(', ')}`);
  console.log(`version ${before} → ${version}`);

  step('npm install (the lock file takes the new versions)');
  sh('npm', ['install', '--no-audit', '--no-fund']);

  step('build');
  // Nx's cache is keyed on package.json too, but a release should not depend on that.
  sh('npx', ['nx', 'run-many', '-t', 'build', '--skip-nx-cache', '--outputStyle=static']);
  for (const d of pkgDirs) if (!existsSync(join(root, 'packages', d, 'dist', 'index.js'))) throw new Error(`packages/${d}: no dist after the build`);

  if (opts.skipTests) {
    step('tests and package checks skipped (--skip-tests)');
  } else {
    step('tests');
    sh('npm', ['test']);
    step('package checks');
    sh('node', ['tools/check-packages.mjs']);
  }

  step(`commit "Release ${version}"`);
  sh('git', ['add', '-A']);
  sh('git', ['commit', '-q', '-m', `Release ${version}`, '-m', versions.join('\n')]);

  step(`changeset publish to ${opts.registry}`);
  // Publishes the packages whose version the registry does not have yet, and tags the commit.
  sh('npx', ['changeset', 'publish'], publishEnv);
  console.log(`\nreleased ${versions.join(', ')} to ${opts.registry}\npush the commit and its tags: git push --follow-tags`);
} catch (e) {
  console.error(`release: ${e.message}`);
  process.exit(e.status ?? 2);
}
