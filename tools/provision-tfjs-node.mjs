#!/usr/bin/env node
// Provisions @tensorflow/tfjs-node (the `tensorflow` TF.js backend, ~6x faster than anything else
// on a CPU) without its install script's download of libtensorflow 2.9.1 from
// storage.googleapis.com, which machines without internet cannot reach. Instead:
//   1. get a TensorFlow wheel: --wheel PATH, or `pip download tensorflow-cpu==2.21.* --no-deps`
//      (works from a local pip index/mirror);
//   2. take libtensorflow_cc.so.2 + libtensorflow_framework.so.2 and the C-API headers out of it
//      (the wheel's libtensorflow_cc exports every TF_*/TFE_* symbol the binding uses);
//   3. fetch the tfjs-node package and its small runtime deps with npm (--ignore-scripts);
//   4. compile the binding with node-gyp against those libraries (binding.gyp links
//      -ltensorflow -ltensorflow_framework from deps/lib, rpath $ORIGIN/../../deps/lib);
//   5. check it against the cpu backend, then move it into <prefix>/node_modules/@tensorflow/.
// package.json and the lock file are not touched; `npm install`/`npm ci` remove the package
// again (it is extraneous to the lock), so run this after them. Everything works without it.
//
// Usage: node tools/provision-tfjs-node.mjs [options]   (--help lists them)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const HELP = `provision-tfjs-node: build @tensorflow/tfjs-node against a local TensorFlow wheel (no libtensorflow download)

  --prefix DIR        project whose node_modules receives the package (default: this repo, ${repoRoot})
  --wheel PATH        TensorFlow wheel to take libtensorflow from (default: $VIT_TF_WHEEL, else pip download)
  --tf-spec SPEC      requirement pip downloads when no wheel is given (default: tensorflow-cpu==2.21.*, or tensorflow==2.21.* with --gpu)
  --gpu               provision @tensorflow/tfjs-node-gpu instead (needs a CUDA-enabled TensorFlow wheel and the CUDA libraries it loads; untested here)
  --version V         tfjs-node version (default: the prefix's installed @tensorflow/tfjs version)
  --tgz PATH          use this tfjs-node .tgz instead of fetching it with npm pack
  --cache DIR         where wheels, extracted libraries and built bindings are kept (default: $VIT_CACHE_DIR or ~/.cache/vit)
  --nodedir DIR       Node headers for node-gyp (default: found beside the node binary, e.g. /usr/include/node)
  --copy              copy the 850 MB of libraries into the package instead of hard-linking from the cache
  --force             rebuild even if a working provisioned package is there
  --check             only report whether the package is provisioned and working (exit 0) or not (exit 1)
  --no-verify         skip the check against the cpu backend
  -h, --help

Exit codes: 0 ok, 1 failed, 2 no TensorFlow wheel available (nothing changed).`;

const { values: opt } = parseArgs({
  options: {
    prefix: { type: 'string' },
    wheel: { type: 'string' },
    'tf-spec': { type: 'string' },
    gpu: { type: 'boolean', default: false },
    version: { type: 'string' },
    tgz: { type: 'string' },
    cache: { type: 'string' },
    nodedir: { type: 'string' },
    copy: { type: 'boolean', default: false },
    force: { type: 'boolean', default: false },
    check: { type: 'boolean', default: false },
    'no-verify': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (opt.help) {
  console.log(HELP);
  process.exit(0);
}

const t0 = Date.now();
const log = (msg) => console.log(`[provision-tfjs-node ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
class Fail extends Error {
  constructor(msg, code = 1) {
    super(msg);
    this.code = code;
  }
}

function run(cmd, args, o = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...o });
  if (r.error) throw new Fail(`${cmd} could not run: ${r.error.message}`);
  return r;
}
function mustRun(cmd, args, o = {}) {
  const r = run(cmd, args, o);
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-25).join('\n');
    throw new Fail(`${cmd} ${args.join(' ')} failed (exit ${r.status}):\n${out}`);
  }
  return r;
}

const prefix = path.resolve(opt.prefix ?? repoRoot);
const pkgName = opt.gpu ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
const nm = path.join(prefix, 'node_modules');
const target = path.join(nm, ...pkgName.split('/'));
const cacheDir = path.resolve(opt.cache ?? process.env.VIT_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'vit'));
const MARKER = '.vit-provision.json';

