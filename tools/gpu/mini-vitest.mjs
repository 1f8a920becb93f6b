// The part of vitest's API our `*.gpu.test.ts` files use (describe/it/beforeAll/afterAll/beforeEach/afterEach/expect,
// `ctx.skip()`), so they run from a bundle on a machine without node_modules (the lent GPU
// machine: tools/gpu/run-on-device.sh). Tests run in registration order, one at a time.
import { isDeepStrictEqual, inspect } from 'node:util';

const root = { name: '', children: [], beforeAll: [], afterAll: [], beforeEach: [], afterEach: [] };
let current = root;

export function describe(name, fn) {
  const node = { name, children: [], beforeAll: [], afterAll: [], beforeEach: [], afterEach: [] };
  current.children.push(node);
  const parent = current;
  current = node;
  try {
    fn();
  } finally {
    current = parent;
  }
}
export function it(name, fn) {
  current.children.push({ name, test: fn });
}
export const test = it;
export function beforeAll(fn) {
  current.beforeAll.push(fn);
}
export function afterAll(fn) {
  current.afterAll.push(fn);
}
export function beforeEach(fn) {
  current.beforeEach.push(fn);
}
export function afterEach(fn) {
  current.afterEach.push(fn);
}

class Skip extends Error {}

function fail(msg, custom) {
  throw new Error(custom ? `${custom}: ${msg}` : msg);
}
const show = (v) => inspect(v, { depth: 4, breakLength: 120 });

export function expect(actual, message) {
  const make = (negate) => {
    const check = (ok, what) => {
      if (ok === negate) fail(`expected ${show(actual)} ${negate ? 'not ' : ''}${what}`, message);
    };
    const m = {
      toBe: (e) => check(Object.is(actual, e), `to be ${show(e)}`),
      toEqual: (e) => check(isDeepStrictEqual(actual, e), `to equal ${show(e)}`),
      toStrictEqual: (e) => check(isDeepStrictEqual(actual, e), `to equal ${show(e)}`),
      toBeLessThan: (e) => check(actual < e, `to be < ${e}`),
      toBeLessThanOrEqual: (e) => check(actual <= e, `to be ≤ ${e}`),
      toBeGreaterThan: (e) => check(actual > e, `to be > ${e}`),
      toBeGreaterThanOrEqual: (e) => check(actual >= e, `to be ≥ ${e}`),
      toBeCloseTo: (e, digits = 2) => check(Math.abs(actual - e) < 10 ** -digits / 2, `to be close to ${e}`),
      toMatch: (re) => check(typeof re === 'string' ? String(actual).includes(re) : re.test(String(actual)), `to match ${re}`),
      toBeNull: () => check(actual === null, 'to be null'),
      toBeUndefined: () => check(actual === undefined, 'to be undefined'),
      toBeDefined: () => check(actual !== undefined, 'to be defined'),
      toBeTruthy: () => check(Boolean(actual), 'to be truthy'),
      toBeFalsy: () => check(!actual, 'to be falsy'),
      toBeNaN: () => check(Number.isNaN(actual), 'to be NaN'),
      toHaveLength: (n) => check(actual?.length === n, `to have length ${n}`),
      toContain: (x) => check(actual?.includes?.(x) ?? false, `to contain ${show(x)}`),
      toBeInstanceOf: (c) => check(actual instanceof c, `to be an instance of ${c.name}`),
      toThrow: (e) => {
        let threw = false;
        let err;
        try {
          actual();
        } catch (x) {
          threw = true;
          err = x;
        }
        const matches = threw && (e === undefined || (typeof e === 'function' ? err instanceof e : (typeof e === 'string' ? String(err?.message).includes(e) : e.test(String(err?.message)))));
        check(matches, `to throw ${e ?? ''} (threw ${threw ? show(err?.message) : 'nothing'})`);
      },
    };
    return m;
  };
  const api = make(false);
  api.not = make(true);
  api.rejects = {
    toThrow: async (e) => {
      try {
        await actual;
      } catch (err) {
        const ok = e === undefined || (typeof e === 'function' ? err instanceof e : typeof e === 'string' ? String(err?.message).includes(e) : e.test(String(err?.message)));
        if (!ok) fail(`rejected with ${show(err?.message)}, expected ${e}`, message);
        return;
      }
      fail('expected a rejection, got none', message);
    },
  };
  return api;
}

/** Runs everything registered; returns counts. Prints one line per test. */
export async function run({ out = console.log } = {}) {
  const counts = { passed: 0, failed: 0, skipped: 0, failures: [] };
  // `each`: the beforeEach/afterEach hooks of the enclosing describes, outermost first.
  const walk = async (node, path, inheritedFail, each = []) => {
    const hooks = [...each, node];
    let setupError = inheritedFail;
    if (!setupError) {
      for (const f of node.beforeAll) {
        try {
          await f();
        } catch (e) {
          setupError = e;
          out(`  × ${[...path, node.name].filter(Boolean).join(' > ')} (beforeAll): ${e?.message ?? e}`);
          counts.failed++;
          counts.failures.push(`${node.name} (beforeAll): ${e?.message ?? e}`);
          break;
        }
      }
    }
    for (const c of node.children) {
      const name = [...path, node.name, c.name].filter(Boolean).join(' > ');
      if (c.test) {
        if (setupError) {
          counts.skipped++;
          out(`  ↓ ${name} (setup failed)`);
          continue;
        }
        const t = performance.now();
        try {
          for (const h of hooks) for (const f of h.beforeEach) await f();
          try {
            await c.test({
              skip: () => {
                throw new Skip();
              },
            });
          } finally {
            for (const h of [...hooks].reverse()) for (const f of h.afterEach) await f();
          }
          counts.passed++;
          out(`  ✓ ${name} ${Math.round(performance.now() - t)}ms`);
        } catch (e) {
          if (e instanceof Skip) {
            counts.skipped++;
            out(`  ↓ ${name} (skipped)`);
          } else {
            counts.failed++;
            counts.failures.push(`${name}: ${e?.message ?? e}`);
            out(`  × ${name} ${Math.round(performance.now() - t)}ms\n      ${String(e?.stack ?? e).split('\n').slice(0, 6).join('\n      ')}`);
          }
        }
      } else {
        await walk(c, [...path, node.name].filter(Boolean), setupError, hooks);
      }
    }
    for (const f of node.afterAll) {
      try {
        await f();
      } catch (e) {
        out(`  × ${node.name} (afterAll): ${e?.message ?? e}`);
        counts.failed++;
      }
    }
  };
  await walk(root, [], undefined);
  return counts;
}
