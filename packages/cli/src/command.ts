import type { Io } from './io.js';

/** What every flag has: `--help` prints `description` beside it. */
interface OptionBase {
  short?: string;
  multiple?: boolean;
  /** One line for `vit <command> --help`: what the flag does, its default where it has one. */
  description: string;
}

/** A flag with a value; `value` is its placeholder in the help (`<n>`, `<file>`, `<val|train>`). */
export interface StringOption extends OptionBase {
  type: 'string';
  value: string;
  default?: string | string[];
}

export interface BooleanOption extends OptionBase {
  type: 'boolean';
  default?: boolean | boolean[];
}

/**
 * One flag as `node:util`'s parseArgs takes it (declared here so our types need no @types/node),
 * plus what `--help` says about it.
 */
export type OptionSpec = StringOption | BooleanOption;

export interface Command {
  name: string;
  summary: string;
  usage: string;
  options: Record<string, OptionSpec>;
  /** Prose and examples printed after the options. */
  help: string;
  run(args: { values: Record<string, unknown>; positionals: string[] }, io: Io): Promise<number>;
}

/** Every command takes it; `main` handles it before the command runs. */
export const HELP_OPTION: BooleanOption = { type: 'boolean', short: 'h', description: 'print this help' };

/** The `--json` flag of the commands that can print their result as JSON. */
export const JSON_OPTION: BooleanOption = { type: 'boolean', description: 'print the result as JSON instead of text' };

/** `--flag <value>` (or `-h, --help`) as the help's left column shows it. */
function optionLabel(name: string, o: OptionSpec): string {
  return `${o.short ? `-${o.short}, ` : ''}--${name}${o.type === 'string' ? ` ${o.value}` : ''}`;
}

/** `vit <command> --help`: usage, summary, every option with its description (aligned), then the command's own text. */
export function commandHelp(c: Command): string {
  const rows = Object.entries({ ...c.options, help: HELP_OPTION }).map(([name, o]) => [optionLabel(name, o), o.description] as const);
  const width = Math.max(...rows.map(([label]) => label.length));
  const opts = rows.map(([label, description]) => `  ${label.padEnd(width)}  ${description}`);
  return [`Usage: ${c.usage}`, '', c.summary, '', 'Options:', ...opts, '', c.help].join('\n');
}
