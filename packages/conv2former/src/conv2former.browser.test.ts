import { fileURLToPath } from 'node:url';
import { describeBrowserParity } from '@vit/core/testing';

// The GPU suite in headless Chromium: the goldens' logits, features and input gradient on WebGL
// and WebGPU (SwiftShader on machines without a GPU).
const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));

describeBrowserParity({
  label: 'conv2former',
  entry: fileURLToPath(new URL('./index.ts', import.meta.url)),
  goldens: ['five_dims_k3'].map(fixture),
});
