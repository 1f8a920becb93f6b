import { openSync, readSync, closeSync, readFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  DEFAULT_MIN_LOADED,
  FormatError,
  OUR_LAYOUT,
  VERSION,
  WeightCoverageError,
  WeightLoadError,
  batchCountersFromMetadata,
  createModel,
  getArchitecture,
  getModelCard,
  listModels,
  describeCoverage,
  filterOfficialCheckpoint,
  loadCoverage,
  loadOurStateDict,
  loadPthFile,
  loadPytorchStateDict,
  looksLikePth,
  readSafetensorsFile,
  loadSafetensorsFile,
  saveModelWeights,
  replaceClassifier,
  type ModelCard,
  type Module,
  type SafetensorsDtype,
  type VisionModel,
} from '@vit/core';
import { JSON_OPTION, type Command } from '../command.js';
import type { Io } from '../io.js';
import { EXIT, InputError, UsageError } from '../exit-codes.js';
import { fractionOrPercent, oneOf, posInt } from '../flags.js';
import { useBackend } from '../setup.js';

/** What the input file held, in one shape whatever its format. */
interface Checkpoint {
  tensors: Map<string, tf.Tensor>;
  dtypes: Map<string, SafetensorsDtype>;
  /** 'pytorch': official keys and layouts; 'ours': written by this library (`layout: nhwc-vit`). */
  layout: 'pytorch' | 'ours';
  format: 'pth (zip)' | 'pth (legacy)' | 'safetensors';
  metadata: Record<string, string>;
  stateDictKey: string | null;
  strippedPrefix: string | null;
  extra: Record<string, unknown>;
  placeholders: string[];
}

/** How the model is built: a registered name, or an architecture's official constructor kwargs. */
type ModelSpec =
  | { kind: 'registered'; name: string; options: Record<string, unknown> }
  | { kind: 'official'; arch: string; kwargs: Record<string, unknown>; overrides?: Record<string, unknown> };

/** `--dtype`: as the input file (`keep`) or one float type for every float (default F32). */
const DTYPES = ['keep', 'F32', 'F16', 'BF16'] as const;
type DtypeChoice = (typeof DTYPES)[number];

const FLOAT_FILE_DTYPES = new Set<SafetensorsDtype>(['F64', 'F32', 'F16', 'BF16']);

/** A .pth/.pt/.bin output is a torch.save file; anything else safetensors. */
function isPthPath(file: string): boolean {
  return /\.(pth|pt|bin)$/i.test(file);
}

function sniffPth(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const head = new Uint8Array(4);
    const n = readSync(fd, head, 0, 4, 0);
    return looksLikePth(head.subarray(0, n));
  } finally {
    closeSync(fd);
  }
}

function parseJsonObject(text: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${what} is not valid JSON: ${(e as Error).message}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new UsageError(`${what} must be a JSON object of the official constructor's keyword arguments`);
  return v as Record<string, unknown>;
}

/** `--config`: inline JSON, a .json file, or a golden .safetensors file (its `arch`/`config`/`overrides` metadata). */
async function readConfig(value: string): Promise<{ kwargs: Record<string, unknown>; arch?: string; overrides?: Record<string, unknown> }> {
  if (value.trim().startsWith('{')) return { kwargs: parseJsonObject(value, '--config') };
  if (value.endsWith('.safetensors')) {
    const { metadata } = await readSafetensorsFile(value);
    if (!metadata.config) throw new FormatError(`${value} has no 'config' metadata (the official constructor kwargs) to build a model from`);
    return {
      kwargs: parseJsonObject(metadata.config, `'config' metadata of ${value}`),
      arch: metadata.arch,
      overrides: metadata.overrides ? parseJsonObject(metadata.overrides, `'overrides' metadata of ${value}`) : undefined,
    };
  }
  return { kwargs: parseJsonObject(readFileSync(value, 'utf8'), value) };
}

