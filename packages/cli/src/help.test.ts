import { describe, expect, it } from 'vitest';
import { vit } from './__fixtures__/vit.js';
import { commands } from './main.js';

/** The lines of the `Options:` block of a command's help. */
function optionLines(help: string): string[] {
  const start = help.indexOf('\nOptions:\n');
  expect(start, 'an Options: block').toBeGreaterThan(0);
  return help.slice(start + '\nOptions:\n'.length).split('\n\n')[0]!.split('\n');
}

describe('vit <command> --help', () => {
  it.each(commands.map((c) => [c.name, c] as const))('%s: every option has a description and a value placeholder', (_name, c) => {
    for (const [flag, o] of Object.entries(c.options)) {
      expect(o.description.trim(), `--${flag}`).not.toBe('');
      if (o.type === 'string') expect(o.value, `--${flag}`).toMatch(/^<[^<>\s]+>$/);
    }
  });

  it.each(commands.map((c) => [c.name, c] as const))('%s: lists each option with its description, aligned', async (name, c) => {
    const h = await vit(name, '--help');
    expect(h.code).toBe(0);
    expect((await vit('help', name)).out).toBe(h.out);
    const lines = optionLines(h.out);
    const expected = [...Object.entries(c.options).map(([flag, o]) => [`--${flag}${o.type === 'string' ? ` ${o.value}` : ''}`, o.description]), ['-h, --help', 'print this help']];
    expect(lines).toHaveLength(expected.length);
    const columns = new Set<number>();
    expected.forEach(([label, description], i) => {
      const line = lines[i]!;
      const at = line.lastIndexOf(description!);
      expect(at, `${label} in: ${line}`).toBeGreaterThan(0);
      expect(line.slice(at)).toBe(description);
      expect(line.slice(0, at).trimEnd()).toBe(`  ${label}`);
      columns.add(at);
    });
    // One column for every description, two spaces after the longest flag.
    expect([...columns]).toEqual([Math.max(...expected.map(([label]) => label!.length)) + 4]);
  });
});
