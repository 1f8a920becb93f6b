export { main, commands, type Command, type OptionSpec } from './main.js';
export { EXIT } from './exit-codes.js';
export type { Io } from './io.js';
