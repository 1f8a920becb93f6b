import '@tensorflow/tfjs';
import { fileURLToPath } from 'node:url';
import { createModel } from '@vit/core';
import { describeGpuParity } from '@vit/core/testing';
import './index.js';

const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));

describeGpuParity({
  label: 'litv2',
  goldens: ['r16_a05', 'p2_r16_mlp2', 'x_hifi_only_ws4_msa_early', 'x_lofi_only_floor_3st'].map(fixture),
  crossCheck: [
    {
      name: 'litv2_small (tiny)',
      build: () => createModel('litv2_small', { embedDim: 16, depths: [1, 1, 2, 1], numHeads: [1, 2, 4, 8], numClasses: 10 }),
      inputShape: [2, 64, 64, 3],
    },
    {
      name: 'litv2_cifar (tiny, DCNv2)',
      build: () => createModel('litv2_cifar', { embedDim: 16, depths: [1, 1, 1, 1], numHeads: [1, 2, 4, 8] }),
      inputShape: [2, 64, 64, 3],
    },
  ],
});
