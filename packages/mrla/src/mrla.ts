import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, Conv1d, Conv2d, conv2dNHWC, Module, ShapeError, vjp } from '@vit/core';

/**
 * The official ECA-style kernel-size rule of the Q/K 1-D convolutions:
 * `t = int(|(log2 C + 1) / 2|)`, `k = t` if odd else `t + 1` (C = 64 → 3, 128…1024 → 5, 2048 → 7).
 * `Math.log(C) / Math.log(2)` is exactly Python's `math.log(C, 2)` (both divide two natural logs).
 */
export function mrlaKernelSize(channels: number): number {
  if (!Number.isInteger(channels) || channels <= 0) throw new ConfigError(`MRLA channels must be a positive integer, got ${channels}`);
  const t = Math.trunc(Math.abs((Math.log(channels) / Math.log(2) + 1) / 2));
  return t % 2 ? t : t + 1;
}

export interface MRLALightLayerOptions {
  /** Number of heads; ignored when `dimPerhead` is given (official: one of the two is required). */
  heads?: number;
  /** Channels per head; heads = int(C / dimPerhead). Default 32 (the official `dim_perhead`). */
  dimPerhead?: number;
  /** Kernel of the Q/K 1-D convolutions; default by `mrlaKernelSize(C)`. */
  kSize?: number;
}

/**
 * `mrla_light_layer` (MRLA-light, eq. 6 of the paper) on NHWC maps. A channel descriptor
 * `y = avgpool(x)` `[B, C]` gives the query and key by 1-D convolutions along channels (`Wq`, `Wk`,
 * no bias); heads are contiguous groups of `C / heads` channels; per head
 * `a_h = sigmoid(Σ Q_h·K_h / √(C/heads))` gates the value `V = Wv(x)` (depthwise 3×3, no bias).
 * Keys: `Wq.weight` `[1,1,k]`, `Wk.weight` `[1,1,k]`, `Wv.weight` `[C,1,3,3]` (official layouts).
 */
export class MRLALightLayer extends Module {
  readonly heads: number;
  readonly kSize: number;
  /** 1/√(C/heads), the official `_norm_fact`. */
  readonly normFact: number;
  readonly Wq: Conv1d;
  readonly Wk: Conv1d;
  readonly Wv: Conv2d;

  constructor(
    readonly inputDim: number,
    options: MRLALightLayerOptions = {},
  ) {
    super();
    if (!Number.isInteger(inputDim) || inputDim <= 0) throw new ConfigError(`MRLALightLayer inputDim must be a positive integer, got ${inputDim}`);
    const { dimPerhead } = options;
    let heads: number;
    if (dimPerhead !== undefined) {
      if (!(dimPerhead > 0)) throw new ConfigError(`MRLALightLayer dimPerhead must be positive, got ${dimPerhead}`);
      heads = Math.trunc(inputDim / dimPerhead);
    } else if (options.heads !== undefined) {
      heads = options.heads;
    } else {
      throw new ConfigError('MRLALightLayer: heads and dimPerhead cannot both be undefined');
    }
    if (!Number.isInteger(heads) || heads < 1) {
      throw new ConfigError(
        `MRLALightLayer needs at least one head: ${inputDim} channels with ${dimPerhead !== undefined ? `dimPerhead ${dimPerhead}` : `heads ${heads}`} gives ${heads} heads`,
      );
    }
    if (inputDim % heads !== 0) {
      // The official `view(b, heads, 1, int(c/heads))` fails for such sizes.
      throw new ConfigError(`MRLALightLayer: ${inputDim} channels cannot be split into ${heads} equal heads`);
    }
    this.heads = heads;
    this.kSize = options.kSize ?? mrlaKernelSize(inputDim);
    if (!Number.isInteger(this.kSize) || this.kSize <= 0) throw new ConfigError(`MRLALightLayer kSize must be a positive integer, got ${this.kSize}`);
    this.normFact = 1 / Math.sqrt(inputDim / heads);
    const pad = Math.floor((this.kSize - 1) / 2);
    this.Wq = this.register('Wq', new Conv1d(1, 1, this.kSize, { padding: pad, bias: false }));
    this.Wk = this.register('Wk', new Conv1d(1, 1, this.kSize, { padding: pad, bias: false }));
    this.Wv = this.register('Wv', new Conv2d(inputDim, inputDim, 3, { padding: 1, groups: inputDim, bias: false }));
  }

  /** The per-sample, per-head gate `[B, heads]` (after the sigmoid). */
  headGates(x: tf.Tensor4D): tf.Tensor2D {
    this.checkInput(x);
    const [b, , , c] = x.shape;
    const d = c / this.heads;
    return tf.tidy(() => {
      const y = tf.reshape(tf.mean(x, [1, 2]), [b, c, 1]); // [B, L=C, 1 channel]
      const q = tf.reshape(this.Wq.forward(y), [b, this.heads, d]);
      const k = tf.reshape(this.Wk.forward(y), [b, this.heads, d]);
      return tf.sigmoid(tf.mul(tf.sum(tf.mul(q, k), -1), this.normFact)) as tf.Tensor2D;
    });
  }

