import type * as tf from '@tensorflow/tfjs-core';
import {
  BatchNorm2d,
  checkKnownKwargs,
  ConfigError,
  defaultCheckpointFilter,
  featureInfoCamTargets,
  registerArchitecture,
  type ArchitectureAdapter,
  type Module,
  type OfficialKwargs,
  type NormFactory,
  expectModel,
  goldenFeatures,
} from '@vit/core';
import { ResNetMRLA, type ResNetMRLAOptions } from './model.js';

/**
 * The official checkpoint mapping: `ResNet_mrlal(block, **kwargs)` of
 * joyfang1106/MRLA:resnet/models/resnet_mrla_light.py → `ResNetMRLA` options. Keys need no
 * renaming (ours are the official ones); layouts are converted by core's `loadPytorchStateDict`.
 */

const KNOWN_KWARGS = new Set([
  'block',
  'layers',
  'num_classes',
  'SE',
  'ECA',
  'zero_init_last_bn',
  'groups',
  'width_per_group',
  'replace_stride_with_dilation',
  'norm_layer',
  'drop_rate',
  'drop_path',
]);

/** Class attributes a golden may override (metadata `overrides`), and the option each sets. */
const KNOWN_OVERRIDES: Record<string, 'expansion' | 'dimPerhead'> = {
  'MRLA_Bottleneck.expansion': 'expansion',
  'mrla_module.dim_perhead': 'dimPerhead',
};

