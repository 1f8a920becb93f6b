import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FLOAT32_MIN, ShapeError, ConfigError, toPytorchStateDict } from '@vit/core';
import { checkTensorLeaks } from '@vit/core/testing';
import {
  AttentionWithRelPos,
  ConvAttBlock,
  Projection,
  R2LAttentionPlusFFN,
  RegionViTPatchEmbed,
  regionWindowMask,
  relPosIndex,
  toFlattenLayout,
  toSpatialLayout,
} from './index.js';

interface OfficialAux {
  relPosIndex: Record<string, number[]>;
  masks: Array<{ ws: number; hS: number; wS: number; pR: number; pB: number; localShape: [number, number]; mask: string }>;
  failures: Array<{ ws: number; hS: number; wS: number; pR: number; pB: number; fails: boolean }>;
}
// Produced by the official code (test/gen_goldens.py --aux): its rel_pos_index tensors and the masks
// of convert_to_flatten_layout for local maps padded in every way the official code accepts.
const aux = JSON.parse(readFileSync(fileURLToPath(new URL('../test/official/index_and_masks.json', import.meta.url)), 'utf8')) as OfficialAux;

const maxAbs = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);

checkTensorLeaks();

describe('relative position', () => {
  it('relPosIndex equals the official rel_pos_index (offset ws//2, Python wrap-around) for ws 2, 3, 4, 5, 7, 14', () => {
    for (const [ws, ref] of Object.entries(aux.relPosIndex)) {
      expect([...relPosIndex(Number(ws))], `ws ${ws}`).toEqual(ref);
    }
  });

  it('the one-hot expansion of the table equals gathering it with the official index', () => {
    for (const ws of [2, 3, 4, 7]) {
      const attn = new AttentionWithRelPos(6, { numHeads: 3, windowSize: ws });
      tf.tidy(() => {
        attn.rel_pos!.assign(tf.randomNormal(attn.rel_pos!.shape, 0, 1, 'float32', ws));
        const n = ws * ws;
        const gathered = tf.reshape(tf.gather(attn.rel_pos!, tf.tensor1d(aux.relPosIndex[String(ws)]!, 'int32'), 1), [3, n, n]);
        expect(maxAbs(attn.relPosBias(), gathered), `ws ${ws}`).toBe(0);
      });
      attn.dispose();
    }
  });

  it('its gradient reaches every table entry a window uses', () => {
    const attn = new AttentionWithRelPos(4, { numHeads: 2, windowSize: 3 });
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => tf.sum(tf.mul(attn.relPosBias(), tf.randomNormal([2, 9, 9], 0, 1, 'float32', 1))) as tf.Scalar, [attn.rel_pos!]);
      const g = grads[attn.rel_pos!.name]!;
      // Every (2·3−1)² offset occurs for some (query, key) pair of a 3×3 window.
      expect(tf.tidy(() => tf.min(tf.abs(g)).dataSync()[0]!)).toBeGreaterThan(0);
    });
    attn.dispose();
  });
});

describe('window mask', () => {
  it('equals the official convert_to_flatten_layout mask in every padded case', () => {
    expect(aux.masks.length).toBeGreaterThanOrEqual(10);
    for (const c of aux.masks) {
      const m = regionWindowMask(c.ws, c.hS, c.wS, c.pR, c.pB);
      expect([...m].map((v) => (v ? '1' : '0')).join(''), JSON.stringify({ ...c, mask: undefined })).toBe(c.mask);
    }
  });

  it('refuses the right paddings the official construction fails on', () => {
    for (const c of aux.failures) {
      expect(c.fails).toBe(true);
      expect(() => regionWindowMask(c.ws, c.hS, c.wS, c.pR, c.pB)).toThrow(ShapeError);
    }
  });

  it('toFlattenLayout builds the official mask from the maps and pads/crops as F.pad', () => {
    for (const c of aux.masks) {
      const [h, w] = c.localShape;
      tf.tidy(() => {
        const { tokens, info } = toFlattenLayout(tf.zeros([2, c.hS, c.wS, 3]), tf.ones([2, h, w, 3]), c.ws);
        expect([info.pR, info.pB]).toEqual([c.pR, c.pB]);
        expect(tokens.shape).toEqual([2 * c.hS * c.wS, 1 + c.ws * c.ws, 3]);
        expect([...info.mask!.dataSync()].map((v) => (v ? '1' : '0')).join('')).toBe(c.mask);
        // Padding is zeros, cropping removes rows: the ones left are exactly the valid local tokens.
        const valid = Math.min(h, c.hS * c.ws) * Math.min(w, c.wS * c.ws) * 2 * 3;
        expect(tf.sum(tf.slice(tokens, [0, 1, 0], [-1, -1, -1])).dataSync()[0]).toBe(valid);
        const [, local] = toSpatialLayout(tokens, info);
        expect(local.shape).toEqual([2, c.pB > 0 ? c.hS * c.ws - c.pB : c.hS * c.ws, c.pR > 0 ? c.wS * c.ws - c.pR : c.wS * c.ws, 3]);
        info.mask!.dispose();
      });
    }
  });
});

