import { createSpecVariant, pretrainedTag, type CreateModelOptions, type ModelCard, type PretrainedTag, registerSpecVariants, type SpecModel } from '@vit/core';
import { CONV2FORMER_VARIANTS, type Conv2FormerVariant } from './configs.js';
import { CONV2FORMER_DEFAULTS, Conv2Former } from './model.js';

const MODEL: SpecModel<Conv2FormerVariant, Conv2Former> = {
  typeName: 'Conv2Former',
  optionNames: new Set(Object.keys(CONV2FORMER_DEFAULTS)),
  build: (options) => new Conv2Former(options),
};

/** Builds a registered variant; `overrides` may change any `Conv2FormerOptions` field. */
export function createConv2FormerVariant(variant: Conv2FormerVariant, overrides: CreateModelOptions = {}): Conv2Former {
  return createSpecVariant(MODEL, variant, overrides);
}

function pretrainedTags(v: Conv2FormerVariant, card: ModelCard): PretrainedTag[] {
  if (!v.baiduShare) return [];
  return [
    pretrainedTag(card, {
      tag: v.baiduShare.tag,
      license: 'Apache-2.0',
      labels: 'imagenet-1k',
      top1: v.top1,
      unavailable:
        `the official weights are published only on a Baidu Netdisk share (${v.baiduShare.url}), which needs a browser and an account ` +
        'and cannot be fetched by a program',
    }),
  ];
}

/** Registers every variant of {@link CONV2FORMER_VARIANTS} with its model card (idempotent). */
export function registerConv2FormerModels(): void {
  registerSpecVariants(CONV2FORMER_VARIANTS as Record<string, Conv2FormerVariant>, {
    ...MODEL,
    card: {
      arch: 'conv2former',
      firstConv: 'downsample_layers.0.0',
      classifier: 'pred',
      paper: 'Conv2Former: A Simple Transformer-Style ConvNet for Visual Recognition (Hou, Lu, Cheng, Feng; TPAMI 2024, arXiv:2211.11943)',
      reference: 'HVision-NKU/Conv2Former:models/conv2former.py',
      // The official default_cfg is timm's vision_transformer _cfg (crop 0.9, bicubic); the
      // README normalises with the ImageNet mean/std.
      cropPct: 0.9,
      interpolation: 'bicubic',
    },
    officialTags: (name, v, card) => pretrainedTags(v, card),
  });
}
