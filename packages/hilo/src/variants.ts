import { createSpecVariant, pretrainedTag, type CreateModelOptions, type ModelCard, type PretrainedTag, registerSpecVariants, type SpecModel } from '@vit/core';
import { LITV2_VARIANTS, type LITv2Variant } from './configs.js';
import { LITV2_DEFAULTS, LITv2 } from './model.js';

const MODEL: SpecModel<LITv2Variant, LITv2> = {
  typeName: 'LITv2',
  optionNames: new Set(Object.keys(LITV2_DEFAULTS)),
  build: (options) => new LITv2(options),
};

/** Builds a registered variant; `overrides` may change any `LITv2Options` field. */
export function createLITv2Variant(variant: LITv2Variant, overrides: CreateModelOptions = {}): LITv2 {
  return createSpecVariant(MODEL, variant, overrides);
}

const PAPER = 'Fast Vision Transformers with HiLo Attention (Pan, Cai, Zhuang; NeurIPS 2022, arXiv:2205.13213)';

/** The official release files (GitHub release v1.0 of ziplab/LITv2; Swin-style checkpoints, the state dict under `model`). */
const RELEASE: Record<string, string> = { litv2_small: 'litv2_s', litv2_medium: 'litv2_m', litv2_base: 'litv2_b', litv2_base_384: 'litv2_b_384' };

function pretrainedTags(name: string, v: LITv2Variant, card: ModelCard): PretrainedTag[] {
  const file = RELEASE[name];
  if (!file) return [];
  return [
    pretrainedTag(card, {
      tag: 'in1k',
      // The training script also saves its yacs config object: read as an inert placeholder.
      sources: [{ url: `https://github.com/ziplab/LITv2/releases/download/v1.0/${file}.pth`, format: 'pth', lenient: true }],
      license: 'Apache-2.0',
      labels: 'imagenet-1k',
      top1: v.top1,
      notes: 'ImageNet-1k, 300 epochs (the official README); the publisher gives no checksum.',
    }),
  ];
}

/** Registers every variant of {@link LITV2_VARIANTS} with its model card (idempotent). */
export function registerLITv2Models(): void {
  registerSpecVariants(LITV2_VARIANTS as Record<string, LITv2Variant>, {
    ...MODEL,
    card: {
      arch: 'litv2',
      firstConv: 'patch_embed.proj',
      classifier: 'head',
      paper: PAPER,
      reference: 'ziplab/LITv2:classification/models/litv2.py',
    },
    officialTags: (name, v, card) => pretrainedTags(name, v, card),
  });
}
