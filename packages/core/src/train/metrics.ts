import { ConfigError } from '../errors.js';

/**
 * Counts, for each k in `ks`, the examples whose label is among the first k entries of their row
 * of `topIndices` (row-major `[n, kMax]`, best first, as `tf.topk(…).indices`).
 */
export function topKCorrect(topIndices: ArrayLike<number>, labels: ArrayLike<number>, kMax: number, ks: readonly number[]): number[] {
  const n = labels.length;
  if (topIndices.length !== n * kMax) throw new ConfigError(`topKCorrect: ${topIndices.length} indices for ${n} labels × k=${kMax}`);
  const counts = ks.map(() => 0);
  for (let i = 0; i < n; i++) {
    const label = labels[i]!;
    let rank = -1;
    for (let j = 0; j < kMax; j++) {
      if (topIndices[i * kMax + j] === label) {
        rank = j;
        break;
      }
    }
    if (rank < 0) continue;
    ks.forEach((k, q) => {
      if (rank < k) counts[q]! += 1;
    });
  }
  return counts;
}

/** `m[true][predicted]` counts over `numClasses` classes. */
export function confusionMatrix(labels: ArrayLike<number>, predictions: ArrayLike<number>, numClasses: number): number[][] {
  if (labels.length !== predictions.length) throw new ConfigError(`confusionMatrix: ${labels.length} labels but ${predictions.length} predictions`);
  if (!(Number.isInteger(numClasses) && numClasses > 0)) throw new ConfigError(`confusionMatrix numClasses must be a positive integer, got ${numClasses}`);
  const m = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < labels.length; i++) {
    const t = labels[i]!;
    const p = predictions[i]!;
    if (!(t >= 0 && t < numClasses && p >= 0 && p < numClasses)) {
      throw new ConfigError(`confusionMatrix: example ${i} has label ${t} / prediction ${p}, outside 0..${numClasses - 1}`);
    }
    m[t]![p]! += 1;
  }
  return m;
}

/** Per-class recall (correct / examples of the class; NaN for a class with no examples) from a confusion matrix. */
export function perClassAccuracy(matrix: number[][]): number[] {
  return matrix.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    return total === 0 ? NaN : row[i]! / total;
  });
}
