/**
 * The official checkpoint mapping. Parameter names already equal the official state_dict keys
 * (`layers.1.block.0.proj.2.weight`, `layers.1.block.0.proj_cls.2.weight`, `cls_token.proj.weight`,
 * `layers.0.block.1.attn.rel_pos`…) and core's loader converts layouts by declared kind, so this
 * file maps the official constructor's keyword arguments (`RegionViT(img_size=224, patch_size=16,
 * in_chans=3, num_classes=1000, embed_dim=(768,), depth=(12,), num_heads=(12,), mlp_ratio=4.,
 * qkv_bias=True, qk_scale=None, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.,
 * norm_layer=partial(nn.LayerNorm, eps=1e-6), kernel_sizes=None, downsampling=None,
 * patch_conv_type='3conv', computed_cls_token=True, peg=False, det_norm=False)`), exposes the
 * official per-stage features, and adapts official checkpoints (prefix, class count).
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  checkKnownKwargs,
  VIT_COMMON_KWARGS,
  ConfigError,
  defaultCheckpointFilter,
  kwargReader,
  layerNormFromTorch,
  loadAdaptedCheckpoint,
  registerArchitecture,
  type AdaptedCheckpoint,
  type ArchitectureAdapter,
  type CamTarget,
  type Module,
  type OfficialKwargs,
  type PytorchLoadResult,
  type TorchLayerNorm,
  expectModel,
  goldenFeatures,
} from '@vit/core';
import {
  type PatchConvType,
} from './blocks.js';
import { RegionViT, type RegionViTOptions } from './model.js';

const KNOWN_KWARGS = new Set([
  ...VIT_COMMON_KWARGS,
  'kernel_sizes',
  'downsampling',
  'patch_conv_type',
  'computed_cls_token',
  'peg',
  'det_norm',
]);

/**
 * Reads a norm_layer as the golden metadata spells it: `"functools.partial(torch.nn.LayerNorm,
 * eps=1e-06)"`, `"<class 'torch.nn.modules.normalization.LayerNorm'>"` (eps 1e-5), or null (the
 * official default, eps 1e-6).
 */
export function parseNormLayer(v: unknown): TorchLayerNorm {
  return layerNormFromTorch(v, 'RegionViT', 1e-6);
}

/**
 * Maps the official `RegionViT` kwargs to {@link RegionViTOptions}: the exact model the official
 * code builds, for any kwargs it accepts. Refuses (ConfigError) kwargs it does not take and those
 * with which the official code fails (`computed_cls_token=False`, `det_norm` without exactly 4
 * stages, missing `kernel_sizes`/`downsampling`).
 */
export function regionvitOptionsFromOfficial(kwargs: OfficialKwargs): RegionViTOptions {
  const kw = kwargReader(kwargs, 'RegionViT');
  checkKnownKwargs(kwargs, KNOWN_KWARGS, 'RegionViT()');
  const embedDim = kw.intList('embed_dim', [768]);
  const stages = embedDim.length - 1;
  if (!kw.bool('computed_cls_token', true)) {
    // Porting note: with computed_cls_token=False the official constructor calls
    // trunc_normal_(self.cls_token) on a PatchEmbed module and fails; only True exists.
    throw new ConfigError('RegionViT computed_cls_token=False is not supported: the official constructor fails with it (trunc_normal_ on a module)');
  }
  const detNorm = kw.bool('det_norm', false);
  if (detNorm && stages !== 4) {
    throw new ConfigError(
      `RegionViT det_norm=True needs exactly 4 stages (len(embed_dim) = 5): the official constructor builds norm0..norm3 from embed_dim[1..4] and its forward uses norm{i} for every stage; got ${stages} stages`,
    );
  }
  const imgRaw = kwargs.img_size ?? 224;
  const imgSize = Array.isArray(imgRaw) ? imgRaw[0] : imgRaw;
  if (typeof imgSize !== 'number' || !Number.isInteger(imgSize)) throw new ConfigError(`RegionViT kwarg img_size must be an int, got ${JSON.stringify(imgRaw)}`);
  const mlpRaw = kwargs.mlp_ratio ?? 4;
  let mlpRatio: number | number[];
  if (Array.isArray(mlpRaw)) {
    if (!mlpRaw.every((r) => typeof r === 'number' && Number.isFinite(r))) throw new ConfigError(`RegionViT kwarg mlp_ratio must be numbers, got ${JSON.stringify(mlpRaw)}`);
    mlpRatio = mlpRaw as number[];
  } else {
    mlpRatio = kw.num('mlp_ratio', 4);
  }
  const down = kwargs.downsampling;
  if (down === undefined || down === null) throw new ConfigError('RegionViT kwarg downsampling is required (the official default None fails)');
  if (!Array.isArray(down) || !down.every((d) => typeof d === 'string')) {
    throw new ConfigError(`RegionViT kwarg downsampling must be a list of strings ('c', 'sc'…), got ${JSON.stringify(down)}`);
  }
  const pct = kwargs.patch_conv_type ?? '3conv';
  if (typeof pct !== 'string') throw new ConfigError(`RegionViT kwarg patch_conv_type must be a string, got ${JSON.stringify(pct)}`);
  // The official PatchEmbed treats every value other than '3conv' and '1conv' as 'linear'.
  const patchConvType: PatchConvType = pct === '3conv' || pct === '1conv' ? pct : 'linear';
  const patchSize = kwargs.patch_size ?? 16;
  if (typeof patchSize !== 'number' || !Number.isInteger(patchSize)) {
    throw new ConfigError(`RegionViT kwarg patch_size must be an int (the official code multiplies it by kernel_sizes[0]), got ${JSON.stringify(patchSize)}`);
  }
  const norm = parseNormLayer(kwargs.norm_layer);
  return {
    ...kw.vitCommon(),
    imgSize,
    patchSize,
    numClasses: Math.max(0, kw.int('num_classes', 1000)),
    embedDim,
    depth: kw.intList('depth', [12]),
    numHeads: kw.intList('num_heads', [12]),
    mlpRatio,
    qkvBias: kw.bool('qkv_bias', true),
    normLayer: norm.factory,
    normEps: norm.eps,
    kernelSizes: kw.intList('kernel_sizes', null),
    downsampling: down as string[],
    patchConvType,
    peg: kw.bool('peg', false),
    detNorm,
  };
}

