/**
 * Official PyTorch checkpoints (`torch.save` files, `.pth`/`.pt`/`.bin`) read without Python and
 * without executing anything: the zip format (torch ≥ 1.6: `<folder>/data.pkl` + one record per
 * storage) and the legacy format (magic number, protocol, sys_info, the object, storage keys, raw
 * storages). The pickle runs in a restricted VM (pickle.ts) under an allowlist of globals, the
 * same idea as `torch.load(weights_only=True)`; a file that needs anything else is refused with the
 * global's name. Every size, offset and stride from the file is checked against the data it points
 * to before use.
 *
 * `readPth` gives the unpickled object (tensors as lazy `PthTensor`s), `findStateDict` picks the
 * state dict the way timm does (`state_dict_ema`/`model_ema`, `state_dict`, `model`, else the
 * root), `loadPth`/`loadPthFile` return TF.js tensors like `loadSafetensorsFile`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { FormatError, VitError } from '../errors.js';
import { requireNode } from '../platform/index.js';
import { PyDict, PyGlobal, PyObject, describePyValue, isTuple, unpickle, type PyValue, type UnpicklePolicy } from './pickle.js';
import { bf16BitsToFloat, dtypeItemSize, f16BitsToFloat, rawToTensor, type RawData, type RawTensor, type SafetensorsDtype } from './safetensors.js';
import { ZipArchive, looksLikeZip, type InflateRaw } from './zip.js';

export { PyDict, PyGlobal, PyObject, isTuple, type PyValue } from './pickle.js';
export type { InflateRaw } from './zip.js';

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** `torch.<Name>Storage` → element dtype (safetensors names). */
const STORAGE_DTYPES: Record<string, SafetensorsDtype> = {
  FloatStorage: 'F32',
  DoubleStorage: 'F64',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

/**
 * The globals a checkpoint may name, and nothing else (exact module + name). They are never
 * imported: each is interpreted here. `torch.Tensor` and `torch.nn.parameter.Parameter` only
 * appear as the type argument of `_rebuild_from_type_v2` and cannot be called.
 */
export const PTH_ALLOWED_GLOBALS: readonly string[] = [
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'torch._tensor._rebuild_from_type_v2',
  'torch.Tensor',
  'torch.nn.parameter.Parameter',
  'torch.Size',
  '_codecs.encode',
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
];
const ALLOWED = new Set(PTH_ALLOWED_GLOBALS);

/** The legacy format's first pickle. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;
/** A view may hold more elements than its storage (stride-0 expansion) only up to this many. */
const MAX_EXPANDED_ELEMENTS = 1 << 24;
const MAX_RANK = 32;

/** One storage: `numel` elements of `dtype`; its bytes are read (and inflated, CRC-checked) on first use. */
export class PthStorage {
  private cached?: Uint8Array;
  constructor(
    readonly key: string,
    readonly dtype: SafetensorsDtype,
    readonly numel: number,
    readonly bigEndian: boolean,
    private readonly load: () => Uint8Array,
  ) {}

  /** The raw record (exactly numel × itemsize bytes, file byte order). */
  bytes(): Uint8Array {
    if (!this.cached) {
      const b = this.load();
      const want = this.numel * dtypeItemSize(this.dtype);
      if (b.length !== want) throw new FormatError(`storage '${this.key}' has ${b.length} bytes but ${this.numel} ${this.dtype} elements need ${want}`);
      this.cached = b;
    }
    return this.cached;
  }
}

/** A tensor as PyTorch stores it: a strided view into a storage. Nothing is decoded until asked. */
export class PthTensor {
  requiresGrad = false;
  constructor(
    readonly storage: PthStorage,
    readonly storageOffset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}

  get dtype(): SafetensorsDtype {
    return this.storage.dtype;
  }

  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** The elements in row-major order as contiguous little-endian bytes of `dtype` (a new buffer). */
  bytes(): Uint8Array {
    const k = dtypeItemSize(this.dtype);
    const src = this.storage.bytes();
    const n = this.numel;
    const out = new Uint8Array(n * k);
    if (n === 0) return out;
    const rank = this.shape.length;
    let contiguous = true;
    for (let d = rank - 1, expect = 1; d >= 0; d--) {
      if (this.shape[d] !== 1 && this.stride[d] !== expect) contiguous = false;
      expect *= this.shape[d]!;
    }
    if (contiguous) {
      out.set(src.subarray(this.storageOffset * k, (this.storageOffset + n) * k));
    } else {
      // Odometer over the output index; `at` is the source element index.
      const idx = new Array<number>(rank).fill(0);
      let at = this.storageOffset;
      for (let i = 0; i < n; i++) {
        out.set(src.subarray(at * k, at * k + k), i * k);
        for (let d = rank - 1; d >= 0; d--) {
          if (++idx[d]! < this.shape[d]!) {
            at += this.stride[d]!;
            break;
          }
          at -= (this.shape[d]! - 1) * this.stride[d]!;
          idx[d] = 0;
        }
      }
    }
    if (this.storage.bigEndian && k > 1) {
      for (let i = 0; i < out.length; i += k) out.subarray(i, i + k).reverse();
    }
    return out;
  }

  /**
   * Decoded values (as `parseSafetensors` gives them): floats → Float32Array (F64 rounded, F16/BF16
   * exact), I64 → Int32Array (values outside int32 are an error), I32/I16/I8/U8 as such, BOOL → 0/1.
   */
  toRaw(name = 'tensor'): RawTensor {
    const bytes = this.bytes();
    const n = this.numel;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const shape = this.shape.slice();
    const dtype = this.dtype;
    let data: RawData;
    switch (dtype) {
      case 'F32':
        if (LITTLE_ENDIAN_HOST) data = new Float32Array(bytes.buffer, 0, n);
        else {
          data = new Float32Array(n);
          for (let i = 0; i < n; i++) data[i] = dv.getFloat32(4 * i, true);
        }
        break;
      case 'F64':
        data = new Float32Array(n);
        for (let i = 0; i < n; i++) data[i] = dv.getFloat64(8 * i, true);
        break;
      case 'F16':
        data = new Float32Array(n);
        for (let i = 0; i < n; i++) data[i] = f16BitsToFloat(dv.getUint16(2 * i, true));
        break;
      case 'BF16':
        data = new Float32Array(n);
        for (let i = 0; i < n; i++) data[i] = bf16BitsToFloat(dv.getUint16(2 * i, true));
        break;
      case 'I64': {
        const out = new Int32Array(n);
        for (let i = 0; i < n; i++) {
          const lo = dv.getUint32(8 * i, true);
          const hi = dv.getInt32(8 * i + 4, true);
          if (hi !== (lo & 0x80000000 ? -1 : 0)) {
            throw new FormatError(`'${name}' (int64) holds ${dv.getBigInt64(8 * i, true)} at index ${i}, outside the int32 range TF.js tensors can hold`);
          }
          out[i] = lo | 0;
        }
        data = out;
        break;
      }
      case 'I32':
        data = new Int32Array(n);
        for (let i = 0; i < n; i++) data[i] = dv.getInt32(4 * i, true);
        break;
      case 'I16':
        data = new Int16Array(n);
        for (let i = 0; i < n; i++) data[i] = dv.getInt16(2 * i, true);
        break;
      case 'I8':
        data = new Int8Array(bytes.buffer, 0, n);
        break;
      case 'U8':
        data = bytes;
        break;
      case 'BOOL':
        data = bytes.map((b) => (b ? 1 : 0));
        break;
    }
    return { dtype, shape, data };
  }
}

// ---------------------------------------------------------------------------------------------
// The unpickling policy: the allowlist, interpreted

const OD = 'collections.OrderedDict';

function int(v: PyValue, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new FormatError(`${what} must be a non-negative integer, got ${describePyValue(v)} ${String(v).slice(0, 30)}`);
  return v;
}

function intTuple(v: PyValue, what: string): number[] {
  if (!isTuple(v) && !Array.isArray(v)) throw new FormatError(`${what} must be a tuple of integers, got ${describePyValue(v)}`);
  const a = v as readonly PyValue[];
  if (a.length > MAX_RANK) throw new FormatError(`${what} has ${a.length} dimensions (at most ${MAX_RANK} supported)`);
  return a.map((x, i) => int(x, `${what}[${i}]`));
}

/** Checks a view against its storage: offset + Σ (size−1)·stride must be a valid element index. */
function makeTensor(storage: PyValue, offsetV: PyValue, sizeV: PyValue, strideV: PyValue): PthTensor {
  if (!(storage instanceof PthStorage)) throw new FormatError(`_rebuild_tensor expects a storage, got ${describePyValue(storage)}`);
  const offset = int(offsetV, 'tensor storage offset');
  const shape = intTuple(sizeV, 'tensor size');
  const stride = intTuple(strideV, 'tensor stride');
  if (shape.length !== stride.length) throw new FormatError(`tensor size (${shape.join(', ')}) and stride (${stride.join(', ')}) differ in length`);
  const view = `tensor of size (${shape.join(', ')}), stride (${stride.join(', ')}), offset ${offset} on storage '${storage.key}' (${storage.numel} ${storage.dtype} elements)`;
  let numel = 1;
  for (const s of shape) {
    numel *= s;
    if (!Number.isSafeInteger(numel)) throw new FormatError(`${view}: element count overflows`);
  }
  if (numel > 0) {
    let last = offset;
    for (let d = 0; d < shape.length; d++) {
      last += (shape[d]! - 1) * stride[d]!;
      if (!Number.isSafeInteger(last)) throw new FormatError(`${view}: extent overflows`);
    }
    if (last >= storage.numel) throw new FormatError(`${view} reaches element ${last}, past the end of its storage`);
    if (numel > storage.numel && numel > MAX_EXPANDED_ELEMENTS) {
      throw new FormatError(`${view} has ${numel} elements, more than its storage; overlapping views that large are refused`);
    }
  }
  return new PthTensor(storage, offset, shape, stride);
}

function emptyish(v: PyValue): boolean {
  return v === null || (v instanceof PyDict && v.size === 0) || (isTuple(v) && v.length === 0);
}

class TorchPolicy implements UnpicklePolicy {
  readonly placeholders = new Set<string>();
  constructor(
    private readonly storageFor: (pid: readonly PyValue[]) => PthStorage,
    private readonly lenient: boolean,
    private readonly torchScript: boolean,
  ) {}

  global(module: string, name: string): PyValue {
    const q = `${module}.${name}`;
    if (ALLOWED.has(q)) return new PyGlobal(module, name);
    if (this.lenient) {
      this.placeholders.add(q);
      return new PyGlobal(module, name, true);
    }
    let hint = ' A checkpoint can run arbitrary code through such names; nothing was imported or executed.';
    if (module === 'torch' && name.endsWith('Storage')) hint = ` ${q} (a storage dtype) is not supported.`;
    else if (module.startsWith('__torch__') || this.torchScript) hint += ' This looks like a TorchScript archive (torch.jit.save): in Python, load it and torch.save(model.state_dict()).';
    else hint += ' If you trust the file, the lenient mode (unknownGlobals: "placeholder", `vit convert --lenient`) replaces such objects by inert placeholders.';
    throw new FormatError(`refusing global '${q}': not in the allowlist of a weights-only checkpoint.${hint}`);
  }

  call(fn: PyValue, args: readonly PyValue[]): PyValue {
    if (!(fn instanceof PyGlobal)) throw new FormatError(`cannot call a ${describePyValue(fn)}`);
    if (fn.placeholder) return new PyObject(fn, [...args]);
    const arity = (lo: number, hi = lo) => {
      if (args.length < lo || args.length > hi) throw new FormatError(`${fn.qualifiedName} takes ${lo === hi ? lo : `${lo}–${hi}`} arguments, got ${args.length}`);
    };
    switch (fn.qualifiedName) {
      case OD: {
        arity(0, 1);
        const d = new PyDict(OD);
        if (args.length) {
          const items = args[0];
          if (!Array.isArray(items)) throw new FormatError(`OrderedDict(${describePyValue(items)}) is not supported`);
          for (const kv of items as PyValue[]) {
            if (!Array.isArray(kv) || kv.length !== 2) throw new FormatError('OrderedDict items must be (key, value) pairs');
            d.set(kv[0] as PyValue, kv[1] as PyValue);
          }
        }
        return d;
      }
      case 'torch._utils._rebuild_tensor':
        arity(4);
        return makeTensor(args[0]!, args[1]!, args[2]!, args[3]!);
      case 'torch._utils._rebuild_tensor_v2': {
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        arity(6, 7);
        const t = makeTensor(args[0]!, args[1]!, args[2]!, args[3]!);
        t.requiresGrad = args[4] === true;
        return t;
      }
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state': {
        // (data, requires_grad, backward_hooks[, state])
        const withState = fn.name.endsWith('with_state');
        arity(withState ? 4 : 3);
        if (!(args[0] instanceof PthTensor)) throw new FormatError(`${fn.qualifiedName} expects a tensor, got ${describePyValue(args[0])}`);
        if (withState && !emptyish(args[3]!)) throw new FormatError(`${fn.qualifiedName} with Python attributes (a Parameter subclass) is not supported`);
        args[0].requiresGrad = args[1] === true;
        return args[0];
      }
      case 'torch._tensor._rebuild_from_type_v2': {
        // (func, new_type, args, state): how torch ≥ 1.12 pickles tensors that carry Python state.
        arity(4);
        const [f, type, inner, state] = args as [PyValue, PyValue, PyValue, PyValue];
        if (!(f instanceof PyGlobal) || f.qualifiedName !== 'torch._utils._rebuild_tensor_v2') throw new FormatError(`_rebuild_from_type_v2 of ${describePyValue(f)} is not supported`);
        const typeName = type instanceof PyGlobal ? type.qualifiedName : describePyValue(type);
        if (typeName !== 'torch.Tensor' && typeName !== 'torch.nn.parameter.Parameter') throw new FormatError(`_rebuild_from_type_v2 to '${typeName}' is not supported`);
        if (!emptyish(state)) throw new FormatError('_rebuild_from_type_v2 with Python attributes (a tensor subclass) is not supported');
        if (!isTuple(inner)) throw new FormatError('_rebuild_from_type_v2 arguments must be a tuple');
        const t = this.call(f, inner);
        if (!(t instanceof PthTensor)) throw new FormatError('_rebuild_from_type_v2 must rebuild a tensor');
        return t;
      }
      case '_codecs.encode': {
        // Protocol 2 pickles bytes as _codecs.encode(text, 'latin1').
        arity(1, 2);
        const [text, enc = 'utf-8'] = args;
        if (typeof text !== 'string' || (enc !== 'latin1' && enc !== 'latin-1') || /[^\x00-\xff]/.test(text)) throw new FormatError(`_codecs.encode(${describePyValue(text)}, ${String(enc).slice(0, 20)}) is not supported`);
        return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
      }
      case 'torch.Size':
        arity(0, 1);
        return Object.freeze(args.length ? intTuple(args[0]!, 'torch.Size') : []);
      default:
        throw new FormatError(`${fn.qualifiedName} cannot be called in a weights-only checkpoint`);
    }
  }

  newObject(cls: PyValue, args: readonly PyValue[]): PyValue {
    if (cls instanceof PyGlobal && cls.placeholder) return new PyObject(cls, [...args]);
    if (cls instanceof PyGlobal && cls.qualifiedName === OD) return new PyDict(OD);
    throw new FormatError(`cannot instantiate ${describePyValue(cls)} in a weights-only checkpoint`);
  }

  build(obj: PyValue, state: PyValue): PyValue {
    if (obj instanceof PyDict) obj.attributes = state; // OrderedDict state dicts carry `_metadata`
    else if (obj instanceof PyObject) obj.state = state;
    else if (obj instanceof PthTensor && emptyish(state)) return obj;
    else throw new FormatError(`cannot set the state of a ${describePyValue(obj)}`);
    return obj;
  }

  persistentLoad(pid: PyValue): PyValue {
    if (!isTuple(pid) || pid[0] !== 'storage') throw new FormatError(`unsupported persistent id ${describePyValue(pid)} (expected ('storage', …))`);
    return this.storageFor(pid);
  }
}

