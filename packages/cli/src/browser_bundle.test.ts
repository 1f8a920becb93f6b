// The published packages (dist/ and package.json, as users get them) bundled for a browser the way
// a user's bundler does it: esbuild with its defaults (platform browser, nothing external), ESM
// output as a page loads it. Any error or warning fails: an unresolved `node:` import, a Node-only
// module reached, an import.meta a bundler cannot keep. And `sideEffects` must let an app that uses
// one architecture leave the others (and core's unused parts) out.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const cliDir = fileURLToPath(new URL('..', import.meta.url));
const rootDir = fileURLToPath(new URL('../../..', import.meta.url));
const ARCHITECTURES = ['hilo', 'conv2former', 'regionvit', 'mrla', 'cait'] as const;

interface Message {
  text: string;
  location: { file: string; line: number; lineText: string } | null;
}
interface Bundle {
  problems: string[];
  bytes: number;
  /** Every input file (relative to the repository), with the bytes it left in the output. */
  inputs: Map<string, number>;
}

const describeMessage = (kind: string, m: Message) => `${kind}: ${m.text}${m.location ? ` (${m.location.file}:${m.location.line}: ${m.location.lineText.trim().slice(0, 120)})` : ''}`;

/** Bundles `code` (an entry importing the packages) with esbuild's browser defaults. */
async function bundle(code: string): Promise<Bundle> {
  const { build } = await import('esbuild');
  try {
    const r = await build({
      stdin: { contents: code, resolveDir: cliDir, loader: 'js', sourcefile: 'app.js' },
      absWorkingDir: rootDir,
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = new Map<string, number>(Object.keys(r.metafile.inputs).map((f) => [f, 0]));
    for (const out of Object.values(r.metafile.outputs)) for (const [file, v] of Object.entries(out.inputs)) inputs.set(file, v.bytesInOutput);
    return { problems: r.warnings.map((w) => describeMessage('warning', w as Message)), bytes: r.outputFiles[0]!.contents.length, inputs };
  } catch (e) {
    const f = e as { errors?: Message[]; warnings?: Message[] };
    if (!f.errors) throw e;
    return { problems: [...f.errors.map((m) => describeMessage('error', m)), ...(f.warnings ?? []).map((m) => describeMessage('warning', m))], bytes: 0, inputs: new Map() };
  }
}

const fromPackage = (inputs: Map<string, number>, pkg: string) => [...inputs].filter(([f, n]) => n > 0 && new RegExp(`(^|/)packages/${pkg}/`).test(f)).map(([f]) => f);

describe('the packages bundle for a browser with no bundler configuration (esbuild defaults)', () => {
  for (const pkg of ['core', ...ARCHITECTURES]) {
    it(`@vit/${pkg}: every import resolves, no warning, Node's built-ins left out`, async () => {
      const b = await bundle(`import * as m from '@vit/${pkg}'; globalThis.vit = m;`);
      console.log(`[bundle] @vit/${pkg}: ${(b.bytes / 1024).toFixed(0)} KiB with @tensorflow/tfjs-core`);
      expect(b.problems).toEqual([]);
      // core's `#node-builtins` resolved to its browser version (which may inline to nothing).
      expect(b.inputs.has('packages/core/dist/platform/browser.js')).toBe(true);
      expect([...b.inputs.keys()].filter((f) => /platform\/node\.|^node:|(^|\/)node_modules\/(fs|path|os|crypto|zlib|module)\//.test(f))).toEqual([]);
    });
  }

  it("sideEffects: importing @vit/core alone keeps nothing; one architecture's app leaves the other four out", async () => {
    const bare = await bundle(`import '@vit/core';`);
    expect(bare.problems.filter((p) => !p.includes('marked as having no side effects'))).toEqual([]);
    expect(bare.bytes).toBe(0);

    const createOnly = await bundle(`import { createModel } from '@vit/core'; globalThis.f = createModel;`);
    const app = await bundle(`import { createModel } from '@vit/core'; import '@vit/cait'; globalThis.m = createModel('cait_nano');`);
    expect(app.problems).toEqual([]);
    // The registration is the package's side effect: it stays, and it is all that is added.
    expect(fromPackage(app.inputs, 'cait').length).toBeGreaterThan(0);
    for (const other of ARCHITECTURES.filter((a) => a !== 'cait')) expect(fromPackage(app.inputs, other), other).toEqual([]);
    console.log(`[bundle] createModel alone ${(createOnly.bytes / 1024).toFixed(0)} KiB, with @vit/cait ${(app.bytes / 1024).toFixed(0)} KiB`);
    expect(app.bytes).toBeGreaterThan(createOnly.bytes);
  });
});