describe('flatten / spatial layouts', () => {
  it('orders windows row-major over the regional grid (batch-major) and tokens row-major inside a window, like F.unfold', () => {
    const ws = 2;
    tf.tidy(() => {
      const [b, hr, wr, c] = [2, 2, 3, 2];
      const local = tf.reshape(tf.range(0, b * hr * ws * wr * ws * c), [b, hr * ws, wr * ws, c]);
      const regional = tf.mul(tf.reshape(tf.range(0, b * hr * wr * c), [b, hr, wr, c]), -1);
      const { tokens, info } = toFlattenLayout(regional, local, ws);
      expect(info.mask).toBeNull();
      const t = tokens.arraySync() as number[][][];
      const l = local.arraySync() as number[][][][];
      const r = regional.arraySync() as number[][][][];
      for (let bi = 0; bi < b; bi++)
        for (let y = 0; y < hr; y++)
          for (let x = 0; x < wr; x++) {
            const win = t[(bi * hr + y) * wr + x]!;
            expect(win[0]).toEqual(r[bi]![y]![x]);
            for (let i = 0; i < ws; i++) for (let j = 0; j < ws; j++) expect(win[1 + i * ws + j]).toEqual(l[bi]![y * ws + i]![x * ws + j]);
          }
      const [r2, l2] = toSpatialLayout(tokens, info);
      expect(maxAbs(r2, regional)).toBe(0);
      expect(maxAbs(l2, local)).toBe(0);
    });
  });

  it('refuses a local map that is several windows per regional token (the official rel_pos reshape fails there)', () => {
    tf.tidy(() => {
      expect(() => toFlattenLayout(tf.zeros([1, 2, 2, 4]), tf.zeros([1, 8, 8, 4]), 2)).toThrow(/not the window 2x2/);
      expect(() => toFlattenLayout(tf.zeros([1, 2, 2, 4]), tf.zeros([1, 4, 4, 5]), 2)).toThrow(ShapeError);
    });
  });
});

describe('AttentionWithRelPos', () => {
  it('matches a direct computation: (q·kᵀ)·scale, rel_pos on the local-local block, masked logits REPLACED by float32 min', () => {
    const ws = 2;
    const n = 1 + ws * ws;
    const attn = new AttentionWithRelPos(8, { numHeads: 2, windowSize: ws, qkvBias: true, qkScale: 0.7 });
    // 2x2 windows, one padded column: window 1 (top right) masks its right column.
    const mask = tf.tensor3d(regionWindowMask(ws, 2, 2, 1, 0), [4, n, n]);
    tf.tidy(() => {
      attn.rel_pos!.assign(tf.randomNormal(attn.rel_pos!.shape, 0, 1, 'float32', 4));
      const x = tf.randomNormal([4, n, 8], 0, 1, 'float32', 5);
      const got = attn.attentionWeights(x, { patchAttn: true, mask });
      // Reference: plain loops over the same weights.
      const qkv = tf.add(tf.matMul(tf.reshape(x, [4 * n, 8]), attn.qkv.weight), attn.qkv.bias!).arraySync() as number[][];
      const table = attn.rel_pos!.arraySync() as number[][];
      const index = relPosIndex(ws);
      const m = mask.arraySync() as number[][][];
      const want: number[][][][] = [];
      for (let b = 0; b < 4; b++) {
        want.push([]);
        for (let h = 0; h < 2; h++) {
          const rows: number[][] = [];
          for (let i = 0; i < n; i++) {
            const logits: number[] = [];
            for (let j = 0; j < n; j++) {
              let s = 0;
              for (let d = 0; d < 4; d++) s += qkv[b * n + i]![h * 4 + d]! * qkv[b * n + j]![8 + h * 4 + d]!;
              s *= 0.7;
              if (i > 0 && j > 0) s += table[h]![index[(i - 1) * ws * ws + (j - 1)]!]!;
              if (m[b]![i]![j] === 0) s = FLOAT32_MIN;
              logits.push(s);
            }
            const mx = Math.max(...logits);
            const e = logits.map((v) => Math.exp(v - mx));
            const z = e.reduce((a, v) => a + v, 0);
            rows.push(e.map((v) => v / z));
          }
          want[b]!.push(rows);
        }
      }
      expect(maxAbs(got, tf.tensor4d(want))).toBeLessThan(1e-6);
      // Rows of padded local queries are fully masked: uniform, not NaN.
      const w = got.arraySync() as number[][][][];
      for (const v of w[1]![0]![2]!) expect(v).toBeCloseTo(1 / n, 6);
    });
    mask.dispose();
    attn.dispose();
  });

  it('uses no relative position for the regional attention and checks its inputs', () => {
    const attn = new AttentionWithRelPos(4, { numHeads: 2, windowSize: 2 });
    tf.tidy(() => {
      // 7 tokens: not a window, fine without patchAttn.
      expect(attn.forward(tf.ones([1, 7, 4])).shape).toEqual([1, 7, 4]);
      expect(() => attn.forward(tf.ones([1, 7, 4]), { patchAttn: true })).toThrow(/does not match the 2x2/);
      expect(() => attn.forward(tf.ones([1, 5, 3]))).toThrow(ShapeError);
    });
    expect(() => new AttentionWithRelPos(6, { numHeads: 4 })).toThrow(ConfigError);
    attn.dispose();
  });
});

