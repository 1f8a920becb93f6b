/**
 * A restricted Python unpickler (protocols 0–5) that never executes anything. Pickles build
 * objects by calling importable callables (GLOBAL/STACK_GLOBAL/INST + REDUCE/NEWOBJ/OBJ/BUILD),
 * which is how a checkpoint can run `os.system`; here every global is resolved by a policy (an
 * allowlist: see pth.ts) and every call is interpreted by it, so the worst a hostile pickle can do
 * is be refused. Every read is bounds-checked and every loop consumes input, so there are no
 * out-of-range reads, hangs, or allocations larger than the pickle itself.
 */
import { FormatError } from '../errors.js';

/** A Python dict (or OrderedDict): keys are strings, numbers, bigints, tuples… */
export class PyDict extends Map<PyValue, PyValue> {
  /** Attributes set by BUILD (an OrderedDict state dict's `_metadata`). */
  attributes?: PyValue;
  constructor(readonly className: string = 'dict') {
    super();
  }
}

/** A global that the policy let through: a name standing for a callable or class, never imported. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    /** True for a name outside the allowlist, admitted as an inert placeholder (lenient mode). */
    readonly placeholder = false,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An inert stand-in for an object of a class outside the allowlist (lenient mode only). */
export class PyObject {
  state?: PyValue;
  constructor(
    readonly cls: PyGlobal,
    readonly args: PyValue[],
  ) {}
}

/**
 * Python values: None → null, int → number (bigint beyond 2^53), str → string, bytes →
 * Uint8Array, list → array, tuple → frozen array, dict → PyDict, set → Set; plus whatever the
 * policy returns (tensors, storages).
 */
export type PyValue = null | boolean | number | bigint | string | Uint8Array | PyValue[] | PyDict | Set<PyValue> | PyGlobal | PyObject | object;

export function isTuple(v: unknown): v is readonly PyValue[] {
  return Array.isArray(v) && Object.isFrozen(v);
}

function tuple(items: PyValue[]): readonly PyValue[] {
  return Object.freeze(items);
}

/** How globals, calls and persistent ids are interpreted. Every method may throw FormatError to refuse. */
export interface UnpicklePolicy {
  /** GLOBAL / STACK_GLOBAL / INST: the value standing for `module.name`. */
  global(module: string, name: string): PyValue;
  /** REDUCE / OBJ / INST: `fn(*args)`. */
  call(fn: PyValue, args: readonly PyValue[]): PyValue;
  /** NEWOBJ / NEWOBJ_EX: `cls.__new__(cls, *args, **kwargs)`. */
  newObject(cls: PyValue, args: readonly PyValue[], kwargs?: PyDict): PyValue;
  /** BUILD: `obj.__setstate__(state)`; returns the object that stays on the stack. */
  build(obj: PyValue, state: PyValue): PyValue;
  /** PERSID / BINPERSID. */
  persistentLoad(pid: PyValue): PyValue;
}

export interface UnpickleResult {
  value: PyValue;
  /** Offset just past the STOP opcode (legacy checkpoints put several pickles back to back). */
  end: number;
}

/** Python ints wider than this many bytes are refused (nothing in a checkpoint needs them). */
const MAX_LONG_BYTES = 256;

export function describePyValue(v: unknown): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (v instanceof Uint8Array) return 'bytes';
  if (isTuple(v)) return 'tuple';
  if (Array.isArray(v)) return 'list';
  if (v instanceof PyDict) return v.className;
  if (v instanceof Set) return 'set';
  if (v instanceof PyGlobal) return v.qualifiedName;
  if (v instanceof PyObject) return `${v.cls.qualifiedName} object`;
  const name = (v as { constructor?: { name?: string } })?.constructor?.name;
  return name ?? typeof v;
}

/**
 * Runs one pickle starting at `start` under `policy`. Throws FormatError (with the byte offset)
 * on malformed input or anything the policy refuses.
 */