/** Validates a storage persistent id `('storage', torch.XStorage, key, location, numel[, view_metadata])`. */
function storagePid(pid: readonly PyValue[], legacy: boolean): { dtype: SafetensorsDtype; key: string; numel: number; view: PyValue } {
  if (pid.length !== (legacy ? 6 : 5)) throw new FormatError(`storage persistent id has ${pid.length} fields, expected ${legacy ? 6 : 5}`);
  const [, type, key, location, numel] = pid;
  const typeName = type instanceof PyGlobal && type.module === 'torch' ? type.name : undefined;
  const dtype = typeName ? STORAGE_DTYPES[typeName] : undefined;
  if (!dtype) throw new FormatError(`unsupported storage type ${describePyValue(type)}`);
  if (typeof key !== 'string' || key.length === 0 || key.length > 256) throw new FormatError('storage key must be a short non-empty string');
  // The location ('cpu', 'cuda:0', …) says where the storage lived when saved: irrelevant here.
  if (typeof location !== 'string') throw new FormatError(`storage location must be a string, got ${describePyValue(location)}`);
  return { dtype, key, numel: int(numel, `storage '${key}' size`), view: legacy ? pid[5]! : null };
}

// ---------------------------------------------------------------------------------------------
// Containers

export interface PthReadOptions {
  /**
   * 'error' (default): a global outside the allowlist is refused, naming it. 'placeholder': it
   * becomes an inert `PyObject` (never imported, never called), listed in `placeholders`; use only
   * for files you trust, e.g. training checkpoints holding `argparse.Namespace` args.
   */
  unknownGlobals?: 'error' | 'placeholder';
  /** Inflates deflated zip entries (torch never writes them; re-zipped files may have them). `loadPthFile` passes node:zlib's. */
  inflate?: InflateRaw;
  /** Check each zip record's CRC-32 (default true). */
  verifyCrc?: boolean;
}

