import * as tf from '@tensorflow/tfjs-core';
import {
  checkImageBatch,
  ConfigError,
  dropPathRates,
  Identity,
  Linear,
  Module,
  ModuleList,
  resolveIndices,
  ShapeError,
  type FeatureInfo,
  type NormFactory,
  type VisionModel,
  type VisionTransformerOptions,
} from '@vit/core';
import {
  Block,
  DTM,
  HiLo,
  LITLayer,
  LITv2PatchEmbed,
  defaultNorm,
  hiloHeads,
  initLinear,
  mlpHidden,
  type DTMKind,
} from './blocks.js';

/** Options of {@link LITv2}; defaults are the official constructor's (`LITv2(...)` in classification/models/litv2.py). */
export interface LITv2Options extends VisionTransformerOptions {
  /** Nominal input size (model card, `patchesResolution`). Default 224. Other sizes run too (see `padInputs`). */
  imgSize?: number | [number, number];
  patchSize?: number;
  embedDim?: number;
  depths?: number[];
  numHeads?: number[];
  mlpRatio?: number;
  /** Dropout inside the ConvFFN (after the activation and after fc2). */
  dropRate?: number;
  /** Accepted for the official signature; HiLo applies no attention dropout (official). */
  attnDropRate?: number;
  /** Stochastic depth, torch.linspace(0, rate, sum(depths)) over all blocks. Official default 0.1. */
  dropPathRate?: number;
  /** Token norm (blocks, patch embedding, final norm). Default `nn.LayerNorm` (eps 1e-5). */
  normLayer?: NormFactory;
  /** LayerNorm after the patch embedding. Default true. */
  patchNorm?: boolean;
  /** Per stage: 1/true = HiLo `Block`s, 0/false = `ConvFFNBlock`s. Default [0, 0, 1, 1]. */
  hasMsa?: Array<number | boolean>;
  /** Lo-Fi share of heads: one value (official) or one per stage (the seed). Default 0.5; released configs 0.9. */
  alpha?: number | number[];
  /** HiLo window size per stage (ignored for ConvFFN stages). Default [0, 0, 2, 1] (official config default). */
  localWs?: number[];
  /** DTM flavour: official DCNv1 (`'dcnv1'`) or the seed's DCNv2 (`'dcnv2'`). */
  dtm?: DTMKind;
  /**
   * Accept any input size as the official detection/segmentation backbone does: pad the image to a
   * multiple of the patch, pad each HiLo input to a multiple of its window (and crop back), floor
   * odd maps in the DTMs, allow non-square grids. Default false: the official classifier, which
   * needs square token grids, even sizes before every DTM and sizes divisible by the window where
   * Hi-Fi runs (a `ShapeError` says which, instead of the official assertion).
   */
  padInputs?: boolean;
}

export type ResolvedLITv2Options = Required<Omit<LITv2Options, 'qkScale' | 'alpha' | 'imgSize'>> & {
  qkScale: number | null;
  alpha: number[];
  imgSize: [number, number];
};

export const LITV2_DEFAULTS: Required<Omit<LITv2Options, 'qkScale'>> & { qkScale: number | null } = {
  imgSize: 224,
  patchSize: 4,
  inChans: 3,
  numClasses: 1000,
  embedDim: 96,
  depths: [2, 2, 6, 2],
  numHeads: [3, 6, 12, 24],
  mlpRatio: 4,
  qkvBias: true,
  qkScale: null,
  dropRate: 0,
  attnDropRate: 0,
  dropPathRate: 0.1,
  normLayer: defaultNorm,
  patchNorm: true,
  hasMsa: [0, 0, 1, 1],
  alpha: 0.5,
  localWs: [0, 0, 2, 1],
  dtm: 'dcnv1',
  padInputs: false,
};

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function intList(name: string, v: unknown, min: number): number[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= min)) {
    throw new ConfigError(`LITv2 ${name} must be a list of integers >= ${min}, got ${JSON.stringify(v)}`);
  }
  return [...v];
}

