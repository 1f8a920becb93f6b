/**
 * Writes `torch.save` files: a state dict (an `OrderedDict` of tensors) in the zip format torch has
 * used since 1.6, so `torch.load(path, weights_only=True)` followed by
 * `model.load_state_dict(sd, strict=True)` takes what we export. Pure (no file system): `io.ts`
 * adds `savePthFile`.
 *
 * What is written is what torch itself writes for a state dict, and nothing else: a protocol-2
 * pickle of `collections.OrderedDict` whose values are `torch._utils._rebuild_tensor_v2(storage,
 * 0, size, stride, False, OrderedDict())`, one storage per tensor (persistent id `('storage',
 * torch.<Type>Storage, '<n>', 'cpu', numel)`), records `<archive>/data.pkl`, `<archive>/byteorder`
 * (`little`), `<archive>/data/<n>` (raw little-endian bytes) and `<archive>/version` (`3`). Records
 * are stored (not deflated) and their data aligned to 64 bytes, as torch pads them.
 */
import { FormatError } from '../errors.js';
import { crc32 } from './zip.js';
import { encodeTensorBytes, type RawTensorInput, type SafetensorsDtype } from './safetensors.js';

/** safetensors dtype → the `torch.<Name>Storage` a state dict names for it. */
const STORAGE_TYPE: Record<SafetensorsDtype, string> = {
  F32: 'FloatStorage',
  F64: 'DoubleStorage',
  F16: 'HalfStorage',
  BF16: 'BFloat16Storage',
  I64: 'LongStorage',
  I32: 'IntStorage',
  I16: 'ShortStorage',
  I8: 'CharStorage',
  U8: 'ByteStorage',
  BOOL: 'BoolStorage',
};

/** torch's record alignment (caffe2/serialize/inline_container.cc `kFieldAlignment`). */
const ALIGN = 64;

class PickleWriter {
  private chunks: number[] = [];
  private readonly enc = new TextEncoder();

  op(...bytes: number[]): this {
    for (const b of bytes) this.chunks.push(b);
    return this;
  }

  private raw(bytes: Uint8Array): void {
    for (const b of bytes) this.chunks.push(b);
  }

  global(module: string, name: string): this {
    this.op(0x63); // GLOBAL
    this.raw(this.enc.encode(`${module}\n${name}\n`));
    return this;
  }

  str(s: string): this {
    const b = this.enc.encode(s);
    this.op(0x58, b.length & 0xff, (b.length >>> 8) & 0xff, (b.length >>> 16) & 0xff, (b.length >>> 24) & 0xff); // BINUNICODE
    this.raw(b);
    return this;
  }

  int(n: number): this {
    if (!Number.isSafeInteger(n)) throw new FormatError(`cannot pickle ${n} as an integer`);
    if (n >= 0 && n < 0x100) return this.op(0x4b, n); // BININT1
    if (n >= 0 && n < 0x10000) return this.op(0x4d, n & 0xff, n >>> 8); // BININT2
    if (n >= -(2 ** 31) && n < 2 ** 31) return this.op(0x4a, n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff); // BININT
    // LONG1: little-endian two's complement, as short as the sign allows.
    const bytes: number[] = [];
    let v = BigInt(n);
    for (;;) {
      const b = Number(v & 0xffn);
      bytes.push(b);
      v >>= 8n;
      if ((v === 0n && !(b & 0x80)) || (v === -1n && b & 0x80)) break;
    }
    return this.op(0x8a, bytes.length, ...bytes);
  }

  tuple(items: readonly number[]): this {
    if (items.length === 0) return this.op(0x29); // EMPTY_TUPLE
    if (items.length > 3) this.op(0x28); // MARK
    for (const i of items) this.int(i);
    return this.op(items.length === 1 ? 0x85 : items.length === 2 ? 0x86 : items.length === 3 ? 0x87 : 0x74); // TUPLE1/2/3, TUPLE
  }

  /** `collections.OrderedDict()` */
  emptyOrderedDict(): this {
    return this.global('collections', 'OrderedDict').op(0x29, 0x52); // EMPTY_TUPLE, REDUCE
  }

  bytes(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }
}

function contiguousStride(shape: readonly number[]): number[] {
  const stride = new Array<number>(shape.length);
  for (let d = shape.length - 1, s = 1; d >= 0; d--) {
    stride[d] = s;
    s *= shape[d]!;
  }
  return stride;
}

interface ZipRecord {
  name: string;
  data: Uint8Array;
}