export interface PthCheckpoint {
  /** The unpickled object: PyDict for dicts, PthTensor for tensors (see `PyValue`). */
  root: PyValue;
  format: 'zip' | 'legacy';
  /** Byte order of the storages (zip `byteorder` record; legacy sys_info). */
  byteOrder: 'little' | 'big';
  /** Globals replaced by placeholders (placeholder mode only). */
  placeholders: string[];
}

/** True when the bytes start like a `torch.save` file (zip, or a protocol-2+ pickle). */
export function looksLikePth(bytes: Uint8Array): boolean {
  return looksLikeZip(bytes) || (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1]! >= 2 && bytes[1]! <= 5);
}

function readZip(bytes: Uint8Array, options: PthReadOptions): PthCheckpoint {
  const zip = new ZipArchive(bytes, options.inflate);
  const verifyCrc = options.verifyCrc ?? true;
  const pkls = [...zip.entries.keys()].filter((n) => n === 'data.pkl' || n.endsWith('/data.pkl'));
  const depth = (n: string) => n.split('/').length;
  const minDepth = Math.min(...pkls.map(depth));
  const top = pkls.filter((n) => depth(n) === minDepth);
  if (!top.length) {
    throw new FormatError(`zip archive has no '<folder>/data.pkl' record: not a torch.save checkpoint (entries: ${[...zip.entries.keys()].slice(0, 5).join(', ')})`);
  }
  if (top.length > 1) throw new FormatError(`zip archive has several data.pkl records (${top.join(', ')}): ambiguous`);
  const prefix = top[0]!.slice(0, -'data.pkl'.length);
  let byteOrder: 'little' | 'big' = 'little';
  if (zip.entries.has(`${prefix}byteorder`)) {
    const b = new TextDecoder().decode(zip.read(`${prefix}byteorder`, { verifyCrc })).trim();
    if (b !== 'little' && b !== 'big') throw new FormatError(`byteorder record says '${b.slice(0, 20)}', expected 'little' or 'big'`);
    byteOrder = b;
  }
  const torchScript = zip.entries.has(`${prefix}constants.pkl`) || [...zip.entries.keys()].some((n) => n.startsWith(`${prefix}code/`));
  const storages = new Map<string, PthStorage>();
  const policy = new TorchPolicy(
    (pid) => {
      const { dtype, key, numel } = storagePid(pid, false);
      const cacheKey = `${key}\0${dtype}`;
      const known = storages.get(cacheKey);
      if (known) {
        if (known.numel !== numel) throw new FormatError(`storage '${key}' is referenced with ${known.numel} and ${numel} elements`);
        return known;
      }
      const record = `${prefix}data/${key}`;
      const entry = zip.entries.get(record);
      if (!entry) throw new FormatError(`storage '${key}' has no record '${record}' in the archive`);
      const want = numel * dtypeItemSize(dtype);
      if (entry.size !== want) {
        throw new FormatError(`storage '${key}' holds ${numel} ${dtype} elements (${want} bytes) but its record '${record}' has ${entry.size} bytes`);
      }
      const s = new PthStorage(key, dtype, numel, byteOrder === 'big', () => zip.read(record, { verifyCrc }));
      storages.set(cacheKey, s);
      return s;
    },
    options.unknownGlobals === 'placeholder',
    torchScript,
  );
  const root = unpickle(zip.read(top[0]!, { verifyCrc }), policy).value;
  return { root, format: 'zip', byteOrder, placeholders: [...policy.placeholders] };
}

