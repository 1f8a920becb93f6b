import { ConfigError } from '../errors.js';
import { CHART_CONFIG, writeVegaChart, type PlotFiles } from './render.js';

/** One epoch's metrics, as the Trainer's history records them (`epoch` 0-based, accuracies in [0, 1]). */
export interface CurveRecord {
  epoch: number;
  trainLoss?: number;
  trainAcc?: number;
  valLoss?: number;
  valAcc?: number;
  /** Optimizer steps done at the end of the epoch (places per-step losses between epochs). */
  step?: number;
}

/** Per-step training losses (the Trainer logs every `logEvery`-th step). */
export interface StepRecord {
  step: number;
  epoch: number;
  loss: number;
}

/** The Trainer's `History` (or just its epoch records). */
export type LearningCurveHistory = readonly CurveRecord[] | { epochs: readonly CurveRecord[]; steps?: readonly StepRecord[] };

export interface LearningCurveOptions {
  title?: string;
  /** Width and height of each of the two panels, in SVG pixels. Default [440, 300]. */
  panelSize?: readonly [number, number];
  /** PNG pixels per SVG pixel. Default 2. */
  scale?: number;
}

const COLORS = { train: '#1f77b4', validation: '#d62728', 'train (per step)': '#9ecae1' };

function finite(v: number | undefined): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** The x position (1-based epochs, fractional in between) of every logged step. */
function stepPositions(epochs: readonly CurveRecord[], steps: readonly StepRecord[]): Array<{ x: number; value: number }> {
  const end = new Map(epochs.filter((r) => finite(r.step)).map((r) => [r.epoch, r.step!] as const));
  const out: Array<{ x: number; value: number }> = [];
  for (const s of steps) {
    const stop = end.get(s.epoch);
    const start = s.epoch === 0 ? 0 : end.get(s.epoch - 1);
    if (!finite(stop) || !finite(start) || stop <= start || !finite(s.loss)) continue;
    out.push({ x: s.epoch + (s.step - start) / (stop - start), value: s.loss });
  }
  return out;
}

/** A y range around `values` that is never empty (a single value gets a margin), optionally clamped. */
function yDomain(values: number[], clamp?: readonly [number, number]): [number, number] {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  const pad = hi - lo > 1e-9 ? 0.04 * (hi - lo) : Math.max(Math.abs(hi) * 0.1, 0.05);
  lo -= pad;
  hi += pad;
  if (clamp) [lo, hi] = [Math.max(lo, clamp[0]), Math.min(hi, clamp[1])];
  return [lo, hi];
}

/** A Vega mark over (x, value) points of `data`, with its own encoding on top. */
function pointMark(type: 'line' | 'symbol', data: string, encode: Record<string, unknown>): Record<string, unknown> {
  return { type, from: { data }, encode: { enter: { x: { scale: 'x', field: 'x' }, y: { scale: 'y', field: 'value' }, ...encode } } };
}

function panel(name: 'loss' | 'accuracy', x: number, w: number, h: number, dataName: string, stepData: string | undefined, domain: [number, number], yFormat?: string): Record<string, unknown> {
  const marks: Record<string, unknown>[] = [];
  if (stepData) {
    marks.push(pointMark('line', stepData, { stroke: { scale: 'color', value: 'train (per step)' }, strokeWidth: { value: 1 }, strokeOpacity: { value: 0.9 } }));
  }
  marks.push(
    {
      type: 'group',
      from: { facet: { name: `${dataName}_series`, data: dataName, groupby: 'series' } },
      marks: [pointMark('line', `${dataName}_series`, { stroke: { scale: 'color', field: 'series' }, strokeWidth: { value: 2.5 } })],
    },
    pointMark('symbol', dataName, {
      fill: { scale: 'color', field: 'series' },
      stroke: { value: 'white' },
      strokeWidth: { value: 1 },
      size: { value: 45 },
      tooltip: { signal: `datum.series + ' ' + format(datum.value, '.4f')` },
    }),
  );
  return {
    type: 'group',
    encode: { enter: { x: { value: x }, y: { value: 0 }, width: { value: w }, height: { value: h } } },
    title: { text: name === 'loss' ? 'Loss' : 'Accuracy', fontSize: 15, anchor: 'middle', offset: 8 },
    scales: [
      { name: 'x', type: 'linear', domain: { signal: 'xDomain' }, range: [0, w], zero: false, nice: false },
      { name: 'y', type: 'linear', domain, range: [h, 0], zero: false, nice: true },
    ],
    axes: [
      { orient: 'bottom', scale: 'x', title: 'epoch', tickMinStep: 1, format: 'd', grid: true, tickCount: { signal: 'xTicks' } },
      { orient: 'left', scale: 'y', title: name === 'loss' ? 'cross-entropy loss' : 'top-1 accuracy', grid: true, ...(yFormat ? { format: yFormat } : {}) },
    ],
    marks,
  };
}

