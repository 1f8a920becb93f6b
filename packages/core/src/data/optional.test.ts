import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { importOptional, loadSharp, loadVega } from './optional.js';

describe('optional packages', () => {
  it('names the missing package and how to install it', async () => {
    const p = importOptional('vit-no-such-package-xyz', 'Reading an image folder');
    await expect(p).rejects.toThrow(ConfigError);
    await expect(importOptional('vit-no-such-package-xyz', 'Reading an image folder')).rejects.toThrow(
      "Reading an image folder needs the optional package 'vit-no-such-package-xyz', which is not installed: run `npm install vit-no-such-package-xyz`.",
    );
  });

  it('loads sharp and vega once', async () => {
    const s = await loadSharp();
    expect(typeof s).toBe('function');
    expect(await loadSharp()).toBe(s);
    const v = await loadVega();
    expect(typeof v.parse).toBe('function');
  });
});
