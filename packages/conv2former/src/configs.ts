import { NANO_CARD, packageAsset, type VariantSpec } from '@vit/core';
import type { Conv2FormerOptions } from './model.js';

/** One registered Conv2Former variant (card defaults: timm's crop 0.9, bicubic). */
export interface Conv2FormerVariant extends VariantSpec {
  options: Conv2FormerOptions;
  /** The official weights: a Baidu Netdisk share (not fetchable by a program) and the timm-style tag they would carry. */
  baiduShare?: { tag: string; url: string };
}

const IMAGENET_TOP1_NOTE = 'ImageNet-1k top-1 at 224 from the official README / paper (Hou et al., TPAMI 2024).';

/** An official registration (mlp ratio 4 in every stage, 224 px) with its card's figures and weights share. */
function official(
  kernelSize: number,
  dims: number[],
  depths: number[],
  paramCount: number,
  top1: number,
  share: { tag: string; url: string },
  notes = IMAGENET_TOP1_NOTE,
): Conv2FormerVariant {
  return { options: { kernelSize, dims, depths, mlpRatios: [4, 4, 4, 4] }, paramCount, inputSize: [224, 224, 3], top1, official: true, baiduShare: share, notes };
}

/**
 * The official registrations of HVision-NKU/Conv2Former `models/conv2former.py` (kernel size,
 * dims, depths, mlp ratios), plus the seed's CIFAR-10 port and @vit's own 32×32 `conv2former_nano`.
 * Parameter counts were measured on the official PyTorch code (1000 classes; the nano's on the built
 * model, 10 classes) and are checked by the tests.
 */
export const CONV2FORMER_VARIANTS = {
  conv2former_n: official(7, [64, 128, 256, 512], [2, 2, 8, 2], 14_992_840, 81.5, { tag: 'in1k', url: 'https://pan.baidu.com/s/1sgO-UhF27UQrGtfKJzck3A?pwd=6ku9' }),
  conv2former_t: official(11, [72, 144, 288, 576], [3, 3, 12, 3], 26_697_204, 83.2, { tag: 'in1k', url: 'https://pan.baidu.com/s/1Rfsi5p5usr3UE46jigtlcg?pwd=gwq4' }),
  conv2former_s: official(11, [72, 144, 288, 576], [4, 4, 32, 4], 50_032_692, 84.1, { tag: 'in1k', url: 'https://pan.baidu.com/s/16Lu1LcQkOoSQXnZVGxGPxg?pwd=6z6m' }, `${IMAGENET_TOP1_NOTE} With ImageNet-22k pre-training: 84.9.`),
  conv2former_b: official(11, [96, 192, 384, 768], [4, 4, 34, 4], 90_029_112, 84.4, { tag: 'in1k', url: 'https://pan.baidu.com/s/1q5V1J3jzAoKQis-hx6rTVg?pwd=bdgj' }),
  // As registered officially: kernel 7 (not the 11 of conv2former_b).
  conv2former_b_22k: official(7, [96, 192, 384, 768], [4, 4, 34, 4], 88_784_952, 86.2, { tag: 'in22k_ft_in1k', url: 'https://pan.baidu.com/s/1rkt3NhYQhPPOD5kj67uZCw?pwd=gbj9' }, 'ImageNet-22k pre-trained, fine-tuned on ImageNet-1k at 224 (official README: 86.2; 87.0 at 384). Registered officially with kernel 7.'),
  conv2former_l: official(11, [128, 256, 512, 1024], [4, 4, 48, 4], 198_893_736, 87.0, { tag: 'in22k_ft_in1k', url: 'https://pan.baidu.com/s/1_YYQ_rY9QRkq-m2lv23GPg?pwd=44os' }, 'ImageNet-22k pre-trained, fine-tuned on ImageNet-1k at 224 (official README: 87.0; 87.7 at 384). No ImageNet-1k-only result was published.'),
  conv2former_n_cifar: {
    // The seed's port (PaddlePaddle, CIFAR-10 at 32×32): Conv2Former-N widths and depths with a
    // 1×1 stem, GroupNorm(1, C) + bias-free conv downsampling, no layer scale, kernel 11,
    // mlp ratio 2 and a LayerNorm → pool → Linear head.
    options: {
      kernelSize: 11,
      dims: [64, 128, 256, 512],
      depths: [2, 2, 8, 2],
      mlpRatios: [2, 2, 2, 2],
      numClasses: 10,
      dropPathRate: 0.1,
      stem: 'pointwise',
      downsample: 'groupnorm',
      layerScaleInitValue: null,
      head: 'norm',
    },
    paramCount: 8_847_498,
    inputSize: [32, 32, 3],
    top1: 82.0,
    official: false,
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
    cropPct: 1,
    interpolation: 'bilinear',
    notes:
      "The seed's CIFAR-10 port (32×32, 10 classes); top-1 is the seed's CIFAR-10 validation accuracy after 50 epochs. The seed's table says 8,847,978 parameters; its printed code has 8,847,498.",
  },
  conv2former_nano: {
    // Not from the paper: the official layout (3×3 stride-2 stem pair, LayerNorm + conv
    // downsampling, layer scale, conv head) shrunk for 32×32 inputs: kernel 7, narrow stages,
    // mlp ratio 2 and a 256-wide head instead of 1280.
    options: { kernelSize: 7, dims: [32, 64, 128, 256], depths: [1, 1, 3, 1], mlpRatios: [2, 2, 2, 2], headDim: 256, numClasses: 10 },
    paramCount: 1_145_658,
    ...NANO_CARD,
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
    nanoWeights: {
      url: packageAsset(() => new URL('../weights/conv2former_nano.fashion_mnist.safetensors', import.meta.url)),
      sha256: '12a728c802c3c7f321fbbef182549b37f577c9ec5e4b4f51f2ca221947293b5b',
      sizeBytes: 2_305_220,
      top1: 88.95,
      epochs: 2,
    },
  },
} satisfies Record<string, Conv2FormerVariant>;

export type Conv2FormerVariantName = keyof typeof CONV2FORMER_VARIANTS;