/** Fills defaults and checks every option, with errors naming the option. */
export function resolveLITv2Options(options: LITv2Options = {}): ResolvedLITv2Options {
  const o = { ...LITV2_DEFAULTS, ...stripUndefined(options) };
  const depths = intList('depths', o.depths, 0);
  const n = depths.length;
  if (n === 0) throw new ConfigError('LITv2 depths must have at least one stage');
  const perStage = <T>(name: string, v: T[]): T[] => {
    // The official constructor indexes these per stage (IndexError when shorter; extra entries unused).
    if (!Array.isArray(v) || v.length < n) throw new ConfigError(`LITv2 ${name} needs one entry per stage (${n}), got ${JSON.stringify(v)}`);
    return v.slice(0, n);
  };
  // Heads matter only where HiLo runs (ConvFFN stages ignore them, as officially); HiLo checks its own.
  const numHeads = perStage('numHeads', o.numHeads);
  numHeads.forEach((v, i) => {
    if (typeof v !== 'number') throw new ConfigError(`LITv2 numHeads[${i}] must be a number, got ${JSON.stringify(v)}`);
  });
  const hasMsa = perStage('hasMsa', o.hasMsa).map((v, i) => {
    if (typeof v !== 'number' && typeof v !== 'boolean') throw new ConfigError(`LITv2 hasMsa[${i}] must be 0/1 or a boolean, got ${JSON.stringify(v)}`);
    // Official: has_msa[i] == 1 (True == 1 in Python).
    return v === true || v === 1;
  });
  const localWs = intList('localWs', perStage('localWs', o.localWs), 0);
  const alpha = Array.isArray(o.alpha) ? perStage('alpha', o.alpha) : Array<number>(n).fill(o.alpha);
  alpha.forEach((a, i) => {
    if (typeof a !== 'number' || !(a >= 0)) throw new ConfigError(`LITv2 alpha[${i}] must be a number >= 0, got ${JSON.stringify(a)}`);
  });
  const img = typeof o.imgSize === 'number' ? [o.imgSize, o.imgSize] : o.imgSize;
  if (!Array.isArray(img) || img.length !== 2 || !img.every((v) => Number.isInteger(v) && v > 0)) {
    throw new ConfigError(`LITv2 imgSize must be a positive integer or a pair, got ${JSON.stringify(o.imgSize)}`);
  }
  for (const [k, v] of [
    ['patchSize', o.patchSize],
    ['inChans', o.inChans],
    ['embedDim', o.embedDim],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`LITv2 ${k} must be a positive integer, got ${v}`);
  }
  if (!Number.isInteger(o.numClasses) || o.numClasses < 0) throw new ConfigError(`LITv2 numClasses must be a non-negative integer, got ${o.numClasses}`);
  if (!(o.mlpRatio > 0)) throw new ConfigError(`LITv2 mlpRatio must be positive, got ${o.mlpRatio}`);
  if (!(o.dropPathRate >= 0 && o.dropPathRate < 1)) throw new ConfigError(`LITv2 dropPathRate must be in [0, 1), got ${o.dropPathRate}`);
  if (!(o.dropRate >= 0 && o.dropRate <= 1)) throw new ConfigError(`LITv2 dropRate must be in [0, 1], got ${o.dropRate}`);
  if (o.dtm !== 'dcnv1' && o.dtm !== 'dcnv2') throw new ConfigError(`LITv2 dtm must be 'dcnv1' or 'dcnv2', got '${String(o.dtm)}'`);
  if (typeof o.normLayer !== 'function') throw new ConfigError('LITv2 normLayer must be a factory (dim) => Module');
  // Everything the stages would refuse, checked before any weight is allocated.
  depths.forEach((_, i) => {
    const dim = Math.trunc(o.embedDim * 2 ** i);
    mlpHidden(dim, o.mlpRatio);
    if (hasMsa[i]) {
      try {
        hiloHeads(dim, { numHeads: numHeads[i], windowSize: localWs[i], alpha: alpha[i] });
      } catch (e) {
        throw new ConfigError(`LITv2 stage ${i} (dim ${dim}): ${(e as Error).message}`);
      }
    }
  });
  return { ...o, imgSize: [img[0]!, img[1]!], depths, numHeads, hasMsa: hasMsa as Array<number | boolean>, localWs, alpha };
}

/** One stage's spatial sizes for an input: before the blocks (`in`) and after the stage (`out`). */
export interface StageSize {
  in: [number, number];
  out: [number, number];
}

/**
 * LITv2 (Pan, Cai, Zhuang, "Fast Vision Transformers with HiLo Attention", NeurIPS 2022), the
 * official classification model: `patch_embed` → `layers.{i}` (ConvFFN or HiLo blocks, then a DTM
 * except in the last stage) → `norm` → mean over tokens → `head`. NHWC in, logits out; internally
 * NHWC maps (the official tokens, row-major).
 */