/** A policy for the legacy header pickles: plain data only. */
const DATA_ONLY: UnpicklePolicy = {
  global: (m, n) => {
    throw new FormatError(`refusing global '${m}.${n}' in a checkpoint header`);
  },
  call: () => {
    throw new FormatError('unexpected call in a checkpoint header');
  },
  newObject: () => {
    throw new FormatError('unexpected object in a checkpoint header');
  },
  build: () => {
    throw new FormatError('unexpected BUILD in a checkpoint header');
  },
  persistentLoad: () => {
    throw new FormatError('unexpected persistent id in a checkpoint header');
  },
};

function readLegacy(bytes: Uint8Array, options: PthReadOptions): PthCheckpoint {
  if (bytes.length > 262 && new TextDecoder('latin1').decode(bytes.subarray(257, 262)) === 'ustar') {
    throw new FormatError('this is a tar-format checkpoint (PyTorch < 0.4), which is not supported; re-save it with a current torch');
  }
  let magic: PyValue;
  let pos: number;
  try {
    ({ value: magic, end: pos } = unpickle(bytes, DATA_ONLY));
  } catch (err) {
    const head = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new FormatError(`not a PyTorch checkpoint: neither a zip archive nor a torch.save pickle (starts with ${head}; ${(err as Error).message})`);
  }
  if (magic !== LEGACY_MAGIC) throw new FormatError('a pickle, but not a torch.save checkpoint (no legacy magic number)');
  const header2 = unpickle(bytes, DATA_ONLY, pos);
  const protocol = header2.value;
  pos = header2.end;
  if (protocol !== LEGACY_PROTOCOL) throw new FormatError(`legacy checkpoint protocol ${describePyValue(protocol)} ${String(protocol)} is not supported (expected ${LEGACY_PROTOCOL})`);
  const header3 = unpickle(bytes, DATA_ONLY, pos);
  const sysInfo = header3.value;
  pos = header3.end;
  if (!(sysInfo instanceof PyDict)) throw new FormatError('legacy checkpoint sys_info is not a dict');
  const little = sysInfo.get('little_endian');
  if (typeof little !== 'boolean') throw new FormatError('legacy checkpoint sys_info has no little_endian flag');

  // Storages are declared by the object pickle and filled from the data that follows the keys list.
  const roots = new Map<string, { dtype: SafetensorsDtype; numel: number; data?: Uint8Array; storage: PthStorage }>();
  const views = new Map<string, PthStorage>();
  const dataOf = (key: string) => {
    const r = roots.get(key)!;
    if (!r.data) throw new FormatError(`storage '${key}' is not in the checkpoint's storage list`);
    return r.data;
  };
  const policy = new TorchPolicy(
    (pid) => {
      const { dtype, key, numel, view } = storagePid(pid, true);
      let root = roots.get(key);
      if (!root) {
        root = { dtype, numel, storage: new PthStorage(key, dtype, numel, !little, () => dataOf(key)) };
        roots.set(key, root);
      } else if (root.dtype !== dtype || root.numel !== numel) {
        throw new FormatError(`storage '${key}' is declared as both ${root.numel} ${root.dtype} and ${numel} ${dtype} elements`);
      }
      if (view === null) return root.storage;
      // (view_key, offset, size): a storage that is a slice of the root one (very old files).
      if (!isTuple(view) || view.length !== 3 || typeof view[0] !== 'string') throw new FormatError(`storage '${key}' has malformed view metadata`);
      const vkey = view[0];
      const off = int(view[1]!, `storage view '${vkey}' offset`);
      const size = int(view[2]!, `storage view '${vkey}' size`);
      if (off + size > numel) throw new FormatError(`storage view '${vkey}' [${off}, ${off + size}) exceeds storage '${key}' of ${numel} elements`);
      let v = views.get(vkey);
      if (!v) {
        const k = dtypeItemSize(dtype);
        const r = root;
        v = new PthStorage(`${key}[${off}:${off + size}]`, dtype, size, !little, () => r.storage.bytes().subarray(off * k, (off + size) * k));
        views.set(vkey, v);
      }
      return v;
    },
    options.unknownGlobals === 'placeholder',
    false,
  );
  const main = unpickle(bytes, policy, pos);
  const root = main.value;
  const list = unpickle(bytes, DATA_ONLY, main.end);
  const keys = list.value;
  pos = list.end;
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) throw new FormatError('legacy checkpoint storage key list is malformed');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const key of keys as string[]) {
    const r = roots.get(key);
    if (!r) throw new FormatError(`storage list names '${key}', which the checkpoint never declares`);
    if (r.data) throw new FormatError(`storage '${key}' is listed twice`);
    if (pos + 8 > bytes.length) throw new FormatError(`storage '${key}' data ends early at byte ${bytes.length} (truncated file?)`);
    const count = dv.getBigInt64(pos, true);
    if (count !== BigInt(r.numel)) throw new FormatError(`storage '${key}' data holds ${count} elements but was declared with ${r.numel}`);
    const n = r.numel * dtypeItemSize(r.dtype);
    const start = pos + 8;
    if (start + n > bytes.length) {
      throw new FormatError(`storage '${key}' needs bytes [${start}, ${start + n}) but the file ends at ${bytes.length} (truncated file?)`);
    }
    r.data = bytes.subarray(start, start + n);
    pos = start + n;
  }
  for (const [key, r] of roots) if (!r.data) throw new FormatError(`storage '${key}' is used but missing from the storage list`);
  return { root, format: 'legacy', byteOrder: little ? 'little' : 'big', placeholders: [...policy.placeholders] };
}

