export * from './registry.js';
export * from './contract.js';
export * from './official_kwargs.js';
export * from './variants.js';