/** A stored (uncompressed) zip archive with every record's data aligned to `ALIGN` bytes. */
function writeZip(records: readonly ZipRecord[]): Uint8Array {
  const enc = new TextEncoder();
  if (records.length >= 0xffff) throw new FormatError(`a .pth of ${records.length} records needs ZIP64, which this writer does not produce; write safetensors instead`);
  const names = records.map((r) => enc.encode(r.name));
  const offsets: number[] = [];
  const pads: number[] = [];
  let size = 0;
  records.forEach((r, i) => {
    offsets.push(size);
    const start = size + 30 + names[i]!.length + 4;
    const pad = (ALIGN - (start % ALIGN)) % ALIGN;
    pads.push(pad);
    size = start + pad + r.data.length;
  });
  const cdOffset = size;
  for (const n of names) size += 46 + n.length;
  const cdSize = size - cdOffset;
  size += 22;
  if (size > 0xffffffff) throw new FormatError(`a .pth of ${size} bytes needs ZIP64, which this writer does not produce; write safetensors instead`);

  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  const crcs = records.map((r) => crc32(r.data));
  records.forEach((r, i) => {
    const p = offsets[i]!;
    const name = names[i]!;
    dv.setUint32(p, 0x04034b50, true);
    dv.setUint16(p + 4, 20, true); // version needed: 2.0
    dv.setUint16(p + 6, 0x0800, true); // UTF-8 names
    dv.setUint16(p + 8, 0, true); // stored
    dv.setUint32(p + 10, 0, true); // time, date
    dv.setUint32(p + 14, crcs[i]!, true);
    dv.setUint32(p + 18, r.data.length, true);
    dv.setUint32(p + 22, r.data.length, true);
    dv.setUint16(p + 26, name.length, true);
    dv.setUint16(p + 28, 4 + pads[i]!, true);
    out.set(name, p + 30);
    // torch's padding extra field: id 'FB', its length, then 'Z's.
    const x = p + 30 + name.length;
    out[x] = 0x46;
    out[x + 1] = 0x42;
    dv.setUint16(x + 2, pads[i]!, true);
    out.fill(0x5a, x + 4, x + 4 + pads[i]!);
    out.set(r.data, x + 4 + pads[i]!);
  });
  let p = cdOffset;
  records.forEach((r, i) => {
    const name = names[i]!;
    dv.setUint32(p, 0x02014b50, true);
    dv.setUint16(p + 4, 20, true); // made by
    dv.setUint16(p + 6, 20, true); // needed
    dv.setUint16(p + 8, 0x0800, true);
    dv.setUint16(p + 10, 0, true);
    dv.setUint32(p + 12, 0, true);
    dv.setUint32(p + 16, crcs[i]!, true);
    dv.setUint32(p + 20, r.data.length, true);
    dv.setUint32(p + 24, r.data.length, true);
    dv.setUint16(p + 28, name.length, true);
    // extra, comment, disk, internal and external attributes: 0
    dv.setUint32(p + 42, offsets[i]!, true);
    out.set(name, p + 46);
    p += 46 + name.length;
  });
  dv.setUint32(p, 0x06054b50, true);
  dv.setUint16(p + 8, records.length, true);
  dv.setUint16(p + 10, records.length, true);
  dv.setUint32(p + 12, cdSize, true);
  dv.setUint32(p + 16, cdOffset, true);
  return out;
}

export interface SerializePthOptions {
  /** The archive's top folder (torch uses the file stem, or `archive` for buffers). Default `archive`. */
  archiveName?: string;
}

/**
 * A `torch.save(state_dict)` file (zip format) holding `tensors` in the given order, each encoded in
 * its `dtype` (float16/bfloat16 rounded to nearest even, as `serializeSafetensors`). Keys are the
 * state dict's keys verbatim.
 */
export function serializePth(tensors: Record<string, RawTensorInput> | Map<string, RawTensorInput>, options: SerializePthOptions = {}): Uint8Array {
  const archive = options.archiveName ?? 'archive';
  if (!/^[A-Za-z0-9_.-]+$/.test(archive) || archive === '.' || archive === '..') throw new FormatError(`invalid archive name '${archive}'`);
  const items = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const records: ZipRecord[] = [];
  const pk = new PickleWriter();
  pk.op(0x80, 2); // PROTO 2
  pk.emptyOrderedDict();
  if (items.length) pk.op(0x28); // MARK
  items.forEach(([key, t], i) => {
    const storage = STORAGE_TYPE[t.dtype];
    if (!storage) throw new FormatError(`Cannot write '${key}' as dtype '${String(t.dtype)}' to a .pth`);
    const data = encodeTensorBytes(key, t);
    const numel = t.data.length;
    records.push({ name: `${archive}/data/${i}`, data });
    pk.str(key);
    pk.global('torch._utils', '_rebuild_tensor_v2');
    pk.op(0x28); // MARK (the argument tuple)
    pk.op(0x28).str('storage').global('torch', storage).str(String(i)).str('cpu').int(numel).op(0x74, 0x51); // TUPLE, BINPERSID
    pk.int(0);
    pk.tuple(t.shape);
    pk.tuple(contiguousStride(t.shape));
    pk.op(0x89); // NEWFALSE: requires_grad
    pk.emptyOrderedDict(); // backward_hooks
    pk.op(0x74, 0x52); // TUPLE, REDUCE
  });
  if (items.length) pk.op(0x75); // SETITEMS
  pk.op(0x2e); // STOP
  const enc = new TextEncoder();
  return writeZip([
    { name: `${archive}/data.pkl`, data: pk.bytes() },
    { name: `${archive}/byteorder`, data: enc.encode('little') },
    ...records,
    { name: `${archive}/version`, data: enc.encode('3\n') },
  ]);
}
