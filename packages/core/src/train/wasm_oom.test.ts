import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runProcess } from '../testing/process.js';

// The wasm backend's 4 GiB heap, whatever VIT_TEST_BACKEND is (CI's tensorflow pass leaves
// `wasm_*.test.ts` files out: they would test the same wasm code again).

describe('Trainer on wasm running out of memory', () => {
  it('on wasm, a step that cannot fit the 4 GiB heap ends with OutOfMemoryError (not a raw Aborted()) and leaves the backend usable', async () => {
    // In a child process: an instance that did abort would be unusable afterwards.
    const script = fileURLToPath(new URL('./__fixtures__/wasm_oom.ts', import.meta.url));
    const r = await runProcess(fileURLToPath(new URL('../../../../node_modules/.bin/vite-node', import.meta.url)), [script], { timeout: 180_000, cwd: fileURLToPath(new URL('../..', import.meta.url)) });
    const out = `${r.stdout}\n${r.stderr}`;
    const results = out.split('\n').filter((l) => l.startsWith('RESULT '));
    expect(results, out).toHaveLength(2);
    // One request of 4 GiB or more (wasm32's malloc would have wrapped it), then a full heap.
    expect(results[0]).toMatch(/RESULT OutOfMemoryError: Out of memory: a training step at batch size 2 did not fit in the wasm backend's 4 GiB heap \(Out of memory: the wasm heap cannot grow to allocate 4096\.0 MB more/);
    expect(results[1]).toMatch(/RESULT OutOfMemoryError: Out of memory: a training step at batch size 2 did not fit in the wasm backend's 4 GiB heap \(Out of memory: the wasm heap cannot grow to allocate 1024\.0 MB more \(\d+ MB in use of 4096 MB\)\)/);
    for (const l of results) expect(l).toMatch(/Try: .*--grad-checkpointing.*--backend tensorflow/);
    expect(out).toMatch(/^AFTER 3$/m);
  });
});
