import { ConfigError, ConvStemPatchEmbed, NANO_CARD, packageAsset, type VariantSpec } from '@vit/core';
import { convStemLayer, patchEmbedLayer, type CaiTOptions } from './model.js';

/** A registered CaiT variant (card defaults: the official crop 1.0, bicubic). */
export interface CaiTVariant extends VariantSpec {
  options: CaiTOptions;
  /** Official checkpoint (PyTorch, keys prefixed `module.` under `model`). */
  weightsUrl?: string;
  /** The card's first convolution when the variant's patch layer is not the official one. */
  firstConv?: string;
}

/** What every registered CaiT shares (the official registrations all pass these). */
const COMMON = { patchSize: 16, mlpRatio: 4, qkvBias: true, normEps: 1e-6, depthTokenOnly: 2 } as const;

function v(
  imgSize: number,
  embedDim: number,
  depth: number,
  numHeads: number,
  initScale: number,
  paramCount: number,
  top1: number,
  file: string,
): CaiTVariant {
  return {
    options: { ...COMMON, imgSize, embedDim, depth, numHeads, initScale },
    paramCount,
    inputSize: [imgSize, imgSize, 3],
    top1,
    weightsUrl: `https://dl.fbaipublicfiles.com/deit/${file}.pth`,
  };
}

/**
 * The official registrations of facebookresearch/deit `cait_models.py` under timm's names
 * (`cait_XXS24_224` → `cait_xxs24_224`, `cait_S24` → `cait_s24_384`…). Embed/depth/heads/init:
 * XXS 192/24|36/4/1e-5, XS 288/24/6/1e-5, S 384/24|36/8/1e-5 (S36: 1e-6), M 768/36|48/16/1e-6.
 * Plus @vit's own 32×32 `cait_nano` (not official, 10 classes).
 */
export const CAIT_VARIANTS: Record<string, CaiTVariant> = {
  cait_xxs24_224: v(224, 192, 24, 4, 1e-5, 11_956_264, 78.4, 'XXS24_224'),
  cait_xxs24_384: v(384, 192, 24, 4, 1e-5, 12_029_224, 80.4, 'XXS24_384'),
  cait_xxs36_224: v(224, 192, 36, 4, 1e-5, 17_299_720, 79.7, 'XXS36_224'),
  cait_xxs36_384: v(384, 192, 36, 4, 1e-5, 17_372_680, 81.8, 'XXS36_384'),
  cait_xs24_384: v(384, 288, 24, 6, 1e-5, 26_670_088, 84.1, 'XS24_384'),
  cait_s24_224: v(224, 384, 24, 8, 1e-5, 46_916_200, 83.5, 'S24_224'),
  cait_s24_384: v(384, 384, 24, 8, 1e-5, 47_062_120, 85.1, 'S24_384'),
  cait_s36_384: v(384, 384, 36, 8, 1e-6, 68_366_632, 85.4, 'S36_384'),
  cait_m36_384: v(384, 768, 36, 16, 1e-6, 271_221_352, 86.1, 'M36_384'),
  cait_m48_448: v(448, 768, 48, 16, 1e-6, 356_460_520, 86.5, 'M48_448'),
  // Not from the paper: 8×8 tokens of 4 px on a 32×32 input, 64 wide (2 heads of 32), 3
  // self-attention blocks and 1 class-attention block, tuned to learn in a few epochs (the first
  // version, with the big models' settings, reached 32% after a Fashion-MNIST epoch; a PyTorch port
  // behaved the same): LayerScale init 0.1 (the paper's value for depth ≤ 18; at 1e-5 the
  // self-attention gradients, 1e-9 … 1e-18, sit far below Adam's eps), identity talking-heads mixing,
  // PyTorch's default Linear init instead of std .02, and a two-conv stem instead of the
  // patchify conv (in the PyTorch port on 5,000 images × 5 epochs: 58% → 77%).
  cait_nano: {
    options: {
      ...COMMON,
      imgSize: 32,
      patchSize: 4,
      embedDim: 64,
      depth: 3,
      numHeads: 2,
      depthTokenOnly: 1,
      initScale: 0.1,
      talkingHeadsInit: 'identity',
      linearInit: 'pytorch',
      patchLayer: convStemLayer,
      numClasses: 10,
    },
    firstConv: 'patch_embed.stem.0',
    paramCount: 224_846,
    ...NANO_CARD,
    nanoWeights: {
      url: packageAsset(() => new URL('../weights/cait_nano.fashion_mnist.safetensors', import.meta.url)),
      sha256: 'f7a58f6a6a5c69c657204630810be099c0f0d9b1f87ac4bc6d03a441e4300d0c',
      sizeBytes: 457_420,
      top1: 84.73,
      epochs: 2,
    },
  },
};

/**
 * Parameter count of a CaiT with the default blocks, from its structure (no model is built).
 * Per self-attention block 12C² + 15C + 2H² + 2H (mlp ratio 4, qkv bias), per class-attention
 * block 12C² + 15C, plus tokens, patch embedding, norm and head.
 */
export function caitParamCount(options: CaiTOptions): number {
  const c = options.embedDim ?? 768;
  const h = options.numHeads ?? 12;
  const depth = options.depth ?? 12;
  const dto = options.depthTokenOnly ?? 2;
  const qkvBias = options.qkvBias ?? false;
  const inChans = options.inChans ?? 3;
  const numClasses = options.numClasses ?? 1000;
  const [ih, iw] = pairOf(options.imgSize ?? 224);
  const [ph, pw] = pairOf(options.patchSize ?? 16);
  const n = Math.floor(ih / ph) * Math.floor(iw / pw);
  const mlp = (ratio: number) => {
    const hidden = Math.trunc(c * ratio);
    return c * hidden + hidden + hidden * c + c;
  };
  const norm = 2 * c;
  const gammas = 2 * c;
  const sa = gammas + 2 * norm + (3 * c * c + (qkvBias ? 3 * c : 0)) + (c * c + c) + 2 * (h * h + h) + mlp(options.mlpRatio ?? 4);
  const ca = gammas + 2 * norm + (3 * c * c + (qkvBias ? 3 * c : 0)) + (c * c + c) + mlp(options.mlpRatioClstk ?? 4);
  const head = numClasses > 0 ? c * numClasses + numClasses : 0;
  return c + n * c + patchLayerParams(options.patchLayer ?? patchEmbedLayer, inChans, ph, pw, c) + depth * sa + dto * ca + norm + head;
}

function patchLayerParams(layer: unknown, inChans: number, p: number, pw: number, c: number): number {
  if (layer === patchEmbedLayer) return inChans * p * pw * c + c;
  if (layer === convStemLayer) return ConvStemPatchEmbed.numParams({ inChans, embedDim: c, patchSize: [p, pw] });
  throw new ConfigError('caitParamCount knows the parameters of patchEmbedLayer and convStemLayer only; build the model and use numParams() for another patchLayer');
}

function pairOf(v: number | [number, number]): [number, number] {
  return typeof v === 'number' ? [v, v] : v;
}
