export { main, commands } from './main.js';
export type { BooleanOption, Command, OptionSpec, StringOption } from './command.js';
export { EXIT } from './exit-codes.js';
export type { Io } from './io.js';