export class LITv2 extends Module implements VisionModel {
  readonly options: ResolvedLITv2Options;
  readonly patch_embed: LITv2PatchEmbed;
  readonly layers: ModuleList<LITLayer>;
  readonly norm: Module;
  private _head: Module;
  private _numClasses: number;
  readonly numFeatures: number;
  readonly dims: number[];
  readonly featureInfo: FeatureInfo[];

  constructor(options: LITv2Options = {}) {
    super();
    const o = resolveLITv2Options(options);
    this.options = o;
    const n = o.depths.length;
    this.dims = o.depths.map((_, i) => Math.trunc(o.embedDim * 2 ** i));
    this.numFeatures = this.dims[n - 1]!;
    this.patch_embed = this.register(
      'patch_embed',
      new LITv2PatchEmbed({
        imgSize: o.imgSize,
        patchSize: o.patchSize,
        inChans: o.inChans,
        embedDim: o.embedDim,
        norm: o.patchNorm ? o.normLayer : undefined,
        remainder: o.padInputs ? 'pad' : 'floor',
      }),
    );
    // Porting note: the official constructor also builds `pos_drop` (Dropout(drop_rate)) but its
    // forward never calls it; it has no parameters, so it is left out.
    const rates = dropPathRates(o.dropPathRate, o.depths.reduce((a, b) => a + b, 0));
    this.layers = this.register('layers', new ModuleList<LITLayer>());
    let cur = 0;
    for (let i = 0; i < n; i++) {
      this.layers.append(
        new LITLayer(this.dims[i]!, {
          depth: o.depths[i]!,
          numHeads: o.numHeads[i]!,
          mlpRatio: o.mlpRatio,
          qkvBias: o.qkvBias,
          qkScale: o.qkScale,
          drop: o.dropRate,
          attnDrop: o.attnDropRate,
          dropPath: rates.slice(cur, cur + o.depths[i]!),
          normLayer: o.normLayer,
          hasMsa: o.hasMsa[i] as boolean,
          localWs: o.localWs[i]!,
          alpha: o.alpha[i]!,
          downsample: i < n - 1,
          dtm: o.dtm,
          padInputs: o.padInputs,
        }),
      );
      cur += o.depths[i]!;
    }
    this.norm = this.register('norm', o.normLayer(this.numFeatures));
    this._numClasses = o.numClasses;
    this._head = this.register('head', this.makeHead(o.numClasses));
    this.featureInfo = this.dims.map((d, i) => ({ numChs: d, reduction: o.patchSize * 2 ** i, module: `layers.${i}.blocks` }));
    // The official `self.apply(self._init_weights)`: every Linear trunc-normal(0.02) with zero bias
    // (LayerNorms start at 1/0 already; convs keep their own inits). DWMlp and the head did theirs.
    this.apply((m) => {
      if (m instanceof HiLo) for (const l of [m.l_q, m.l_kv, m.l_proj, m.h_qkv, m.h_proj]) if (l) initLinear(l);
    });
  }

  get numClasses(): number {
    return this._numClasses;
  }

  /** The classifier: Linear(numFeatures, numClasses), or Identity when numClasses is 0. */
  get head(): Module {
    return this._head;
  }

  /** The official patch grid for `imgSize` (`patches_resolution`). */
  get patchesResolution(): [number, number] {
    return this.patch_embed.outputSize(this.options.imgSize[0], this.options.imgSize[1]);
  }

  private makeHead(numClasses: number): Module {
    if (numClasses === 0) return new Identity();
    const head = new Linear(this.numFeatures, numClasses);
    initLinear(head);
    return head;
  }

  /** Per-stage sizes for an h×w input, or the reason the input is refused. */
  stageSizes(h: number, w: number): { sizes: StageSize[]; problem: string | null } {
    const o = this.options;
    const sizes: StageSize[] = [];
    let [ch, cw] = this.patch_embed.outputSize(h, w);
    if (ch < 1 || cw < 1) return { sizes, problem: `a ${h}x${w} input is smaller than one ${o.patchSize}x${o.patchSize} patch` };
    if (!o.padInputs && ch !== cw) {
      return {
        sizes,
        problem: `the official classifier needs a square token grid (it takes H = W = sqrt(N)); a ${h}x${w} input gives ${ch}x${cw} tokens with patch ${o.patchSize}. Pass padInputs: true for other shapes`,
      };
    }
    for (let i = 0; i < this.layers.length; i++) {
      const layer = this.layers.at(i);
      const stage = `stage ${i} (layers.${i}, ${ch}x${cw} tokens)`;
      for (const b of layer.blocks) {
        const p = b instanceof Block && b.attn instanceof HiLo ? b.attn.checkSize(ch, cw) : null;
        if (p) return { sizes, problem: `${stage}: HiLo ${p}` };
      }
      let out: [number, number] = [ch, cw];
      if (layer.downsample instanceof DTM) {
        const p = layer.downsample.checkSize(ch, cw);
        if (p) return { sizes, problem: `${stage}: DTM ${p}` };
        out = layer.downsample.outputSize(ch, cw);
      }
      sizes.push({ in: [ch, cw], out });
      [ch, cw] = out;
    }
    return { sizes, problem: null };
  }

