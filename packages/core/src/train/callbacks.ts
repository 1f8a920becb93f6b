import { ConfigError } from '../errors.js';
import { nodeApi } from '../data/node.js';
import { writeFileAtomic } from '../weights/io.js';
import type { Callback, EpochInfo, EpochRecord, FitResult, FitStartInfo, MetricName, StepInfo, Trainer } from './trainer.js';

/** Where progress goes: anything with `write` (process.stderr, a test buffer). */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

function defaultStream(): ProgressStream {
  const p = (globalThis as { process?: { stderr?: ProgressStream } }).process;
  if (p?.stderr) return p.stderr;
  return { write: (s: string) => console.log(s.replace(/\n$/, '')), isTTY: false };
}

function clock(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}` : `${m}:${String(r).padStart(2, '0')}`;
}

const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
const lrText = (v: number) => v.toExponential(2);

/** One line summarising an epoch, as the progress bar prints it (also handy for CLI logs). */
export function formatEpochRecord(r: EpochRecord, epochs?: number): string {
  const parts = [
    `epoch ${r.epoch + 1}${epochs ? `/${epochs}` : ''}`,
    `train loss ${r.trainLoss.toFixed(4)} acc ${pct(r.trainAcc)}`,
  ];
  if (r.valLoss !== undefined) parts.push(`val loss ${r.valLoss.toFixed(4)} acc ${pct(r.valAcc!)} top5 ${pct(r.valTop5!)}`);
  parts.push(`lr ${lrText(r.lr)}`);
  parts.push(`${r.seconds.toFixed(1)}s ${r.trainImagesPerSecond.toFixed(1)} img/s${r.valImagesPerSecond !== undefined ? ` (eval ${r.valImagesPerSecond.toFixed(1)} img/s)` : ''}`);
  return parts.join(' | ');
}

export interface ProgressBarOptions {
  /** Default: process.stderr (console in a browser). */
  stream?: ProgressStream;
  /** Redraw one line in place (default: `stream.isTTY`). Otherwise plain lines. */
  tty?: boolean;
  /** Plain-line mode: a line every this many batches (default: about ten per epoch). */
  printEvery?: number;
  /** Plain-line mode: also a line when this many seconds passed since the last (default 60; slow steps still show progress). */
  printSeconds?: number;
  /** Bar width in characters (TTY mode, default 24). */
  width?: number;
  /** Print the per-epoch summary line too (default true; false when something else prints it, as `vit train` does on stdout). */
  epochLines?: boolean;
}

/**
 * Progress per step (items/s, ETA, running loss and accuracy, lr) and a summary line per epoch.
 * On a TTY the step line is redrawn in place; elsewhere (CI logs, files) it prints plain lines.
 */
export class ProgressBar implements Callback {
  private readonly stream: ProgressStream;
  private readonly tty: boolean;
  private readonly printEvery: number | undefined;
  private readonly printSeconds: number;
  private lastPrint = 0;
  private readonly width: number;
  private readonly epochLines: boolean;
  private epochs = 0;
  private started = 0;
  private drawn = false;

  constructor(options: ProgressBarOptions = {}) {
    this.stream = options.stream ?? defaultStream();
    this.tty = options.tty ?? !!this.stream.isTTY;
    this.printEvery = options.printEvery;
    this.printSeconds = options.printSeconds ?? 60;
    this.width = options.width ?? 24;
    this.epochLines = options.epochLines ?? true;
  }

  onFitStart(_t: Trainer, info: FitStartInfo): void {
    this.epochs = info.epochs;
    if (info.startEpoch > 0 || info.startBatch > 0) {
      this.stream.write(`resuming at epoch ${info.startEpoch + 1}/${info.epochs}, batch ${info.startBatch}/${info.stepsPerEpoch}\n`);
    }
  }

  onEpochStart(_t: Trainer, info: EpochInfo): void {
    this.started = info.startBatch;
    this.lastPrint = 0;
  }

  onBatchEnd(_t: Trainer, s: StepInfo): void {
    const done = s.batch + 1;
    const rate = s.seconds > 0 ? s.examples / s.seconds : 0;
    const perBatch = s.seconds / Math.max(1, done - this.started);
    const eta = clock((s.numBatches - done) * perBatch);
    const stats = `${rate.toFixed(1)} img/s ETA ${eta} loss ${s.epochLoss.toFixed(4)} acc ${pct(s.epochAcc)} lr ${lrText(s.lr)}`;
    const head = `epoch ${s.epoch + 1}/${this.epochs}`;
    if (this.tty) {
      const filled = Math.round((this.width * done) / s.numBatches);
      const bar = `[${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? (done === s.numBatches ? '=' : '>') : ''}${' '.repeat(this.width - filled)}]`;
      let line = `${head} ${bar} ${done}/${s.numBatches} ${stats}`;
      if (this.stream.columns && line.length >= this.stream.columns) line = line.slice(0, this.stream.columns - 1);
      this.stream.write(`\r\x1b[2K${line}`);
      this.drawn = true;
      return;
    }
    const every = this.printEvery ?? Math.max(1, Math.round(s.numBatches / 10));
    if (done % every === 0 || done === s.numBatches || s.seconds - this.lastPrint >= this.printSeconds) {
      this.lastPrint = s.seconds;
      this.stream.write(`${head} step ${done}/${s.numBatches} (${((100 * done) / s.numBatches).toFixed(0)}%) ${stats}\n`);
    }
  }

  private clear(): void {
    if (this.tty && this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }

  onEpochEnd(_t: Trainer, r: EpochRecord): void {
    this.clear();
    if (this.epochLines) this.stream.write(`${formatEpochRecord(r, this.epochs)}\n`);
  }

  onFitEnd(_t: Trainer, result: FitResult): void {
    this.clear();
    if (result.status !== 'completed') this.stream.write(`training ${result.status}: ${result.message ?? ''}\n`);
  }
}

/** Writes the trainer's history (per-epoch metrics, per-step losses) as JSON after every epoch and at the end. */
export class HistoryWriter implements Callback {
  constructor(readonly file: string) {}
  private async write(t: Trainer): Promise<void> {
    const { fs, path } = await nodeApi('HistoryWriter', '');
    await fs.mkdir(path.dirname(path.resolve(this.file)), { recursive: true });
    await writeFileAtomic(this.file, `${JSON.stringify(t.history, null, 1)}\n`);
  }
  async onEpochEnd(t: Trainer): Promise<void> {
    await this.write(t);
  }
  async onFitEnd(t: Trainer): Promise<void> {
    await this.write(t);
  }
}

function metricMode(metric: MetricName, mode: 'min' | 'max' | 'auto'): 'min' | 'max' {
  if (mode !== 'auto') return mode;
  return /acc|top/i.test(metric) ? 'max' : 'min';
}

const METRICS: readonly MetricName[] = ['trainLoss', 'trainAcc', 'valLoss', 'valAcc', 'valTop5'];

function checkMetric(owner: string, metric: MetricName, info: FitStartInfo): void {
  if (!METRICS.includes(metric)) throw new ConfigError(`${owner} monitor must be one of ${METRICS.join(', ')}, got '${String(metric)}'`);
  if (metric.startsWith('val') && !info.hasValidation) {
    throw new ConfigError(`${owner} monitors '${metric}' but fit has no validation set; pass one or monitor 'trainLoss'/'trainAcc'`);
  }
}

export interface EarlyStoppingOptions {
  /** Default 'valLoss'. */
  monitor?: MetricName;
  /** Default 'auto': max for accuracies, min for losses. */
  mode?: 'min' | 'max' | 'auto';
  /** Epochs without improvement before stopping (default 5). */
  patience?: number;
  /** Smallest change that counts as an improvement (default 0). */
  minDelta?: number;
}

/** Stops `fit` when the monitored metric has not improved for `patience` epochs. Its counters survive a resume. */
export class EarlyStopping implements Callback {
  readonly stateKey = 'earlyStopping';
  readonly monitor: MetricName;
  readonly mode: 'min' | 'max';
  readonly patience: number;
  readonly minDelta: number;
  best: number | null = null;
  bestEpoch: number | null = null;
  wait = 0;

  constructor(options: EarlyStoppingOptions = {}) {
    this.monitor = options.monitor ?? 'valLoss';
    this.mode = metricMode(this.monitor, options.mode ?? 'auto');
    this.patience = options.patience ?? 5;
    this.minDelta = options.minDelta ?? 0;
    if (!(Number.isInteger(this.patience) && this.patience >= 1)) throw new ConfigError(`EarlyStopping patience must be a positive integer, got ${this.patience}`);
  }

  getState(): unknown {
    return { best: this.best, bestEpoch: this.bestEpoch, wait: this.wait };
  }
  setState(s: unknown): void {
    const st = s as { best: number | null; bestEpoch: number | null; wait: number };
    this.best = st.best;
    this.bestEpoch = st.bestEpoch;
    this.wait = st.wait;
  }

  onFitStart(_t: Trainer, info: FitStartInfo): void {
    checkMetric('EarlyStopping', this.monitor, info);
  }

  onEpochEnd(t: Trainer, r: EpochRecord): void {
    const v = r[this.monitor];
    if (v === undefined || Number.isNaN(v)) return;
    const better = this.best === null || (this.mode === 'min' ? v < this.best - this.minDelta : v > this.best + this.minDelta);
    if (better) {
      this.best = v;
      this.bestEpoch = r.epoch;
      this.wait = 0;
      return;
    }
    this.wait += 1;
    if (this.wait >= this.patience) {
      t.stop(`early stopping: ${this.monitor} has not improved on ${this.best!.toFixed(4)} (epoch ${this.bestEpoch! + 1}) for ${this.wait} epochs`);
    }
  }
}

export interface ModelCheckpointOptions {
  /** The run folder: checkpoints go to `<dir>/best`, `<dir>/last`, `<dir>/final`. */
  dir: string;
  /** What "best" means (default 'valAcc'; use 'trainLoss' or 'trainAcc' without a validation set). */
  monitor?: MetricName;
  mode?: 'min' | 'max' | 'auto';
  /** Keep the best epoch's checkpoint (default true). */
  saveBest?: boolean;
  /** Keep the latest epoch's checkpoint for resuming (default true). */
  saveLast?: boolean;
  /** Write `final` when fit completes or stops early (default true). */
  saveFinal?: boolean;
  /** Also refresh `last` every this many optimizer steps, for mid-epoch resume. */
  everySteps?: number;
}

/**
 * Best / last / final checkpoints in a run folder (see `saveCheckpoint`: atomic, a crash leaves the
 * previous one loadable). `last` is refreshed every epoch (and every `everySteps` steps) and when
 * fit is interrupted; nothing is written after a NaN/Inf step, so every checkpoint holds finite
 * weights.
 */
export class ModelCheckpoint implements Callback {
  readonly stateKey = 'modelCheckpoint';
  readonly dir: string;
  readonly monitor: MetricName;
  readonly mode: 'min' | 'max';
  readonly options: Required<Omit<ModelCheckpointOptions, 'everySteps' | 'monitor' | 'mode' | 'dir'>> & { everySteps?: number };
  best: number | null = null;
  bestEpoch: number | null = null;
  /** Path of the most recently written checkpoint. */
  lastSaved: string | undefined;

  constructor(options: ModelCheckpointOptions) {
    if (!options?.dir) throw new ConfigError('ModelCheckpoint needs a dir');
    this.dir = options.dir.replace(/[\\/]+$/, '');
    this.monitor = options.monitor ?? 'valAcc';
    this.mode = metricMode(this.monitor, options.mode ?? 'auto');
    if (options.everySteps !== undefined && !(Number.isInteger(options.everySteps) && options.everySteps >= 1)) {
      throw new ConfigError(`ModelCheckpoint everySteps must be a positive integer, got ${options.everySteps}`);
    }
    this.options = { saveBest: options.saveBest ?? true, saveLast: options.saveLast ?? true, saveFinal: options.saveFinal ?? true, everySteps: options.everySteps };
  }

  path(which: 'best' | 'last' | 'final'): string {
    return `${this.dir}/${which}`;
  }

  getState(): unknown {
    return { best: this.best, bestEpoch: this.bestEpoch };
  }
  setState(s: unknown): void {
    const st = s as { best: number | null; bestEpoch: number | null };
    this.best = st.best;
    this.bestEpoch = st.bestEpoch;
  }

  private async save(t: Trainer, which: 'best' | 'last' | 'final'): Promise<void> {
    await t.saveCheckpoint(this.path(which));
    this.lastSaved = this.path(which);
  }

  onFitStart(_t: Trainer, info: FitStartInfo): void {
    if (this.options.saveBest) checkMetric('ModelCheckpoint', this.monitor, info);
  }

  async onBatchEnd(t: Trainer, s: StepInfo): Promise<void> {
    const every = this.options.everySteps;
    // The epoch's last batch is saved by onEpochEnd, after validation.
    if (every && s.step % every === 0 && s.batch + 1 < s.numBatches) await this.save(t, 'last');
  }

  async onEpochEnd(t: Trainer, r: EpochRecord): Promise<void> {
    const v = r[this.monitor];
    const improved = v !== undefined && !Number.isNaN(v) && (this.best === null || (this.mode === 'min' ? v < this.best : v > this.best));
    if (improved) {
      this.best = v;
      this.bestEpoch = r.epoch;
    }
    if (improved && this.options.saveBest) await this.save(t, 'best');
    // `last` second, so `lastSaved` names the checkpoint to resume from.
    if (this.options.saveLast) await this.save(t, 'last');
  }

  async onFitEnd(t: Trainer, result: FitResult): Promise<void> {
    if (result.status === 'diverged') return;
    if (result.status === 'interrupted' || result.status === 'failed') {
      await this.save(t, 'last');
      return;
    }
    if (this.options.saveFinal) await this.save(t, 'final');
  }
}
