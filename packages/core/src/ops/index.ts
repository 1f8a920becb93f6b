export * from './attention.js';
export * from './window.js';
