import { FormatError } from '../errors.js';
import { nodeApi } from './node.js';

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** A file's bytes, gunzipped when it starts with the gzip magic (whatever its name says). */
export async function readMaybeGzip(path: string): Promise<Uint8Array> {
  const { fs, zlib } = await nodeApi('Reading data files');
  let raw: Buffer;
  try {
    raw = await fs.readFile(path);
  } catch (e) {
    throw new FormatError(`Cannot read ${path}: ${(e as Error).message}`);
  }
  if (!isGzip(raw)) return new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  try {
    // The async gunzip runs on libuv's thread pool, off the main thread.
    const out = await new Promise<Buffer>((resolve, reject) => zlib.gunzip(raw, (err, res) => (err ? reject(err) : resolve(res))));
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch (e) {
    throw new FormatError(`${path}: corrupt or truncated gzip data (${(e as Error).message})`);
  }
}
