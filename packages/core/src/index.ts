export * from './errors.js';
export * from './nn/index.js';
export * from './ops/index.js';
export * from './weights/index.js';
export * from './registry/index.js';
export * from './parity/index.js';
export * from './backend.js';
export { VERSION } from './version.js';
