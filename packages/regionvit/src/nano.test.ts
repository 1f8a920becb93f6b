import '@tensorflow/tfjs';
import { describeNanoVariant } from '@vit/core/testing';
import {
  REGIONVIT_VARIANTS,
} from './index.js';

describeNanoVariant({
  name: 'regionvit_nano',
  paramCount: 475_949,
  tableParamCount: REGIONVIT_VARIANTS.regionvit_nano.paramCount,
  // The last stage's local tokens never reach the logits (PORTING.md): its last block's relative-
  // position table (added to local-local logits only) gets no gradient.
  zeroGrad: ['layers.2.block.2.attn.rel_pos'],
  runsAt28: 'padded to whole regions and masked, as the official code does',
});
