import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  kwargReader,
  layerNormFromTorch,
  registerArchitecture,
  type ArchitectureAdapter,
  type CamTarget,
  type Module,
  type OfficialKwargs,
  type TorchLayerNorm,
  expectModel,
  goldenFeatures,
} from '@vit/core';
import { LITv2, type LITv2Options } from './model.js';

/**
 * The official checkpoint mapping. Parameter names already equal the official state_dict keys
 * (`layers.2.blocks.0.attn.h_qkv.weight`, `layers.0.downsample.dconv.conv_offset.weight`,
 * `layers.0.downsample.norm_layer.running_var`…) and core's loader converts layouts by declared
 * kind (`num_batches_tracked` is skipped), so this file maps the official constructor's keyword
 * arguments: `LITv2(img_size=224, patch_size=4, in_chans=3, num_classes=1000, embed_dim=96,
 * depths=[2,2,6,2], num_heads=[3,6,12,24], mlp_ratio=4., qkv_bias=True, qk_scale=None,
 * drop_rate=0., attn_drop_rate=0., drop_path_rate=0.1, norm_layer=nn.LayerNorm, ape=False,
 * patch_norm=True, use_checkpoint=False, has_msa=[0,0,1,1], alpha=0.5, local_ws=None, **kwargs)`.
 */

/** Accepted by the official constructor and without effect on what it computes. */
export const IGNORED_OFFICIAL_KWARGS = ['ape', 'use_checkpoint', 'attn_drop_rate'] as const;

/**
 * Reads a norm_layer as golden metadata spells it: `"<class 'torch.nn.modules.normalization.LayerNorm'>"`,
 * `"functools.partial(<class '…LayerNorm'>, eps=1e-06)"`, `"torch.nn.LayerNorm"`, or null/absent
 * (the default `nn.LayerNorm`, eps 1e-5). Only (partials of) LayerNorm make sense on tokens.
 */
export function parseNormLayer(v: unknown): TorchLayerNorm {
  return layerNormFromTorch(v, 'LITv2');
}

/**
 * Maps the official `LITv2(**kwargs)` to {@link LITv2Options}: the exact model the official code
 * builds and the classifier forward it runs. Unknown kwargs are ignored, as the official
 * `**kwargs` does; kwargs on which the official constructor fails raise a ConfigError.
 */
export function litv2OptionsFromOfficial(kwargs: OfficialKwargs): LITv2Options {
  const kw = kwargReader(kwargs, 'LITv2 official');
  const depths = kw.list('depths', [2, 2, 6, 2]);
  const n = depths.length;
  const numHeads = kw.list('num_heads', [3, 6, 12, 24]);
  const hasMsa = kw.list('has_msa', [0, 0, 1, 1]);
  const localWs = kw.list('local_ws', null);
  for (const [key, v] of [
    ['num_heads', numHeads],
    ['has_msa', hasMsa],
    ['local_ws', localWs],
  ] as const) {
    if (v.length < n) throw new ConfigError(`LITv2 ${key} has ${v.length} entries but depths has ${n} stages (the official constructor indexes ${key}[i], IndexError)`);
  }
  const alpha = kwargs.alpha ?? 0.5;
  if (typeof alpha !== 'number') throw new ConfigError(`LITv2 official kwarg alpha must be a number (int(num_heads * alpha)), got ${JSON.stringify(alpha)}`);
  const patch = kw.pair('patch_size', 4);
  if (patch[0] !== patch[1]) throw new ConfigError(`LITv2 non-square patch_size ${JSON.stringify(patch)} is not supported`);
  return {
    ...kw.vitCommon(),
    imgSize: kw.pair('img_size', 224),
    patchSize: patch[0],
    embedDim: kw.int('embed_dim', 96),
    depths: depths as number[],
    numHeads: numHeads.slice(0, n) as number[],
    mlpRatio: kw.num('mlp_ratio', 4),
    qkvBias: kw.bool('qkv_bias', true),
    // The official default drop-path rate is 0.1 (DeiT's is 0).
    dropPathRate: kw.num('drop_path_rate', 0.1),
    normLayer: parseNormLayer(kwargs.norm_layer).factory,
    patchNorm: kw.bool('patch_norm', true),
    hasMsa: hasMsa.slice(0, n) as Array<number | boolean>,
    alpha,
    localWs: localWs.slice(0, n) as number[],
    dtm: 'dcnv1',
    padInputs: false,
  };
}

/** Builds exactly the model the official `LITv2(**kwargs)` builds. */
export function litv2FromOfficialConfig(kwargs: OfficialKwargs): LITv2 {
  return new LITv2(litv2OptionsFromOfficial(kwargs));
}

/** Each `layers[i]` output (after its DTM) as the goldens store it: tokens `[B, H·W, C]`, row-major. */
export function litv2OfficialFeatures(model: Module, x: tf.Tensor4D): Record<string, tf.Tensor> {
  const litv2 = expectModel(model, LITv2, 'litv2 officialFeatures');
  return tf.tidy(() => goldenFeatures(litv2.forwardStages(x).map((t) => tf.reshape(t, [t.shape[0], t.shape[1] * t.shape[2], t.shape[3]]))));
}

export const litv2Architecture: ArchitectureAdapter = {
  name: 'litv2',
  description: 'LITv2 (ziplab/LITv2:classification/models/litv2.py, class LITv2)',
  fromOfficialConfig: (kwargs) => litv2FromOfficialConfig(kwargs),
  officialFeatures: litv2OfficialFeatures,
  explainer: (model) =>
    model instanceof LITv2
      ? {
          method: 'gradcam',
          camTargets: litv2CamTargets(model),
          noRollout:
            "LITv2's attention is not global: its first stages have none, HiLo's Hi-Fi heads attend within windows and its Lo-Fi heads to pooled keys, so no token-to-token map spans the network",
        }
      : undefined,
};

/** Each stage's map before its DTM: the output of the stage's last block (`layers.i.blocks.{last}`). */
export function litv2CamTargets(model: LITv2): CamTarget[] {
  return [...model.layers].flatMap((layer, i) =>
    layer.blocks.length ? [{ layer: `layers.${i}.blocks.${layer.blocks.length - 1}`, reduction: model.featureInfo[i]!.reduction }] : [],
  );
}

/** Registers the `litv2` architecture adapter (idempotent). */
export function registerLITv2Architecture(): void {
  registerArchitecture(litv2Architecture);
}