/**
 * Parses a `torch.save` file. Tensors come back as lazy `PthTensor`s (views checked, data not yet
 * read). Throws FormatError on anything malformed or outside the allowlist.
 */
export function readPth(bytes: Uint8Array, options: PthReadOptions = {}): PthCheckpoint {
  try {
    return looksLikeZip(bytes) ? readZip(bytes, options) : readLegacy(bytes, options);
  } catch (err) {
    if (err instanceof VitError) throw err;
    // A check we missed must still surface as a clean format error, never as a crash.
    throw new FormatError(`corrupt checkpoint (${(err as Error)?.message ?? String(err)})`);
  }
}

// ---------------------------------------------------------------------------------------------
// Finding the state dict

export interface FindStateDictOptions {
  /** Top-level entry holding the state dict; by default chosen as timm's `load_state_dict` does. */
  key?: string;
  /** Prefer `state_dict_ema` / `model_ema` when present (default true, as timm). */
  useEma?: boolean;
}

function tensorCount(v: PyValue): number {
  if (!(v instanceof PyDict)) return 0;
  let n = 0;
  for (const x of v.values()) if (x instanceof PthTensor) n++;
  return n;
}

function describeEntry(v: PyValue): string {
  const n = tensorCount(v);
  if (v instanceof PyDict) return n ? `${v.className} of ${n} tensors` : `${v.className} of ${v.size} entries`;
  if (v instanceof PthTensor) return `tensor ${v.dtype} [${v.shape.join(', ')}]`;
  return describePyValue(v);
}

