import '@tensorflow/tfjs';
import { fileURLToPath } from 'node:url';
import { describeExplanationFocus } from '@vit/core/testing';
import './index.js';

// Grad-CAM on the stage maps (`stages.i`, core's featureInfo targets); at 32 px the 4×4 map of stages.1.
describeExplanationFocus({
  name: 'conv2former_nano',
  dataDir: fileURLToPath(new URL('../../cli/data/fashion-mnist-subset/', import.meta.url)),
  methods: ['gradcam'],
  minRatio: 1.15,
});
