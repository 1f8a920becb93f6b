import { createSpecVariant, pretrainedTag, type CreateModelOptions, type ModelCard, type PretrainedTag, registerSpecVariants, type SpecModel } from '@vit/core';
import { REGIONVIT_VARIANTS, type RegionViTVariant } from './configs.js';
import { REGIONVIT_DEFAULTS, RegionViT } from './model.js';

const MODEL: SpecModel<RegionViTVariant, RegionViT> = {
  typeName: 'RegionViT',
  /** Every option name {@link RegionViT} takes (what `createModel` overrides may set). */
  optionNames: new Set([...Object.keys(REGIONVIT_DEFAULTS), 'normLayer', 'kernelSizes', 'downsampling', 'attnLayer', 'mlpLayer']),
  build: (options) => new RegionViT(options),
};

/** Builds a registered variant; `overrides` may change any `RegionViTOptions` field. */
export function createRegionViTVariant(variant: RegionViTVariant, overrides: CreateModelOptions = {}): RegionViT {
  return createSpecVariant(MODEL, variant, overrides);
}

const PAPER = 'RegionViT: Regional-to-Local Attention for Vision Transformers (Chen, Panda, Fan; ICLR 2022, arXiv:2106.02689)';

function pretrainedTags(v: RegionViTVariant, card: ModelCard): PretrainedTag[] {
  if (!v.weightsUrl) return [];
  return [
    pretrainedTag(card, {
      tag: 'in1k',
      // DeiT-style checkpoints also hold the training args (argparse.Namespace): inert placeholders.
      sources: [{ url: v.weightsUrl, format: 'pth', lenient: true }],
      license: 'Apache-2.0',
      labels: 'imagenet-1k',
      top1: v.top1,
      notes: `ImageNet-1k (the official README, GitHub release weights-v0.1); the publisher gives no checksum.${v.weightsNote ? ` ${v.weightsNote}` : ''}`,
    }),
  ];
}

/** Registers every variant of {@link REGIONVIT_VARIANTS} with its model card (idempotent). */
export function registerRegionViTModels(): void {
  registerSpecVariants(REGIONVIT_VARIANTS as Record<string, RegionViTVariant>, {
    ...MODEL,
    card: (name, v) => {
      const released = v.weightsUrl
        ? `ImageNet-1k weights: createPretrainedModel('${name}') (from ${v.weightsUrl}).`
        : 'No ImageNet-1k classification weights released (the official release has COCO detection backbones of this model).';
      return {
        arch: 'regionvit',
        // The official training (DeiT's pipeline, timm _cfg()): crop 0.875, bicubic, ImageNet mean/std.
        cropPct: 0.875,
        interpolation: 'bicubic',
        firstConv: v.options.patchConvType === '3conv' ? 'patch_embed.proj.0' : 'patch_embed.proj',
        classifier: 'head',
        paper: PAPER,
        reference: 'IBM/RegionViT:regionvit/regionvit.py',
        notes: `${v.paperName}. ${released} Any input size is accepted (sizes that are not a multiple of 28·(window/7) px are padded and masked as the official code does).`,
      };
    },
    officialTags: (name, v, card) => pretrainedTags(v, card),
  });
}
