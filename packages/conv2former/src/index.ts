/**
 * @vit/conv2former: Conv2Former (convolutional modulation) on TensorFlow.js.
 * Importing this module registers the `conv2former_*` variants and the `conv2former` official
 * architecture adapter with @vit/core's registry.
 */
export * from './blocks.js';
export * from './model.js';
export * from './official.js';
export * from './configs.js';
export * from './variants.js';

import { registerConv2FormerArchitecture } from './official.js';
import { registerConv2FormerModels } from './variants.js';

registerConv2FormerModels();
registerConv2FormerArchitecture();
