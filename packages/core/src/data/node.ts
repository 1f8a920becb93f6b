import { requireNode, type NodeBuiltins } from '../platform/index.js';

export interface NodeApi {
  fs: NodeBuiltins['fs']['promises'];
  path: NodeBuiltins['path'];
  zlib: NodeBuiltins['zlib'];
}

/**
 * Node's fs (promises), path and zlib for the file readers, plot writers and checkpoints, or an
 * error saying what to do in a browser (see platform/index.ts).
 */
export async function nodeApi(what: string, hint = 'in a browser, fetch the bytes and use the parsers (parseIdx, parseCifar10Batch, readTar)'): Promise<NodeApi> {
  const { fs, path, zlib } = requireNode(what, hint);
  return { fs: fs.promises, path, zlib };
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