/**
 * The state dict inside a checkpoint, chosen as timm does: `state_dict_ema`, then `model_ema`
 * (when `useEma`), `state_dict`, `model`, else the object itself. Throws FormatError, listing the
 * top-level entries, when that is not a dict of tensors.
 */
export function findStateDict(root: PyValue, options: FindStateDictOptions = {}): { key: string | null; dict: PyDict } {
  const useEma = options.useEma ?? true;
  let key: string | null = null;
  if (root instanceof PyDict) {
    if (options.key !== undefined) {
      if (!root.has(options.key)) {
        throw new FormatError(`checkpoint has no entry '${options.key}'; top-level entries: ${[...root.keys()].map(String).join(', ')}`);
      }
      key = options.key;
    } else {
      const present = (k: string) => root.has(k) && root.get(k) !== null;
      if (useEma && present('state_dict_ema')) key = 'state_dict_ema';
      else if (useEma && present('model_ema')) key = 'model_ema';
      else if (root.has('state_dict')) key = 'state_dict';
      else if (root.has('model')) key = 'model';
    }
  }
  const dict = key === null ? root : (root as PyDict).get(key)!;
  if (!(dict instanceof PyDict) || (tensorCount(dict) === 0 && dict.size > 0)) {
    const where = key === null ? 'the checkpoint' : `entry '${key}'`;
    const listing =
      root instanceof PyDict
        ? `; top-level entries: ${[...root.entries()].map(([k, v]) => `${String(k)} (${describeEntry(v)})`).join(', ')}`
        : '';
    throw new FormatError(`${where} is not a state dict of tensors (it holds: ${describeEntry(dict)})${listing}`);
  }
  return { key, dict };
}

