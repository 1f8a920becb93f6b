import '@tensorflow/tfjs';
import { describeGoldenParity } from '@vit/core/testing';
import './index.js';

/**
 * Golden parity against the official PyTorch ResNet_mrlal (see test/fixtures, copied from
 * shared/golden/mrla): eval logits, train-mode logits (BatchNorm batch statistics), every stage
 * feature, the input gradient (norm-relative: ReLU kinks) and the official key order.
 */
describeGoldenParity({
  arch: 'mrla',
  fixtures: new URL('../test/fixtures/', import.meta.url),
  cases: ['e1_w16', 'e1_g2_w8'],
  keyOrder: true,
});
