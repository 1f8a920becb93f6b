import { createSpecVariant, pretrainedTag, type CreateModelOptions, type ModelCard, type PretrainedTag, registerSpecVariants, type SpecModel } from '@vit/core';
import { CAIT_VARIANTS, type CaiTVariant } from './configs.js';
import { CAIT_DEFAULTS, CaiT } from './model.js';

const MODEL: SpecModel<CaiTVariant, CaiT> = {
  typeName: 'CaiT',
  optionNames: new Set(Object.keys(CAIT_DEFAULTS)),
  build: (options) => new CaiT(options),
};

/** Builds a registered variant; `overrides` may change any `CaiTOptions` field. */
export function createCaiTVariant(variant: CaiTVariant, overrides: CreateModelOptions = {}): CaiT {
  return createSpecVariant(MODEL, variant, overrides);
}

const PAPER = 'Going deeper with Image Transformers (Touvron, Cord, Sablayrolles, Synnaeve, Jégou; ICCV 2021, arXiv:2103.17239)';

/**
 * The published weights of a variant: the official deit release (a torch.save file, the state dict
 * under `model` with `module.` prefixes) and timm's copy on the Hugging Face hub (safetensors, the
 * same keys). Neither publisher gives a checksum. cait_nano: ours, in this package.
 */
function pretrainedTags(name: string, v: CaiTVariant, card: ModelCard): PretrainedTag[] {
  if (!v.weightsUrl) return [];
  return [
    pretrainedTag(card, {
      tag: 'fb_dist_in1k',
      sources: [
        { url: v.weightsUrl, format: 'pth', stateDictKey: 'model' },
        { url: `https://huggingface.co/timm/${name}.fb_dist_in1k/resolve/main/model.safetensors`, format: 'safetensors' },
      ],
      license: 'Apache-2.0',
      labels: 'imagenet-1k',
      top1: v.top1,
      notes: 'Distilled on ImageNet-1k (the paper\'s released models).',
    }),
  ];
}

/** Registers every variant of {@link CAIT_VARIANTS} with its model card (idempotent). */
export function registerCaiTModels(): void {
  registerSpecVariants(CAIT_VARIANTS as Record<string, CaiTVariant>, {
    ...MODEL,
    card: (name, v) => ({
      arch: 'cait',
      // timm's CaiT cfg: crop 1.0 (the official README's eval transform), bicubic, ImageNet mean/std.
      cropPct: 1.0,
      interpolation: 'bicubic',
      firstConv: v.firstConv ?? 'patch_embed.proj',
      classifier: 'head',
      paper: PAPER,
      reference: 'facebookresearch/deit:cait_models.py',
      notes: `Distilled ImageNet-1k weights: createPretrainedModel('${name}') (from ${v.weightsUrl}). Fixed input size unless created with dynamicImgSize: true.`,
    }),
    officialTags: (name, v, card) => pretrainedTags(name, v, card),
  });
}
