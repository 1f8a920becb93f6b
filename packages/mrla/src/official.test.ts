import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm2d, ConfigError, getArchitecture, ShapeError } from '@vit/core';
import { mrlaFromOfficialConfig, MRLABottleneck, mrlaOptionsFromOfficial, ResNetMRLA } from './index.js';
import { setTestBackend } from '@vit/core/testing';

/** A small official config (expansion 1 like the goldens) to exercise the constructor paths. */
const SMALL = { block: 'MRLA_Bottleneck', layers: [1, 1, 1, 1], num_classes: 7, groups: 1, width_per_group: 16 };
const OVERRIDES = { overrides: { 'MRLA_Bottleneck.expansion': 1 } };

/** PyTorch output size of a k×k conv/pool with stride s and padding p. */
const out = (n: number, k: number, s: number, p: number) => Math.floor((n + 2 * p - k) / s) + 1;

function shapesOf(m: ResNetMRLA): Record<string, number[]> {
  return Object.fromEntries(Object.entries(m.stateDict()).map(([k, v]) => [k, v.shape]));
}

describe('official config mapping', () => {
  beforeAll(async () => {
    await setTestBackend();
  });

  it('is registered as the mrla architecture', () => {
    const a = getArchitecture('mrla');
    const m = a.fromOfficialConfig(SMALL, OVERRIDES);
    expect(m).toBeInstanceOf(ResNetMRLA);
    m.dispose();
  });

  it('maps every kwarg of ResNet_mrlal', () => {
    const o = mrlaOptionsFromOfficial(
      {
        block: 'MRLA_Bottleneck',
        layers: [3, 4, 6, 3],
        num_classes: 10,
        SE: true,
        ECA: [null, 3, 5, null],
        zero_init_last_bn: false,
        groups: 32,
        width_per_group: 4,
        replace_stride_with_dilation: [false, true, true],
        norm_layer: 'functools.partial(<class \'torch.nn.modules.batchnorm.BatchNorm2d\'>, eps=0.001, momentum=0.01)',
        drop_rate: 0.2,
        drop_path: 0.1,
      },
      { overrides: { 'MRLA_Bottleneck.expansion': 2, 'mrla_module.dim_perhead': 16 } },
    );
    expect(o).toMatchObject({
      block: 'bottleneck',
      layers: [3, 4, 6, 3],
      numClasses: 10,
      se: true,
      eca: [null, 3, 5, null],
      zeroInitLastBn: false,
      groups: 32,
      widthPerGroup: 4,
      replaceStrideWithDilation: [false, true, true],
      dropRate: 0.2,
      dropPath: 0.1,
      expansion: 2,
      dimPerhead: 16,
    });
    const bn = o.normLayer!(8) as BatchNorm2d;
    expect([bn.eps, bn.momentum]).toEqual([0.001, 0.01]);
    bn.dispose();
    const plain = mrlaOptionsFromOfficial({ ...SMALL, norm_layer: 'torch.nn.BatchNorm2d' }).normLayer!(4) as BatchNorm2d;
    expect([plain.eps, plain.momentum]).toEqual([1e-5, 0.1]);
    plain.dispose();
  });

  it('refuses what it cannot build, naming it', () => {
    expect(() => mrlaOptionsFromOfficial({ ...SMALL, foo: 1 })).toThrow(/ResNet_mrlal\(\) got unexpected keyword argument\(s\) foo/);
    expect(() => mrlaOptionsFromOfficial(SMALL, { overrides: { 'MRLA_Bottleneck.bar': 1 } })).toThrow(/unsupported override/);
    expect(() => mrlaOptionsFromOfficial({ ...SMALL, norm_layer: 'torch.nn.GroupNorm' })).toThrow(/unsupported norm_layer/);
    expect(mrlaOptionsFromOfficial({ ...SMALL, block: "<class 'models.resnet_mrla_light.MRLA_Bottleneck'>" }).block).toBe('bottleneck');
    expect(() => mrlaOptionsFromOfficial({ ...SMALL, block: 'SomethingElse' })).toThrow(ConfigError);
    expect(() => mrlaFromOfficialConfig({ ...SMALL, layers: [1, 1, 1] })).toThrow(/4 non-negative integers/);
    expect(() => mrlaFromOfficialConfig({ ...SMALL, replace_stride_with_dilation: [true] })).toThrow(/3-element/);
  });

  it('expansion 4 by default (the official class attribute), overridable', () => {
    const m4 = mrlaFromOfficialConfig(SMALL);
    expect(m4.numFeatures).toBe(2048);
    expect(MRLABottleneck.expansion).toBe(4);
    m4.dispose();
    const m1 = mrlaFromOfficialConfig(SMALL, OVERRIDES);
    expect(m1.numFeatures).toBe(512);
    m1.dispose();
  });

  it('SE and ECA build the official keys and run', () => {
    const m = mrlaFromOfficialConfig({ ...SMALL, SE: true, ECA: [3, null, 7, null] }, OVERRIDES);
    const s = shapesOf(m);
    expect(s['layer1.0.se.fc.0.weight']).toEqual([64, 4]); // ours [in, out] = official [4, 64] transposed
    expect(s['layer1.0.se.fc.2.weight']).toEqual([4, 64]);
    expect(s['layer1.0.eca.conv.weight']).toEqual([3, 1, 1]);
    expect(s['layer3.0.eca.conv.weight']).toEqual([7, 1, 1]);
    expect(s['layer2.0.eca.conv.weight']).toBeUndefined();
    const keys = Object.keys(s).filter((k) => k.startsWith('layer1.0.'));
    // Official registration order: …bn3, downsample, se, eca, mrla, bn_mrla.
    expect(keys.indexOf('layer1.0.bn3.running_var')).toBeLessThan(keys.indexOf('layer1.0.se.fc.0.weight'));
    expect(keys.indexOf('layer1.0.se.fc.2.weight')).toBeLessThan(keys.indexOf('layer1.0.eca.conv.weight'));
    expect(keys.indexOf('layer1.0.eca.conv.weight')).toBeLessThan(keys.indexOf('layer1.0.mrla.lambda_t'));
    m.eval();
    tf.tidy(() => {
      expect(m.forward(tf.randomNormal([2, 32, 32, 3]) as tf.Tensor4D).shape).toEqual([2, 7]);
    });
    m.dispose();
  });

  it('replace_stride_with_dilation keeps the resolution and dilates the 3x3 convs', () => {
    const m = mrlaFromOfficialConfig({ ...SMALL, replace_stride_with_dilation: [false, true, true] }, OVERRIDES);
    expect(m.featureInfo.map((f) => f.reduction)).toEqual([4, 8, 8, 8]);
    const l3 = m.stages[2]!.at(0) as MRLABottleneck;
    expect([l3.conv2.stride, l3.conv2.dilation, l3.conv2.padding]).toEqual([[1, 1], [1, 1], [1, 1]]); // first block: previous dilation
    const l4 = m.stages[3]!.at(0) as MRLABottleneck;
    expect([l4.conv2.stride, l4.conv2.dilation]).toEqual([[1, 1], [2, 2]]);
    m.eval();
    tf.tidy(() => {
      const f = m.forwardIntermediates(tf.randomNormal([1, 32, 32, 3]) as tf.Tensor4D);
      expect(f.map((t) => t.shape)).toEqual([
        [1, 8, 8, 64],
        [1, 4, 4, 128],
        [1, 4, 4, 256],
        [1, 4, 4, 512],
      ]);
    });
    m.dispose();
  });

  it('odd and rectangular inputs follow the official size arithmetic', () => {
    const m = mrlaFromOfficialConfig(SMALL, OVERRIDES);
    m.eval();
    for (const [h, w] of [
      [37, 29],
      [33, 64],
      [5, 3],
      [1, 1],
    ]) {
      let hh = out(out(h, 7, 2, 3), 3, 2, 1);
      let ww = out(out(w, 7, 2, 3), 3, 2, 1);
      const want: number[][] = [[1, hh, ww, 64]];
      for (const c of [128, 256, 512]) {
        hh = out(hh, 3, 2, 1);
        ww = out(ww, 3, 2, 1);
        want.push([1, hh, ww, c]);
      }
      tf.tidy(() => {
        const x = tf.randomNormal([1, h, w, 3]) as tf.Tensor4D;
        expect(m.forwardIntermediates(x).map((t) => t.shape), `${h}x${w}`).toEqual(want);
        const y = m.forward(x);
        expect(y.shape).toEqual([1, 7]);
        expect(tf.all(tf.isFinite(y)).dataSync()[0]).toBe(1);
      });
    }
    m.dispose();
  });

  it('checks inputs with ShapeError naming expected vs got', () => {
    const m = mrlaFromOfficialConfig(SMALL, OVERRIDES);
    tf.tidy(() => {
      expect(() => m.forward(tf.zeros([1, 8, 8, 1]) as tf.Tensor4D)).toThrow(/expected 3 input channels.*\[1,8,8,1\]/);
      expect(() => m.forward(tf.zeros([8, 8, 3]) as unknown as tf.Tensor4D)).toThrow(ShapeError);
    });
    m.dispose();
  });

  it('drop_rate and drop_path act only in training', () => {
    const m = mrlaFromOfficialConfig({ ...SMALL, drop_rate: 0.5, drop_path: 0.5 }, OVERRIDES);
    m.eval();
    tf.tidy(() => {
      const x = tf.randomNormal([2, 16, 16, 3]) as tf.Tensor4D;
      expect(tf.max(tf.abs(tf.sub(m.forward(x), m.forward(x)))).dataSync()[0]).toBe(0);
    });
    m.dispose();
  });
});
