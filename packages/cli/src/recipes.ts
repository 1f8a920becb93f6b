import type { OPTIMIZER_TYPES } from '@vit/core';

/**
 * Training recipes: the seeds' setups (../shared/seeds) and a fast default. A recipe sets the
 * defaults of `vit train`; any flag given on the command line overrides its value.
 */
export interface AugmentSpec {
  /** Resize every image to this square size first (the seeds' `Resize((230, 230))`). */
  preResize?: number;
  /** ColorJitter strength for brightness, contrast and saturation. */
  colorJitter?: number;
  /** RandomResizedCrop scale range; when absent, a RandomCrop with `cropPadding` is used. */
  rrcScale?: readonly [number, number];
  /** Zero padding of the random crop (pixels at the training size), 0 = no crop. */
  cropPadding?: number;
  /** Horizontal flip probability. */
  flip?: number;
  /** RandomRotation range in degrees. */
  rotation?: number;
  /** RandomErasing probability. */
  erasing?: number;
}

/** Learning-rate schedules after the warm-up (`vit train --sched`). */
export const SCHEDULES = ['cosine', 'multistep', 'none'] as const;

export interface Recipe {
  name: string;
  description: string;
  epochs: number;
  batchSize: number;
  opt: (typeof OPTIMIZER_TYPES)[number];
  lr: number;
  weightDecay: number;
  momentum?: number;
  sched: (typeof SCHEDULES)[number];
  /** Multi-step milestones in epochs. */
  milestones?: number[];
  gamma?: number;
  warmupEpochs: number;
  labelSmoothing: number;
  mixup: number;
  cutmix: number;
  augment: AugmentSpec;
  /** Normalisation; default: the model card's mean/std. */
  mean?: readonly number[];
  std?: readonly number[];
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** What the seeds' PaddlePaddle recipes share: Adam with L2 1e-5, per-step cosine, no warm-up, label smoothing 0.1, ImageNet mean/std. */
const SEED_ADAM = {
  opt: 'adam',
  weightDecay: 1e-5,
  sched: 'cosine',
  warmupEpochs: 0,
  labelSmoothing: 0.1,
  cutmix: 0,
  mean: IMAGENET_MEAN,
  std: IMAGENET_STD,
} as const satisfies Partial<Recipe>;

export const RECIPES: Record<string, Recipe> = {
  default: {
    name: 'default',
    description: 'Fast small-image training: AdamW, 1 warm-up epoch then per-step cosine, label smoothing 0.1, random crop (padding 1/8) + flip.',
    epochs: 10,
    batchSize: 64,
    opt: 'adamw',
    lr: 2e-3,
    weightDecay: 0.05,
    sched: 'cosine',
    warmupEpochs: 1,
    labelSmoothing: 0.1,
    mixup: 0,
    cutmix: 0,
    augment: { cropPadding: -1, flip: 0.5 },
  },
  // 000: LITv2 on CIFAR-10 at 224.
  'seed-litv2': {
    ...SEED_ADAM,
    name: 'seed-litv2',
    description: "Seed 000 (LITv2): Adam lr 5e-5 with L2 1e-5, per-step cosine, 100 epochs, batch 128, label smoothing 0.1; resize 230, colour jitter 0.4, RandomResizedCrop(0.4–1), flip, rotation 20, MixUp.",
    epochs: 100,
    batchSize: 128,
    lr: 5e-5,
    // paddlex MixupImage draws λ from Beta(1.5, 1.5).
    mixup: 1.5,
    augment: { preResize: 230, colorJitter: 0.4, rrcScale: [0.4, 1], flip: 0.5, rotation: 20 },
  },
  // 001: Conv2Former-N on CIFAR-10 at 32.
  'seed-conv2former': {
    ...SEED_ADAM,
    name: 'seed-conv2former',
    description: 'Seed 001 (Conv2Former): Adam lr 1e-3 with L2 1e-5, per-step cosine, 50 epochs, batch 256, label smoothing 0.1; colour jitter 0.2, MixUp, RandomResizedCrop(0.6–1), random erasing, flip, rotation 20.',
    epochs: 50,
    batchSize: 256,
    lr: 1e-3,
    mixup: 1.5,
    augment: { colorJitter: 0.2, rrcScale: [0.6, 1], erasing: 0.5, flip: 0.5, rotation: 20 },
  },
  // 002: RegionViT on CIFAR-10 at 224.
  'seed-regionvit': {
    ...SEED_ADAM,
    name: 'seed-regionvit',
    description: 'Seed 002 (RegionViT): Adam lr 1e-4 with L2 1e-5, per-step cosine, 100 epochs, batch 64, label smoothing 0.1; RandomResizedCrop(0.6–1), colour jitter 0.2, flip, rotation 20.',
    epochs: 100,
    batchSize: 64,
    lr: 1e-4,
    mixup: 0,
    augment: { rrcScale: [0.6, 1], colorJitter: 0.2, flip: 0.5, rotation: 20 },
  },
  // 003: ResNet-18 + MRLA on CIFAR-10 at 32.
  'seed-mrla': {
    name: 'seed-mrla',
    description: 'Seed 003 (MRLA): SGD momentum 0.9 lr 0.1 with L2 1e-5, multi-step ×0.1 at epochs 30/60/80, 100 epochs, batch 256, label smoothing 0.1; RandomResizedCrop(0.08–1), flip; mean/std 0.5.',
    epochs: 100,
    batchSize: 256,
    opt: 'sgd',
    lr: 0.1,
    momentum: 0.9,
    weightDecay: 1e-5,
    sched: 'multistep',
    milestones: [30, 60, 80],
    gamma: 0.1,
    warmupEpochs: 0,
    labelSmoothing: 0.1,
    mixup: 0,
    cutmix: 0,
    augment: { rrcScale: [0.08, 1], flip: 0.5 },
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
  },
};

export function recipeNames(): string[] {
  return Object.keys(RECIPES);
}