describe('Projection', () => {
  it('is ONE module under two names: proj and proj_cls in the state dict, parameters counted once', () => {
    const p = new Projection(4, 8, { mode: 'sc' });
    const keys = Object.keys(p.stateDict());
    expect(keys).toEqual(['proj.0.weight', 'proj.0.bias', 'proj.2.weight', 'proj.2.bias', 'proj_cls.0.weight', 'proj_cls.0.bias', 'proj_cls.2.weight', 'proj_cls.2.bias']);
    expect(p.parameters()).toHaveLength(4);
    expect(p.numParams()).toBe(2 * 4 + 8 * 9 + 8);
    expect(p.proj).toBe(p.proj_cls);
    const sd = toPytorchStateDict(p);
    expect(sd['proj.2.weight']!.shape).toEqual([8, 1, 3, 3]);
    expect(sd['proj_cls.0.weight']!.shape).toEqual([1, 4, 1, 1]);
    expect(maxAbs(sd['proj.2.weight']!, sd['proj_cls.2.weight']!)).toBe(0);
    for (const t of Object.values(sd)) t.dispose();
    p.dispose();
  });

  it("modes: 'c' same width = identity (no keys), 'c' wider = 1x1 grouped, 's' alone = empty, 'sc' halves the size", () => {
    const same = new Projection(4, 4, { mode: 'c' });
    expect(Object.keys(same.stateDict())).toEqual([]);
    const wide = new Projection(4, 8, { mode: 'c' });
    expect(wide.stateDict()['proj.2.weight']!.shape).toEqual([1, 1, 4, 2]);
    const empty = new Projection(4, 4, { mode: 's' });
    expect(Object.keys(empty.stateDict())).toEqual([]);
    const sc = new Projection(4, 4, { mode: 'sc' });
    tf.tidy(() => {
      const r = tf.randomNormal([1, 3, 5, 4]);
      const l = tf.randomNormal([1, 7, 9, 4]);
      const [r1, l1] = same.forward(r, l);
      expect(maxAbs(r1, r) + maxAbs(l1, l)).toBe(0);
      expect(wide.forward(r, l).map((t) => t.shape)).toEqual([[1, 3, 5, 8], [1, 7, 9, 8]]);
      expect(sc.forward(r, l).map((t) => t.shape)).toEqual([[1, 2, 3, 4], [1, 4, 5, 4]]);
    });
    expect(() => new Projection(4, 6, { mode: 'sc' })).toThrow(ConfigError);
    expect(() => new Projection(4, 8, { mode: 's' })).toThrow(ConfigError);
    for (const m of [same, wide, empty, sc]) m.dispose();
  });
});

