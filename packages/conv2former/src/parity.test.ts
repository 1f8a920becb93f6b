import '@tensorflow/tfjs';
import { fileURLToPath } from 'node:url';
import { describeGoldenParity } from '@vit/core/testing';
import {
  Conv2Former,
  type Conv2FormerOptions,
} from './index.js';

/**
 * Golden parity through the public loader. `k7_d16` and `k11_d16` are the shared goldens (official
 * code, torch 1.13). `odd_rect_k5` (odd, rectangular 45×71 input, in_chans 2, kernel 5, mixed mlp
 * ratios) and `five_dims_k3` (5 entries in dims, which the official forward cuts to 4 stages,
 * longer depths, ignored kwargs) were produced the same way from the sha256-identical official file
 * with torch 2.13 on CPU; `seed_cifar_small` from a PyTorch transcription of the seed's Paddle model
 * (1×1 stem, GroupNorm downsampling, no layer scale, LN head): not an official-code golden, so kept
 * out of test/fixtures (which `vit parity` runs as a folder) and out of runParity.
 */
describeGoldenParity({
  arch: 'conv2former',
  fixtures: new URL('../test/fixtures/', import.meta.url),
  cases: [
    'k7_d16',
    'k11_d16',
    'odd_rect_k5',
    'five_dims_k3',
    {
      name: 'seed_cifar_small',
      file: fileURLToPath(new URL('../test/seed/seed_cifar_small.safetensors', import.meta.url)),
      build: (metadata) => new Conv2Former(JSON.parse(metadata.config!) as Conv2FormerOptions),
      features: (model, x) => Object.fromEntries((model as Conv2Former).forwardIntermediates(x).map((t, i) => [`golden.features.${i}`, t])),
      runParity: false,
    },
  ],
  // PORTING.md: Conv2Former is smooth (no ReLU kinks): the gradient is checked element by element too.
  gradElementwise: true,
});
