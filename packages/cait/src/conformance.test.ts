import '@tensorflow/tfjs';
import { listModels } from '@vit/core';
import { describeConformance } from '@vit/core/testing';
import { describe, expect, it } from 'vitest';
import {
  CAIT_VARIANTS,
} from './index.js';

const models = listModels('cait_*');

describe('registration', () => {
  it('registers every official variant under its timm name, plus cait_nano', () => {
    expect(models).toEqual(Object.keys(CAIT_VARIANTS).sort());
    expect(models).toHaveLength(11);
    expect(models).toContain('cait_nano');
  });
});

// Each variant shrunk to its own head count with 4 channels per head, 2 self-attention blocks and
// 1 class-attention block on a 32x32 input (2x2 patches of 16; cait_nano's own 8x8 of 4), so the
// suite runs in seconds.
describeConformance({
  models,
  createOptions: (name) => {
    const o = CAIT_VARIANTS[name]!.options;
    return { embedDim: o.numHeads! * 4, depth: 2, depthTokenOnly: 1, imgSize: 32, numClasses: 5 };
  },
  inputShape: () => [2, 32, 32, 3],
  // Softmax-invariant by construction (PORTING.md): proj_l's bias adds one constant per head to a
  // whole row of logits; the class attention's k bias adds q·b_k to every key of a row.
  zeroGradAllowed: (_name, param) => /\.attn\.proj_l\.bias$/.test(param) || /^blocks_token_only\.\d+\.attn\.k\.bias$/.test(param),
});
