#!/usr/bin/env node
// Release test against a real registry (CI): a private Verdaccio on 127.0.0.1 with its storage in a
// temp folder, `npm run release` into it from a temp copy of this checkout (the checkout itself is
// never changed: `changeset version` bumps the copy), then a fresh project that installs only
// @vit/cait from it (`@vit:registry=` in its .npmrc, TF.js from the normal registry) must get
// @vit/core of the same version and nothing else of ours, run a forward pass and report the new
// VERSION; the copy's built `vit --version` must too. Verdaccio is stopped at the end, also on
// failure. The release runs with --skip-tests: CI ran the tests and package checks just before.
// Without pending changesets (just after a release) the copy gets a patch changeset of its own, so
// there is still a version to bump.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { manifest, pendingChangesets, pkgDirs, readJson, root, run, withTempDir } from './lib/packages.mjs';

const t0 = Date.now();
const log = (m) => console.log(`[release-test ${((Date.now() - t0) / 1000).toFixed(0)}s] ${m}`);
const check = (ok, what) => {
  if (!ok) throw new Error(what);
  log(`ok: ${what}`);
};

/** A port nobody listens on (bound once on 127.0.0.1, then released for Verdaccio). */
function freePort() {
  return new Promise((res, rej) => {
    const s = createServer().once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

async function waitFor(url, child, output, ms = 60_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`verdaccio exited with ${child.exitCode}:\n${output()}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`verdaccio did not answer ${url} in ${ms / 1000}s:\n${output()}`);
}

/** Stops Verdaccio (its own process group) and waits until it is gone. */
async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }, 5000);
  await gone;
  clearTimeout(timer);
}

/** This checkout's files as git sees them (tracked and new, not ignored) in `dest`, committed. */
function copyCheckout(dest, pending) {
  const files = run('git', ['ls-files', '-co', '--exclude-standard', '-z'], root).split('\0').filter(Boolean);
  for (const f of files) {
    try {
      cpSync(join(root, f), join(dest, f), { recursive: false });
    } catch (e) {
      if (e.code !== 'ENOENT') throw e; // deleted but not yet committed
    }
  }
  // node_modules as hard links (fast, no download); npm replaces files rather than writing into them.
  try {
    run('cp', ['-al', join(root, 'node_modules'), join(dest, 'node_modules')], root);
  } catch {
    run('cp', ['-a', join(root, 'node_modules'), join(dest, 'node_modules')], root);
  }
  if (!pending.length) writeFileSync(join(dest, '.changeset', 'release-test.md'), '---\n"@vit/core": patch\n---\n\nThe release test\'s own change (no changesets were pending).\n');
  const git = (...a) => run('git', a, dest);
  git('init', '-q');
  // The release commits: an identity of the copy's own, whatever the machine's git config says.
  git('config', 'user.name', 'release-test');
  git('config', 'user.email', 'release-test@localhost');
  git('add', '-A');
  git('commit', '-q', '-m', 'release test: copy of the checkout');
}

await withTempDir('vit-release-', async (tmp) => {
  const before = manifest('core').version;
  const pending = pendingChangesets();
  const statusBefore = run('git', ['status', '--porcelain'], root);

  const repo = join(tmp, 'repo');
  mkdirSync(repo);
  copyCheckout(repo, pending);
  log(`copied the checkout (${before}, ${pending.length} changesets)`);

  // Verdaccio: our scope only from its storage (publish needs a user), nothing proxied.
  const port = await freePort();
  const registry = `http://127.0.0.1:${port}/`;
  const vdir = join(tmp, 'verdaccio');
  mkdirSync(vdir);
  writeFileSync(
    join(vdir, 'config.yaml'),
    `storage: ${join(vdir, 'storage')}
auth:
  htpasswd:
    file: ${join(vdir, 'htpasswd')}
    max_users: 1
uplinks: {}
packages:
  '@vit/*':
    access: $all
    publish: $authenticated
  '**':
    access: $all
log: { type: stdout, format: pretty, level: warn }
`,
  );
  let vout = '';
  const verdaccio = spawn(process.execPath, [join(root, 'node_modules', 'verdaccio', 'bin', 'verdaccio'), '--config', join(vdir, 'config.yaml'), '--listen', `127.0.0.1:${port}`], {
    cwd: vdir,
    detached: true, // its own process group, so stop() ends it with whatever it started
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  verdaccio.stdout.on('data', (d) => (vout += d));
  verdaccio.stderr.on('data', (d) => (vout += d));
  const onExit = () => {
    try {
      process.kill(-verdaccio.pid, 'SIGKILL');
    } catch {
      // already stopped
    }
  };
  process.on('exit', onExit);
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));
  try {
    await waitFor(`${registry}-/ping`, verdaccio, () => vout);
    log(`verdaccio ${registry} (pid ${verdaccio.pid})`);

    // A user created through the registry's API; its token is what `npm publish` sends.
    const res = await fetch(`${registry}-/user/org.couchdb.user:release-test`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'release-test', password: `pw-${process.pid}-${Date.now()}`, email: 'release-test@localhost' }),
    });
    const { token } = await res.json();
    check(res.ok && typeof token === 'string', `created a registry user (HTTP ${res.status}) with a token`);
    // Only this file's settings: never the machine's own npm credentials.
    const npmrc = join(tmp, 'npmrc');
    writeFileSync(npmrc, `//127.0.0.1:${port}/:_authToken=${token}\n`);
    const npmEnv = { npm_config_userconfig: npmrc };

    // A release without --registry is refused before it changes anything.
    let refused = false;
    try {
      run('node', ['tools/release.mjs'], repo, { env: npmEnv });
    } catch (e) {
      refused = e.status === 2;
    }
    check(refused && run('git', ['status', '--porcelain'], repo) === '', 'npm run release without --registry is refused and changes nothing');

    log('npm run release -- --registry … --skip-tests');
    run('npm', ['run', 'release', '--', '--registry', registry, '--skip-tests'], repo, { env: npmEnv, stdio: 'inherit' });
    const version = manifest('core', repo).version;
    check(version !== before && pkgDirs.every((d) => manifest(d, repo).version === version), `all seven packages bumped ${before} → ${version}`);
    for (const d of pkgDirs) {
      const changelog = readFileSync(join(repo, 'packages', d, 'CHANGELOG.md'), 'utf8');
      if (!changelog.includes(`## ${version}`) || /Updated dependencies|\b[0-9a-f]{7}:/.test(changelog)) throw new Error(`packages/${d}/CHANGELOG.md:\n${changelog}`);
    }
    check(true, 'every CHANGELOG.md has the release, without commit hashes or "Updated dependencies"');
    for (const d of pkgDirs) {
      const got = run('npm', ['view', `${manifest(d).name}@${version}`, 'version', '--registry', registry], repo, { env: npmEnv }).trim();
      if (got !== version) throw new Error(`${manifest(d).name}@${version} is not in the registry`);
    }
    check(true, `the registry has all seven packages at ${version}`);
    const vitVersion = run('node', ['packages/cli/bin/vit.js', '--version'], repo).trim();
    check(vitVersion === version, `the built vit --version says ${vitVersion}`);

    // A user's project: only @vit/cait from our registry, everything else from the normal one.
    const app = join(tmp, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'vit-release-test-app', private: true, type: 'module' }, null, 2));
    writeFileSync(join(app, '.npmrc'), `@vit:registry=${registry}\n`);
    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', `@vit/cait@${version}`, '@tensorflow/tfjs@^4.22.0'], app, { env: npmEnv });
    const lock = readJson(join(app, 'package-lock.json'));
    const ours = Object.entries(lock.packages)
      .filter(([p]) => /(^|\/)node_modules\/@vit\//.test(p))
      .map(([p, v]) => ({ name: p.slice(p.lastIndexOf('@vit/')), version: v.version, resolved: v.resolved }));
    check(
      ours.length === 2 && ours.map((p) => p.name).sort().join() === '@vit/cait,@vit/core' && ours.every((p) => p.version === version),
      `installing @vit/cait pulled ${ours.map((p) => `${p.name}@${p.version}`).join(', ')} and nothing else of ours`,
    );
    check(ours.every((p) => p.resolved.startsWith(registry)), 'both came from the private registry');
    check(!/127\.0\.0\.1/.test(lock.packages['node_modules/@tensorflow/tfjs']?.resolved ?? '127.0.0.1'), 'TF.js came from the normal registry');
    for (const p of ['cait', 'core']) {
      const dir = join(app, 'node_modules', '@vit', p);
      if (!existsSync(join(dir, 'LICENSE')) || !readFileSync(join(dir, 'CHANGELOG.md'), 'utf8').includes(`## ${version}`)) throw new Error(`@vit/${p}: no LICENSE, or no CHANGELOG.md with ${version}`);
    }
    check(true, `the installed @vit/cait and @vit/core hold LICENSE and a CHANGELOG.md with ${version}`);

    writeFileSync(
      join(app, 'forward.mjs'),
      `import * as tf from '@tensorflow/tfjs';
import { createModel, VERSION } from '@vit/core';
import '@vit/cait';
await tf.setBackend('cpu');
const model = createModel('cait_nano').eval();
const logits = tf.tidy(() => model.forward(tf.zeros([2, 32, 32, 3])));
console.log(JSON.stringify({ shape: logits.shape, finite: logits.isFinite().all().dataSync()[0] === 1, VERSION }));
`,
    );
    const out = JSON.parse(run('node', ['forward.mjs'], app).trim().split('\n').pop());
    check(out.shape.join() === '2,10' && out.finite, `cait_nano forward pass: logits ${JSON.stringify(out.shape)}`);
    check(out.VERSION === version, `VERSION of the installed @vit/core is ${out.VERSION}`);
    const cjs = run('node', ['-e', "require('@tensorflow/tfjs'); const c = require('@vit/core'); require('@vit/cait'); console.log(c.VERSION, c.listModels('cait_*').length)"], app).trim().split('\n').pop();
    check(cjs === `${version} 11`, `require(): VERSION and the 11 CaiT models (${cjs})`);
  } catch (e) {
    console.error(`verdaccio's log:\n${vout.split('\n').slice(-40).join('\n')}`);
    throw e;
  } finally {
    await stop(verdaccio);
    process.off('exit', onExit);
    log('verdaccio stopped');
  }
  check(run('git', ['status', '--porcelain'], root) === statusBefore, 'the checkout is unchanged');
  console.log(`release test: PASS (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
});