function num(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`MRLA official config: ${what} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function bool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') throw new ConfigError(`MRLA official config: ${what} must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

/** Python keyword value `name=<number>` in a repr such as `functools.partial(BatchNorm2d, eps=0.001)`. */
function kwNumber(s: string, name: string): number | undefined {
  const m = new RegExp(`\\b${name}\\s*=\\s*([-+0-9.eE]+)`).exec(s);
  return m ? Number(m[1]) : undefined;
}

/**
 * `norm_layer` as the goldens write it: `"torch.nn.BatchNorm2d"`, a class repr, or a
 * `functools.partial(...BatchNorm2d, eps=…, momentum=…)` repr; null/None = BatchNorm2d.
 * SyncBatchNorm computes the same as BatchNorm2d in one process.
 */
export function parseNormLayer(v: unknown): NormFactory {
  if (v === null || v === undefined || v === 'None') return (c) => new BatchNorm2d(c);
  if (typeof v !== 'string') throw new ConfigError(`MRLA official config: norm_layer must be a string, got ${JSON.stringify(v)}`);
  if (!/BatchNorm2d|SyncBatchNorm/.test(v)) {
    throw new ConfigError(`MRLA official config: unsupported norm_layer '${v}' (BatchNorm2d / SyncBatchNorm are supported)`);
  }
  const eps = kwNumber(v, 'eps') ?? 1e-5;
  const momentum = kwNumber(v, 'momentum') ?? 0.1;
  if (/affine\s*=\s*False|track_running_stats\s*=\s*False/.test(v)) {
    const affine = !/affine\s*=\s*False/.test(v);
    const trackRunningStats = !/track_running_stats\s*=\s*False/.test(v);
    return (c) => new BatchNorm2d(c, { eps, momentum, affine, trackRunningStats });
  }
  return (c) => new BatchNorm2d(c, { eps, momentum });
}

/** Maps the official constructor kwargs (plus class-attribute `overrides`) to `ResNetMRLA` options. */
export function mrlaOptionsFromOfficial(kwargs: OfficialKwargs, extra: { overrides?: Record<string, unknown> } = {}): ResNetMRLAOptions {
  checkKnownKwargs(kwargs, KNOWN_KWARGS, 'ResNet_mrlal()');
  const o: ResNetMRLAOptions = {};
  const block = kwargs.block ?? 'MRLA_Bottleneck';
  if (typeof block !== 'string') throw new ConfigError(`MRLA official config: block must be a class name string, got ${JSON.stringify(block)}`);
  if (/Bottleneck/i.test(block)) o.block = 'bottleneck';
  else if (/Basic/i.test(block)) o.block = 'basic';
  else throw new ConfigError(`MRLA official config: unknown block '${block}' (the official code has MRLA_Bottleneck)`);
  if (kwargs.layers === undefined) throw new ConfigError('MRLA official config: layers is required (blocks per stage, e.g. [3, 4, 6, 3])');
  if (!Array.isArray(kwargs.layers)) throw new ConfigError(`MRLA official config: layers must be a list, got ${JSON.stringify(kwargs.layers)}`);
  o.layers = kwargs.layers.map((v, i) => num(v, `layers[${i}]`));
  if (kwargs.num_classes !== undefined) o.numClasses = num(kwargs.num_classes, 'num_classes');
  if (kwargs.SE !== undefined && kwargs.SE !== null) o.se = bool(kwargs.SE, 'SE');
  if (kwargs.ECA !== undefined && kwargs.ECA !== null) {
    if (!Array.isArray(kwargs.ECA)) throw new ConfigError(`MRLA official config: ECA must be null or a list of 4, got ${JSON.stringify(kwargs.ECA)}`);
    o.eca = kwargs.ECA.map((v, i) => (v === null ? null : num(typeof v === 'string' ? Number(v) : v, `ECA[${i}]`)));
  }
  if (kwargs.zero_init_last_bn !== undefined) o.zeroInitLastBn = bool(kwargs.zero_init_last_bn, 'zero_init_last_bn');
  if (kwargs.groups !== undefined) o.groups = num(kwargs.groups, 'groups');
  if (kwargs.width_per_group !== undefined) o.widthPerGroup = num(kwargs.width_per_group, 'width_per_group');
  const rswd = kwargs.replace_stride_with_dilation;
  if (rswd !== undefined && rswd !== null) {
    if (!Array.isArray(rswd)) throw new ConfigError(`MRLA official config: replace_stride_with_dilation must be null or a list of 3 booleans, got ${JSON.stringify(rswd)}`);
    o.replaceStrideWithDilation = rswd.map((v, i) => bool(v, `replace_stride_with_dilation[${i}]`)) as unknown as [boolean, boolean, boolean];
  }
  if (kwargs.norm_layer !== undefined) o.normLayer = parseNormLayer(kwargs.norm_layer);
  if (kwargs.drop_rate !== undefined) o.dropRate = num(kwargs.drop_rate, 'drop_rate');
  if (kwargs.drop_path !== undefined) o.dropPath = num(kwargs.drop_path, 'drop_path');

  for (const [key, value] of Object.entries(extra.overrides ?? {})) {
    const opt = KNOWN_OVERRIDES[key];
    if (!opt) throw new ConfigError(`MRLA official config: unsupported override '${key}' (known: ${Object.keys(KNOWN_OVERRIDES).join(', ')})`);
    if (opt === 'expansion' && o.block === 'basic') throw new ConfigError('MRLA official config: MRLA_Bottleneck.expansion does not apply to basic blocks');
    o[opt] = num(value, key);
  }
  return o;
}

/** Builds the exact official model for `ResNet_mrlal(block, **kwargs)`. */
export function mrlaFromOfficialConfig(kwargs: OfficialKwargs, extra: { overrides?: Record<string, unknown> } = {}): ResNetMRLA {
  return new ResNetMRLA(mrlaOptionsFromOfficial(kwargs, extra));
}

/** `golden.features.<i>` = output of `layer{i+1}` (NHWC). */
export function mrlaOfficialFeatures(model: Module, x: tf.Tensor4D): Record<string, tf.Tensor> {
  return goldenFeatures(expectModel(model, ResNetMRLA, 'mrla officialFeatures').forwardIntermediates(x));
}

export const mrlaArchitecture: ArchitectureAdapter = {
  name: 'mrla',
  description: 'ResNet with MRLA-light (joyfang1106/MRLA:resnet/models/resnet_mrla_light.py, ResNet_mrlal)',
  fromOfficialConfig: mrlaFromOfficialConfig,
  officialFeatures: mrlaOfficialFeatures,
  // The classifier is torchvision's `fc`, not `head`.
  filterCheckpoint: (model, tensors) => defaultCheckpointFilter(model, tensors, 'fc'),
  // Grad-CAM on the stage maps (`layer1..layer4`).
  explainer: (model) =>
    model instanceof ResNetMRLA
      ? { method: 'gradcam', camTargets: featureInfoCamTargets(model.featureInfo), noRollout: 'ResNet-MRLA is convolutional (MRLA-light mixes channels of layers, not token probabilities)' }
      : undefined,
};

/** Registers the `mrla` architecture adapter (idempotent). */
export function registerMRLAArchitecture(): void {
  registerArchitecture(mrlaArchitecture);
}