describe('RegionViTPatchEmbed', () => {
  it("extra padding pads BOTH axes symmetrically when either is not a multiple (a multiple axis gains a whole patch)", () => {
    const pe = new RegionViTPatchEmbed({ patchSize: 8, embedDim: 4, patchConvType: 'linear' });
    expect(pe.extraPadding(16, 16)).toEqual([[0, 0], [0, 0]]);
    expect(pe.extraPadding(20, 16)).toEqual([[2, 2], [4, 4]]);
    expect(pe.extraPadding(19, 21)).toEqual([[2, 3], [1, 2]]);
    tf.tidy(() => {
      expect(pe.forward(tf.ones([1, 20, 16, 3]), true).shape).toEqual([1, 3, 3, 4]);
      // Without extra padding the conv floors, as PyTorch.
      expect(pe.forward(tf.ones([1, 20, 16, 3])).shape).toEqual([1, 2, 2, 4]);
      expect(pe.outputSize(20, 16, true)).toEqual([3, 3]);
    });
    pe.dispose();
  });

  it("has the official '3conv' (patch 4 only) and '1conv' trees", () => {
    const three = new RegionViTPatchEmbed({ patchSize: 4, embedDim: 16, patchConvType: '3conv' });
    expect(Object.entries(three.stateDict()).map(([k, v]) => `${k}:${v.shape.join('x')}`)).toEqual([
      'proj.0.weight:3x3x3x4',
      'proj.0.bias:4',
      'proj.1.weight:1x4x1x1',
      'proj.1.bias:1x4x1x1',
      'proj.3.weight:3x3x4x8',
      'proj.3.bias:8',
      'proj.4.weight:1x8x1x1',
      'proj.4.bias:1x8x1x1',
      'proj.6.weight:3x3x8x16',
      'proj.6.bias:16',
    ]);
    const one = new RegionViTPatchEmbed({ patchSize: 4, embedDim: 16, patchConvType: '1conv' });
    tf.tidy(() => {
      expect(three.forward(tf.ones([1, 37, 40, 3])).shape).toEqual([1, 10, 10, 16]);
      expect(one.forward(tf.ones([1, 37, 40, 3])).shape).toEqual([1, 9, 10, 16]);
      expect(one.outputSize(37, 40)).toEqual([9, 10]);
    });
    expect(() => new RegionViTPatchEmbed({ patchSize: 8, embedDim: 16, patchConvType: '3conv' })).toThrow(/patch size 4/);
    three.dispose();
    one.dispose();
  });
});

describe('R2LAttentionPlusFFN and ConvAttBlock', () => {
  it('the regional attention mixes regional tokens across windows; the window attention only inside a window', () => {
    const blk = new R2LAttentionPlusFFN(8, { windowSize: 2, numHeads: 2, mlpRatio: 2 });
    blk.eval();
    tf.tidy(() => {
      const x = tf.randomNormal([4, 5, 8], 0, 1, 'float32', 9); // 1 image, 2x2 regional grid
      const y = blk.forward(x, { batch: 1 });
      // Changing a local token of window 3 changes window 3 only.
      const bump = (token: number) => {
        const d = tf.buffer([4, 5, 8]);
        d.set(1, 3, token, 0);
        return tf.add(x, d.toTensor());
      };
      const x2 = bump(3);
      const d = tf.max(tf.abs(tf.sub(blk.forward(x2, { batch: 1 }), y)), [1, 2]).arraySync() as number[];
      expect(d.slice(0, 3)).toEqual([0, 0, 0]);
      expect(d[3]).toBeGreaterThan(0);
      // Changing the regional token of window 3 changes every window (regional attention).
      const x3 = bump(0);
      const d3 = tf.max(tf.abs(tf.sub(blk.forward(x3, { batch: 1 }), y)), [1, 2]).arraySync() as number[];
      for (const v of d3) expect(v).toBeGreaterThan(0);
    });
    tf.tidy(() => {
      expect(() => blk.forward(tf.zeros([3, 5, 8]), { batch: 2 })).toThrow(ShapeError);
    });
    blk.dispose();
  });

  it('a stage keeps every tensor ≤ 5-D and crops its padding: output maps have the input size', () => {
    const stage = new ConvAttBlock(4, 8, { windowSize: 3, numBlocks: 2, numHeads: 2, pool: 'sc', peg: true });
    expect(Object.keys(stage.stateDict()).filter((k) => k.startsWith('peg'))).toEqual(['peg.weight']);
    tf.tidy(() => {
      // Regional 3x2 → 2x1, local 10x4 → 5x2: padded to 6x3 (bottom and right), then cropped back.
      const [r, l] = stage.forward(tf.randomNormal([2, 3, 2, 4]), tf.randomNormal([2, 10, 4, 4]));
      expect(r.shape).toEqual([2, 2, 1, 8]);
      expect(l.shape).toEqual([2, 5, 2, 8]);
    });
    stage.dispose();
  });
});
