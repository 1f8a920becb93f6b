import { fashionMnistNanoTag, modelCard, registerVariants } from '@vit/core';
import { MRLA_CARDS, MRLA_CONFIGS, MRLA_NANO_WEIGHTS, type MRLAVariant } from './configs.js';
import { ResNetMRLA, type ResNetMRLAOptions } from './model.js';

const REFERENCE = 'joyfang1106/MRLA:resnet/models/resnet_mrla_light.py';
const PAPER = 'Cross-Layer Retrospective Retrieving via Layer Attention (Fang et al., ICLR 2023)';

/**
 * Every option {@link ResNetMRLA} takes: what `createModel` overrides may set. The type check
 * below fails to compile when an option is added to `ResNetMRLAOptions` and not here.
 */
const OPTION_NAMES = [
  'block', 'layers', 'numClasses', 'inChans', 'expansion', 'stem', 'groups', 'widthPerGroup', 'se', 'eca', 'zeroInitLastBn',
  'replaceStrideWithDilation', 'normLayer', 'actLayer', 'dropRate', 'dropPath', 'dropPathRate', 'mrla', 'dimPerhead', 'layerAttn',
  'stemWidth', 'widths',
] as const satisfies ReadonlyArray<keyof ResNetMRLAOptions>;
type MissingOption = Exclude<keyof ResNetMRLAOptions, (typeof OPTION_NAMES)[number]>;
const allOptionsListed: [MissingOption] extends [never] ? true : MissingOption = true;
void allOptionsListed;

/** Registers every variant (idempotent; called by the package entry point). */
export function registerMRLAVariants(): void {
  registerVariants(MRLA_CONFIGS as Record<MRLAVariant, ResNetMRLAOptions>, {
    typeName: 'ResNetMRLA',
    optionNames: OPTION_NAMES,
    create: (config, options) => new ResNetMRLA({ ...config, ...(options as ResNetMRLAOptions) }),
    card: (name) => {
      const info = MRLA_CARDS[name as MRLAVariant];
      return modelCard({
        name,
        arch: 'mrla',
        firstConv: 'conv1',
        classifier: 'fc',
        interpolation: 'bilinear',
        paper: PAPER,
        reference: info.official ? REFERENCE : undefined,
        ...info,
      });
    },
    // The authors publish no weights (the README has none): only our nano has a pretrained tag.
    pretrained: (name, _config, card) => {
      const weights = MRLA_NANO_WEIGHTS[name as MRLAVariant];
      return weights ? [fashionMnistNanoTag(card, weights)] : [];
    },
  });
}

/** Builds a variant directly (without the registry). */
export function createMRLAVariant(name: MRLAVariant, options: ResNetMRLAOptions = {}): ResNetMRLA {
  return new ResNetMRLA({ ...(MRLA_CONFIGS[name] as ResNetMRLAOptions), ...options });
}
