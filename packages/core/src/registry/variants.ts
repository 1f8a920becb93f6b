/**
 * What every architecture package does to register its variants (timm's `_create_*` +
 * `register_model`), in one place: a card per variant, a factory that refuses options the
 * architecture does not take (naming the nearest), pretrained tags, and idempotence.
 */
import { ConfigError, nearestNames } from '../errors.js';
import type { Module } from '../nn/module.js';
import { fashionMnistNanoTag, isModelRegistered, modelCard, registerModel, type CreateModelOptions, type ModelCard, type NanoWeights, type PretrainedTag } from './registry.js';

/**
 * Refuses option names the model does not take (`depthz`), with the nearest valid ones: a typo
 * must not build a default model silently. Undefined values are ignored (an unset flag).
 */
export function checkModelOptions(options: CreateModelOptions, names: Iterable<string>, typeName: string): void {
  const valid = new Set(names);
  const unknown = Object.keys(options).filter((k) => !valid.has(k) && options[k] !== undefined);
  if (!unknown.length) return;
  const hints = unknown.map((k) => nearestNames(k, valid, 1)[0]).filter((h): h is string => h !== undefined);
  throw new ConfigError(
    `Unknown ${typeName} option(s) ${unknown.join(', ')}${hints.length ? ` (did you mean ${hints.join(', ')}?)` : ''}; valid options: ${[...valid].join(', ')}`,
  );
}

export interface VariantRegistration<V> {
  /** The model class's name for messages (`CaiT`). */
  typeName: string;
  /** Every option the factory accepts. */
  optionNames: Iterable<string>;
  /** The model card of a variant. */
  card(name: string, variant: V): ModelCard;
  /** Builds a variant with checked overrides. */
  create(variant: V, options: CreateModelOptions): Module;
  /** Its pretrained tags (default none). */
  pretrained?(name: string, variant: V, card: ModelCard): PretrainedTag[];
}

/**
 * Registers every variant not registered yet (so calling it twice, or after a user registered one
 * of the names, is harmless) and returns the names registered now.
 */
export function registerVariants<V>(variants: Readonly<Record<string, V>>, spec: VariantRegistration<V>): string[] {
  const names = [...spec.optionNames];
  const added: string[] = [];
  for (const [name, variant] of Object.entries(variants)) {
    if (isModelRegistered(name)) continue;
    const card = spec.card(name, variant);
    const factory = (options: CreateModelOptions = {}) => {
      checkModelOptions(options, names, spec.typeName);
      return spec.create(variant, options);
    };
    registerModel(name, factory, { ...card, pretrained: spec.pretrained?.(name, variant, card) ?? card.pretrained ?? [] });
    added.push(name);
  }
  return added;
}

/** What a registered variant states about itself, whatever the architecture (its `options` are the architecture's). */
export interface VariantSpec {
  options: { numClasses?: number };
  /** Exact parameter count with the variant's default class count (checked by the tests). */
  paramCount: number;
  inputSize: [number, number, number];
  top1?: number;
  /** False for @vit's own or by-analogy configurations (default true: an official registration). */
  official?: boolean;
  cropPct?: number;
  interpolation?: 'bilinear' | 'bicubic';
  mean?: [number, number, number];
  std?: [number, number, number];
  notes?: string;
  /** @vit's Fashion-MNIST weights shipped in the package (the nano variants; see `fashionMnistNanoTag`). */
  nanoWeights?: NanoWeights;
}

/**
 * A variant's model card: the architecture's fields and defaults (`arch`, `paper`, `firstConv`,
 * its eval crop…), overridden by what the variant states.
 */
export function variantCard(
  name: string,
  v: VariantSpec,
  arch: Partial<ModelCard> & Pick<ModelCard, 'arch' | 'firstConv' | 'classifier'>,
): ModelCard {
  const stated = { cropPct: v.cropPct, interpolation: v.interpolation, mean: v.mean, std: v.std, notes: v.notes };
  return modelCard({
    ...arch,
    name,
    inputSize: v.inputSize,
    numClasses: v.options.numClasses ?? 1000,
    paramCount: v.paramCount,
    top1: v.top1,
    official: v.official ?? true,
    ...Object.fromEntries(Object.entries(stated).filter(([, x]) => x !== undefined)),
  });
}

/** The fields of a card that the architecture fixes (or defaults) for all its variants. */
export type ArchitectureCard = Partial<ModelCard> & Pick<ModelCard, 'arch' | 'firstConv' | 'classifier'>;

/**
 * An architecture's model as its {@link VariantSpec} variants are built: its name (for messages),
 * every option it takes, and how to build it.
 */
export interface SpecModel<V extends VariantSpec, M extends Module = Module> {
  typeName: string;
  optionNames: Iterable<string>;
  /** Builds the model from a variant's options with the user's overrides on top. */
  build(options: V['options'] & CreateModelOptions): M;
}

/**
 * Builds a variant as its registered factory does: refuses override names the model does not take
 * ({@link checkModelOptions}), then builds from the variant's options with `overrides` on top.
 */
export function createSpecVariant<V extends VariantSpec, M extends Module>(model: SpecModel<V, M>, variant: V, overrides: CreateModelOptions = {}): M {
  checkModelOptions(overrides, model.optionNames, model.typeName);
  return model.build({ ...variant.options, ...overrides });
}

/** How an architecture registers its {@link VariantSpec} variants: its model and its cards' fields. */
export interface SpecRegistration<V extends VariantSpec> extends SpecModel<V> {
  /** The architecture's card fields, fixed or per variant. */
  card: ArchitectureCard | ((name: string, variant: V) => ArchitectureCard);
  /** The published weights of a variant without shipped nano weights (default none). */
  officialTags?(name: string, variant: V, card: ModelCard): PretrainedTag[];
}

/**
 * {@link registerVariants} for variants that state their card ({@link VariantSpec}): cards through
 * {@link variantCard}, and a nano variant's shipped weights as its `fashion_mnist` tag.
 */
export function registerSpecVariants<V extends VariantSpec>(variants: Readonly<Record<string, V>>, spec: SpecRegistration<V>): string[] {
  return registerVariants(variants, {
    typeName: spec.typeName,
    optionNames: spec.optionNames,
    create: (v, options) => spec.build({ ...v.options, ...options }),
    card: (name, v) => variantCard(name, v, typeof spec.card === 'function' ? spec.card(name, v) : spec.card),
    pretrained: (name, v, card) => (v.nanoWeights ? [fashionMnistNanoTag(card, v.nanoWeights)] : (spec.officialTags?.(name, v, card) ?? [])),
  });
}

