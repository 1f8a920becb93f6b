import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError, checkKnownKwargs, featureInfoCamTargets, kwargReader, registerArchitecture, type ArchitectureAdapter, type Module, type OfficialKwargs, expectModel, goldenFeatures } from '@vit/core';
import { CONV2FORMER_DEFAULTS, Conv2Former, type Conv2FormerOptions } from './model.js';

/**
 * The official checkpoint mapping. Parameter names already equal the official state_dict keys
 * (`downsample_layers.0.0.weight`, `stages.2.5.attn.att.2.weight`, `head.0.weight`, `pred.weight`…)
 * and core's loader converts layouts by declared kind, so this file only maps the official
 * constructor's keyword arguments (`Conv2Former(kernel_size, img_size=224, in_chans=3,
 * num_classes=1000, depths=[3,3,9,3], dims=[96,192,384,768], window_sizes=[14,14,14,7],
 * mlp_ratios=[4,4,4,4], num_heads=[2,4,10,16], layer_scale_init_value=1e-6, head_init_scale=1.,
 * drop_path_rate=0., drop_rate=0.)`).
 */

/** The official code's hard-coded number of stages its forward pass runs (`for i in range(4)`). */
export const OFFICIAL_FORWARD_STAGES = 4;

const KNOWN_KWARGS = new Set([
  'kernel_size',
  'img_size',
  'in_chans',
  'num_classes',
  'depths',
  'dims',
  'window_sizes',
  'mlp_ratios',
  'num_heads',
  'layer_scale_init_value',
  'head_init_scale',
  'drop_path_rate',
  'drop_rate',
]);

/** Accepted by the official constructor but never read: they change nothing in the model. */
export const IGNORED_OFFICIAL_KWARGS = ['img_size', 'window_sizes', 'num_heads', 'layer_scale_init_value', 'head_init_scale', 'drop_rate'] as const;

/**
 * Maps the official constructor kwargs to {@link Conv2FormerOptions}, reproducing what the
 * official code builds and runs for any kwargs it accepts, and refusing (ConfigError) kwargs on
 * which the official code would fail.
 */
export function conv2formerOptionsFromOfficial(kwargs: OfficialKwargs): Conv2FormerOptions {
  const kw = kwargReader(kwargs, 'Conv2Former official');
  checkKnownKwargs(kwargs, KNOWN_KWARGS, 'Conv2Former()');
  if (kwargs.kernel_size === undefined) throw new ConfigError('Conv2Former() is missing its required argument kernel_size');
  const kernelSize = kw.int('kernel_size');
  if (kernelSize <= 0 || kernelSize % 2 === 0) {
    throw new ConfigError(`Conv2Former kernel_size=${kernelSize}: the official modulation conv pads k//2, so only odd kernels keep att(x) and v(x) the same size`);
  }
  const dims = kw.list('dims', [96, 192, 384, 768]) as number[];
  const allDepths = kw.list('depths', [3, 3, 9, 3]) as number[];
  const allRatios = kw.list('mlp_ratios', [4, 4, 4, 4]) as number[];
  const n = dims.length;
  if (n < OFFICIAL_FORWARD_STAGES) {
    throw new ConfigError(`Conv2Former dims has ${n} stages; the official forward always runs ${OFFICIAL_FORWARD_STAGES} (range(4)) and fails with fewer`);
  }
  // The official constructor indexes these per stage of dims (IndexError when shorter).
  for (const [key, v] of [
    ['depths', allDepths],
    ['mlp_ratios', allRatios],
    ['window_sizes', kw.list('window_sizes', [14, 14, 14, 7])],
    ['num_heads', kw.list('num_heads', [2, 4, 10, 16])],
  ] as const) {
    if (v.length < n) throw new ConfigError(`Conv2Former ${key} has ${v.length} entries but dims has ${n} stages (the official constructor indexes ${key}[i] for each)`);
  }
  const ratios = allRatios.slice(0, n);
  ratios.forEach((r, i) => {
    // `dim * mlp_ratio` is a channel count of nn.Conv2d: a float there is a TypeError in PyTorch.
    if (typeof r !== 'number' || !Number.isInteger(r) || r <= 0) throw new ConfigError(`Conv2Former mlp_ratios[${i}] must be a positive integer, got ${JSON.stringify(r)}`);
  });
  if (dims[OFFICIAL_FORWARD_STAGES - 1] !== dims[n - 1]) {
    throw new ConfigError(
      `Conv2Former dims ${JSON.stringify(dims)}: the official forward stops after stage 3 (${dims[3]} channels) but its head expects dims[-1] = ${dims[n - 1]}`,
    );
  }
  const depths = allDepths.slice(0, n);
  const total = allDepths.reduce((a, b) => a + b, 0);
  const used = depths.reduce((a, b) => a + b, 0);
  let dropPathRate = Number(kwargs.drop_path_rate ?? 0);
  // The official linspace runs over sum(ALL depths); when depths has more entries than dims, rescale
  // the end point so the first `used` rates come out the same.
  if (used !== total && total > 1 && used > 1) dropPathRate = (dropPathRate * (used - 1)) / (total - 1);
  // Porting note: drop_rate and layer_scale_init_value are accepted and ignored by the official
  // code (layer scale is hard-coded to 1e-6 at init), so they are not passed on: the defaults
  // (no dropout, layer scale 1e-6, the conv3 stem, LayerNorm downsampling, the 1280-wide conv head)
  // are the official model's.
  return {
    ...CONV2FORMER_DEFAULTS,
    kernelSize,
    inChans: kw.int('in_chans', 3),
    numClasses: kw.int('num_classes', 1000),
    depths,
    dims,
    mlpRatios: ratios,
    dropPathRate,
    forwardStages: OFFICIAL_FORWARD_STAGES,
  };
}

/** Builds exactly the model the official `Conv2Former(**kwargs)` builds. */
export function conv2formerFromOfficialConfig(kwargs: OfficialKwargs): Conv2Former {
  return new Conv2Former(conv2formerOptionsFromOfficial(kwargs));
}

/** Per-stage outputs (`stages[i]` after `downsample_layers[i]`) keyed as the goldens, NHWC. */
export function conv2formerOfficialFeatures(model: Module, x: tf.Tensor4D): Record<string, tf.Tensor> {
  return goldenFeatures(expectModel(model, Conv2Former, 'conv2former officialFeatures').forwardIntermediates(x));
}

export const conv2formerArchitecture: ArchitectureAdapter = {
  name: 'conv2former',
  description: 'Conv2Former (HVision-NKU/Conv2Former:models/conv2former.py, class Conv2Former)',
  fromOfficialConfig: (kwargs) => conv2formerFromOfficialConfig(kwargs),
  officialFeatures: conv2formerOfficialFeatures,
  // Grad-CAM on the stage maps (`stages.i`).
  explainer: (model) =>
    model instanceof Conv2Former
      ? { method: 'gradcam', camTargets: featureInfoCamTargets(model.featureInfo), noRollout: 'Conv2Former is convolutional (its modulation weights are not attention probabilities)' }
      : undefined,
};

/** Registers the `conv2former` architecture adapter (idempotent). */
export function registerConv2FormerArchitecture(): void {
  registerArchitecture(conv2formerArchitecture);
}
