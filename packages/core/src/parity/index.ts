export * from './parity.js';
export * from './async.js';
