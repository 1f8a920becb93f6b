/**
 * @vit/cait: CaiT (LayerScale, talking-heads attention, class attention) on TensorFlow.js.
 * Importing this module registers the `cait_*` variants and the `cait` official architecture
 * adapter with @vit/core's registry.
 */
export * from './blocks.js';
export * from './model.js';
export * from './official.js';
export * from './configs.js';
export * from './variants.js';

import { registerCaiTArchitecture } from './official.js';
import { registerCaiTModels } from './variants.js';

registerCaiTModels();
registerCaiTArchitecture();
