export * from './registry.js';
export * from './contract.js';
