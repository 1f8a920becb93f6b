import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { createModel, getModelCard, listModels, type Module } from '@vit/core';
import { createMRLAVariant, MRLA_CONFIGS, type MRLAVariant } from './index.js';
import { setTestBackend } from '@vit/core/testing';

/** paddle.summary's total (the seed's table): parameters plus BatchNorm running mean/var. */
function paddleCount(m: Module): number {
  return m.numParams() + m.namedBuffers().reduce((s, [, v]) => s + v.size, 0);
}

function withModel<T>(m: Module, fn: (m: Module) => T): T {
  try {
    return fn(m);
  } finally {
    m.dispose();
  }
}

describe('parameter counts', () => {
  // Each variant is built once (random init of 60M parameters is the slow part on cpu).
  const counts = new Map<string, { params: number; paddle: number }>();
  beforeAll(async () => {
    await setTestBackend();
    const before = tf.memory().numTensors;
    for (const name of Object.keys(MRLA_CONFIGS) as MRLAVariant[]) {
      withModel(createModel(name), (m) => counts.set(name, { params: m.numParams(), paddle: paddleCount(m) }));
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('registers every variant', () => {
    expect(listModels('resnet*_mrlal*')).toEqual(
      ['resnet101_mrlal', 'resnet10_mrlal_nano', 'resnet152_mrlal', 'resnet18_mrlal', 'resnet18_mrlal_cifar', 'resnet34_mrlal', 'resnet50_mrlal'],
    );
  });

  it('official resnet50_mrlal / resnet101_mrlal with 1000 classes', () => {
    expect(counts.get('resnet50_mrlal')!.params).toBe(25_738_452);
    expect(counts.get('resnet101_mrlal')!.params).toBe(44_939_646);
  });

  it("resnet18_mrlal_cifar equals the seed's table (paddle.summary counts BatchNorm statistics)", () => {
    expect(counts.get('resnet18_mrlal_cifar')!.paddle).toBe(11_210_514);
    expect(withModel(createModel('resnet18_mrlal_cifar', { mrla: false }), paddleCount)).toBe(11_183_562);
    // Trainable parameters only (PyTorch's sum(p.numel())).
    expect(counts.get('resnet18_mrlal_cifar')!.params).toBe(11_197_074);
  });

  it('without MRLA the nets are the plain torchvision ResNets', () => {
    expect(withModel(createMRLAVariant('resnet18_mrlal', { mrla: false }), (m) => m.numParams())).toBe(11_689_512);
    expect(withModel(createMRLAVariant('resnet50_mrlal', { mrla: false }), (m) => m.numParams())).toBe(25_557_032);
  });

  it('every card states the exact count', () => {
    for (const name of Object.keys(MRLA_CONFIGS) as MRLAVariant[]) {
      const card = getModelCard(name);
      expect(card.arch).toBe('mrla');
      expect(counts.get(name)!.params, name).toBe(card.paramCount);
    }
  });

  it('cards mark the by-analogy variants unofficial', () => {
    expect(getModelCard('resnet50_mrlal').official).toBe(true);
    expect(getModelCard('resnet101_mrlal').official).toBe(true);
    for (const n of ['resnet18_mrlal', 'resnet34_mrlal', 'resnet152_mrlal', 'resnet18_mrlal_cifar', 'resnet10_mrlal_nano']) expect(getModelCard(n).official, n).toBe(false);
    expect(getModelCard('resnet18_mrlal_cifar').inputSize).toEqual([32, 32, 3]);
    expect(getModelCard('resnet18_mrlal_cifar').numClasses).toBe(10);
  });

  it('featureInfo: ImageNet stem strides 4..32, CIFAR stem 1..8', () => {
    withModel(createMRLAVariant('resnet50_mrlal', { layers: [1, 1, 1, 1] }), (m) => {
      expect((m as unknown as { featureInfo: unknown }).featureInfo).toEqual([
        { numChs: 256, reduction: 4, module: 'layer1' },
        { numChs: 512, reduction: 8, module: 'layer2' },
        { numChs: 1024, reduction: 16, module: 'layer3' },
        { numChs: 2048, reduction: 32, module: 'layer4' },
      ]);
    });
    withModel(createMRLAVariant('resnet18_mrlal_cifar', { layers: [1, 1, 1, 1] }), (m) => {
      expect((m as unknown as { featureInfo: Array<{ reduction: number; numChs: number }> }).featureInfo.map((f) => [f.numChs, f.reduction])).toEqual([
        [64, 1],
        [128, 2],
        [256, 4],
        [512, 8],
      ]);
    });
  });
});