/** Loads the package in a child process and compares a few ops and a gradient with cpu. */
function verify(pkgDir) {
  const script = `
    const tf = require(${JSON.stringify(pkgDir)});
    const out = { backend: tf.getBackend(), gpu: !!tf.backend().isUsingGpuDevice, tfVersion: tf.version && tf.version['tfjs-node'] };
    const f = (x, w, d) => tf.sum(tf.mul(tf.softmax(tf.matMul(tf.reshape(tf.relu(tf.depthwiseConv2d(tf.conv2d(x, w, 2, 'same'), d, 1, 'valid')), [2, -1]), tf.ones([72, 5]))), tf.range(0, 5)));
    const run = () => tf.tidy(() => {
      const x = tf.randomNormal([2, 9, 9, 3], 0, 1, 'float32', 1), w = tf.randomNormal([3, 3, 3, 8], 0, 0.3, 'float32', 2), d = tf.randomNormal([3, 3, 8, 1], 0, 0.3, 'float32', 3);
      const { value, grads } = tf.valueAndGrads(f)([x, w, d]);
      return [value, ...grads].map((t) => Array.from(t.dataSync()));
    });
    const a = run();
    tf.setBackend('cpu');
    const b = run();
    let err = 0, scale = 0;
    a.forEach((v, i) => v.forEach((x, j) => { err = Math.max(err, Math.abs(x - b[i][j])); scale = Math.max(scale, Math.abs(b[i][j])); }));
    out.maxAbsErr = err; out.scale = scale;
    console.log(JSON.stringify(out));`;
  const r = run(process.execPath, ['-e', script], { cwd: prefix, env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' } });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  let res;
  try {
    res = JSON.parse(line);
  } catch {
    return { ok: false, why: `${pkgName} does not load: ${`${r.stderr ?? ''}`.trim().split('\n').filter((l) => /Error|error/.test(l)).slice(0, 3).join(' | ') || `exit ${r.status}`}` };
  }
  if (res.backend !== 'tensorflow') return { ok: false, why: `backend is '${res.backend}', expected 'tensorflow'`, res };
  if (!(res.maxAbsErr <= 1e-4 * Math.max(1, res.scale))) return { ok: false, why: `differs from cpu by ${res.maxAbsErr}`, res };
  return { ok: true, res };
}

function readJson(p) {
  try {
    return JSON.parse(fs.readFileSync(p, 'utf8'));
  } catch {
    return undefined;
  }
}

function findWheel() {
  const given = opt.wheel ?? process.env.VIT_TF_WHEEL;
  if (given) {
    if (!fs.existsSync(given)) throw new Fail(`wheel not found: ${given}`, 2);
    return path.resolve(given);
  }
  const spec = opt['tf-spec'] ?? (opt.gpu ? 'tensorflow==2.21.*' : 'tensorflow-cpu==2.21.*');
  const dir = path.join(cacheDir, 'wheels');
  fs.mkdirSync(dir, { recursive: true });
  // A wheel downloaded earlier for the same `name==X.Y.*` spec: pip would spend ~10 s re-hashing it.
  const m0 = /^([A-Za-z0-9_.-]+)==([0-9.]+?)(\.\*)?$/.exec(spec);
  if (m0) {
    const stem = `${m0[1].replace(/[-.]/g, '_')}-${m0[2]}${m0[3] ? '.' : ''}`;
    const hit = fs.readdirSync(dir).find((f) => f.endsWith('.whl') && (m0[3] ? f.startsWith(stem) : f.startsWith(`${stem}-`)));
    if (hit) return path.join(dir, hit);
  }
  const py = ['python3', 'python'].find((p) => run(p, ['-m', 'pip', '--version']).status === 0);
  if (!py) throw new Fail('no wheel given (--wheel) and no python3 with pip to download one', 2);
  log(`pip download ${spec} --no-deps → ${dir}`);
  const base = ['-m', 'pip', 'download', spec, '--no-deps', '--disable-pip-version-check', '-d', dir];
  let r = run(py, base);
  // The libraries do not depend on the Python version: take a cp311 wheel for another Python too.
  if (r.status !== 0) {
    const tags = ['--only-binary=:all:', '--python-version', '3.11', ...['manylinux_2_27_x86_64', 'manylinux_2_17_x86_64', 'manylinux2014_x86_64'].flatMap((p) => ['--platform', p])];
    r = run(py, [...base, ...tags]);
  }
  const m = /Saved (.+\.whl)|File was already downloaded (.+\.whl)/.exec(`${r.stdout}${r.stderr}`);
  if (r.status !== 0 || !m) {
    throw new Fail(`pip could not download ${spec}: ${`${r.stderr}`.trim().split('\n').slice(-2).join(' ')}\n  pass --wheel PATH to a TensorFlow wheel (tensorflow or tensorflow-cpu, Linux x86-64)`, 2);
  }
  return path.resolve(dir, m[1] ?? m[2]);
}

function unzip(wheel, dest, patterns) {
  fs.mkdirSync(dest, { recursive: true });
  if (run('unzip', ['-v']).status === 0) {
    // unzip exits 11 when a pattern matches nothing; the check below catches real misses.
    const r = run('unzip', ['-q', '-o', wheel, ...patterns, '-d', dest]);
    if (r.status !== 0 && r.status !== 11) throw new Fail(`unzip failed: ${r.stderr}`);
    return;
  }
  const py = `import sys, zipfile, fnmatch
z = zipfile.ZipFile(sys.argv[1]); pats = sys.argv[3:]
z.extractall(sys.argv[2], [n for n in z.namelist() if any(fnmatch.fnmatch(n, p) for p in pats)])`;
  mustRun('python3', ['-c', py, wheel, dest, ...patterns]);
}

/** Extracts the two libraries and the C-API headers once per wheel into the cache. */
function extractLibtensorflow(wheel) {
  const dir = path.join(cacheDir, 'libtensorflow', path.basename(wheel, '.whl'));
  const lib = path.join(dir, 'lib');
  if (fs.existsSync(path.join(dir, 'ok'))) return dir;
  log(`extracting libtensorflow from ${path.basename(wheel)} (≈850 MB)`);
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  // Headers: the binding includes tensorflow/c/{c_api,eager/c_api}.h, which pull in
  // tensorflow/c/*, tensorflow/core/platform/ctstring*, tsl/platform/ctstring*, xla/tsl/c/*.
  unzip(wheel, tmp, [
    'tensorflow/libtensorflow_cc.so.2',
    'tensorflow/libtensorflow_framework.so.2',
    'tensorflow/include/tensorflow/c/*',
    'tensorflow/include/tensorflow/core/platform/*',
    'tensorflow/include/tsl/platform/*',
    'tensorflow/include/xla/tsl/c/*',
  ]);
  for (const f of ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2', 'include/tensorflow/c/c_api.h', 'include/tensorflow/c/eager/c_api.h']) {
    if (!fs.existsSync(path.join(tmp, 'tensorflow', f))) throw new Fail(`${path.basename(wheel)} has no tensorflow/${f}: not a TensorFlow 2.x Linux wheel?`, 2);
  }
  fs.mkdirSync(lib, { recursive: true });
  for (const f of ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2']) fs.renameSync(path.join(tmp, 'tensorflow', f), path.join(lib, f));
  fs.rmSync(path.join(dir, 'include'), { recursive: true, force: true });
  fs.renameSync(path.join(tmp, 'tensorflow', 'include'), path.join(dir, 'include'));
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.writeFileSync(path.join(dir, 'ok'), `${path.basename(wheel)}\n`);
  return dir;
}

function linkOrCopy(src, dst) {
  if (!opt.copy) {
    try {
      fs.linkSync(src, dst);
      return 'hard-linked';
    } catch {
      // another filesystem: copy
    }
  }
  fs.copyFileSync(src, dst);
  return 'copied';
}

/** deps/lib as binding.gyp expects it: -ltensorflow resolves to the wheel's libtensorflow_cc. */
function placeDeps(pkgDir, libDir) {
  const deps = path.join(pkgDir, 'deps');
  fs.rmSync(deps, { recursive: true, force: true });
  fs.mkdirSync(path.join(deps, 'lib'), { recursive: true });
  let how = '';
  for (const f of ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2']) how = linkOrCopy(path.join(libDir, 'lib', f), path.join(deps, 'lib', f));
  fs.symlinkSync('libtensorflow_cc.so.2', path.join(deps, 'lib', 'libtensorflow.so'));
  fs.symlinkSync('libtensorflow_framework.so.2', path.join(deps, 'lib', 'libtensorflow_framework.so'));
  // scripts/install.js skips its download when this file exists (a later `npm rebuild` stays offline).
  fs.symlinkSync('libtensorflow_cc.so.2', path.join(deps, 'lib', 'libtensorflow.so.2.9.1'));
  fs.cpSync(path.join(libDir, 'include'), path.join(deps, 'include'), { recursive: true });
  return how;
}

function findNodeGyp() {
  const cands = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(path.dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  const npmPath = run('npm', ['root', '-g']).stdout?.trim();
  if (npmPath) cands.push(path.join(npmPath, 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), path.join(npmPath, 'node-gyp', 'bin', 'node-gyp.js'));
  const found = cands.find((p) => p && fs.existsSync(p));
  if (!found) throw new Fail('node-gyp not found (it ships with npm): set npm_config_node_gyp to its bin/node-gyp.js');
  return found;
}

function findNodeDir() {
  const given = opt.nodedir ?? process.env.npm_config_nodedir;
  const cands = [given, path.resolve(path.dirname(process.execPath), '..'), '/usr', '/usr/local'].filter(Boolean);
  const found = cands.find((d) => fs.existsSync(path.join(d, 'include', 'node', 'node_api.h')));
  if (!found) throw new Fail('Node headers not found (include/node/node_api.h): pass --nodedir (node-gyp would try to download them)');
  return found;
}

/** Compiles the binding (≈15 s), or reuses one built earlier against the same wheel and package. */
function buildBinding(pkgDir, wheel) {
  const req = createRequire(path.join(pkgDir, 'package.json'));
  const bindingPath = req('@mapbox/node-pre-gyp').find(path.join(pkgDir, 'package.json'));
  const moduleDir = path.dirname(bindingPath);
  const napi = /napi-v(\d+)/.exec(moduleDir)?.[1] ?? process.versions.napi;
  const pj = readJson(path.join(pkgDir, 'package.json'));
  const key = createHash('sha256').update(`${pj.name}@${pj.version}|${path.basename(wheel)}|napi${napi}|${process.arch}`).digest('hex').slice(0, 16);
  const cached = path.join(cacheDir, 'bindings', key, 'tfjs_binding.node');
  fs.mkdirSync(moduleDir, { recursive: true });
  if (fs.existsSync(cached) && !opt.force) {
    fs.copyFileSync(cached, bindingPath);
    log(`binding reused from ${path.dirname(cached)}`);
    return bindingPath;
  }
  const gyp = findNodeGyp();
  const nodedir = findNodeDir();
  log(`compiling the binding (node-gyp, nodedir ${nodedir}, N-API ${napi})`);
  mustRun(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`, '--module_name=tfjs_binding', `--module_path=${moduleDir}`, `--napi_build_version=${napi}`, '--jobs=max'], {
    cwd: pkgDir,
    env: { ...process.env, npm_config_nodedir: nodedir },
  });
  if (!fs.existsSync(bindingPath)) throw new Fail(`node-gyp finished but ${bindingPath} is missing`);
  fs.rmSync(path.join(pkgDir, 'build'), { recursive: true, force: true });
  fs.mkdirSync(path.dirname(cached), { recursive: true });
  fs.copyFileSync(bindingPath, cached);
  return bindingPath;
}

/** The package and its runtime deps (not @tensorflow/*: those resolve to the prefix's tfjs). */
function stagePackage(stage, version) {
  const tgz = opt.tgz
    ? path.resolve(opt.tgz)
    : (() => {
        log(`npm pack ${pkgName}@${version}`);
        const r = mustRun('npm', ['pack', `${pkgName}@${version}`, '--pack-destination', stage, '--silent'], { cwd: stage });
        return path.join(stage, r.stdout.trim().split('\n').pop());
      })();
  mustRun('tar', ['xzf', tgz, '-C', stage]);
  const pkgDir = path.join(stage, 'package');
  const pj = readJson(path.join(pkgDir, 'package.json'));
  const deps = Object.fromEntries(Object.entries(pj.dependencies ?? {}).filter(([n]) => !n.startsWith('@tensorflow/')));
  const depStage = path.join(stage, 'deps');
  fs.mkdirSync(depStage);
  fs.writeFileSync(path.join(depStage, 'package.json'), JSON.stringify({ name: 'vit-tfjs-node-deps', private: true, dependencies: deps }, null, 2));
  log(`npm install ${Object.keys(deps).join(' ')} (--ignore-scripts)`);
  mustRun('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--no-package-lock', '--omit=dev', '--loglevel=error'], { cwd: depStage });
  fs.renameSync(path.join(depStage, 'node_modules'), path.join(pkgDir, 'node_modules'));
  return pkgDir;
}

function dirSize(p) {
  const r = run('du', ['-sh', p]);
  return r.status === 0 ? r.stdout.split('\t')[0] : '?';
}

function main() {
  const tfjsPj = readJson(path.join(nm, '@tensorflow', 'tfjs', 'package.json'));
  if (!tfjsPj) throw new Fail(`${prefix} has no node_modules/@tensorflow/tfjs: install the project's dependencies first (tfjs-node uses that copy)`);
  const marker = readJson(path.join(target, MARKER));

  if (opt.check) {
    if (!fs.existsSync(target)) throw new Fail(`${pkgName} is not installed in ${prefix}`);
    const v = verify(target);
    if (!v.ok) throw new Fail(`${pkgName} is there but not working: ${v.why}`);
    log(`${pkgName} works (${marker ? `built from ${marker.wheel}` : 'not provisioned by this script'}; max |tensorflow − cpu| = ${v.res.maxAbsErr.toExponential(1)})`);
    return;
  }
  if (fs.existsSync(target) && !opt.force) {
    const v = verify(target);
    if (v.ok) {
      log(`${pkgName} is already there and works (${marker ? `built from ${marker.wheel}` : 'installed otherwise'}); --force rebuilds`);
      return;
    }
    log(`${pkgName} is there but broken (${v.why}): rebuilding`);
  }

  const version = opt.version ?? tfjsPj.version;
  if (!opt.version && !/^4\./.test(version)) log(`warning: @tensorflow/tfjs is ${version}; tfjs-node ${version} is untested with this route`);
  const wheel = findWheel();
  log(`wheel: ${wheel}`);
  const libDir = extractLibtensorflow(wheel);

  fs.mkdirSync(path.dirname(target), { recursive: true });
  // Stage beside the target (same filesystem: hard links from the cache and the final rename work).
  const stage = fs.mkdtempSync(path.join(path.dirname(target), '.provision-'));
  try {
    const pkgDir = stagePackage(stage, version);
    const how = placeDeps(pkgDir, libDir);
    log(`deps/lib ${how} from ${path.join(libDir, 'lib')}`);
    buildBinding(pkgDir, wheel);
    fs.writeFileSync(
      path.join(pkgDir, MARKER),
      JSON.stringify({ wheel: path.basename(wheel), package: `${pkgName}@${version}`, node: process.version, builtAt: new Date().toISOString(), by: 'tools/provision-tfjs-node.mjs' }, null, 2),
    );
    if (!opt['no-verify']) {
      const v = verify(pkgDir);
      if (!v.ok) throw new Fail(`the built package does not work: ${v.why}`);
      log(`checked against cpu: backend '${v.res.backend}'${v.res.gpu ? ' (GPU)' : ''}, max |tensorflow − cpu| over forward + 3 gradients = ${v.res.maxAbsErr.toExponential(1)}`);
    }
    const old = `${target}.old-${process.pid}`;
    if (fs.existsSync(target)) fs.renameSync(target, old);
    fs.renameSync(pkgDir, target);
    fs.rmSync(old, { recursive: true, force: true });
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
  log(`done: ${pkgName}@${version} in ${target} (${dirSize(target)}${opt.copy ? '' : ', libraries shared with the cache by hard links'})`);
  log(`use it: VIT_BACKEND=tensorflow, or VIT_TEST_BACKEND=tensorflow for the test suites`);
}

try {
  main();
} catch (e) {
  console.error(`[provision-tfjs-node] ${e instanceof Fail ? e.message : e.stack}`);
  process.exit(e instanceof Fail ? e.code : 1);
}