async function readCheckpoint(file: string, values: Record<string, unknown>): Promise<Checkpoint> {
  if (sniffPth(file)) {
    const r = await loadPthFile(file, {
      key: values.key as string | undefined,
      useEma: !values['no-ema'],
      unknownGlobals: values.lenient ? 'placeholder' : 'error',
    });
    return { ...r, layout: 'pytorch', format: r.format === 'zip' ? 'pth (zip)' : 'pth (legacy)', metadata: {} };
  }
  for (const flag of ['key', 'no-ema', 'lenient']) if (values[flag]) throw new UsageError(`--${flag} applies to .pth checkpoints only; ${file} is not one`);
  const r = await loadSafetensorsFile(file);
  const layout = r.metadata.layout === OUR_LAYOUT ? 'ours' : 'pytorch';
  return { ...r, layout, format: 'safetensors', stateDictKey: null, strippedPrefix: null, extra: {}, placeholders: [] };
}

/** The registered card whose architecture is `arch` (for the classifier's name), if any. */
function cardForArch(arch: string) {
  return listModels('*')
    .map(getModelCard)
    .find((c) => c.arch === arch);
}

/** Class count of a classifier weight: official `[out, …]`, ours `[…, out]`. */
function classesOf(t: tf.Tensor | undefined, layout: Checkpoint['layout']): number | undefined {
  if (!t || t.rank < 1) return undefined;
  return layout === 'pytorch' ? t.shape[0] : t.shape[t.rank - 1];
}

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

function buildModel(spec: ModelSpec): Module {
  try {
    if (spec.kind === 'registered') return createModel(spec.name, spec.options);
    return getArchitecture(spec.arch).fromOfficialConfig(spec.kwargs, { overrides: spec.overrides });
  } catch (e) {
    // A bad option or kwarg is the caller's mistake, not a failed check.
    if (e instanceof ConfigError) throw new UsageError(e.message);
    throw e;
  }
}

function defaultOut(input: string, toPytorch: boolean): string {
  const stem = basename(input, extname(input));
  const plain = join(dirname(input), `${stem}.safetensors`);
  if (resolve(plain) !== resolve(input)) return plain;
  return join(dirname(input), `${stem}.${toPytorch ? 'pytorch' : 'vit'}.safetensors`);
}

