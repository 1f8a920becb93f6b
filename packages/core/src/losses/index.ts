export {
  CrossEntropyLoss,
  LabelSmoothingCrossEntropy,
  SoftTargetCrossEntropy,
  createLoss,
  crossEntropy,
  type CrossEntropyOptions,
  type Loss,
  type LossConfig,
  type Reduction,
  type Target,
} from './cross_entropy.js';
