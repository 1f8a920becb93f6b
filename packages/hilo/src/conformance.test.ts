import '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { getModelCard, listModels } from '@vit/core';
import { describeConformance } from '@vit/core/testing';
import {
  LITV2_VARIANTS,
} from './index.js';

const models = listModels('litv2_*');

describe('registration', () => {
  it('registers every variant of LITV2_VARIANTS', () => {
    expect(models).toEqual(Object.keys(LITV2_VARIANTS).sort());
  });
});

/**
 * Every registered variant at a tiny size: the variant's own stage layout (ConvFFN stages 1-2,
 * HiLo at ws 2 in stage 3 with the variant's alpha, MSA in stage 4), DTM kind and class count,
 * with narrow stages of one block and heads that divide the widths.
 */
describeConformance({
  models,
  createOptions: (name) => ({
    embedDim: 8,
    depths: [1, 1, 1, 1],
    numHeads: [1, 2, 4, 4],
    numClasses: getModelCard(name).numClasses === 10 ? 10 : 5,
    // No drop path: a dropped branch would legitimately get a zero gradient.
    dropPathRate: 0,
  }),
  // Patch 4 and three merges: 64×64 → tokens 16, 8, 4, 2. Lo-Fi needs more than one key, or its
  // queries get no gradient (softmax over a single key is 1): stage 3 pools 4×4 to 2×2 keys.
  inputShape: () => [2, 64, 64, 3],
});
