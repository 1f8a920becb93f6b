export {
  NonFiniteLossError,
  Trainer,
  type Callback,
  type EpochInfo,
  type EpochRecord,
  type EvalResult,
  type EvaluateOptions,
  type FitResult,
  type FitStartInfo,
  type FitStatus,
  type History,
  type MetricName,
  type PredictOptions,
  type PredictResult,
  type StepInfo,
  type TrainerOptions,
  type TrainerState,
} from './trainer.js';
export {
  EarlyStopping,
  HistoryWriter,
  ModelCheckpoint,
  ProgressBar,
  formatEpochRecord,
  type EarlyStoppingOptions,
  type ModelCheckpointOptions,
  type ProgressBarOptions,
  type ProgressStream,
} from './callbacks.js';
export {
  CHECKPOINT_FILES,
  CHECKPOINT_FORMAT,
  CHECKPOINT_FORMAT_VERSION,
  loadCheckpoint,
  resolveCheckpointDir,
  saveCheckpoint,
  type CheckpointConfig,
  type CheckpointConfigInput,
  type CheckpointContent,
  type CheckpointStage,
  type LoadedCheckpoint,
  type SaveCheckpointOptions,
} from './checkpoint.js';
export { confusionMatrix, perClassAccuracy, topKCorrect } from './metrics.js';
export { withSeededRandom } from './random.js';
export { asOutOfMemory, backendMemoryLimit, isOutOfMemory, outOfMemoryError, WASM_HEAP_LIMIT } from './memory.js';
export type { OutOfMemoryContext } from './memory.js';
