// Benchmarks: throughput and peak memory of a model on the current backend (`vit bench`, tools/bench).
export * from './benchmark.js';
export { measurePeakBytes, trackBuffers } from './memory.js';
export type { BufferTracker } from './memory.js';