/** Plain-data summary of a Python value for messages and JSON: tensors described, cycles and size bounded. */
export function pyToPlain(v: PyValue, budget = { nodes: 2000 }, depth = 0, seen = new Set<object>()): unknown {
  if (budget.nodes-- <= 0) return '…';
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return v;
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof PthTensor) return `<tensor ${v.dtype} [${v.shape.join(', ')}]>`;
  if (v instanceof Uint8Array) return `<bytes ${v.length}>`;
  if (v instanceof PyGlobal) return `<${v.qualifiedName}>`;
  if (seen.has(v) || depth > 8) return '…';
  seen.add(v);
  try {
    if (v instanceof PyObject) {
      const state = v.state === undefined ? undefined : pyToPlain(v.state, budget, depth + 1, seen);
      return { __placeholder__: v.cls.qualifiedName, ...(v.args.length ? { args: v.args.map((a) => pyToPlain(a, budget, depth + 1, seen)) } : {}), ...(state === undefined ? {} : { state }) };
    }
    if (Array.isArray(v)) return v.map((x) => pyToPlain(x, budget, depth + 1, seen));
    if (v instanceof Set) return [...v].map((x) => pyToPlain(x, budget, depth + 1, seen));
    if (v instanceof PyDict) {
      const o: Record<string, unknown> = {};
      for (const [k, x] of v) o[typeof k === 'string' ? k : String(pyToPlain(k, budget, depth + 1, seen))] = pyToPlain(x, budget, depth + 1, seen);
      return o;
    }
    return `<${describePyValue(v)}>`;
  } finally {
    seen.delete(v);
  }
}

// ---------------------------------------------------------------------------------------------
// Tensors

