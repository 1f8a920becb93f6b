/**
 * @vit/regionvit: RegionViT (regional-to-local attention) on TensorFlow.js. Importing this module
 * registers the `regionvit_*` variants and the `regionvit` official architecture adapter with
 * @vit/core's registry.
 */
export * from './blocks.js';
export * from './model.js';
export * from './official.js';
export * from './configs.js';
export * from './variants.js';

import { registerRegionViTArchitecture } from './official.js';
import { registerRegionViTModels } from './variants.js';

registerRegionViTModels();
registerRegionViTArchitecture();
