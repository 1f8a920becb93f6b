import { NANO_CARD, packageAsset, type VariantSpec } from '@vit/core';
import type { RegionViTOptions } from './model.js';

/** A registered RegionViT variant (card defaults: the official crop 0.875, bicubic). */
export interface RegionViTVariant extends VariantSpec {
  options: RegionViTOptions;
  /** Official ImageNet checkpoint, where released. */
  weightsUrl?: string;
  /** The paper's name for the model (none for @vit's own configurations). */
  paperName?: string;
  /** A note on the released file (where the README is ambiguous about it). */
  weightsNote?: string;
}

const RELEASES = 'https://github.com/IBM/RegionViT/releases/download/weights-v0.1';

const TINY = { embedDim: [64, 64, 128, 256, 512], numHeads: [2, 4, 8, 16], depth: [2, 2, 8, 2], patchConvType: '3conv' } as const;
const SMALL = { embedDim: [96, 96, 192, 384, 768], numHeads: [3, 6, 12, 24], depth: [2, 2, 8, 2], patchConvType: '3conv' } as const;
const MEDIUM = { embedDim: [96, 96, 192, 384, 768], numHeads: [3, 6, 12, 24], depth: [2, 2, 14, 2], patchConvType: '1conv' } as const;
const BASE = { embedDim: [128, 128, 256, 512, 1024], numHeads: [4, 8, 16, 32], depth: [2, 2, 14, 2], patchConvType: '1conv' } as const;

function v(
  arch: { embedDim: readonly number[]; numHeads: readonly number[]; depth: readonly number[]; patchConvType: '3conv' | '1conv' },
  ws: number,
  peg: boolean,
  paramCount: number,
  paperName: string,
  release?: { top1: number; file: string },
): RegionViTVariant {
  return {
    options: {
      imgSize: 224,
      patchSize: 4,
      embedDim: [...arch.embedDim],
      numHeads: [...arch.numHeads],
      depth: [...arch.depth],
      mlpRatio: 4,
      kernelSizes: [ws, ws, ws, ws],
      downsampling: ['c', 'sc', 'sc', 'sc'],
      patchConvType: arch.patchConvType,
      peg,
    },
    paramCount,
    inputSize: [224, 224, 3],
    top1: release?.top1,
    weightsUrl: release ? `${RELEASES}/${release.file}.pth` : undefined,
    paperName,
  };
}

/**
 * The official registrations of IBM/RegionViT `regionvit.py` (`_model_cfg`): patch 4, mlp ratio 4,
 * downsampling c/sc/sc/sc, LayerNorm eps 1e-6, qkv bias. Window 7 (regions of 28 px: 8×8, 4×4, 2×2,
 * 1×1 regional tokens at 224) or 14 for the `_w14` ("+") models.
 *
 * Plus @vit's own 32×32 `regionvit_nano` (not official, 10 classes).
 *
 * `regionvit_tiny_w14_224` is registered upstream but cannot be built there: it reads
 * `_model_cfg['tiny_w14']`, which does not exist (KeyError), so it is left out.
 */
