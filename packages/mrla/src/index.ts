// @vit/mrla: ResNet with multi-head recurrent layer attention (MRLA-light) on TensorFlow.js.
// Importing this module registers the variants and the 'mrla' architecture adapter (the one side effect).
import { isModelRegistered, listArchitectures, registerArchitecture } from '@vit/core';
import { mrlaArchitecture } from './official.js';
import { MRLA_CONFIGS, registerMRLAVariants } from './variants.js';

export * from './mrla.js';
export * from './blocks.js';
export * from './resnet_mrla.js';
export * from './official.js';
export * from './variants.js';

if (!Object.keys(MRLA_CONFIGS).some((n) => isModelRegistered(n))) registerMRLAVariants();
if (!listArchitectures().includes(mrlaArchitecture.name)) registerArchitecture(mrlaArchitecture);
