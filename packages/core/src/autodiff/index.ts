export { valueAndGrads, valueAndGradsOf } from './grad.js';
export type { GradsResult } from './grad.js';
export { vjp } from './grad.js';
export { checkpoint, isCheckpointed, isRecomputing, isRecording, recomputeCount, setModuleCheckpointing } from './checkpoint.js';
