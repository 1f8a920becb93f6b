import { NANO_CARD, packageAsset, type ModelCard, type NanoWeights } from '@vit/core';
import type { ResNetMRLAOptions } from './model.js';

/** Architecture settings of every registered variant (timm's `model_args`). */
export const MRLA_CONFIGS = {
  resnet18_mrlal: { block: 'basic', layers: [2, 2, 2, 2] },
  resnet34_mrlal: { block: 'basic', layers: [3, 4, 6, 3] },
  resnet50_mrlal: { block: 'bottleneck', layers: [3, 4, 6, 3] },
  resnet101_mrlal: { block: 'bottleneck', layers: [3, 4, 23, 3] },
  resnet152_mrlal: { block: 'bottleneck', layers: [3, 8, 36, 3] },
  // The seed's CIFAR-10 ResNet-18: BasicBlock, 3×3 stride-1 stem without max-pool, 10 classes,
  // Paddle's default init (no zero-initialised last BN).
  resnet18_mrlal_cifar: { block: 'basic', layers: [2, 2, 2, 2], stem: 'cifar', numClasses: 10, zeroInitLastBn: false },
  // Not from the paper: a one-block-per-stage BasicBlock net at a quarter of the widths (MRLA
  // heads of 16 channels) on the CIFAR stem, for 32×32 inputs.
  resnet10_mrlal_nano: {
    block: 'basic',
    layers: [1, 1, 1, 1],
    stem: 'cifar',
    widths: [16, 32, 64, 128],
    stemWidth: 16,
    dimPerhead: 16,
    numClasses: 10,
    zeroInitLastBn: false,
  },
} as const satisfies Record<string, ResNetMRLAOptions>;

export type MRLAVariant = keyof typeof MRLA_CONFIGS;

export type CardInfo = Partial<ModelCard> & Pick<ModelCard, 'paramCount' | 'official'>;

export const MRLA_CARDS: Record<MRLAVariant, CardInfo> = {
  resnet18_mrlal: {
    paramCount: 11_712_624,
    official: false,
    notes: 'By analogy: the official code has only MRLA_Bottleneck; this is the seed BasicBlock net on the ImageNet stem. No official weights.',
  },
  resnet34_mrlal: {
    paramCount: 21_843_132,
    official: false,
    notes: 'By analogy: BasicBlock [3, 4, 6, 3] with MRLA-light. No official weights.',
  },
  resnet50_mrlal: {
    paramCount: 25_738_452,
    official: true,
    top1: 77.7,
    notes: 'top-1 = the paper\'s ResNet-50 + 1.6 points (abstract); 100 epochs, drop-path 0.2 recipe of the official README. The authors publish no weights.',
  },
  resnet101_mrlal: {
    paramCount: 44_939_646,
    official: true,
  },
  resnet152_mrlal: {
    paramCount: 60_767_784,
    official: false,
    notes: "By analogy: listed in the official __all__ but never defined there; [3, 8, 36, 3] like torchvision's ResNet-152. No official weights.",
  },
  resnet18_mrlal_cifar: {
    paramCount: 11_197_074,
    official: false,
    inputSize: [32, 32, 3],
    numClasses: 10,
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    cropPct: 1,
    top1: 89.35,
    notes:
      "The seed's CIFAR-10 ResNet-18 + MRLA (Paddle): 3×3 stride-1 stem, no max-pool. top1 = the seed's CIFAR-10 val accuracy (100 epochs). The seed's table counts 11,210,514 including BatchNorm running statistics (11,183,562 without MRLA: `mrla: false`).",
  },
  resnet10_mrlal_nano: {
    ...NANO_CARD,
    paramCount: 311_734,
    numClasses: 10,
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
  },
};

/** Our Fashion-MNIST weights shipped in this package (`weights/`). */
export const MRLA_NANO_WEIGHTS: Partial<Record<MRLAVariant, NanoWeights>> = {
  resnet10_mrlal_nano: {
    url: packageAsset(() => new URL('../weights/resnet10_mrlal_nano.fashion_mnist.safetensors', import.meta.url)),
    sha256: '0bc3569ff758de800fe3cee8646c8456b68eca4067bf49518b8e8dbe600e7ab3',
    sizeBytes: 635_628,
    top1: 88.89,
    epochs: 1,
  },
};
