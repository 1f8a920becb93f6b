/**
 * One error family for the whole library, so callers can `catch (e) { if (e instanceof VitError) … }`
 * and scripts can branch on `code` without parsing messages.
 */
export class VitError extends Error {
  readonly code: string;
  constructor(message: string, code = 'VIT_ERROR') {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A tensor came in with the wrong rank, channels, or a size the architecture cannot take. */
export class ShapeError extends VitError {
  constructor(message: string) {
    super(message, 'VIT_SHAPE');
  }
}

/** An option or argument is outside what the component supports. */
export class ConfigError extends VitError {
  constructor(message: string) {
    super(message, 'VIT_CONFIG');
  }
}

/**
 * A data set that is missing or unreadable (no such folder, missing files, an empty class, a bad
 * image). A malformed weight file is a `FormatError`; a bad option to a data component is a
 * `ConfigError`.
 */
export class DataError extends VitError {
  constructor(message: string) {
    super(message, 'VIT_DATA');
  }
}

/** A model name that is not registered; `suggestions` holds the nearest registered names. */
export class UnknownModelError extends VitError {
  readonly suggestions: string[];
  constructor(name: string, suggestions: string[], kind = 'model') {
    const hint = suggestions.length ? ` Did you mean: ${suggestions.join(', ')}?` : '';
    super(`Unknown ${kind} '${name}'.${hint}`, 'VIT_UNKNOWN_MODEL');
    this.suggestions = suggestions;
  }
}

export interface WeightProblem {
  key: string;
  problem: 'missing' | 'unexpected' | 'shape' | 'dtype';
  expected?: string;
  got?: string;
}

/**
 * A state dict that does not fit the model. Lists every problem at once; the loader that throws it
 * has changed no parameter.
 */
export class WeightLoadError extends VitError {
  readonly problems: WeightProblem[];
  constructor(problems: WeightProblem[], context = 'state dict') {
    const lines = problems.map((p) => {
      switch (p.problem) {
        case 'missing':
          return `  missing key: ${p.key}${p.expected ? ` (expected ${p.expected})` : ''}`;
        case 'unexpected':
          return `  unexpected key: ${p.key}${p.got ? ` (${p.got})` : ''}`;
        default:
          return `  ${p.problem} mismatch for ${p.key}: expected ${p.expected}, got ${p.got}`;
      }
    });
    const counts = (['missing', 'unexpected', 'shape', 'dtype'] as const)
      .map((k) => [k, problems.filter((p) => p.problem === k).length] as const)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${n} ${k}`)
      .join(', ');
    super(`Cannot load ${context} (${counts}); no parameter was changed:\n${lines.join('\n')}`, 'VIT_WEIGHTS');
    this.problems = problems;
  }
}

/**
 * The backend ran out of memory (on wasm: its 4 GiB heap; the WebAssembly instance is unusable
 * afterwards, so nothing more can be read from it). The message says what ran out, for which
 * batch, and what to try.
 */
export class OutOfMemoryError extends VitError {
  constructor(
    message: string,
    readonly backend: string,
    override readonly cause?: unknown,
  ) {
    super(message, 'VIT_OOM');
  }
}

/** A weight file that cannot be parsed (truncated, corrupt header, unknown dtype…). */
export class FormatError extends VitError {
  constructor(message: string) {
    super(message, 'VIT_FORMAT');
  }
}

/**
 * Weights that could not be fetched or failed their checks: an HTTP error, a connection that kept
 * dropping, a size or SHA-256 that differs from the model card's, offline mode with nothing cached.
 * Nothing is left in the cache when this is thrown. `retryable`: worth trying again later.
 */
export class DownloadError extends VitError {
  readonly url: string;
  readonly retryable: boolean;
  constructor(message: string, url: string, retryable = false) {
    super(message, 'VIT_DOWNLOAD');
    this.url = url;
    this.retryable = retryable;
  }
}

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  let prev = Array.from({ length: n + 1 }, (_, j) => j);
  for (let i = 1; i <= m; i++) {
    const cur = [i];
    for (let j = 1; j <= n; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[n]!;
}

/** The closest candidates to `name`: by edit distance, plus any that contain it as a substring. */
export function nearestNames(name: string, candidates: Iterable<string>, max = 3): string[] {
  const lower = name.toLowerCase();
  const scored = [...candidates].map((c) => {
    const cl = c.toLowerCase();
    const d = cl.includes(lower) || lower.includes(cl) ? Math.min(editDistance(lower, cl), 1) : editDistance(lower, cl);
    return { c, d };
  });
  const limit = Math.max(2, Math.ceil(name.length / 2));
  return scored
    .filter((s) => s.d <= limit)
    .sort((x, y) => x.d - y.d || x.c.localeCompare(y.c))
    .slice(0, max)
    .map((s) => s.c);
}
