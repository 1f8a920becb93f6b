/**
 * A small, bounds-checked ZIP reader: enough for the archives `torch.save` writes (stored entries,
 * 64-byte aligned, ZIP64 past 4 GiB) and for re-zipped ones (deflate). Every offset and size read
 * from the file is checked before use, so a corrupt or hostile archive gives a `FormatError`,
 * never an out-of-range read or an allocation larger than the file justifies. Pure: inflating is
 * delegated to a function the caller passes (node:zlib in Node).
 */
import { FormatError } from '../errors.js';

/** Inflates a raw deflate stream; must fail (throw) rather than produce more than `maxOutputLength` bytes. */
export type InflateRaw = (data: Uint8Array, maxOutputLength: number) => Uint8Array;

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflate (others are refused when read). */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const EOCD_SIZE = 22;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
/** Deflate cannot expand data by more than ~1032:1; a larger claimed ratio is corrupt (or a bomb). */
const MAX_DEFLATE_RATIO = 1032;

let crcTable: Uint32Array | undefined;

/** CRC-32 (IEEE, as zip). */
export function crc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  const t = crcTable;
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = t[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function looksLikeZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

export class ZipArchive {
  /** Entries by name, in central-directory order. */
  readonly entries = new Map<string, ZipEntry>();
  private readonly dv: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly inflate?: InflateRaw,
  ) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.readCentralDirectory();
  }

  private u64(at: number, what: string): number {
    const v = this.dv.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(`zip ${what} ${v} is too large (corrupt archive)`);
    return Number(v);
  }

  private findEocd(): number {
    const len = this.bytes.length;
    if (len < EOCD_SIZE) throw new FormatError(`zip archive is truncated: ${len} bytes cannot hold an end-of-central-directory record`);
    const stop = Math.max(0, len - EOCD_SIZE - 0xffff);
    for (let p = len - EOCD_SIZE; p >= stop; p--) {
      // The comment length must reach exactly to the end of the file: this rules out the
      // signature bytes occurring by chance inside stored data.
      if (this.dv.getUint32(p, true) === SIG_EOCD && p + EOCD_SIZE + this.dv.getUint16(p + 20, true) === len) return p;
    }
    throw new FormatError('zip archive is truncated or corrupt: no end-of-central-directory record (was the file cut short?)');
  }

  private readCentralDirectory(): void {
    const len = this.bytes.length;
    const dv = this.dv;
    const eocd = this.findEocd();
    if (dv.getUint16(eocd + 4, true) !== 0 || dv.getUint16(eocd + 6, true) !== 0) throw new FormatError('multi-disk (split) zip archives are not supported');
    let count = dv.getUint16(eocd + 10, true);
    let cdSize = dv.getUint32(eocd + 12, true);
    let cdOffset = dv.getUint32(eocd + 16, true);
    let cdLimit = eocd;
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const loc = eocd - 20;
      if (loc < 0 || dv.getUint32(loc, true) !== SIG_EOCD64_LOCATOR) throw new FormatError('zip archive needs ZIP64 records but has no ZIP64 locator');
      const at = this.u64(loc + 8, 'ZIP64 record offset');
      if (at + 56 > loc || dv.getUint32(at, true) !== SIG_EOCD64) throw new FormatError('zip archive has a corrupt ZIP64 end-of-central-directory record');
      count = this.u64(at + 32, 'entry count');
      cdSize = this.u64(at + 40, 'central directory size');
      cdOffset = this.u64(at + 48, 'central directory offset');
      cdLimit = at;
    }
    if (cdOffset + cdSize > cdLimit) {
      throw new FormatError(`zip central directory [${cdOffset}, ${cdOffset + cdSize}) runs past its end record at ${cdLimit} (truncated or corrupt archive)`);
    }
    if (count * CENTRAL_SIZE > cdSize) throw new FormatError(`zip archive claims ${count} entries but its central directory has only ${cdSize} bytes`);
    const decoder = new TextDecoder();
    let p = cdOffset;
    const end = cdOffset + cdSize;
    for (let i = 0; i < count; i++) {
      if (p + CENTRAL_SIZE > end || dv.getUint32(p, true) !== SIG_CENTRAL) throw new FormatError(`zip central directory entry ${i} is corrupt`);
      const flags = dv.getUint16(p + 8, true);
      const method = dv.getUint16(p + 10, true);
      const crc = dv.getUint32(p + 16, true);
      let compressedSize = dv.getUint32(p + 20, true);
      let size = dv.getUint32(p + 24, true);
      const nameLen = dv.getUint16(p + 28, true);
      const extraLen = dv.getUint16(p + 30, true);
      const commentLen = dv.getUint16(p + 32, true);
      let localHeaderOffset = dv.getUint32(p + 42, true);
      const next = p + CENTRAL_SIZE + nameLen + extraLen + commentLen;
      if (next > end) throw new FormatError(`zip central directory entry ${i} runs past the directory`);
      const name = decoder.decode(this.bytes.subarray(p + CENTRAL_SIZE, p + CENTRAL_SIZE + nameLen));
      // ZIP64 extended information: the 8-byte values replace, in this order, those stored as 0xffffffff.
      let q = p + CENTRAL_SIZE + nameLen;
      const extraEnd = q + extraLen;
      while (q + 4 <= extraEnd) {
        const id = dv.getUint16(q, true);
        const n = dv.getUint16(q + 2, true);
        if (q + 4 + n > extraEnd) throw new FormatError(`zip entry '${name}' has a corrupt extra field`);
        if (id === 0x0001) {
          let r = q + 4;
          const take = (what: string) => {
            if (r + 8 > q + 4 + n) throw new FormatError(`zip entry '${name}' has a short ZIP64 extra field`);
            const v = this.u64(r, what);
            r += 8;
            return v;
          };
          if (size === 0xffffffff) size = take('entry size');
          if (compressedSize === 0xffffffff) compressedSize = take('compressed size');
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = take('entry offset');
        }
        q += 4 + n;
      }
      if (this.entries.has(name)) throw new FormatError(`zip archive has two entries named '${name}' (ambiguous; refusing)`);
      if (localHeaderOffset + LOCAL_SIZE > len) throw new FormatError(`zip entry '${name}' starts at ${localHeaderOffset}, past the end of the file`);
      this.entries.set(name, { name, method, flags, crc32: crc, compressedSize, size, localHeaderOffset });
      p = next;
    }
  }

  /** The bytes of an entry, inflated and CRC-checked. Stored entries are views into the archive. */
  read(name: string, options: { verifyCrc?: boolean } = {}): Uint8Array {
    const e = this.entries.get(name);
    if (!e) throw new FormatError(`zip archive has no entry '${name}'`);
    if (e.flags & 1) throw new FormatError(`zip entry '${name}' is encrypted`);
    const dv = this.dv;
    const p = e.localHeaderOffset;
    if (dv.getUint32(p, true) !== SIG_LOCAL) throw new FormatError(`zip entry '${name}' has no local header at ${p} (corrupt archive)`);
    // The local extra field may differ from the central one (torch pads it to align the data).
    const start = p + LOCAL_SIZE + dv.getUint16(p + 26, true) + dv.getUint16(p + 28, true);
    const stop = start + e.compressedSize;
    if (stop > this.bytes.length) {
      throw new FormatError(`zip entry '${name}' needs bytes [${start}, ${stop}) but the file has ${this.bytes.length} (truncated?)`);
    }
    const raw = this.bytes.subarray(start, stop);
    let out: Uint8Array;
    if (e.method === 0) {
      if (e.compressedSize !== e.size) throw new FormatError(`zip entry '${name}' is stored but its sizes differ (${e.compressedSize} vs ${e.size})`);
      out = raw;
    } else if (e.method === 8) {
      if (!this.inflate) throw new FormatError(`zip entry '${name}' is deflated and no inflate function is available (pass one, or use loadPthFile in Node)`);
      if (e.size > e.compressedSize * MAX_DEFLATE_RATIO + 64) {
        throw new FormatError(`zip entry '${name}' claims ${e.size} bytes from ${e.compressedSize} compressed: more than deflate can produce (corrupt or a zip bomb)`);
      }
      try {
        out = this.inflate(raw, e.size);
      } catch (err) {
        throw new FormatError(`zip entry '${name}' does not inflate to its declared ${e.size} bytes: ${(err as Error).message}`);
      }
      if (out.length !== e.size) throw new FormatError(`zip entry '${name}' inflates to ${out.length} bytes, not the declared ${e.size}`);
    } else {
      throw new FormatError(`zip entry '${name}' uses compression method ${e.method}; only stored (0) and deflate (8) are supported`);
    }
    if ((options.verifyCrc ?? true) && crc32(out) !== e.crc32) throw new FormatError(`zip entry '${name}' fails its CRC-32 check (corrupt data)`);
    return out;
  }
}
