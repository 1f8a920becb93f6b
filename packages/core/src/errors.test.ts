import { describe, expect, it } from 'vitest';
import { ConfigError, DataError, editDistance, FormatError, nearestNames, ShapeError, UnknownModelError, VitError, WeightLoadError } from './errors.js';

describe('errors', () => {
  it('share one family with stable codes', () => {
    for (const [E, code] of [
      [ShapeError, 'VIT_SHAPE'],
      [ConfigError, 'VIT_CONFIG'],
      [FormatError, 'VIT_FORMAT'],
      [DataError, 'VIT_DATA'],
    ] as const) {
      const e = new E('x');
      expect(e).toBeInstanceOf(VitError);
      expect(e.code).toBe(code);
      expect(e.name).toBe(E.name);
    }
    expect(new UnknownModelError('a', []).code).toBe('VIT_UNKNOWN_MODEL');
    expect(new WeightLoadError([{ key: 'k', problem: 'missing' }]).message).toMatch(/1 missing\); no parameter was changed/);
  });

  it('computes edit distance and nearest names', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
    expect(nearestNames('cait_xs24_224', ['cait_xxs24_224', 'cait_s24_224', 'regionvit_tiny_224'])).toEqual(['cait_s24_224', 'cait_xxs24_224']);
    expect(nearestNames('conv2former', ['conv2former_n', 'conv2former_t', 'resnet50_mrlal'])).toEqual(['conv2former_n', 'conv2former_t']);
    expect(nearestNames('zzzzzzzz', ['cait_s24_224'])).toEqual([]);
  });
});