export const REGIONVIT_VARIANTS: Record<string, RegionViTVariant> = {
  regionvit_tiny_224: v(TINY, 7, false, 13_842_676, 'RegionViT-Ti', { top1: 80.4, file: 'RegionViT-Ti' }),
  regionvit_small_224: v(SMALL, 7, false, 30_586_618, 'RegionViT-S', { top1: 82.6, file: 'RegionViT-S' }),
  regionvit_medium_224: {
    ...v(MEDIUM, 7, false, 41_215_906, 'RegionViT-M', { top1: 83.1, file: 'RegionViT-M' }),
    weightsNote: "The official README links RegionViT-M to RegionViT-S.pth (a slip: S's file holds S's shapes); RegionViT-M.pth is the release's name for it.",
  },
  regionvit_base_224: v(BASE, 7, false, 72_747_232, 'RegionViT-B', { top1: 83.2, file: 'RegionViT-B' }),
  regionvit_small_w14_224: v(SMALL, 14, false, 31_354_714, 'RegionViT-S+'),
  regionvit_small_w14_peg_224: v(SMALL, 14, true, 31_367_674, 'RegionViT-S+ w/ PEG'),
  regionvit_base_w14_224: v(BASE, 14, false, 73_825_120, 'RegionViT-B+'),
  regionvit_base_w14_peg_224: v(BASE, 14, true, 73_842_400, 'RegionViT-B+ w/ PEG'),
  // Not from the paper: 3-conv stem (patch 4) and regions of 8 px (window 2) on a 32×32 input,
  // so the three stages see local 8, 4, 2 and regional 4, 2, 1 tokens per side. `embedDim[0]`
  // is the embeddings' width, `embedDim[i + 1]` stage i's: three stages of 32, 64, 128.
  regionvit_nano: {
    options: {
      imgSize: 32,
      patchSize: 4,
      embedDim: [32, 32, 64, 128],
      numHeads: [1, 2, 4],
      depth: [1, 1, 2],
      mlpRatio: 4,
      kernelSizes: [2, 2, 2],
      downsampling: ['c', 'sc', 'sc'],
      patchConvType: '3conv',
      numClasses: 10,
    },
    paramCount: 475_949,
    ...NANO_CARD,
    nanoWeights: {
      url: packageAsset(() => new URL('../weights/regionvit_nano.fashion_mnist.safetensors', import.meta.url)),
      sha256: 'f46721644fb4a63f19bb597e617a7864e6b219df2a555f9bf5b3f7731958631f',
      sizeBytes: 964_858,
      top1: 87.94,
      epochs: 2,
    },
  },
};

/**
 * Parameter count of a RegionViT with the default blocks, from its structure (no model is built):
 * both patch embeddings, per stage the shared projection (LayerNorm2d + grouped conv, counted once
 * although it has two names), per R2L block 3 token norms, qkv/proj, the relative-position table
 * heads·(2ws−1)² and the MLP, the PEG, then norm, head and the optional detection norms.
 */
export function regionvitParamCount(options: RegionViTOptions): number {
  const e = options.embedDim ?? [768];
  const depth = options.depth ?? [12];
  const heads = options.numHeads ?? [12];
  const ks = options.kernelSizes ?? [];
  const down = options.downsampling ?? [];
  const p = options.patchSize ?? 16;
  const inC = options.inChans ?? 3;
  const nc = options.numClasses ?? 1000;
  const qkvBias = options.qkvBias ?? true;
  const ratios = Array.isArray(options.mlpRatio) ? options.mlpRatio : Array<number>(depth.length).fill(options.mlpRatio ?? 4);
  const c0 = e[0]!;
  let n = 0;
  const type = options.patchConvType ?? '3conv';
  if (type === '3conv') {
    const c4 = Math.floor(c0 / 4);
    const c2 = Math.floor(c0 / 2);
    n += inC * c4 * 9 + c4 + 2 * c4 + c4 * c2 * 9 + c2 + 2 * c2 + c2 * c0 * 9 + c0;
  } else {
    const k = type === '1conv' ? 2 * p : p;
    n += inC * c0 * k * k + c0;
  }
  const rp = p * ks[0]!;
  n += inC * c0 * rp * rp + c0;
  for (let i = 0; i < e.length - 1; i++) {
    const cin = e[i]!;
    const c = e[i + 1]!;
    const mode = down[i] ?? 'sc';
    if (mode.includes('c')) {
      const strided = mode.includes('s');
      if (strided || cin !== c) n += 2 * cin + c * (strided ? 9 : 1) + c;
    }
    const r = 2 * ks[i]! - 1;
    const hidden = Math.trunc(c * ratios[i]!);
    const block = 3 * 2 * c + heads[i]! * r * r + 3 * c * c + (qkvBias ? 3 * c : 0) + c * c + c + c * hidden + hidden + hidden * c + c;
    n += depth[i]! * block;
    if (options.peg) n += 9 * c;
    if (options.detNorm) n += 2 * c;
  }
  const cl = e[e.length - 1]!;
  n += 2 * cl + (nc > 0 ? cl * nc + nc : 0);
  return n;
}
