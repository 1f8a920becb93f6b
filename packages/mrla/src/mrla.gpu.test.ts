import '@tensorflow/tfjs';
import { fileURLToPath } from 'node:url';
import { createModel } from '@vit/core';
import { describeGpuParity } from '@vit/core/testing';
import './index.js';

const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));

describeGpuParity({
  label: 'mrla',
  goldens: ['e1_w16', 'e1_g2_w8'].map(fixture),
  crossCheck: [
    {
      name: 'resnet50_mrlal (tiny) on a rectangular input',
      build: () =>
        createModel('resnet50_mrlal', { layers: [1, 1, 1, 1], widths: [32, 32, 64, 64], stemWidth: 16, expansion: 1, widthPerGroup: 32, numClasses: 10 }),
      inputShape: [2, 64, 48, 3],
    },
  ],
});
