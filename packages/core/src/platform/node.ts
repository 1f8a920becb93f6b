// What `#node-builtins` is under the `node` condition (Node, Deno, Bun, a bundle for Node). In a
// browser bundle the package's `imports` map gives ./browser.ts instead, so no bundler ever sees a
// `node:` import (esbuild, Vite and webpack refuse them by default).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import * as url from 'node:url';
import * as v8 from 'node:v8';
import * as workerThreads from 'node:worker_threads';
import * as zlib from 'node:zlib';
import type { NodeBuiltins } from './types.js';

export const node: NodeBuiltins | undefined = { fs, path, os, crypto, url, zlib, workerThreads, v8, require: createRequire(import.meta.url) };
