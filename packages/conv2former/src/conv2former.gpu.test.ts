import '@tensorflow/tfjs';
import { fileURLToPath } from 'node:url';
import { createModel } from '@vit/core';
import { describeGpuParity } from '@vit/core/testing';
import './index.js';

const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));

describeGpuParity({
  label: 'conv2former',
  goldens: ['k7_d16', 'k11_d16', 'odd_rect_k5'].map(fixture),
  crossCheck: [
    {
      name: 'conv2former_n (tiny)',
      build: () => createModel('conv2former_n', { dims: [16, 32, 48, 64], depths: [1, 1, 2, 1], numClasses: 10 }),
      inputShape: [2, 64, 64, 3],
    },
  ],
});
