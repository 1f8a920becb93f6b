// What `#node-builtins` is in a browser (every bundler's default conditions): no Node built-ins.
// Code that needs them asks `requireNode`, which then says what to use instead.
import type { NodeBuiltins } from './types.js';

export const node: NodeBuiltins | undefined = undefined;
