import '@tensorflow/tfjs';
import { fileURLToPath } from 'node:url';
import { createModel } from '@vit/core';
import { describeGpuParity } from '@vit/core/testing';
import './index.js';

const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));
// Every variant's tree at a few channels per head, one block per stage.
const tiny = { embedDim: [16, 16, 32, 64, 128], numHeads: [2, 4, 8, 16], depth: [1, 2, 1, 1], numClasses: 10 };

describeGpuParity({
  label: 'regionvit',
  goldens: ['ws4_3conv', 'ws2_1conv_4st', 'x_linear_ws3_peg_pad', 'x_det_3conv_ws2_pad', 'x_1conv_ws7_rightpad', 'x_mixed_ws_3conv', 'x_det_linear_p8_depth0'].map(fixture),
  crossCheck: [
    { name: 'regionvit_tiny_224 (tiny) at 112px', build: () => createModel('regionvit_tiny_224', tiny), inputShape: [2, 112, 112, 3] },
    // 100x76: padded local maps and window masks in every stage.
    { name: 'regionvit_small_w14_peg_224 (tiny) at 100x76', build: () => createModel('regionvit_small_w14_peg_224', tiny), inputShape: [2, 100, 76, 3] },
    { name: 'regionvit_base_224 (tiny, 1conv) at 224px', build: () => createModel('regionvit_base_224', tiny), inputShape: [1, 224, 224, 3] },
  ],
});
