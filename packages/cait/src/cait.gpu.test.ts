import '@tensorflow/tfjs';
import { fileURLToPath } from 'node:url';
import { createModel } from '@vit/core';
import { describeGpuParity } from '@vit/core/testing';
import './index.js';

const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));
const tiny = (imgSize: number) => ({ embedDim: 64, depth: 2, depthTokenOnly: 2, imgSize, numClasses: 10, dynamicImgSize: true });

describeGpuParity({
  label: 'cait',
  goldens: ['p8_d2', 'p16_h3'].map(fixture),
  crossCheck: [
    { name: 'cait_xxs24_224 (tiny) at 64px', build: () => createModel('cait_xxs24_224', tiny(64)), inputShape: [2, 64, 64, 3] },
    { name: 'cait_xxs24_224 (tiny) resampled to 96px', build: () => createModel('cait_xxs24_224', tiny(64)), inputShape: [2, 96, 96, 3] },
  ],
});
