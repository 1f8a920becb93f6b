import { ConfigError } from '../errors.js';
import { Rng } from '../data/rng.js';

/**
 * Runs `fn` with `Math.random` drawing from a seeded generator, then restores it.
 *
 * Porting note: TF.js random ops (`tf.randomUniform` in Dropout and DropPath, and the unseeded
 * initialisers) take their seed from `Math.random` when none is given, and PyTorch's
 * `torch.manual_seed` has no TF.js counterpart. Swapping `Math.random` for the length of a
 * synchronous call makes those draws repeat for a seed — the Trainer does it around each training
 * forward pass, so runs repeat bit for bit and a resumed run continues the same random stream.
 * `fn` must be synchronous (the swap must not outlive it).
 */
export function withSeededRandom<T>(rng: Rng | number, fn: () => T): T {
  const gen = typeof rng === 'number' ? new Rng(rng) : rng;
  const original = Math.random;
  Math.random = () => gen.next();
  try {
    const out = fn();
    if (out && typeof (out as { then?: unknown }).then === 'function') {
      throw new ConfigError('withSeededRandom needs a synchronous function; it returned a promise');
    }
    return out;
  } finally {
    Math.random = original;
  }
}