/**
 * Loss and accuracy per epoch, train against validation, side by side (plus the per-step training
 * loss when the history has it). Writes `<path>.png` and `<path>.svg` (the extension of `path`
 * may be either or none) and returns both paths.
 */
export async function plotLearningCurves(history: LearningCurveHistory, path: string, options: LearningCurveOptions = {}): Promise<PlotFiles> {
  const epochs = Array.isArray(history) ? (history as readonly CurveRecord[]) : (history as { epochs: readonly CurveRecord[] }).epochs;
  const steps = Array.isArray(history) ? [] : ((history as { steps?: readonly StepRecord[] }).steps ?? []);
  if (!epochs || epochs.length === 0) throw new ConfigError('plotLearningCurves: the history has no epochs');
  const loss: Array<{ x: number; value: number; series: string }> = [];
  const acc: Array<{ x: number; value: number; series: string }> = [];
  // Accuracies given as percentages are drawn on the same [0, 1] axis.
  const accValues = epochs.flatMap((r) => [r.trainAcc, r.valAcc]).filter(finite);
  const accScale = accValues.some((v) => v > 1) ? 0.01 : 1;
  for (const r of epochs) {
    const x = r.epoch + 1;
    if (finite(r.trainLoss)) loss.push({ x, value: r.trainLoss, series: 'train' });
    if (finite(r.valLoss)) loss.push({ x, value: r.valLoss, series: 'validation' });
    if (finite(r.trainAcc)) acc.push({ x, value: r.trainAcc * accScale, series: 'train' });
    if (finite(r.valAcc)) acc.push({ x, value: r.valAcc * accScale, series: 'validation' });
  }
  if (loss.length === 0 && acc.length === 0) throw new ConfigError('plotLearningCurves: no finite loss or accuracy in the history');
  const stepRows = stepPositions(epochs, steps);
  const [w, h] = options.panelSize ?? [440, 300];
  const last = epochs[epochs.length - 1]!.epoch + 1;
  const first = stepRows.length ? 0 : epochs[0]!.epoch + 1;
  const xs = [first, last === first ? last + 1 : last];
  const bestVal = epochs.filter((r) => finite(r.valAcc)).reduce<CurveRecord | undefined>((b, r) => (!b || r.valAcc! > b.valAcc! ? r : b), undefined);
  const lastRec = epochs[epochs.length - 1]!;
  const subtitle = [
    `${epochs.length} epoch${epochs.length === 1 ? '' : 's'}`,
    finite(lastRec.trainAcc) ? `final train acc ${(lastRec.trainAcc * accScale * 100).toFixed(1)}%` : undefined,
    finite(lastRec.valAcc) ? `final val acc ${(lastRec.valAcc * accScale * 100).toFixed(1)}%` : undefined,
    bestVal ? `best val acc ${(bestVal.valAcc! * accScale * 100).toFixed(1)}% (epoch ${bestVal.epoch + 1})` : undefined,
  ]
    .filter(Boolean)
    .join(' · ');
  const series = ['train', ...(epochs.some((r) => finite(r.valLoss) || finite(r.valAcc)) ? ['validation'] : []), ...(stepRows.length ? ['train (per step)'] : [])];
  const gap = 80;
  const panels = [];
  if (loss.length) {
    const values = [...loss, ...stepRows].map((r) => r.value);
    panels.push(panel('loss', 0, w, h, 'loss', stepRows.length ? 'steps' : undefined, yDomain(values)));
  }
  if (acc.length) {
    panels.push(panel('accuracy', panels.length ? w + gap : 0, w, h, 'acc', undefined, yDomain(acc.map((r) => r.value), [0, 1]), '.0%'));
  }
  const spec = {
    $schema: 'https://vega.github.io/schema/vega/v5.json',
    background: 'white',
    padding: { left: 16, right: 24, top: 16, bottom: 16 },
    width: panels.length * w + (panels.length - 1) * gap,
    height: h,
    autosize: { type: 'pad' },
    config: CHART_CONFIG,
    title: { text: options.title ?? 'Learning curves', subtitle },
    signals: [
      { name: 'xDomain', value: xs },
      { name: 'xTicks', value: Math.min(xs[1]! - xs[0]!, 10) },
    ],
    data: [
      { name: 'loss', values: loss },
      { name: 'acc', values: acc },
      { name: 'steps', values: stepRows },
    ],
    scales: [{ name: 'color', type: 'ordinal', domain: series, range: series.map((s) => COLORS[s as keyof typeof COLORS]) }],
    legends: [{ stroke: 'color', orient: 'top', direction: 'horizontal', symbolType: 'stroke', labelFontSize: 13, labelLimit: 400, offset: 10 }],
    marks: panels,
  };
  return writeVegaChart(spec, path, { scale: options.scale });
}
