import '@tensorflow/tfjs';
import { listModels } from '@vit/core';
import { describeConformance } from '@vit/core/testing';
import { MRLA_CONFIGS, type MRLAVariant, type ResNetMRLAOptions } from './index.js';

/**
 * The core conformance suite over every registered variant, shrunk to run in seconds on the cpu
 * backend: narrow stages (MRLA heads of 8 channels so the narrow stages still have heads), one
 * block per stage (two in stage 1 of the BasicBlock nets), 5 classes. `zeroInitLastBn: false` so
 * that every parameter of a residual branch gets a non-zero gradient.
 */
const models = listModels(Object.keys(MRLA_CONFIGS));

describeConformance({
  models,
  createOptions: (name) => {
    const basic = MRLA_CONFIGS[name as MRLAVariant].block === 'basic';
    return {
      layers: basic ? [2, 1, 1, 1] : [1, 1, 1, 1],
      stemWidth: 8,
      widths: [8, 8, 16, 16],
      dimPerhead: 8,
      expansion: basic ? undefined : 2,
      widthPerGroup: basic ? 64 : 32,
      numClasses: 5,
      zeroInitLastBn: false,
    };
  },
  // The stride-1 CIFAR stem (resnet18_mrlal_cifar, resnet10_mrlal_nano) keeps the resolution: 8×8 is enough.
  inputShape: (name) => ((MRLA_CONFIGS[name as MRLAVariant] as ResNetMRLAOptions).stem === 'cifar' ? [2, 8, 8, 3] : [2, 32, 32, 3]),
});
