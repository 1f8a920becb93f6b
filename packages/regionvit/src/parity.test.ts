import '@tensorflow/tfjs';
import { describeGoldenParity } from '@vit/core/testing';
import './index.js';

/**
 * Golden parity through the public loader. `ws4_3conv` and `ws2_1conv_4st` are the shared goldens
 * (official code, torch 1.13). The `x_*` cases come from the same official file (sha256 checked in
 * their metadata) run by `test/gen_goldens.py` on torch 2.13, to cover what the shared ones do not:
 * inputs that are not a multiple of the region size (padding + masks, both mask quirks), the 'linear'
 * stem, windows 3, 5 and 7 and per-stage windows, PEG, det_norm, a depth-0 stage, qkv_bias False,
 * qk_scale, per-stage mlp ratios, LayerNorm eps 1e-5, 'c' projections that widen, 's' projections,
 * in_chans 1 and 2, num_classes 0 (test/README.md). Features are local and regional.
 */
describeGoldenParity({
  arch: 'regionvit',
  fixtures: new URL('../test/fixtures/', import.meta.url),
  cases: ['ws4_3conv', 'ws2_1conv_4st', 'x_linear_ws3_peg_pad', 'x_det_3conv_ws2_pad', 'x_1conv_ws7_rightpad', 'x_mixed_ws_3conv', 'x_det_linear_p8_depth0'],
  // This port lands within ~1e-6; the tighter bound keeps slips (a wrong LayerNorm eps: ~4e-5) visible.
  tolerance: 1e-5,
  gradElementwise: true,
});
