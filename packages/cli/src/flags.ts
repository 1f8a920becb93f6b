/**
 * The parsers of flag values every command uses. Each returns undefined for an absent flag (the
 * caller supplies the default) and throws a UsageError `--<flag> expects <what>, got '<value>'`.
 */
import { UsageError } from './exit-codes.js';

function expected(flag: string, what: string, got: unknown): UsageError {
  return new UsageError(`--${flag} expects ${what}, got '${String(got)}'`);
}

/** A finite number that passes `check`. */
export function num(v: unknown, flag: string, check: (n: number) => boolean, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || !check(n)) throw expected(flag, what, v);
  return n;
}

export const posInt = (v: unknown, flag: string) => num(v, flag, (n) => Number.isInteger(n) && n > 0, 'a positive integer');
export const nonNegInt = (v: unknown, flag: string) => num(v, flag, (n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0');
export const posNum = (v: unknown, flag: string) => num(v, flag, (n) => n > 0, 'a positive number');
export const nonNeg = (v: unknown, flag: string) => num(v, flag, (n) => n >= 0, 'a number ≥ 0');
export const fraction = (v: unknown, flag: string) => num(v, flag, (n) => n >= 0 && n < 1, 'a number in [0, 1)');
export const probability = (v: unknown, flag: string) => num(v, flag, (n) => n >= 0 && n <= 1, 'a probability in [0, 1]');

/** A fraction (0.1) or a percentage (10%), as a fraction in [0, 1]. */
export function fractionOrPercent(v: unknown, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const text = String(v).trim();
  const pct = text.endsWith('%');
  const n = Number(pct ? text.slice(0, -1) : text);
  const f = pct ? n / 100 : n;
  if (text === '' || text === '%' || !Number.isFinite(f) || f < 0 || f > 1) throw expected(flag, 'a fraction 0–1 or a percentage 0–100%', text);
  return f;
}

/** `a`, `a or b`, `a, b or c`. */
export function orList(choices: readonly string[]): string {
  return choices.length < 2 ? choices.join('') : `${choices.slice(0, -1).join(', ')} or ${choices.at(-1)!}`;
}

/** One of `choices` (matched ignoring case with `ignoreCase`; the choice is returned as listed). */
export function oneOf<T extends string>(v: unknown, flag: string, choices: readonly T[], options: { ignoreCase?: boolean } = {}): T | undefined {
  if (v === undefined) return undefined;
  const key = (s: string) => (options.ignoreCase ? s.toLowerCase() : s);
  const hit = choices.find((c) => key(c) === key(String(v)));
  if (hit === undefined) throw expected(flag, orList(choices), v);
  return hit;
}

/** A JSON object (not an array or a scalar); `example` shows what one looks like. */
export function jsonObject(v: unknown, flag: string, example: string): Record<string, unknown> | undefined {
  if (v === undefined) return undefined;
  try {
    const o = JSON.parse(String(v)) as unknown;
    if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new Error('not an object');
    return o as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`--${flag} expects a JSON object such as '${example}', got '${String(v)}' (${(e as Error).message})`);
  }
}
