import { ConfigError, isModelRegistered, modelCard, registerModel, type CreateModelOptions } from '@vit/core';
import { CAIT_VARIANTS, type CaiTVariant } from './configs.js';
import { CAIT_DEFAULTS, CaiT, type CaiTOptions } from './model.js';

const OPTION_NAMES = new Set(Object.keys(CAIT_DEFAULTS));

/** Builds a registered variant; `overrides` may change any {@link CaiTOptions} field. */
export function createCaiTVariant(variant: CaiTVariant, overrides: CreateModelOptions = {}): CaiT {
  const unknown = Object.keys(overrides).filter((k) => !OPTION_NAMES.has(k) && overrides[k] !== undefined);
  if (unknown.length) {
    throw new ConfigError(`Unknown CaiT option(s) ${unknown.join(', ')}; valid options: ${[...OPTION_NAMES].join(', ')}`);
  }
  return new CaiT({ ...variant.options, ...(overrides as CaiTOptions) });
}

const PAPER = 'Going deeper with Image Transformers (Touvron, Cord, Sablayrolles, Synnaeve, Jégou; ICCV 2021, arXiv:2103.17239)';

let registered = false;

/** Registers every variant of {@link CAIT_VARIANTS} with its model card (idempotent). */
export function registerCaiTModels(): void {
  if (registered) return;
  registered = true;
  for (const [name, v] of Object.entries(CAIT_VARIANTS)) {
    if (isModelRegistered(name)) continue;
    registerModel(
      name,
      (options) => createCaiTVariant(v, options),
      modelCard({
        name,
        arch: 'cait',
        inputSize: v.inputSize,
        numClasses: v.options.numClasses ?? 1000,
        // timm's CaiT cfg: crop 1.0 (the official README's eval transform), bicubic, ImageNet mean/std.
        cropPct: v.cropPct ?? 1.0,
        interpolation: v.interpolation ?? 'bicubic',
        firstConv: v.firstConv ?? 'patch_embed.proj',
        classifier: 'head',
        paramCount: v.paramCount,
        top1: v.top1,
        paper: PAPER,
        reference: 'facebookresearch/deit:cait_models.py',
        official: v.official ?? true,
        notes:
          v.notes ??
          `Distilled ImageNet-1k weights: ${v.weightsUrl} (load with loadOfficialCaiTWeights). Fixed input size unless created with dynamicImgSize: true.`,
      }),
    );
  }
}
