/**
 * @vit/hilo: LITv2 (HiLo attention, ConvFFN, deformable token merging) on TensorFlow.js.
 * Importing this module registers the `litv2_*` variants and the `litv2` official architecture
 * adapter with @vit/core's registry.
 */
export * from './blocks.js';
export * from './model.js';
export * from './official.js';
export * from './configs.js';
export * from './variants.js';

import { registerLITv2Architecture } from './official.js';
import { registerLITv2Models } from './variants.js';

registerLITv2Models();
registerLITv2Architecture();
