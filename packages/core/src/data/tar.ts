import { FormatError } from '../errors.js';

/** One regular file of a tar archive (its data is a view into the archive). */
export interface TarEntry {
  name: string;
  data: Uint8Array;
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

function octal(bytes: Uint8Array, what: string, file: string, offset: number): number {
  // GNU tar stores sizes ≥ 8 GiB as base-256 with the high bit set.
  if (bytes[0]! & 0x80) {
    let v = bytes[0]! & 0x7f;
    for (let i = 1; i < bytes.length; i++) v = v * 256 + bytes[i]!;
    return v;
  }
  const s = cString(bytes).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new FormatError(`${file}: corrupt tar header at byte ${offset}: ${what} field '${s}' is not octal`);
  return parseInt(s, 8);
}

/**
 * Lists the regular files of an (uncompressed) ustar/GNU/pax tar archive. Checks every header's
 * checksum and that no entry runs past the end, so a truncated or non-tar input fails with a
 * message naming `file`.
 */
export function readTar(bytes: Uint8Array, file = 'tar archive'): TarEntry[] {
  const entries: TarEntry[] = [];
  let offset = 0;
  let longName: string | undefined;
  let paxPath: string | undefined;
  while (offset + 512 <= bytes.length) {
    const header = bytes.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) return entries;
    const stored = octal(header.subarray(148, 156), 'checksum', file, offset);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
    if (sum !== stored) {
      throw new FormatError(`${file}: not a tar archive or corrupt header at byte ${offset} (checksum ${stored}, computed ${sum})`);
    }
    const size = octal(header.subarray(124, 136), 'size', file, offset);
    const type = String.fromCharCode(header[156]!);
    const dataStart = offset + 512;
    if (dataStart + size > bytes.length) {
      throw new FormatError(`${file}: truncated: entry '${cString(header.subarray(0, 100))}' needs ${size} bytes at byte ${dataStart}, the archive has ${bytes.length - dataStart}`);
    }
    const data = bytes.subarray(dataStart, dataStart + size);
    if (type === 'L') {
      longName = cString(data);
    } else if (type === 'x') {
      const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(new TextDecoder().decode(data));
      paxPath = m?.[1];
    } else {
      if (type === '0' || type === '\0' || type === '7') {
        const magic = cString(header.subarray(257, 263));
        const prefix = magic.startsWith('ustar') ? cString(header.subarray(345, 500)) : '';
        const base = cString(header.subarray(0, 100));
        const name = paxPath ?? longName ?? (prefix ? `${prefix}/${base}` : base);
        entries.push({ name, data });
      }
      longName = undefined;
      paxPath = undefined;
    }
    offset = dataStart + Math.ceil(size / 512) * 512;
  }
  if (offset < bytes.length || entries.length === 0) {
    throw new FormatError(`${file}: truncated tar archive (ends inside a header at byte ${offset})`);
  }
  // Some writers omit the two zero end blocks; an archive that ends on an entry boundary is complete.
  return entries;
}