  private checkInput(x: tf.Tensor): void {
    checkImageBatch('LITv2', x);
    const c = this.options.inChans;
    if (x.rank !== 4) throw new ShapeError(`LITv2 expects NHWC input [B, H, W, ${c}] (rank 4), got rank ${x.rank} shape [${x.shape.join(', ')}]`);
    const [, h, w, ch] = x.shape as [number, number, number, number];
    if (ch !== c) throw new ShapeError(`LITv2 expects ${c} input channels (NHWC, channels last), got ${ch} in shape [${x.shape.join(', ')}]`);
    const { problem } = this.stageSizes(h, w);
    if (problem) throw new ShapeError(`LITv2 cannot take a ${h}x${w} input: ${problem}`);
  }

  private run(x: tf.Tensor4D, upTo: number, collect?: (i: number, pre: tf.Tensor, out: tf.Tensor) => void): tf.Tensor {
    let y = this.patch_embed.forward(x);
    for (let i = 0; i <= upTo; i++) {
      const { pre, out } = this.layers.at(i).forwardBoth(y);
      collect?.(i, pre, out);
      y = out;
    }
    return y;
  }

  /** Patch embedding and every stage: the last stage's NHWC map (before `norm`). */
  forwardFeatures(x: tf.Tensor4D): tf.Tensor4D {
    this.checkInput(x);
    return tf.tidy(() => this.run(x, this.layers.length - 1) as tf.Tensor4D);
  }

  /** `norm` → mean over tokens → `head`; `preLogits` stops before `head`. */
  forwardHead(features: tf.Tensor, options: { preLogits?: boolean } = {}): tf.Tensor2D {
    const c = this.numFeatures;
    if (features.rank !== 4 || features.shape[3] !== c) {
      throw new ShapeError(`LITv2.forwardHead expects the last stage's NHWC map [B, H, W, ${c}], got shape [${features.shape.join(', ')}]`);
    }
    return tf.tidy(() => {
      const pooled = tf.mean(this.norm.forward(features), [1, 2]) as tf.Tensor2D;
      return options.preLogits ? pooled : (this._head.forward(pooled) as tf.Tensor2D);
    });
  }

  forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x)));
  }

  /**
   * Per-stage NHWC maps for dense prediction: each stage's blocks' output before its DTM
   * (strides patch·2^i, channels embedDim·2^i; what the official detection backbone taps).
   */
  forwardIntermediates(x: tf.Tensor4D, options: { indices?: number[] } = {}): tf.Tensor4D[] {
    this.checkInput(x);
    const idx = resolveIndices(options.indices, this.layers.length);
    if (idx.length === 0) return [];
    return tf.tidy(() => {
      const maps: tf.Tensor[] = [];
      this.run(x, Math.max(...idx), (i, pre) => {
        maps[i] = pre;
      });
      return idx.map((i) => maps[i]! as tf.Tensor4D);
    });
  }

  /** Each `layers[i]` output (after its DTM), NHWC: the official per-stage outputs. */
  forwardStages(x: tf.Tensor4D): tf.Tensor4D[] {
    this.checkInput(x);
    return tf.tidy(() => {
      const outs: tf.Tensor[] = [];
      this.run(x, this.layers.length - 1, (i, _pre, out) => {
        outs[i] = out;
      });
      return outs as tf.Tensor4D[];
    });
  }

  /** `setGradCheckpointing` recomputes each block of every stage (the DTM downsamples are kept). */
  protected override gradCheckpointUnits(): Module[] {
    return [...this.layers].flatMap((l) => [...l.blocks]);
  }

  resetClassifier(numClasses: number): void {
    if (!Number.isInteger(numClasses) || numClasses < 0) {
      throw new ConfigError(`resetClassifier: numClasses must be a non-negative integer, got ${numClasses}`);
    }
    const old = this._head;
    this._head = this.register('head', this.makeHead(numClasses));
    this._head.train(this.training);
    this._numClasses = numClasses;
    old.dispose();
  }
}
