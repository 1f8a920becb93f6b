import '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { listModels } from '@vit/core';
import { describeConformance } from '@vit/core/testing';
import {
  CONV2FORMER_VARIANTS,
  type Conv2FormerOptions,
} from './index.js';

const models = listModels('conv2former_*');

describe('registration', () => {
  it('registers every variant of CONV2FORMER_VARIANTS', () => {
    expect(models).toEqual(Object.keys(CONV2FORMER_VARIANTS).sort());
    expect(models).toEqual(
      ['conv2former_b', 'conv2former_b_22k', 'conv2former_l', 'conv2former_n', 'conv2former_n_cifar', 'conv2former_nano', 'conv2former_s', 'conv2former_t'].sort(),
    );
  });
});

/**
 * Every registered variant at a tiny size: the variant's own kernel, mlp ratios, stem,
 * downsampling, layer scale and head, with 4 narrow stages of one block each.
 */
describeConformance({
  models,
  createOptions: () => ({
    dims: [8, 16, 16, 24],
    depths: [1, 1, 1, 1],
    numClasses: 5,
    // No drop path here: a dropped branch would legitimately get a zero gradient (tested in model.test.ts).
    dropPathRate: 0,
    headDim: 32,
  }),
  // The official stem has stride 4 and three stride-2 downsamplings follow (total 32, also for the
  // 32×32 conv2former_nano); the seed's 1×1 stem keeps the resolution (total 8).
  inputShape: (name) => ((CONV2FORMER_VARIANTS[name as keyof typeof CONV2FORMER_VARIANTS].options as Conv2FormerOptions).stem === 'pointwise' ? [2, 16, 16, 3] : [2, 32, 32, 3]),
});
