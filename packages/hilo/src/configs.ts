import { NANO_CARD, packageAsset, type VariantSpec } from '@vit/core';
import type { LITv2Options } from './model.js';

/** One registered LITv2 variant: its options and what its model card states. */
export interface LITv2Variant extends VariantSpec {
  options: LITv2Options;
}

const TOP1_NOTE = 'ImageNet-1k top-1 from the official README (classification/README.md) / the paper (Pan et al., NeurIPS 2022).';

/** What the official registrations' cards share (evaluated with a 0.875 centre crop, bicubic). */
const OFFICIAL = { inputSize: [224, 224, 3] as [number, number, number], official: true, cropPct: 0.875, interpolation: 'bicubic' as const, notes: TOP1_NOTE };

/**
 * The official configs (ziplab/LITv2 `classification/configs/litv2-*.yaml`: embed dim, depths,
 * heads, alpha 0.9, local_ws [0, 0, 2, 1], drop-path rate), plus the seed's CIFAR-10 model.
 * Parameter counts were measured on the official PyTorch code (1000 classes) and are checked by
 * the tests.
 */
export const LITV2_VARIANTS = {
  litv2_small: {
    ...OFFICIAL,
    options: { embedDim: 96, depths: [2, 2, 6, 2], numHeads: [3, 6, 12, 24], alpha: 0.9, localWs: [0, 0, 2, 1], dropPathRate: 0.2 },
    paramCount: 27_844_000,
    top1: 82.0,
  },
  litv2_medium: {
    ...OFFICIAL,
    options: { embedDim: 96, depths: [2, 2, 18, 2], numHeads: [3, 6, 12, 24], alpha: 0.9, localWs: [0, 0, 2, 1], dropPathRate: 0.3 },
    paramCount: 48_830_368,
    top1: 83.3,
  },
  litv2_base: {
    ...OFFICIAL,
    options: { embedDim: 128, depths: [2, 2, 18, 2], numHeads: [4, 8, 16, 32], alpha: 0.9, localWs: [0, 0, 2, 1], dropPathRate: 0.5 },
    paramCount: 86_520_704,
    top1: 83.6,
  },
  litv2_base_384: {
    // litv2-base-finetune-384.yaml: fine-tuned at 384, evaluated without a centre crop.
    ...OFFICIAL,
    options: { imgSize: 384, embedDim: 128, depths: [2, 2, 18, 2], numHeads: [4, 8, 16, 32], alpha: 0.9, localWs: [0, 0, 2, 1], dropPathRate: 0.5 },
    paramCount: 86_520_704,
    inputSize: [384, 384, 3],
    top1: 84.7,
    cropPct: 1.0,
    notes: `${TOP1_NOTE} Fine-tuned from litv2_base at 384×384 (TEST.CROP False).`,
  },
  litv2_cifar: {
    // The seed's "LIT-ours" (PaddlePaddle, CIFAR-10 resized to 224): embed 64, heads 3-6-16-32,
    // DCNv2 token merging (offset + raw mask convs), per-stage alpha [0.1, 0.1, 0.9, 1.0] and
    // local_ws [1, 1, 2, 1] (stages 1-2 are ConvFFN-only and stage 4 has ws 1, so this equals
    // the official scalar alpha 0.9 with local_ws [0, 0, 2, 1]).
    options: {
      numClasses: 10,
      embedDim: 64,
      depths: [2, 2, 6, 2],
      numHeads: [3, 6, 16, 32],
      alpha: [0.1, 0.1, 0.9, 1.0],
      localWs: [1, 1, 2, 1],
      dtm: 'dcnv2',
      dropPathRate: 0.1,
    },
    paramCount: 12_127_214,
    inputSize: [224, 224, 3],
    official: false,
    cropPct: 1.0,
    interpolation: 'bilinear',
    notes: "The seed write-up's CIFAR-10 model (10 classes, 224×224 inputs resized from 32×32, ImageNet mean/std); not an official configuration. The write-up reports no final accuracy in text.",
  },
  litv2_nano: {
    // Not from the paper: the official stage layout (ConvFFN stages 1-2, HiLo at ws 2 in stage 3,
    // MSA in stage 4) shrunk for 32×32 inputs. Patch 2 gives tokens 16, 8, 4, 2 per side, so every
    // attention sees ≥ 4 keys (with patch 4 the Lo-Fi queries of stages 3-4 saw one key and never trained).
    options: {
      imgSize: 32,
      patchSize: 2,
      numClasses: 10,
      embedDim: 32,
      depths: [1, 1, 2, 1],
      numHeads: [1, 2, 4, 8],
      alpha: 0.5,
      localWs: [0, 0, 2, 1],
      hasMsa: [0, 0, 1, 1],
    },
    paramCount: 1_420_002,
    ...NANO_CARD,
    nanoWeights: {
      url: packageAsset(() => new URL('../weights/litv2_nano.fashion_mnist.safetensors', import.meta.url)),
      sha256: '4eb8bceeb9fda2b74fe13fb7807761155a77ac005281fdc81cd6f6fa0cc60ed1',
      sizeBytes: 2_852_180,
      top1: 88.55,
      epochs: 1,
    },
  },
} satisfies Record<string, LITv2Variant>;

export type LITv2VariantName = keyof typeof LITV2_VARIANTS;