function brief(v: unknown): string {
  const s = JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}…` : s;
}

/** What the flags ask for, checked before the (possibly large) input file is read. */
interface ConvertPlan {
  input: string;
  out: string;
  strict: boolean;
  minLoaded: number | undefined;
  toPytorch: boolean;
  /** The output is a torch.save file (.pth/.pt/.bin), else safetensors. */
  pthOut: boolean;
  numClasses: number | undefined;
  dtype: DtypeChoice;
  /** `--model`, or `--arch` with `--config` (either or neither). */
  name: string | undefined;
  arch: string | undefined;
  config: Awaited<ReturnType<typeof readConfig>> | undefined;
}

async function resolvePlan(values: Record<string, unknown>, positionals: string[]): Promise<ConvertPlan> {
  if (positionals.length !== 1) throw new UsageError('expects exactly one input checkpoint (.pth/.pt/.bin or .safetensors)');
  const input = positionals[0]!;
  if (values.strict && values['no-strict']) throw new UsageError('--strict and --no-strict contradict each other');
  const strict = !values['no-strict'];
  const toPytorch = values['to-pytorch'] === true;
  const numClasses = posInt(values['num-classes'], 'num-classes');
  const name = values.model as string | undefined;
  if (name && (values.arch || values.config)) throw new UsageError('give either --model <name> or --arch/--config, not both');
  // Fail on unknown names before reading a possibly large file.
  if (name) getModelCard(name);
  const config = values.config !== undefined ? await readConfig(values.config as string) : undefined;
  const arch = (values.arch as string | undefined) ?? config?.arch;
  if (config && !arch) throw new UsageError('--config needs --arch <architecture> (or a golden .safetensors whose metadata names it)');
  if (arch) getArchitecture(arch);
  if (values.arch && !config) throw new UsageError('--arch needs --config <official kwargs JSON | file.json | golden.safetensors>');
  const out = (values.out as string | undefined) ?? defaultOut(input, toPytorch);
  if (resolve(out) === resolve(input)) throw new UsageError('--out must differ from the input file');
  const pthOut = isPthPath(out);
  if (pthOut && !toPytorch) throw new UsageError(`${out}: a .pth/.pt/.bin output is a torch.save file of the official layout; add --to-pytorch (or write .safetensors)`);
  const minLoaded = fractionOrPercent(values['min-loaded'], 'min-loaded');
  if (minLoaded !== undefined && strict) throw new UsageError('--min-loaded applies to --no-strict loads (a strict load fills every parameter or fails)');
  const dtype = oneOf(values.dtype, 'dtype', DTYPES, { ignoreCase: true }) ?? 'F32';
  return { input, out, strict, minLoaded, toPytorch, pthOut, numClasses, dtype, name, arch, config };
}

/** The model to build and the checkpoint's tensors as it will take them. */
interface Target {
  spec: ModelSpec;
  card: ModelCard | undefined;
  archName: string;
  classifier: string | undefined;
  /** The checkpoint's tensors without golden.* entries and without a DataParallel `module.` prefix. */
  tensors: Map<string, tf.Tensor>;
  /** The file dtype of each key as the model will see it (for --dtype keep). */
  fileDtypes: Map<string, SafetensorsDtype | undefined>;
  /** How many golden.* reference entries were left out. */
  golden: number;
  ckptClasses: number | undefined;
  /** The class count asked for (--num-classes, or the checkpoint's classifier). */
  targetClasses: number | undefined;
  notes: string[];
}

/** Which model (flags first, else what one of our own checkpoints says about itself), with how many classes. */
function resolveTarget(plan: ConvertPlan, ckpt: Checkpoint): Target {
  const { name, arch, config } = plan;
  let spec: ModelSpec;
  if (name) spec = { kind: 'registered', name, options: {} };
  else if (arch && config) spec = { kind: 'official', arch, kwargs: { ...config.kwargs }, overrides: config.overrides };
  else if (ckpt.metadata.model) spec = { kind: 'registered', name: ckpt.metadata.model, options: ckpt.metadata.options ? parseJsonObject(ckpt.metadata.options, "'options' metadata") : {} };
  else if (ckpt.metadata.arch && ckpt.metadata.config) {
    spec = {
      kind: 'official',
      arch: ckpt.metadata.arch,
      kwargs: parseJsonObject(ckpt.metadata.config, "'config' metadata"),
      // Class-attribute overrides (MRLA's MRLA_Bottleneck.expansion) are part of the model too.
      overrides: ckpt.metadata.overrides ? parseJsonObject(ckpt.metadata.overrides, "'overrides' metadata") : undefined,
    };
  } else throw new UsageError('needs --model <name> (see `vit models`) or --arch <arch> --config <official kwargs>');

  const card = spec.kind === 'registered' ? getModelCard(spec.name) : cardForArch(spec.arch);
  const archName = spec.kind === 'registered' ? card!.arch : spec.arch;
  const classifier = card?.classifier;
  const golden = [...ckpt.tensors.keys()].filter((k) => k.startsWith('golden.'));
  // Official keys without golden entries and without a DataParallel `module.` prefix (a .pth
  // reader already removed it; safetensors files may still carry it).
  const tensors = new Map([...ckpt.tensors].filter(([k]) => !k.startsWith('golden.')));
  const fileDtypes = new Map([...tensors.keys()].map((k) => [k, ckpt.dtypes.get(k)]));
  if (ckpt.layout === 'pytorch' && tensors.size && [...tensors.keys()].every((k) => k.startsWith('module.'))) {
    for (const [k, t] of [...tensors]) {
      tensors.delete(k);
      tensors.set(k.slice('module.'.length), t);
      fileDtypes.set(k.slice('module.'.length), ckpt.dtypes.get(k));
    }
    ckpt.strippedPrefix = 'module.';
  }
  const ckptClasses = classifier ? classesOf(tensors.get(`${classifier}.weight`), ckpt.layout) : undefined;
  const notes: string[] = [];

  let targetClasses = plan.numClasses;
  if (targetClasses === undefined && spec.kind === 'registered' && spec.options.numClasses === undefined && ckptClasses !== undefined && ckptClasses !== card!.numClasses) {
    targetClasses = ckptClasses;
    notes.push(`${ckptClasses} classes, from the checkpoint's ${classifier}.weight (the card's default is ${card!.numClasses})`);
  }
  if (targetClasses !== undefined) {
    if (spec.kind === 'registered') spec.options.numClasses = targetClasses;
    else spec.kwargs.num_classes = targetClasses;
  }
  return { spec, card, archName, classifier, tensors, fileDtypes, golden: golden.length, ckptClasses, targetClasses, notes };
}

/** What loading the checkpoint into the model did. */
interface Loaded {
  modelClasses: number | undefined;
  /** `key [shape]` of each classifier tensor left out for another class count. */
  droppedClassifier: string[];
  missingKeys: string[];
  unexpectedKeys: string[];
  /** BatchNorm num_batches_tracked counters in the checkpoint, and those kept (of BatchNorms the model has). */
  counters: number;
  batchCounters: Record<string, number>;
}

/**
 * Loads the checkpoint into `m` (all-or-nothing unless --no-strict). Tensors it makes are pushed to
 * `own` for the caller to free. A checkpoint that does not fit is an InputError with hints.
 */
function loadWeights(m: Module, plan: ConvertPlan, ckpt: Checkpoint, target: Target, own: tf.Tensor[]): Loaded {
  const { spec, classifier, tensors, ckptClasses, notes } = target;
  const { strict, minLoaded } = plan;
  const declared = (m as unknown as Partial<VisionModel>).numClasses;
  const modelClasses = typeof declared === 'number' ? declared : target.targetClasses;

  // A different class count: drop the checkpoint's classifier and keep the model's fresh one,
  // supplied under the same keys so the load stays strict and all-or-nothing. Official files go
  // through the architecture's checkpoint filter (as pretrained loading does): it also resamples
  // CaiT's position table for another resolution.
  const droppedClassifier: string[] = [];
  let load = tensors;
  if (ckpt.layout === 'pytorch') {
    const adapted = filterOfficialCheckpoint(m, tensors, { arch: target.archName, classifier });
    own.push(...adapted.created);
    droppedClassifier.push(...adapted.dropped.map((k) => `${k} ${fmt(tensors.get(k)?.shape ?? [])}`));
    notes.push(...adapted.notes.filter((n) => !n.startsWith('classifier dropped')));
    load = adapted.tensors;
  } else if (classifier && ckptClasses !== undefined && modelClasses !== undefined && ckptClasses !== modelClasses) {
    const swap = replaceClassifier(m, tensors, classifier, ckpt.layout);
    droppedClassifier.push(...swap.dropped.map((d) => `${d.key} ${fmt(d.shape)}`));
    own.push(...swap.created);
  }

  let missingKeys: string[] = [];
  let unexpectedKeys: string[] = [];
  let counters = 0;
  // BatchNorm num_batches_tracked counters: ours keeps none, so they travel beside the model
  // (our files: metadata; PyTorch layout: the counters themselves) and are written back as read.
  let batchCounters: Record<string, number> = {};
  try {
    if (ckpt.layout === 'pytorch') {
      const r = loadPytorchStateDict(m, load, { strict, minLoaded });
      ({ missingKeys, unexpectedKeys, batchCounters } = r);
      counters = r.ignoredKeys.filter((k) => k.endsWith('num_batches_tracked')).length;
    } else {
      const sd = Object.fromEntries(tensors);
      const entries = m.stateEntries();
      // Counters of BatchNorms this model has (a --num-classes rebuild keeps every BatchNorm).
      const recorded = batchCountersFromMetadata(ckpt.metadata);
      counters = Object.keys(recorded).length;
      for (const [k, n] of Object.entries(recorded)) {
        if (entries.has(`${k.slice(0, -'num_batches_tracked'.length)}running_var`)) batchCounters[k] = n;
      }
      const r = loadOurStateDict(m, sd, { strict, minLoaded });
      ({ missingKeys, unexpectedKeys } = r);
    }
  } catch (e) {
    if (!(e instanceof WeightLoadError)) throw e;
    const what = spec.kind === 'registered' ? spec.name : `${spec.arch} ${brief(spec.kwargs)}`;
    const hints = [];
    if (e instanceof WeightCoverageError) {
      hints.push(`check that the checkpoint was made for ${what} (--model / --arch --config)`);
      if (e.coverage.loadedTensors > 0) hints.push(`--min-loaded ${Math.floor(100 * e.coverage.fraction)}% accepts this much deliberately (the rest keeps its fresh initialisation)`);
    } else {
      if (e.problems.some((p) => p.problem === 'shape' && classifier && p.key.startsWith(`${classifier}.`))) hints.push('the classifier differs: pass --num-classes N to drop it');
      if (e.problems.some((p) => p.problem === 'missing' || p.problem === 'unexpected')) {
        hints.push(
          'check that --model / --arch --config match the checkpoint first; --no-strict only tolerates missing/unexpected keys ' +
            '(shapes must still agree): what is missing keeps its fresh random initialisation, and it refuses a result that fills ' +
            `less than ${Math.round(100 * (minLoaded ?? DEFAULT_MIN_LOADED))}% of the parameters (--min-loaded)`,
        );
      }
      if (e.problems.some((p) => p.problem === 'missing') && e.problems.some((p) => p.problem === 'unexpected') && ckpt.stateDictKey === null && ckpt.format !== 'safetensors') {
        hints.push('a wrapped checkpoint may hold the weights under --key <entry>');
      }
    }
    throw new InputError(`${plan.input} does not fit ${what}: ${e.message}${hints.length ? `\nhint: ${hints.join('; ')}` : ''}`);
  }
  return { modelClasses, droppedClassifier, missingKeys, unexpectedKeys, counters, batchCounters };
}

/** Writes the output file: the model's weights in the chosen layout, container and dtype, with how to rebuild it. */
async function writeOutput(m: Module, plan: ConvertPlan, ckpt: Checkpoint, target: Target, loaded: Loaded): Promise<void> {
  const { spec } = target;
  // Same keys as the trainer's model.safetensors (library, version, model), plus how to rebuild it.
  const metadata: Record<string, string> = { library: '@vit/core', version: VERSION, arch: target.archName, source: basename(plan.input), converted_by: 'vit convert' };
  if (spec.kind === 'registered') {
    metadata.model = spec.name;
    metadata.options = JSON.stringify(spec.options);
  } else {
    metadata.config = JSON.stringify(spec.kwargs);
    if (spec.overrides) metadata.overrides = JSON.stringify(spec.overrides);
  }
  if (ckpt.stateDictKey !== null) metadata.source_key = ckpt.stateDictKey;
  // --dtype keep: every tensor in the dtype it had in the input file (fp16 stays fp16), where
  // that dtype can hold the model's values (a float stays a float, an integer an integer).
  const dtypes: Record<string, SafetensorsDtype> = {};
  if (plan.dtype === 'keep') {
    for (const [k, e] of m.stateEntries()) {
      const d = target.fileDtypes.get(k);
      if (d && FLOAT_FILE_DTYPES.has(d) === (e.variable.dtype === 'float32')) dtypes[k] = d;
    }
  }
  await saveModelWeights(m, plan.out, {
    format: plan.toPytorch ? 'pytorch' : 'ours',
    container: plan.pthOut ? 'pth' : 'safetensors',
    metadata,
    batchCounters: loaded.batchCounters,
    dtypes,
    floatDtype: plan.dtype === 'keep' ? undefined : plan.dtype,
  });
}

/** What was converted, dropped and kept: JSON with --json, else a few lines. */
function report(io: Io, json: boolean, m: Module, plan: ConvertPlan, ckpt: Checkpoint, target: Target, loaded: Loaded): void {
  const { input, out, toPytorch, pthOut, dtype, strict, minLoaded } = plan;
  const { spec, archName, golden, ckptClasses, notes } = target;
  const { modelClasses, droppedClassifier, missingKeys, unexpectedKeys, counters } = loaded;
  const keptCounters = Object.keys(loaded.batchCounters).length;
  const entries = m.stateEntries();
  // toPytorchStateDict adds a num_batches_tracked counter beside each BatchNorm's running stats.
  const bnCounters = [...entries.keys()].filter((k) => k.endsWith('running_var') && entries.has(`${k.slice(0, -'running_var'.length)}running_mean`)).length;
  const written = entries.size + (toPytorch ? bnCounters : 0);
  const summary = {
    input,
    output: out,
    inputFormat: ckpt.format,
    inputLayout: ckpt.layout,
    outputLayout: toPytorch ? 'pytorch' : 'ours',
    model: spec.kind === 'registered' ? spec.name : null,
    arch: archName,
    ...(spec.kind === 'official' ? { config: spec.kwargs } : { options: spec.options }),
    numClasses: modelClasses ?? null,
    params: m.numParams(),
    tensorsRead: ckpt.tensors.size,
    stateDictKey: ckpt.stateDictKey,
    strippedPrefix: ckpt.strippedPrefix,
    droppedClassifier,
    droppedCounters: counters - keptCounters,
    keptCounters,
    outputFormat: pthOut ? 'pth (zip)' : 'safetensors',
    dtype,
    droppedGolden: golden,
    missingKeys,
    unexpectedKeys,
    placeholders: ckpt.placeholders,
    extra: ckpt.extra,
    notes,
  };
  if (json) {
    io.out(JSON.stringify(summary, null, 2));
    return;
  }
  const src = [ckpt.format, ckpt.stateDictKey !== null ? `state dict '${ckpt.stateDictKey}'` : '', ckpt.strippedPrefix ? `prefix '${ckpt.strippedPrefix}' removed` : '']
    .filter(Boolean)
    .join(', ');
  io.out(`Converted ${input} (${src}) → ${out}`);
  io.out(`  model:   ${summary.model ?? `${archName} ${brief(spec.kind === 'official' ? spec.kwargs : {})}`}${modelClasses !== undefined ? `, ${modelClasses} classes` : ''}`);
  io.out(
    `  wrote:   ${written} tensors in ${toPytorch ? 'the official PyTorch' : 'our'} layout${pthOut ? ' as a torch.save file' : ''}${dtype === 'F32' ? '' : ` (dtype ${dtype})`}, ` +
      `${m.numParams().toLocaleString('en-US')} parameters (read ${ckpt.tensors.size})`,
  );
  if (keptCounters) {
    io.out(`  kept:    ${keptCounters} num_batches_tracked counter${keptCounters === 1 ? '' : 's'} ${toPytorch ? 'written back as read' : "in the metadata (our BatchNorm keeps none; --to-pytorch writes them back)"}`);
  }
  for (const n of notes) io.out(`  note:    ${n}`);
  const dropped: string[] = [];
  const lost = counters - keptCounters;
  if (lost) dropped.push(`${lost} num_batches_tracked counter${lost === 1 ? '' : 's'} of BatchNorms the model does not have`);
  if (golden) dropped.push(`${golden} golden.* reference entr${golden === 1 ? 'y' : 'ies'}`);
  if (droppedClassifier.length) {
    dropped.push(`the classifier ${droppedClassifier.join(', ')}: the checkpoint has ${ckptClasses} classes, the model ${modelClasses}; it keeps its fresh initialisation`);
  }
  io.out(`  dropped: ${dropped.length ? dropped.join('; ') : 'nothing'}`);
  if (!strict) {
    const c = loadCoverage(m, [...m.stateEntries().keys()].filter((k) => !missingKeys.includes(k)));
    io.out(`  loaded:  ${describeCoverage(c)} (--no-strict; at least ${Math.round(100 * (minLoaded ?? DEFAULT_MIN_LOADED))}% required)`);
  }
  if (missingKeys.length) io.out(`  not in the checkpoint (left initialised, --no-strict): ${missingKeys.join(', ')}`);
  if (unexpectedKeys.length) io.out(`  ignored, not in the model (--no-strict): ${unexpectedKeys.join(', ')}`);
  if (ckpt.placeholders.length) io.out(`  lenient: replaced ${ckpt.placeholders.join(', ')} by inert placeholders`);
  const extra = Object.entries(ckpt.extra).filter(([, v]) => typeof v !== 'object' || v === null || !JSON.stringify(v).includes('<tensor'));
  if (extra.length) io.out(`  checkpoint also holds: ${extra.map(([k, v]) => `${k}=${brief(v)}`).join(', ')}`);
}

/** resolve (flags, then which model) → load (read the file, build the model, load it) → write → report. */
async function convert(values: Record<string, unknown>, positionals: string[], io: Io): Promise<number> {
  const plan = await resolvePlan(values, positionals);
  await useBackend('cpu');
  const ckpt = await readCheckpoint(plan.input, values);
  let model: Module | undefined;
  const own: tf.Tensor[] = [];
  try {
    const target = resolveTarget(plan, ckpt);
    model = buildModel(target.spec);
    const loaded = loadWeights(model, plan, ckpt, target, own);
    await writeOutput(model, plan, ckpt, target, loaded);
    report(io, values.json === true, model, plan, ckpt, target, loaded);
    return EXIT.OK;
  } finally {
    model?.dispose();
    for (const t of own) t.dispose();
    for (const t of ckpt.tensors.values()) t.dispose();
  }
}

export const convertCommand: Command = {
  name: 'convert',
  summary: 'Convert an official PyTorch checkpoint (.pth or safetensors) into a @vit safetensors checkpoint',
  usage:
    `vit convert <in.pth|in.safetensors> (--model <name> | --arch <arch> --config <kwargs>) [--out FILE.safetensors|FILE.pth] [--num-classes N] [--no-strict [--min-loaded F]] [--dtype ${DTYPES.join('|')}] [--key K] [--no-ema] [--lenient] [--to-pytorch] [--json]`,
  options: {
    model: { type: 'string', value: '<name>', description: 'build a registered model (see `vit models`)' },
    arch: { type: 'string', value: '<arch>', description: 'build an architecture from its official constructor kwargs (with --config)' },
    config: { type: 'string', value: '<json|file>', description: "the official kwargs: inline JSON, a .json file, or a golden .safetensors's metadata" },
    out: { type: 'string', value: '<file>', description: 'the output: .safetensors (default: beside the input), or .pth/.pt/.bin with --to-pytorch' },
    'num-classes': { type: 'string', value: '<n>', description: "the model's class count (default the checkpoint's); another drops its classifier" },
    strict: { type: 'boolean', description: 'every key must load, all or nothing (the default)' },
    'no-strict': { type: 'boolean', description: 'tolerate missing/unexpected keys (shapes must still agree); the rest keeps its fresh initialisation' },
    'min-loaded': { type: 'string', value: '<f|p%>', description: `with --no-strict: the least share of parameters that must load (default ${100 * DEFAULT_MIN_LOADED}%)` },
    dtype: { type: 'string', value: `<${DTYPES.join('|')}>`, description: "the output's float dtype, or keep each tensor's input dtype (default F32)" },
    key: { type: 'string', value: '<entry>', description: '.pth: the entry holding the state dict (default: found as timm does)' },
    'no-ema': { type: 'boolean', description: '.pth: prefer the plain weights to state_dict_ema/model_ema' },
    lenient: { type: 'boolean', description: '.pth: replace unknown pickled objects by inert placeholders (files you trust only)' },
    'to-pytorch': { type: 'boolean', description: 'write the official PyTorch keys and layouts instead of ours' },
    json: JSON_OPTION,
  },
  help: [
    'Reads a torch.save checkpoint without Python and without running its pickle: only tensors,',
    'OrderedDicts and plain data are accepted (like torch.load(weights_only=True)); anything else is',
    'refused, naming it. The state dict is found as timm does (state_dict_ema/model_ema unless --no-ema,',
    'state_dict, model, else the file itself; --key picks one); a `module.` prefix is removed.',
    'The model is built by registered name, or from the official constructor kwargs (--arch + --config,',
    'as JSON, a .json file, or a golden .safetensors file whose metadata has them), then loaded',
    'all-or-nothing: any missing, unexpected or mis-shaped key fails with the full list (exit 3) and',
    'nothing is written. --no-strict tolerates missing/unexpected keys (shapes must still agree): what the',
    'checkpoint lacks keeps its fresh random initialisation, so it still refuses (exit 3, nothing written) a',
    `result that fills less than ${100 * DEFAULT_MIN_LOADED}% of the parameters by element count, saying how much would load;`,
    '--min-loaded F (a fraction 0–1 or a percentage, e.g. 0.1 or 10%) sets another minimum deliberately.',
    'With --num-classes N different',
    "from the checkpoint's, the classifier is dropped and keeps its fresh initialisation; without it the",
    "class count is read from the checkpoint's classifier. The output (atomic write) is our",
    'safetensors checkpoint with metadata (model, options or config, library version, source); --to-pytorch',
    'writes official keys and layouts instead; with --out FILE.pth (.pt, .bin) as a torch.save file that',
    'torch.load(weights_only=True) and load_state_dict(strict=True) accept. A file this command wrote converts',
    'back without --model, losslessly: BatchNorm num_batches_tracked counters (kept in our metadata) and',
    "class-attribute overrides come back as read. --dtype: F32 (default), F16 or BF16 for every float, or",
    "keep: each tensor in its input file's dtype (fp16 stays fp16).",
    '--lenient replaces unknown objects (e.g. argparse.Namespace training args) by inert placeholders:',
    'still nothing is executed, but use it only for files you trust.',
    '',
    'Examples:',
    '  vit convert cait_XXS24_224.pth --model cait_xxs24_224',
    '  vit convert checkpoint.pth --model conv2former_n --num-classes 10 --out c2f_n_10.safetensors',
    '  vit convert k11_d16.pth --config packages/conv2former/test/fixtures/k11_d16.safetensors',
    '  vit convert litv2.pth --arch litv2 --config \'{"depths": [2, 2, 6, 2]}\' --lenient',
    '  vit convert c2f_n_10.safetensors --to-pytorch --out c2f_n_10.pytorch.safetensors',
    '  vit convert c2f_n_10.safetensors --to-pytorch --out c2f_n_10.pth --dtype keep',
    '  vit convert partial.pth --model conv2former_n --no-strict --min-loaded 0.2',
  ].join('\n'),
  run: ({ values, positionals }, io) => convert(values, positionals, io),
};
