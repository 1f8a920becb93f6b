import '@tensorflow/tfjs';
import { listModels } from '@vit/core';
import { describeConformance } from '@vit/core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import {
  REGIONVIT_VARIANTS,
} from './index.js';

const models = listModels('regionvit_*');

describe('registration', () => {
  it('registers every official variant under its official name (not the broken regionvit_tiny_w14_224), plus regionvit_nano', () => {
    expect(models).toEqual(Object.keys(REGIONVIT_VARIANTS).sort());
    expect(models).toHaveLength(9);
    expect(models).toContain('regionvit_nano');
    expect(models).not.toContain('regionvit_tiny_w14_224');
  });
});

// The conformance checks are synchronous and long on cpu: yield between them so vitest's worker can
// answer its RPC (it reports a timeout otherwise).
afterEach(() => new Promise<void>((resolve) => setImmediate(resolve)));

const isW14 = (name: string) => name.includes('_w14');
const isNano = (name: string) => name === 'regionvit_nano';

// Each variant keeps its stem, window (7 or 14) and PEG, shrunk to 8-64 channels and one block per
// stage on a 56x56 input. Window 7: regional grids 2x2, 1x1, 1x1, 1x1 against local 14, 7, 4, 2, so
// stages 3 and 4 run the padding-and-mask path. Window 14 (regions of 56 px): two stages (local 14
// then 7 padded to 14) at batch 1, because every stage costs a 197-token window on cpu.
// regionvit_nano keeps its own three stages and window 2 (local 8, 4, 2 against regional 4, 2, 1
// on its 32x32 input) at 8-32 channels.
describeConformance({
  models,
  createOptions: (name) =>
    isW14(name)
      ? { embedDim: [8, 8, 16], numHeads: [1, 2], depth: [1, 1], kernelSizes: [14, 14], downsampling: ['c', 'sc'], mlpRatio: 2, numClasses: 5 }
      : isNano(name)
        ? { embedDim: [8, 8, 16, 32], numHeads: [1, 2, 2], depth: [1, 1, 1], mlpRatio: 2, numClasses: 5 }
        : { embedDim: [8, 8, 16, 32, 64], numHeads: [1, 2, 2, 4], depth: [1, 1, 1, 1], mlpRatio: 2, numClasses: 5 },
  inputShape: (name) => (isW14(name) ? [1, 56, 56, 3] : isNano(name) ? [2, 32, 32, 3] : [2, 56, 56, 3]),
  // The last stage's local tokens never reach the logits (PORTING.md): its last block's relative-
  // position table (added to local-local logits only) gets no gradient from them.
  zeroGradAllowed: (name, param) =>
    param === (isW14(name) ? 'layers.1.block.1.attn.rel_pos' : isNano(name) ? 'layers.2.block.1.attn.rel_pos' : 'layers.3.block.1.attn.rel_pos'),
});
