export * from './attention.js';
export * from './window.js';
export * from './sampling.js';
export * from './deform.js';
