import { fileURLToPath } from 'node:url';
import { describeBrowserParity } from '@vit/core/testing';

// The GPU suite in headless Chromium: the goldens' logits, features and input gradient on WebGL
// and WebGPU (SwiftShader on machines without a GPU).
const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));

describeBrowserParity({
  label: 'regionvit',
  entry: fileURLToPath(new URL('./index.ts', import.meta.url)),
  goldens: ['x_mixed_ws_3conv'].map(fixture),
});
