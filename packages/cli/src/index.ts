export { main, commands, type Command } from './main.js';
export { EXIT } from './exit-codes.js';
export type { Io } from './io.js';