  override forward(x: tf.Tensor4D): tf.Tensor4D {
    this.checkInput(x);
    const b = x.shape[0];
    return tf.tidy(() => {
      const gate = tf.reshape(this.headGates(x), [b, 1, 1, this.heads, 1]);
      return gatedDepthwise(x, this.Wv, gate, this.heads) as tf.Tensor4D;
    });
  }

  private checkInput(x: tf.Tensor): void {
    if (x.rank !== 4 || x.shape[3] !== this.inputDim) {
      throw new ShapeError(`${this.typeName} expected NHWC input with ${this.inputDim} channels, got shape [${x.shape.join(',')}]`);
    }
  }
}

/**
 * `Wv(x)` gated per head, `[B, H, W, C]` from x `[B, H, W, C]` and the gate `[B, 1, 1, heads, 1]`,
 * as one differentiable op that keeps only x, Wv's weight and the gate for the backward pass: the
 * composed form kept V = Wv(x), a full activation-sized map per MRLA layer (12% of what a
 * resnet18_mrlal_cifar step keeps). The backward pass recomputes V (one depthwise conv) for the
 * gate's gradient Σ dy·V and takes x's and the weight's gradients through the conv's own.
 */
export function gatedDepthwise(x: tf.Tensor4D, conv: Conv2d, gate: tf.Tensor, heads: number): tf.Tensor4D {
  if (conv.bias) throw new ConfigError(`gatedDepthwise takes a conv without bias (its gradient is not computed), got ${conv.typeName} with bias`);
  const [b, h, w, c] = x.shape;
  if (c % heads !== 0 || gate.size !== b * heads) {
    throw new ShapeError(`gatedDepthwise: ${c} channels in ${heads} heads need a gate of ${b}×${heads} values, got shape [${gate.shape.join(',')}]`);
  }
  const d = c / heads;
  const split = [b, h, w, heads, d];
  const value = (xi: tf.Tensor, wi: tf.Tensor) => conv2dNHWC(xi, wi, null, conv);
  const op = tf.customGrad(((xi: tf.Tensor, wi: tf.Tensor, gi: tf.Tensor, save: tf.GradSaveFunc) => {
    save([xi, wi, gi]);
    return {
      value: tf.tidy(() => tf.reshape(tf.mul(tf.reshape(value(xi, wi), split), gi), [b, h, w, c])),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ws, gs] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const dy5 = tf.reshape(dy, split);
        const dv = tf.tidy(() => tf.reshape(tf.mul(dy5, gs), [b, h, w, c]));
        const { values, grads } = vjp(() => [value(xs, ws)], [xs, ws], [dv]);
        dv.dispose();
        const dg = tf.tidy(() => tf.sum(tf.mul(dy5, tf.reshape(values[0]!, split)), [1, 2, 4], true));
        tf.dispose([dy5, ...values]);
        return [grads[0] ?? tf.zerosLike(xs), grads[1] ?? tf.zerosLike(ws), dg];
      },
    };
  }) as Parameters<typeof tf.customGrad>[0]);
  return op(x, conv.weight, gate) as tf.Tensor4D;
}

export interface MRLAModuleOptions extends MRLALightLayerOptions {
  /**
   * Builds the layer-attention part `f(x_t)` (default `MRLALightLayer`). It must map an NHWC map of
   * `inputDim` channels to one of the same shape.
   */
  layer?: (inputDim: number) => Module;
}

/**
 * `mrla_module`: `o_t = mrla_light(x_t) + λ_t ⊙ o_{t−1}` with `λ_t` of shape `[C, 1, 1]` (key
 * `lambda_t`, official layout kept) broadcast over batch and space. In a residual block `x_t` is
 * the block output after `relu(out + identity)` and `o_{t−1}` is the block's own, possibly
 * downsampled, identity. A plug-in: any residual block can call it on (output, identity).
 */
export class MRLAModule extends Module {
  readonly lambda_t: tf.Variable;
  readonly mrla: Module;

  constructor(
    readonly inputDim: number,
    options: MRLAModuleOptions = {},
  ) {
    super();
    const { layer, ...layerOptions } = options;
    this.mrla = this.register(
      'mrla',
      layer
        ? layer(inputDim)
        : new MRLALightLayer(inputDim, {
            heads: layerOptions.heads,
            dimPerhead: layerOptions.dimPerhead ?? (layerOptions.heads === undefined ? 32 : undefined),
            kSize: layerOptions.kSize,
          }),
    );
    // Official init: torch.randn(input_dim, 1, 1).
    this.lambda_t = this.addParameter('lambda_t', tf.randomNormal([inputDim, 1, 1]));
  }

  override forward(xt: tf.Tensor4D, ot1: tf.Tensor4D): tf.Tensor4D {
    if (xt.rank !== 4 || xt.shape[3] !== this.inputDim) {
      throw new ShapeError(`${this.typeName} expected x_t NHWC with ${this.inputDim} channels, got shape [${xt.shape.join(',')}]`);
    }
    if (ot1.rank !== 4 || ot1.shape.some((v, i) => v !== xt.shape[i])) {
      throw new ShapeError(`${this.typeName} expected o_(t-1) of the same shape as x_t [${xt.shape.join(',')}], got [${ot1.shape.join(',')}]`);
    }
    return tf.tidy(() => tf.add(this.mrla.forward(xt), tf.mul(tf.reshape(this.lambda_t, [this.inputDim]), ot1)) as tf.Tensor4D);
  }
}
