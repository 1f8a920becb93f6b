import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadPytorchStateDict, loadSafetensorsFile } from '@vit/core';
import { compareTensors, describeGoldenParity, setTestBackend } from '@vit/core/testing';
import {
  caitFromOfficialConfig,
} from './index.js';

/**
 * Golden parity through the public loader. `p8_d2` and `p16_h3` are the shared goldens (official
 * code, torch 1.13). The `x_*` cases were produced the same way (official `cait_models` classes,
 * timm 0.3.2's Mlp/PatchEmbed, weights re-randomised as the shared goldens, torch 2.13 CPU) to
 * cover the options the shared ones do not: qkv_bias False, a qk_scale, the nn.LayerNorm default
 * eps 1e-5, non-square input and patch, in_chans 2, a non-divisible image size, depth_token_only
 * 0/1/3, mlp ratios 2.5/3, num_classes 0, ReLU.
 */
const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/${name}.safetensors`, import.meta.url));

describeGoldenParity({
  arch: 'cait',
  fixtures: new URL('../test/fixtures/', import.meta.url),
  cases: ['p8_d2', 'p16_h3', ...['x_nobias_qkscale_rect', 'x_nondiv_dto3_nohead', 'x_dto0_relu', 'x_dto1_eps5'].filter((n) => existsSync(fixture(n)))],
  // This port lands within ~1e-6 of the goldens on cpu (the float32-vs-float64 floor is ~5e-7); a
  // LayerNorm eps of 1e-6 instead of 1e-5 moves the outputs by ~4e-5. The tighter bound keeps such
  // slips visible.
  tolerance: 1e-5,
  gradElementwise: true,
  keyOrder: true,
});

describe('official keys', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it('loads every official key, including those the logits cannot see (proj_l.bias, class-attention k.bias)', async () => {
    const file = await loadSafetensorsFile(fixture('p8_d2'));
    const model = caitFromOfficialConfig(JSON.parse(file.metadata.config!));
    try {
      const state = new Map([...file.tensors].filter(([k]) => !k.startsWith('golden.')));
      loadPytorchStateDict(model, state, { strict: true });
      const ours = model.stateDict();
      expect(Object.keys(ours).sort()).toEqual([...state.keys()].sort());
      // Same key order as the official state_dict.
      expect(Object.keys(ours)).toEqual(JSON.parse(file.metadata.state_dict_order!));
      for (const key of ['blocks.0.attn.proj_l.bias', 'blocks.1.attn.proj_l.bias', 'blocks_token_only.0.attn.k.bias', 'blocks_token_only.1.attn.k.bias']) {
        expect(compareTensors(ours[key]!, state.get(key)!).maxAbs, key).toBe(0);
      }
      // Linear weights are stored [in, out]: the official [out, in] transposed.
      const w = tf.tidy(() => tf.transpose(state.get('blocks.0.attn.proj_l.weight')!));
      expect(compareTensors(ours['blocks.0.attn.proj_l.weight']!, w).maxAbs).toBe(0);
      w.dispose();
    } finally {
      model.dispose();
      for (const t of file.tensors.values()) t.dispose();
    }
  });
});
