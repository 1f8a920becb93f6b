import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { assignInit, ConfigError, normal, type Module } from '@vit/core';
import { ECALayer, MRLABasicBlock, MRLABottleneck, ResNetMRLA, SELayer } from './index.js';
import { setTestBackend } from '@vit/core/testing';

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);

/** Random BatchNorm statistics and affine terms, so eval-mode norms are not near-identities. */
function randomiseNorms(m: Module): void {
  for (const [name, v] of [...m.namedParameters(), ...m.namedBuffers()]) {
    if (name.endsWith('running_var')) assignInit(v, tf.randomUniform(v.shape, 0.5, 1.5));
    else if (/(bn\w*|downsample\.1)\.(weight|bias|running_mean)$/.test(name)) assignInit(v, normal(v.shape, { std: 0.5, mean: name.endsWith('weight') ? 1 : 0 }));
  }
}

describe('blocks', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it('MRLABasicBlock = the seed forward: relu(bn2(conv2(relu(bn1(conv1 x)))) + id), then + bn_mrla(mrla(out, id))', () => {
    const before = tf.memory().numTensors;
    const blk = new MRLABasicBlock(32, 32);
    randomiseNorms(blk);
    blk.eval();
    tf.tidy(() => {
      const x = tf.randomNormal([2, 5, 6, 32]) as tf.Tensor4D;
      let out = tf.relu(blk.bn1.forward(blk.conv1.forward(x)));
      out = blk.bn2.forward(blk.conv2.forward(out));
      out = tf.relu(tf.add(out, x));
      const mods = Object.fromEntries(blk.namedModules());
      const want = tf.add(out, mods['bn_mrla']!.forward(mods['mrla']!.forward(out, x)));
      expect(maxDiff(blk.forward(x), want)).toBe(0);
    });
    blk.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keys of the bottleneck block are the official ones, in the official order', () => {
    const blk = new MRLABottleneck(64, 32, { stride: 2, groups: 2, baseWidth: 16, expansion: 2 });
    expect(blk.width).toBe(16);
    expect(Object.entries(blk.stateDict()).map(([k, v]) => `${k}:${v.shape.join('x')}`)).toEqual([
      'conv1.weight:1x1x64x16',
      'bn1.weight:16',
      'bn1.bias:16',
      'bn1.running_mean:16',
      'bn1.running_var:16',
      'conv2.weight:3x3x8x16',
      'bn2.weight:16',
      'bn2.bias:16',
      'bn2.running_mean:16',
      'bn2.running_var:16',
      'conv3.weight:1x1x16x64',
      'bn3.weight:64',
      'bn3.bias:64',
      'bn3.running_mean:64',
      'bn3.running_var:64',
      'mrla.lambda_t:64x1x1',
      'mrla.mrla.Wq.weight:3x1x1',
      'mrla.mrla.Wk.weight:3x1x1',
      'mrla.mrla.Wv.weight:3x3x64x1',
      'bn_mrla.weight:64',
      'bn_mrla.bias:64',
      'bn_mrla.running_mean:64',
      'bn_mrla.running_var:64',
    ]);
    blk.dispose();
  });

  it('without layer attention the block is the plain ResNet block', () => {
    const blk = new MRLABasicBlock(16, 16, { layerAttn: null });
    expect(Object.keys(blk.stateDict()).some((k) => k.includes('mrla'))).toBe(false);
    randomiseNorms(blk);
    blk.eval();
    tf.tidy(() => {
      const x = tf.randomNormal([1, 4, 4, 16]) as tf.Tensor4D;
      const branch = blk.bn2.forward(blk.conv2.forward(tf.relu(blk.bn1.forward(blk.conv1.forward(x)))));
      expect(maxDiff(blk.forward(x), tf.relu(tf.add(branch, x)))).toBe(0);
    });
    blk.dispose();
  });

  it('SE and ECA layers compute the official formulas', () => {
    const se = new SELayer(32, 16);
    const eca = new ECALayer(32, 3);
    tf.tidy(() => {
      const x = tf.randomNormal([2, 3, 4, 32]) as tf.Tensor4D;
      const y = tf.mean(x, [1, 2]);
      const w1 = se.fc.at(0) as unknown as { weight: tf.Tensor };
      const w2 = se.fc.at(2) as unknown as { weight: tf.Tensor };
      const s = tf.sigmoid(tf.matMul(tf.relu(tf.matMul(y, w1.weight)), w2.weight));
      expect(maxDiff(se.forward(x), tf.mul(x, tf.reshape(s, [2, 1, 1, 32])))).toBeLessThan(1e-6);
      // ECA: 1-D conv (kernel 3, zero pad 1) along the pooled channels, sigmoid, scale.
      const w = eca.conv.weight.dataSync();
      const yv = y.arraySync() as number[][];
      const gate = yv.map((row) => row.map((_, c) => 1 / (1 + Math.exp(-[0, 1, 2].reduce((a, t) => a + w[t]! * (row[c + t - 1] ?? 0), 0)))));
      expect(maxDiff(eca.forward(x), tf.mul(x, tf.reshape(tf.tensor2d(gate), [2, 1, 1, 32])))).toBeLessThan(1e-6);
    });
    se.dispose();
    eca.dispose();
  });

  it('official initialisation: kaiming-normal fan_out convs, zeroed last BN, randn lambda', () => {
    const m = new ResNetMRLA({ layers: [1, 1, 1, 1], widths: [64, 64, 64, 128], numClasses: 3 });
    const sd = m.stateDict();
    const std = (t: tf.Tensor) => tf.tidy(() => Math.sqrt(tf.moments(t).variance.dataSync()[0]!));
    // layer4.0.conv3: 1x1, out 512 → std √(2/512)
    expect(std(sd['layer4.0.conv3.weight']!)).toBeCloseTo(Math.sqrt(2 / 512), 2);
    // depthwise Wv of 256 channels: fan_out = 256·9
    expect(std(sd['layer3.0.mrla.mrla.Wv.weight']!) / Math.sqrt(2 / (256 * 9))).toBeGreaterThan(0.9);
    expect(tf.tidy(() => tf.max(tf.abs(sd['layer2.0.bn3.weight']!)).dataSync()[0])).toBe(0);
    expect(tf.tidy(() => tf.min(sd['layer2.0.bn_mrla.weight']!).dataSync()[0])).toBe(1);
    expect(std(sd['layer4.0.mrla.lambda_t']!)).toBeGreaterThan(0.8);
    m.dispose();
  });

  it('refuses impossible configurations', () => {
    expect(() => new MRLABasicBlock(64, 64, { groups: 2 })).toThrow(ConfigError);
    expect(() => new MRLABasicBlock(64, 64, { dilation: 2 })).toThrow(/dilation/);
    expect(() => new ResNetMRLA({ block: 'basic', expansion: 4 })).toThrow(/expansion 1/);
    // 16-channel stages have no 32-channel head.
    expect(() => new ResNetMRLA({ widths: [16, 16, 16, 16], expansion: 1, layers: [1, 1, 1, 1] })).toThrow(/cannot have MRLA heads of 32 channels/);
  });
});
