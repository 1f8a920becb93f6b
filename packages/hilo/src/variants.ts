import { ConfigError, isModelRegistered, modelCard, registerModel, type CreateModelOptions } from '@vit/core';
import { LITV2_VARIANTS, type LITv2Variant } from './configs.js';
import { LITV2_DEFAULTS, LITv2, type LITv2Options } from './model.js';

const OPTION_NAMES = new Set(Object.keys(LITV2_DEFAULTS));

/** Builds a registered variant; `overrides` may change any {@link LITv2Options} field. */
export function createLITv2Variant(variant: LITv2Variant, overrides: CreateModelOptions = {}): LITv2 {
  const unknown = Object.keys(overrides).filter((k) => !OPTION_NAMES.has(k) && overrides[k] !== undefined);
  if (unknown.length) {
    throw new ConfigError(`Unknown LITv2 option(s) ${unknown.join(', ')}; valid options: ${[...OPTION_NAMES].join(', ')}`);
  }
  return new LITv2({ ...variant.options, ...(overrides as LITv2Options) });
}

const PAPER = 'Fast Vision Transformers with HiLo Attention (Pan, Cai, Zhuang; NeurIPS 2022, arXiv:2205.13213)';

let registered = false;

/** Registers every variant of {@link LITV2_VARIANTS} with its model card (idempotent). */
export function registerLITv2Models(): void {
  if (registered) return;
  registered = true;
  for (const [name, v] of Object.entries(LITV2_VARIANTS) as Array<[string, LITv2Variant]>) {
    if (isModelRegistered(name)) continue;
    registerModel(
      name,
      (options) => createLITv2Variant(v, options),
      modelCard({
        name,
        arch: 'litv2',
        inputSize: v.inputSize,
        numClasses: v.options.numClasses ?? 1000,
        firstConv: 'patch_embed.proj',
        classifier: 'head',
        paramCount: v.paramCount,
        top1: v.top1,
        paper: PAPER,
        reference: 'ziplab/LITv2:classification/models/litv2.py',
        official: v.official,
        cropPct: v.cropPct,
        interpolation: v.interpolation,
        notes: v.notes,
      }),
    );
  }
}