export interface PthLoadOptions extends PthReadOptions, FindStateDictOptions {
  /**
   * A prefix to remove from every key. Default: `module.` (DataParallel / DDP checkpoints) when
   * every key carries it. `false` keeps keys as they are.
   */
  stripPrefix?: string | false;
}

export interface LoadedPth {
  /** New tensors (float32, int32 or bool) the caller disposes, in the state dict's order. */
  tensors: Map<string, tf.Tensor>;
  /** The dtype each tensor had in the file (F16/BF16/F64 are widened or rounded to float32, I64 narrowed to int32). */
  dtypes: Map<string, SafetensorsDtype>;
  /** The top-level entry that held the state dict (`'model'`, `'state_dict'`…); null when the file is the state dict. */
  stateDictKey: string | null;
  /** The prefix removed from every key, if any. */
  strippedPrefix: string | null;
  /** The checkpoint's other top-level entries as plain data (tensors described, not loaded). */
  extra: Record<string, unknown>;
  /** State-dict entries that are not tensors (skipped). */
  skippedKeys: string[];
  format: 'zip' | 'legacy';
  /** Globals replaced by placeholders (placeholder mode only). */
  placeholders: string[];
}

/** Reads a `torch.save` checkpoint's state dict into TF.js tensors. All or nothing: on error no tensor is left allocated. */
export function loadPth(bytes: Uint8Array, options: PthLoadOptions = {}): LoadedPth {
  const ckpt = readPth(bytes, options);
  const { key, dict } = findStateDict(ckpt.root, options);
  const entries: Array<[string, PthTensor]> = [];
  const skippedKeys: string[] = [];
  for (const [k, v] of dict) {
    // A state dict is keyed by parameter names; any other key type would otherwise leave the
    // tensors behind silently and load an empty dict.
    if (typeof k !== 'string') {
      const where = key === null ? 'the state dict' : `the state dict (entry '${key}')`;
      throw new FormatError(`${where} has a key of type ${describePyValue(k)} ${JSON.stringify(pyToPlain(k)).slice(0, 40)}; state dict keys must be strings (parameter names)`);
    }
    if (v instanceof PthTensor) entries.push([k, v]);
    else skippedKeys.push(k);
  }
  let prefix: string | null = null;
  if (typeof options.stripPrefix === 'string') prefix = options.stripPrefix;
  else if (options.stripPrefix === undefined && entries.length && entries.every(([k]) => k.startsWith('module.'))) prefix = 'module.';
  const tensors = new Map<string, tf.Tensor>();
  const dtypes = new Map<string, SafetensorsDtype>();
  try {
    for (const [k, t] of entries) {
      const name = prefix && k.startsWith(prefix) ? k.slice(prefix.length) : k;
      if (tensors.has(name)) throw new FormatError(`two keys become '${name}' after removing prefix '${prefix}'`);
      let raw: RawTensor;
      try {
        raw = t.toRaw(k);
      } catch (err) {
        if (err instanceof FormatError) throw new FormatError(`tensor '${k}': ${err.message}`);
        throw err;
      }
      tensors.set(name, rawToTensor(raw));
      dtypes.set(name, t.dtype);
    }
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  }
  const extra: Record<string, unknown> = {};
  if (key !== null && ckpt.root instanceof PyDict) {
    const budget = { nodes: 2000 };
    for (const [k, v] of ckpt.root) if (k !== key) extra[String(k)] = pyToPlain(v, budget);
  }
  return { tensors, dtypes, stateDictKey: key, strippedPrefix: prefix, extra, skippedKeys, format: ckpt.format, placeholders: ckpt.placeholders };
}

/**
 * Reads a `torch.save` file (Node): see `loadPth`. Errors name the file. Importing this module
 * stays harmless in a browser (use `loadPth` there).
 */
export async function loadPthFile(file: string, options: PthLoadOptions = {}): Promise<LoadedPth> {
  const { fs, zlib } = requireNode('loadPthFile', 'elsewhere read the bytes yourself and use loadPth');
  let buf: Uint8Array;
  try {
    buf = await fs.promises.readFile(file);
  } catch (err) {
    const e = new VitError(`Cannot read '${file}': ${(err as Error)?.message ?? String(err)}`, 'VIT_IO');
    (e as { cause?: unknown }).cause = err;
    throw e;
  }
  const inflate: InflateRaw = (data, max) => zlib.inflateRawSync(data, { maxOutputLength: Math.max(1, max) });
  try {
    return loadPth(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), { inflate, ...options });
  } catch (err) {
    if (err instanceof FormatError) throw new FormatError(`${file}: ${err.message}`);
    throw err;
  }
}
