import { VitError } from '../errors.js';

type Fs = typeof import('node:fs/promises');
type Path = typeof import('node:path');
type Zlib = typeof import('node:zlib');

export interface NodeApi {
  fs: Fs;
  path: Path;
  zlib: Zlib;
}

let api: Promise<NodeApi> | undefined;

/**
 * Node's fs, path and zlib, imported on first use so that importing @vit/core stays harmless in
 * a browser (as weights/io.ts does); only the file readers, plot writers and checkpoints need them.
 */
export function nodeApi(what: string, hint = 'in a browser, fetch the bytes and use the parsers (parseIdx, parseCifar10Batch, readTar)'): Promise<NodeApi> {
  api ??= Promise.all([import('node:fs/promises'), import('node:path'), import('node:zlib')]).then(([fs, path, zlib]) => ({ fs, path, zlib }));
  return api.catch(() => {
    api = undefined;
    throw new VitError(`${what} needs Node.js (node:fs, node:zlib)${hint ? `; ${hint}` : ''}`, 'VIT_IO');
  });
}

/** True when `p` exists (file or folder). */
export async function exists(p: string): Promise<boolean> {
  const { fs } = await nodeApi('Reading files');
  try {
    await fs.stat(p);
    return true;
  } catch {
    return false;
  }
}