/** Builds exactly the model the official `RegionViT(**kwargs)` builds. */
export function regionvitFromOfficialConfig(kwargs: OfficialKwargs): RegionViT {
  return new RegionViT(regionvitOptionsFromOfficial(kwargs));
}

/**
 * The goldens' per-stage features: `golden.features.i` = local tokens returned by `layers[i]`
 * (before `det_norm`), `golden.features_regional.i` = its regional tokens; NHWC.
 */
export function regionvitOfficialFeatures(model: Module, x: tf.Tensor4D): Record<string, tf.Tensor> {
  const regionvit = expectModel(model, RegionViT, 'regionvit officialFeatures');
  return tf.tidy(() => {
    const t = regionvit.trace(x);
    return { ...goldenFeatures(t.local), ...goldenFeatures(t.regional, 'features_regional') };
  });
}

export const regionvitArchitecture: ArchitectureAdapter = {
  name: 'regionvit',
  description: 'RegionViT (IBM/RegionViT:regionvit/regionvit.py, class RegionViT)',
  fromOfficialConfig: (kwargs) => regionvitFromOfficialConfig(kwargs),
  officialFeatures: regionvitOfficialFeatures,
  explainer: (model) =>
    model instanceof RegionViT
      ? {
          method: 'gradcam',
          camTargets: regionvitCamTargets(model),
          noRollout:
            "RegionViT's attention is regional: local tokens attend within their window, regional tokens among themselves, and the token sets shrink by strided convolutions between stages, so no token-to-token map spans the network",
        }
      : undefined,
};

/**
 * The local-token maps the prediction reads: every stage's local output but the last's (which
 * nothing after it reads: the head pools the regional tokens), and the last stage's projected local
 * map (`layers.{last}.block.0`, what its blocks attend over). The regional map `forwardFeatures`
 * gives is 1×1 at 224 px.
 */
export function regionvitCamTargets(model: RegionViT): CamTarget[] {
  const n = model.layers.length;
  return model.featureInfo.map((f, i) => ({ layer: i < n - 1 ? `layers.${i}` : `layers.${i}.block.0`, output: 1, reduction: f.reduction }));
}

/** Registers the `regionvit` architecture adapter (idempotent). */
export function registerRegionViTArchitecture(): void {
  registerArchitecture(regionvitArchitecture);
}

type Tensors = Map<string, tf.Tensor> | Record<string, tf.Tensor>;

export type { AdaptedCheckpoint };

/**
 * Prepares an official RegionViT checkpoint for `model`: unwraps `module.` (DataParallel) prefixes and
 * drops `head.*` when the class count differs (the model's fresh classifier stands in, so a strict
 * load still checks every other key). `proj`/`proj_cls` need no care: either key (or both, as the
 * official files hold) loads the shared projection.
 */
export function adaptRegionViTCheckpoint(model: RegionViT, tensors: Tensors): AdaptedCheckpoint {
  return defaultCheckpointFilter(model, tensors, 'head');
}

/**
 * Loads an official RegionViT checkpoint (official keys and layouts, e.g. from `loadSafetensorsFile`)
 * into `model` through core's `loadPytorchStateDict`, after {@link adaptRegionViTCheckpoint}. All or
 * nothing: on any problem one error lists them all and no parameter changes.
 */
export function loadOfficialRegionViTWeights(
  model: RegionViT,
  tensors: Tensors,
  options: { strict?: boolean } = {},
): PytorchLoadResult & { notes: string[] } {
  return loadAdaptedCheckpoint(model, adaptRegionViTCheckpoint(model, tensors), options);
}
