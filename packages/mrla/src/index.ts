/**
 * @vit/mrla: ResNet with multi-head recurrent layer attention (MRLA-light) on TensorFlow.js.
 * Importing this module registers the `resnet*_mrlal*` variants and the `mrla` official
 * architecture adapter with @vit/core's registry.
 */
export * from './blocks.js';
export * from './model.js';
export * from './official.js';
export * from './configs.js';
export * from './variants.js';

import { registerMRLAArchitecture } from './official.js';
import { registerMRLAVariants } from './variants.js';

registerMRLAVariants();
registerMRLAArchitecture();
