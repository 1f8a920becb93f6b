import '@tensorflow/tfjs';
import { describeNanoVariant } from '@vit/core/testing';
import './index.js';

describeNanoVariant({
  name: 'resnet10_mrlal_nano',
  paramCount: 311_734,
  runsAt28: 'the stride-1 CIFAR stem and global pooling take any size',
});