export function unpickle(bytes: Uint8Array, policy: UnpicklePolicy, start = 0): UnpickleResult {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = bytes.length;
  const stack: PyValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const latin1 = new TextDecoder('latin1');
  let pos = start;
  let opAt = start;

  const fail = (msg: string): never => {
    throw new FormatError(`pickle byte ${opAt}: ${msg}`);
  };
  const need = (n: number) => {
    if (n < 0 || pos + n > len) fail(`data ends early (needs ${n} more bytes, ${len - pos} left; truncated file?)`);
  };
  const u8 = () => {
    need(1);
    return bytes[pos++]!;
  };
  const u16 = () => {
    need(2);
    const v = dv.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const i32 = () => {
    need(4);
    const v = dv.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = dv.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = () => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(len)) fail(`length ${v} exceeds the data`);
    return Number(v);
  };
  const take = (n: number) => {
    need(n);
    const s = bytes.subarray(pos, pos + n);
    pos += n;
    return s;
  };
  const line = () => {
    const nl = bytes.indexOf(0x0a, pos);
    if (nl < 0) fail('text opcode has no terminating newline (truncated?)');
    const s = latin1.decode(bytes.subarray(pos, nl));
    pos = nl + 1;
    return s;
  };
  const str = (b: Uint8Array) => {
    try {
      return utf8.decode(b);
    } catch {
      return fail('string is not valid UTF-8');
    }
  };
  const push = (v: PyValue) => stack.push(v);
  const pop = (): PyValue => {
    if (stack.length <= (marks.length ? marks[marks.length - 1]! : 0)) fail('stack underflow (corrupt pickle)');
    return stack.pop()!;
  };
  const top = (): PyValue => {
    if (stack.length <= (marks.length ? marks[marks.length - 1]! : 0)) fail('stack underflow (corrupt pickle)');
    return stack[stack.length - 1]!;
  };
  const popMark = (): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) return fail('no MARK on the stack (corrupt pickle)');
    return stack.splice(m);
  };
  const intFrom = (v: bigint): number | bigint => (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
  const decodeLong = (b: Uint8Array): number | bigint => {
    if (b.length > MAX_LONG_BYTES) fail(`integer of ${b.length} bytes is too large`);
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return intFrom(v);
  };
  const parseIntText = (s: string): number | bigint => {
    const t = s.endsWith('L') ? s.slice(0, -1) : s;
    if (!/^[-+]?\d+$/.test(t) || t.length > 2 * MAX_LONG_BYTES) fail(`bad integer literal '${s.slice(0, 40)}'`);
    return intFrom(BigInt(t));
  };
  const memoGet = (i: number) => {
    if (!memo.has(i)) fail(`memo key ${i} was never stored (corrupt pickle)`);
    return memo.get(i)!;
  };
  const memoPut = (i: number) => memo.set(i, top());
  const asDict = (v: PyValue, op: string): PyDict => {
    if (!(v instanceof PyDict)) return fail(`${op} on a ${describePyValue(v)}, not a dict`);
    return v;
  };
  const asList = (v: PyValue, op: string): PyValue[] => {
    if (!Array.isArray(v) || isTuple(v)) return fail(`${op} on a ${describePyValue(v)}, not a list`);
    return v;
  };
  const asArgs = (v: PyValue, op: string): readonly PyValue[] => {
    if (!isTuple(v)) return fail(`${op} arguments must be a tuple, got ${describePyValue(v)}`);
    return v;
  };
  const name = (v: PyValue, what: string): string => {
    if (typeof v !== 'string') return fail(`STACK_GLOBAL ${what} must be a str, got ${describePyValue(v)}`);
    return v;
  };

  for (;;) {
    opAt = pos;
    if (pos >= len) fail('pickle ends without a STOP opcode (truncated?)');
    const op = bytes[pos++]!;
    switch (op) {
      case 0x80: {
        // PROTO
        const p = u8();
        if (p > 5) fail(`unsupported pickle protocol ${p}`);
        break;
      }
      case 0x95: // FRAME: a length prefix only
        u64();
        break;
      case 0x2e: {
        // STOP
        if (marks.length) fail('STOP inside an open MARK (corrupt pickle)');
        return { value: pop(), end: pos };
      }
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x30: // POP
        if (stack.length && marks.length && marks[marks.length - 1] === stack.length) popMark();
        else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x49: {
        // INT (text); protocol 0 spells booleans 01 / 00
        const s = line();
        push(s === '01' ? true : s === '00' ? false : parseIntText(s));
        break;
      }
      case 0x4c: // LONG (text)
        push(parseIntText(line()));
        break;
      case 0x4a: // BININT
        push(i32());
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x8a: // LONG1
        push(decodeLong(take(u8())));
        break;
      case 0x8b: {
        // LONG4
        const n = i32();
        if (n < 0) fail('negative LONG4 length');
        push(decodeLong(take(n)));
        break;
      }
      case 0x46: {
        // FLOAT (text)
        const s = line().trim();
        const v = Number(s);
        if (s === '' || (Number.isNaN(v) && !/^[-+]?nan$/i.test(s))) fail(`bad float literal '${s.slice(0, 40)}'`);
        push(v);
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x53: // STRING (text, Python repr)
        push(unrepr(line(), fail));
        break;
      case 0x54: {
        // BINSTRING
        const n = i32();
        if (n < 0) fail('negative BINSTRING length');
        push(str(take(n)));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        push(str(take(u8())));
        break;
      case 0x56: // UNICODE (raw-unicode-escape)
        push(rawUnicodeEscape(line()));
        break;
      case 0x58: // BINUNICODE
        push(str(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(str(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        push(str(take(u64())));
        break;
      case 0x42: // BINBYTES
        push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        push(take(u64()).slice());
        break;
      case 0x29: // EMPTY_TUPLE
        push(tuple([]));
        break;
      case 0x74: // TUPLE
        push(tuple(popMark()));
        break;
      case 0x85: // TUPLE1
        push(tuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        push(tuple([a, b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        push(tuple([a, b, c]));
        break;
      }
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        asList(top(), 'APPEND').push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        asList(top(), 'APPENDS').push(...items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        push(new PyDict());
        break;
      case 0x64: {
        // DICT
        const items = popMark();
        if (items.length % 2) fail('DICT with an odd number of items');
        const d = new PyDict();
        for (let i = 0; i < items.length; i += 2) d.set(items[i]!, items[i + 1]!);
        push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        asDict(top(), 'SETITEM').set(k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        if (items.length % 2) fail('SETITEMS with an odd number of items');
        const d = asDict(top(), 'SETITEMS');
        for (let i = 0; i < items.length; i += 2) d.set(items[i]!, items[i + 1]!);
        break;
      }
      case 0x8f: // EMPTY_SET
        push(new Set<PyValue>());
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail(`ADDITEMS on a ${describePyValue(s)}, not a set`);
        for (const it of items) (s as Set<PyValue>).add(it);
        break;
      }
      case 0x91: // FROZENSET
        push(new Set(popMark()));
        break;
      case 0x67: // GET
        push(memoGet(Number(parseIntText(line()))));
        break;
      case 0x68: // BINGET
        push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        push(memoGet(u32()));
        break;
      case 0x70: // PUT
        memoPut(Number(parseIntText(line())));
        break;
      case 0x71: // BINPUT
        memoPut(u8());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32());
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size);
        break;
      case 0x63: {
        // GLOBAL
        const module = line();
        push(policy.global(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const n = name(pop(), 'name');
        push(policy.global(name(pop(), 'module'), n));
        break;
      }
      case 0x69: {
        // INST: module and name inline, arguments since the MARK
        const module = line();
        const cls = policy.global(module, line());
        push(policy.call(cls, tuple(popMark())));
        break;
      }
      case 0x6f: {
        // OBJ: class and arguments since the MARK
        const items = popMark();
        if (!items.length) fail('OBJ without a class');
        push(policy.call(items[0]!, tuple(items.slice(1))));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = asArgs(pop(), 'REDUCE');
        push(policy.call(pop(), args));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = asArgs(pop(), 'NEWOBJ');
        push(policy.newObject(pop(), args));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = asDict(pop(), 'NEWOBJ_EX kwargs');
        const args = asArgs(pop(), 'NEWOBJ_EX');
        push(policy.newObject(pop(), args, kwargs));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = pop();
        push(policy.build(obj, state));
        break;
      }
      case 0x50: // PERSID
        push(policy.persistentLoad(line()));
        break;
      case 0x51: // BINPERSID
        push(policy.persistentLoad(pop()));
        break;
      case 0x82:
      case 0x83:
      case 0x84:
        fail('EXT opcodes (the copyreg extension registry) name arbitrary globals and are not allowed');
        break;
      case 0x97:
      case 0x98:
        fail('out-of-band buffers (pickle protocol 5 NEXT_BUFFER) are not supported');
        break;
      default:
        fail(`unknown pickle opcode 0x${op.toString(16).padStart(2, '0')} (not a pickle, or a corrupt one)`);
    }
  }
}

/** Decodes a protocol-0 STRING argument: a Python `repr` of a byte string. */
function unrepr(s: string, fail: (m: string) => never): string {
  const q = s[0];
  if (s.length < 2 || (q !== "'" && q !== '"') || s[s.length - 1] !== q) return fail('STRING argument is not quoted');
  const body = s.slice(1, -1);
  const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', v: '\v' };
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const d = body[++i];
    if (d === undefined) return fail('STRING ends in a backslash');
    if (d in simple) out += simple[d];
    else if (d === 'x' && /^[0-9a-fA-F]{2}$/.test(body.slice(i + 1, i + 3))) {
      out += String.fromCharCode(parseInt(body.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (/[0-7]/.test(d)) {
      const m = /^[0-7]{1,3}/.exec(body.slice(i))![0];
      out += String.fromCharCode(parseInt(m, 8) & 0xff);
      i += m.length - 1;
    } else out += `\\${d}`;
  }
  return out;
}

function rawUnicodeEscape(s: string): string {
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (m, a: string | undefined, b: string | undefined) => {
    const cp = parseInt((a ?? b)!, 16);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
  });
}
