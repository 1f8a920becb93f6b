export * from './parity.js';
