import { ConfigError } from '../errors.js';
import { CHART_CONFIG, writeVegaChart, type PlotFiles } from './render.js';

export interface ConfusionMatrixOptions {
  title?: string;
  /** Colour by each row's fraction (recall per true class) instead of raw counts. Default true. */
  normalize?: boolean;
  /** Side of one cell in SVG pixels. Default: 46, smaller for many classes. */
  cellSize?: number;
  /** PNG pixels per SVG pixel. Default 2. */
  scale?: number;
}

/**
 * A confusion matrix heat map, `matrix[true][predicted]` (as the Trainer's `confusionMatrix`):
 * rows are true classes, columns predictions, each cell shows its count, colour shows the row
 * fraction. Writes `<path>.png` and `<path>.svg`.
 */
export async function plotConfusionMatrix(
  matrix: readonly (readonly number[])[],
  classNames: readonly string[],
  path: string,
  options: ConfusionMatrixOptions = {},
): Promise<PlotFiles> {
  const K = classNames.length;
  if (K === 0 || matrix.length !== K || matrix.some((row) => row.length !== K)) {
    throw new ConfigError(`plotConfusionMatrix: expected a ${K}x${K} matrix for ${K} class names, got ${matrix.length}x${matrix[0]?.length ?? 0}`);
  }
  if (matrix.some((row) => row.some((v) => !(Number.isFinite(v) && v >= 0)))) {
    throw new ConfigError('plotConfusionMatrix: counts must be finite and non-negative');
  }
  const normalize = options.normalize ?? true;
  // Class names must be unique for band scales; number duplicates.
  const names = classNames.map((n, i) => (classNames.indexOf(n) === i ? n : `${n} (${i})`));
  const cells: Array<{ actual: string; predicted: string; count: number; fraction: number; diagonal: boolean }> = [];
  let total = 0;
  let correct = 0;
  matrix.forEach((row, t) => {
    const rowSum = row.reduce((a, b) => a + b, 0);
    row.forEach((count, p) => {
      total += count;
      if (t === p) correct += count;
      cells.push({ actual: names[t]!, predicted: names[p]!, count, fraction: rowSum ? count / rowSum : 0, diagonal: t === p });
    });
  });
  const cell = options.cellSize ?? (K <= 12 ? 46 : K <= 30 ? 24 : 12);
  const side = cell * K;
  const colorField = normalize ? 'fraction' : 'count';
  const maxCount = Math.max(1, ...cells.map((c) => c.count));
  const showText = cell >= 20;
  const accuracy = total ? `${((100 * correct) / total).toFixed(1)}% correct` : 'no examples';
  const spec = {
    $schema: 'https://vega.github.io/schema/vega/v5.json',
    background: 'white',
    padding: { left: 16, right: 16, top: 16, bottom: 16 },
    width: side,
    height: side,
    autosize: { type: 'pad' },
    config: CHART_CONFIG,
    title: { text: options.title ?? 'Confusion matrix', subtitle: `${total} examples · ${accuracy}${normalize ? ' · colour = fraction of the true class' : ''}` },
    data: [{ name: 'cells', values: cells }],
    scales: [
      { name: 'x', type: 'band', domain: names, range: [0, side], padding: 0.04 },
      { name: 'y', type: 'band', domain: names, range: [0, side], padding: 0.04 },
      { name: 'color', type: 'linear', domain: [0, normalize ? 1 : maxCount], range: { scheme: 'blues' }, zero: true },
    ],
    axes: [
      { orient: 'left', scale: 'y', title: 'true class', domain: false, ticks: false, labelPadding: 6, labelLimit: 200 },
      { orient: 'bottom', scale: 'x', title: 'predicted class', domain: false, ticks: false, labelAngle: -40, labelAlign: 'right', labelBaseline: 'top', labelPadding: 6, labelLimit: 200 },
    ],
    legends: [
      { fill: 'color', type: 'gradient', title: normalize ? 'fraction' : 'count', orient: 'right', gradientLength: Math.min(side, 240), ...(normalize ? { format: '.0%' } : {}) },
    ],
    marks: [
      {
        type: 'rect',
        from: { data: 'cells' },
        encode: {
          enter: {
            x: { scale: 'x', field: 'predicted' },
            width: { scale: 'x', band: 1 },
            y: { scale: 'y', field: 'actual' },
            height: { scale: 'y', band: 1 },
            fill: { scale: 'color', field: colorField },
            stroke: { signal: "datum.diagonal ? '#08306b' : null" },
            strokeWidth: { value: 1.5 },
            tooltip: { signal: "datum.actual + ' → ' + datum.predicted + ': ' + datum.count" },
          },
        },
      },
      ...(showText
        ? [
            {
              type: 'text',
              from: { data: 'cells' },
              encode: {
                enter: {
                  x: { scale: 'x', field: 'predicted', band: 0.5 },
                  y: { scale: 'y', field: 'actual', band: 0.5 },
                  align: { value: 'center' },
                  baseline: { value: 'middle' },
                  text: { signal: "datum.count > 0 ? format(datum.count, 'd') : ''" },
                  fontSize: { value: cell >= 40 ? 13 : 10 },
                  fill: { signal: `datum.${colorField} > ${normalize ? 0.55 : maxCount * 0.55} ? 'white' : '#222'` },
                },
              },
            },
          ]
        : []),
    ],
  };
  return writeVegaChart(spec, path, { scale: options.scale });
}
