import { parseArgs } from 'node:util';
import { BackendError, ConfigError, DataError, DownloadError, FormatError, isOutOfMemory, nearestNames, outOfMemoryError, ShapeError, UnknownModelError, VitError, VERSION, WeightLoadError } from '@vit/core';
import { commandHelp, HELP_OPTION, type Command } from './command.js';
import { EXIT, InputError, UsageError } from './exit-codes.js';
import { processIo, type Io } from './io.js';
import { modelsCommand } from './commands/models.js';
import { summaryCommand } from './commands/summary.js';
import { parityCommand } from './commands/parity.js';
import { convertCommand } from './commands/convert.js';
import { trainCommand } from './commands/train.js';
import { evalCommand } from './commands/eval.js';
import { predictCommand } from './commands/predict.js';
import { benchCommand } from './commands/bench.js';
import { downloadCommand } from './commands/download.js';
import { explainCommand } from './commands/explain.js';

/** Every command, in the order `vit --help` lists them: a new command is one import and one entry here. */
export const commands: Command[] = [modelsCommand, summaryCommand, trainCommand, evalCommand, predictCommand, explainCommand, downloadCommand, benchCommand, parityCommand, convertCommand];

function globalHelp(): string {
  return [
    `vit ${VERSION} — vision backbones on TensorFlow.js`,
    '',
    'Usage: vit <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(10)} ${c.summary}`),
    '',
    'Run `vit <command> --help` for a command\'s options and examples.',
    '',
    'Exit codes: 0 ok, 1 check failed, 2 usage error (bad flag, unknown model, an option the model does not take),',
    '            3 missing, unreadable or malformed input (data, images, checkpoints, weights),',
    '            4 backend unavailable, 5 out of memory,',
    '            70 internal error, 130 interrupted (Ctrl-C; `vit train` saved last/ to --resume).',
  ].join('\n');
}

/** Runs the CLI; returns the exit code (never calls process.exit, so it is testable). */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    const sub = name === 'help' ? commands.find((c) => c.name === rest[0]) : undefined;
    io.out(sub ? commandHelp(sub) : globalHelp());
    return EXIT.OK;
  }
  if (name === '--version' || name === '-v') {
    io.out(VERSION);
    return EXIT.OK;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    io.err(`vit: unknown command '${name}'. Commands: ${commands.map((c) => c.name).join(', ')}. See \`vit --help\`.`);
    return EXIT.USAGE;
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  const options = { ...cmd.options, help: HELP_OPTION };
  try {
    parsed = parseArgs({ args: joinNegativeValues(rest, cmd.options), options, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (e) {
    io.err(`vit ${cmd.name}: ${flagError(e as NodeJS.ErrnoException, Object.keys(options))}\n\nRun \`vit ${cmd.name} --help\` for its options and examples.`);
    return EXIT.USAGE;
  }
  if (parsed.values.help) {
    io.out(commandHelp(cmd));
    return EXIT.OK;
  }
  try {
    return await cmd.run(parsed, io);
  } catch (e) {
    const code = exitCodeOf(e);
    if (code === undefined) throw e;
    const message = code === EXIT.MEMORY ? outOfMemoryError(e, { what: `vit ${cmd.name}` }).message : (e as Error).message;
    io.err(`vit ${cmd.name}: ${message}`);
    return code;
  }
}

/**
 * `--epochs -1`: parseArgs reads `-1` as a flag and calls the value "ambiguous"; a value that is a
 * negative number is meant as the value (the command then says whether it is allowed).
 */
function joinNegativeValues(args: string[], options: Command['options']): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const name = a.startsWith('--') && !a.includes('=') ? a.slice(2) : undefined;
    const next = args[i + 1];
    if (name && options[name]?.type === 'string' && next !== undefined && /^-\d|^-\.\d/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

/** parseArgs's messages, shorter, with the nearest flag for a typo. */
function flagError(e: NodeJS.ErrnoException, known: string[]): string {
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const flag = /'(-[^']*)'/.exec(e.message)?.[1] ?? '';
    const near = nearestNames(flag.replace(/^-+/, ''), known, 2).map((n) => `--${n}`);
    return `Unknown option '${flag}'.${near.length ? ` Did you mean ${near.join(' or ')}?` : ''}`;
  }
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const flag = /'(--[a-z0-9-]+)/.exec(e.message)?.[1];
    if (flag && /argument missing/.test(e.message)) return `${flag} needs a value`;
  }
  return e.message;
}

/**
 * The documented exit code for an error a command threw, or undefined for a bug (exit 70 with its
 * stack). Flags and options outside what a model or command supports are usage errors (2); what
 * comes from files (data sets, checkpoints, weights, images) is an input error (3).
 */
export function exitCodeOf(e: unknown): number | undefined {
  if (isOutOfMemory(e)) return EXIT.MEMORY;
  if (e instanceof UsageError || e instanceof UnknownModelError || e instanceof ConfigError || e instanceof ShapeError) return EXIT.USAGE;
  const errno = (e as NodeJS.ErrnoException | undefined)?.code;
  if (
    e instanceof InputError ||
    e instanceof DataError ||
    e instanceof FormatError ||
    e instanceof WeightLoadError ||
    e instanceof DownloadError ||
    (e instanceof VitError && e.code === 'VIT_IO') ||
    errno === 'ENOENT' ||
    errno === 'EISDIR' ||
    errno === 'ENOTDIR' ||
    errno === 'EACCES'
  ) {
    return EXIT.INPUT;
  }
  if (e instanceof BackendError) return EXIT.BACKEND;
  if (e instanceof VitError) return EXIT.FAILED;
  return undefined;
}
