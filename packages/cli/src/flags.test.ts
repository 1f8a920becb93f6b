import { describe, expect, it } from 'vitest';
import { UsageError } from './exit-codes.js';
import { fraction, fractionOrPercent, jsonObject, nonNeg, nonNegInt, oneOf, orList, posInt, posNum, probability } from './flags.js';

/** The UsageError message `f()` throws. */
function refusal(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('accepted');
}

describe('flag parsers', () => {
  it('an absent flag is undefined for every parser (the command supplies the default)', () => {
    for (const p of [posInt, nonNegInt, posNum, nonNeg, fraction, probability, fractionOrPercent]) expect(p(undefined, 'x')).toBeUndefined();
    expect(oneOf(undefined, 'x', ['a'])).toBeUndefined();
    expect(jsonObject(undefined, 'x', '{}')).toBeUndefined();
  });

  it('numbers: each range accepted at its edges and refused past them, naming the flag, the range and the value', () => {
    expect([posInt('3', 'n'), nonNegInt('0', 'n'), posNum('1e-3', 'n'), nonNeg('0', 'n'), fraction('0.99', 'n'), probability('1', 'n')]).toEqual([3, 0, 1e-3, 0, 0.99, 1]);
    expect(refusal(() => posInt('0', 'epochs'))).toBe("--epochs expects a positive integer, got '0'");
    expect(refusal(() => posInt('2.5', 'epochs'))).toBe("--epochs expects a positive integer, got '2.5'");
    expect(refusal(() => nonNegInt('-2', 'crop-padding'))).toBe("--crop-padding expects an integer ≥ 0, got '-2'");
    expect(refusal(() => posNum('0', 'lr'))).toBe("--lr expects a positive number, got '0'");
    expect(refusal(() => posNum('Infinity', 'tol'))).toBe("--tol expects a positive number, got 'Infinity'");
    expect(refusal(() => nonNeg('-0.1', 'mixup'))).toBe("--mixup expects a number ≥ 0, got '-0.1'");
    expect(refusal(() => fraction('1', 'momentum'))).toBe("--momentum expects a number in [0, 1), got '1'");
    expect(refusal(() => probability('1.5', 'flip'))).toBe("--flip expects a probability in [0, 1], got '1.5'");
    expect(refusal(() => posInt('lots', 'micro-batch'))).toBe("--micro-batch expects a positive integer, got 'lots'");
  });

  it('a fraction or a percentage', () => {
    expect([fractionOrPercent('0.25', 'm'), fractionOrPercent('10%', 'm'), fractionOrPercent(' 100% ', 'm'), fractionOrPercent('0', 'm')]).toEqual([0.25, 0.1, 1, 0]);
    for (const bad of ['1.5', '101%', '%', '', 'half', '-1%']) {
      expect(refusal(() => fractionOrPercent(bad, 'min-loaded'))).toBe(`--min-loaded expects a fraction 0–1 or a percentage 0–100%, got '${bad.trim()}'`);
    }
  });

  it('one of a list: the listed spelling comes back; the refusal lists the choices', () => {
    expect(orList(['a'])).toBe('a');
    expect(orList(['a', 'b'])).toBe('a or b');
    expect(orList(['a', 'b', 'c'])).toBe('a, b or c');
    expect(oneOf('skip', 'bad-images', ['error', 'skip'])).toBe('skip');
    expect(refusal(() => oneOf('ignore', 'bad-images', ['error', 'skip']))).toBe("--bad-images expects error or skip, got 'ignore'");
    expect(refusal(() => oneOf('Skip', 'bad-images', ['error', 'skip']))).toMatch(/got 'Skip'/);
    expect(oneOf('f16', 'dtype', ['keep', 'F32', 'F16'], { ignoreCase: true })).toBe('F16');
    expect(oneOf('KEEP', 'dtype', ['keep', 'F32', 'F16'], { ignoreCase: true })).toBe('keep');
    expect(refusal(() => oneOf('f8', 'dtype', ['keep', 'F32', 'F16', 'BF16'], { ignoreCase: true }))).toBe("--dtype expects keep, F32, F16 or BF16, got 'f8'");
  });

  it('a JSON object, and nothing else', () => {
    expect(jsonObject('{"depths":[1,1,2,1]}', 'model-opts', '{}')).toEqual({ depths: [1, 1, 2, 1] });
    expect(refusal(() => jsonObject('{dims', 'model-opts', '{"a":1}'))).toMatch(/^--model-opts expects a JSON object such as '\{"a":1\}', got '\{dims' \(.+\)$/);
    for (const bad of ['[1]', '3', 'null']) expect(refusal(() => jsonObject(bad, 'model-opts', '{}'))).toBe(`--model-opts expects a JSON object such as '{}', got '${bad}' (not an object)`);
  });
});
