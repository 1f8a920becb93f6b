// What the package tools share (pack-install-test, check-packages, release, release-test): the
// publishable packages, packing them, temp folders, running commands.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const root = resolve(new URL('../..', import.meta.url).pathname);
/** Every publishable package's folder under packages/, dependencies first. */
export const pkgDirs = ['core', 'cait', 'conv2former', 'hilo', 'mrla', 'regionvit', 'cli'];

/** Runs a command, its stdout returned (`stdio: 'inherit'`: shown instead), stderr passed through. */
export function run(cmd, args, cwd, { env, input, stdio } = {}) {
  return execFileSync(cmd, args, { cwd, env: env ? { ...process.env, ...env } : process.env, input, stdio: stdio ?? [input === undefined ? 'ignore' : 'pipe', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 64 << 20 });
}

export function readJson(file) {
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** The manifest of packages/<d> in the checkout at `base`. */
export function manifest(d, base = root) {
  return readJson(join(base, 'packages', d, 'package.json'));
}

/** The changesets waiting for the next release (`.changeset/*.md`). */
export function pendingChangesets(base = root) {
  return readdirSync(join(base, '.changeset')).filter((f) => f.endsWith('.md') && f !== 'README.md');
}

/** Throws unless the package's build output is there (the tools test what `npm run build` made). */
export function requireBuilt(d, base = root) {
  const dir = join(base, 'packages', d);
  for (const f of ['dist/index.js', 'dist/index.cjs', 'dist/index.d.ts', 'dist/index.d.cts']) {
    if (!existsSync(join(dir, f))) throw new Error(`${manifest(d, base).name}: ${f} is missing — run the build first (npm run build)`);
  }
}

/**
 * `npm pack`s every package into `dest` (prepack copies LICENSE in) and checks each tarball holds
 * no sources or tests and does hold its LICENSE. Returns `{ dir, name, version, tarball, files, size }`.
 */
export function packPackages(dest, { base = root, dirs = pkgDirs, log = console.log } = {}) {
  return dirs.map((d) => {
    requireBuilt(d, base);
    const dir = join(base, 'packages', d);
    const [out] = JSON.parse(run('npm', ['pack', '--json', '--silent', '--pack-destination', dest], dir));
    const files = out.files.map((f) => f.path);
    if (files.some((f) => f.startsWith('src/') || f.includes('.test.'))) throw new Error(`${out.name}: tarball ships sources or tests: ${files.join(', ')}`);
    if (!files.includes('LICENSE')) throw new Error(`${out.name}: tarball has no LICENSE`);
    log(`packed ${out.filename} (${files.length} files, ${(out.size / 1024).toFixed(0)} kB)`);
    return { dir, name: out.name, version: out.version, tarball: join(dest, out.filename), files, size: out.size };
  });
}

/** Runs `fn(tmp)` in a fresh temp folder, removed afterwards (also on failure) unless `keep`. */
export async function withTempDir(prefix, fn, { keep = process.argv.includes('--keep') } = {}) {
  const tmp = mkdtempSync(join(tmpdir(), prefix));
  try {
    return await fn(tmp);
  } finally {
    if (keep) console.log(`kept ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  }
}
