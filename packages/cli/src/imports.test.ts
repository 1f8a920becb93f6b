import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = dirname(fileURLToPath(import.meta.url));

/** The CLI's source modules (tests and fixtures left out), each with the modules it imports from this package. */
function importGraph(): Map<string, string[]> {
  const files = readdirSync(src, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts') && !f.includes('.test.') && !f.includes('__fixtures__'));
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const text = readFileSync(join(src, f), 'utf8');
    const deps = [...text.matchAll(/(?:from\s+|import\s+)'(\.{1,2}\/[^']+)'/g)].map((m) => relative(src, resolve(src, dirname(f), m[1]!.replace(/\.js$/, '.ts'))));
    graph.set(relative(src, join(src, f)), deps);
  }
  return graph;
}

describe('the CLI modules', () => {
  it('import each other without a cycle (commands take Command from command.ts, not from main.ts)', () => {
    const graph = importGraph();
    expect(graph.get('main.ts')).toContain('command.ts');
    const cycles = new Set<string>();
    const walk = (node: string, path: string[]) => {
      for (const next of graph.get(node) ?? []) {
        if (path.includes(next)) cycles.add([...path.slice(path.indexOf(next)), next].join(' → '));
        else walk(next, [...path, next]);
      }
    };
    for (const node of graph.keys()) walk(node, [node]);
    expect([...cycles]).toEqual([]);
  });
});
