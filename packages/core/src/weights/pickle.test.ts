import { describe, expect, it } from 'vitest';
import { FormatError } from '../errors.js';
import { PyDict, PyGlobal, isTuple, unpickle, type PyValue, type UnpicklePolicy } from './pickle.js';

/**
 * Pickles written by CPython 3.11's `pickle.dumps(obj, protocol=p)` for
 * obj = {'a': [1, 2.5, 'x\né', None, True, False], 'b': (1, -2), 'big': 2**70, 'neg': -(2**40), 'i32': -100000, 'f': -0.125}
 */
const SAME_OBJECT: Record<number, string> = {
  0: '286470300a56610a70310a286c70320a49310a6146322e350a6156785c7530303061e90a70330a614e614930310a614930300a617356620a70340a2849310a492d320a7470350a73566269670a70360a4c313138303539313632303731373431313330333432344c0a73566e65670a70370a4c2d313039393531313632373737364c0a73566933320a70380a492d3130303030300a7356660a70390a462d302e3132350a732e',
  1: '7d71002858010000006171015d7102284b014740040000000000005804000000780ac3a971034e4930310a4930300a655801000000627104284b014afeffffff747105580300000062696771064c313138303539313632303731373431313330333432344c0a58030000006e656771074c2d313039393531313632373737364c0a580300000069333271084a6079feff580100000066710947bfc0000000000000752e',
  2: '80027d71002858010000006171015d7102284b014740040000000000005804000000780ac3a971034e88896558010000006271044b014afeffffff867105580300000062696771068a0900000000000000004058030000006e656771078a060000000000ff580300000069333271084a6079feff580100000066710947bfc0000000000000752e',
  3: '80037d71002858010000006171015d7102284b014740040000000000005804000000780ac3a971034e88896558010000006271044b014afeffffff867105580300000062696771068a0900000000000000004058030000006e656771078a060000000000ff580300000069333271084a6079feff580100000066710947bfc0000000000000752e',
  4: '80049566000000000000007d94288c0161945d94284b014740040000000000008c04780ac3a9944e8889658c0162944b014afeffffff86948c03626967948a090000000000000000408c036e6567948a060000000000ff8c03693332944a6079feff8c01669447bfc0000000000000752e',
  5: '80059566000000000000007d94288c0161945d94284b014740040000000000008c04780ac3a9944e8889658c0162944b014afeffffff86948c03626967948a090000000000000000408c036e6567948a060000000000ff8c03693332944a6079feff8c01669447bfc0000000000000752e',
};
/** `pickle.dumps({'by': b'\x00\xff', 's': {1, 2}, 'fs': frozenset([3])}, protocol=4)` */
const BYTES_SETS = '80049525000000000000007d94288c02627994430200ff948c0173948f94284b014b02908c02667394284b039194752e';
/** `l = []; l.append(l); pickle.dumps(l, protocol=2)` */
const CYCLE = '80025d71006800612e';
/** `pickle.dumps(E(), protocol=0)` where E.__reduce__ returns (os.system, ('touch /tmp/pwned_by_pth',)) (CPython names it posix.system). */
const EXEC_PROTO0 = '63706f7369780a73797374656d0a70300a2856746f756368202f746d702f70776e65645f62795f7074680a70310a7470320a5270330a2e';
/** Hand-written protocol 0: MARK, STRING 'touch /tmp/pwned_by_pth', INST os system, STOP. */
const EXEC_INST = '285327746f756368202f746d702f70776e65645f62795f707468270a696f730a73797374656d0a2e';

const hex = (s: string) => Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));

/** Records every global and call; executes nothing and builds only inert markers. */
function recordingPolicy() {
  const seen: string[] = [];
  const policy: UnpicklePolicy = {
    global: (m, n) => {
      seen.push(`global ${m}.${n}`);
      return new PyGlobal(m, n);
    },
    call: (fn, args) => {
      seen.push(`call ${(fn as PyGlobal).qualifiedName}(${args.map(String).join(', ')})`);
      return { called: (fn as PyGlobal).qualifiedName };
    },
    newObject: (cls) => ({ created: (cls as PyGlobal).qualifiedName }),
    build: (obj) => obj,
    persistentLoad: (pid) => ({ pid }),
  };
  return { seen, policy };
}

const refuseAll: UnpicklePolicy = {
  global: (m, n) => {
    throw new FormatError(`refused ${m}.${n}`);
  },
  call: () => {
    throw new FormatError('refused call');
  },
  newObject: () => {
    throw new FormatError('refused new');
  },
  build: () => {
    throw new FormatError('refused build');
  },
  persistentLoad: () => {
    throw new FormatError('refused pid');
  },
};

describe('unpickle', () => {
  it.each([0, 1, 2, 3, 4, 5])('reads what CPython writes with protocol %i', (p) => {
    const { value, end } = unpickle(hex(SAME_OBJECT[p]!), refuseAll);
    expect(end).toBe(SAME_OBJECT[p]!.length / 2);
    expect(value).toBeInstanceOf(PyDict);
    const d = value as PyDict;
    expect([...d.keys()]).toEqual(['a', 'b', 'big', 'neg', 'i32', 'f']);
    expect(d.get('a')).toEqual([1, 2.5, 'x\né', null, true, false]);
    expect(isTuple(d.get('a'))).toBe(false);
    expect(d.get('b')).toEqual([1, -2]);
    expect(isTuple(d.get('b'))).toBe(true);
    expect(d.get('big')).toBe(2n ** 70n);
    expect(d.get('neg')).toBe(-(2 ** 40));
    expect(d.get('i32')).toBe(-100000);
    expect(d.get('f')).toBe(-0.125);
  });

  it('reads bytes, sets and frozensets', () => {
    const d = unpickle(hex(BYTES_SETS), refuseAll).value as PyDict;
    expect(d.get('by')).toEqual(new Uint8Array([0, 255]));
    expect(d.get('s')).toEqual(new Set([1, 2]));
    expect(d.get('fs')).toEqual(new Set([3]));
  });

  it('keeps shared and cyclic references as references', () => {
    const l = unpickle(hex(CYCLE), refuseAll).value as PyValue[];
    expect(l.length).toBe(1);
    expect(l[0]).toBe(l);
  });

  it('hands globals and calls to the policy and never executes them', () => {
    for (const code of [EXEC_PROTO0, EXEC_INST]) {
      const { seen, policy } = recordingPolicy();
      const v = unpickle(hex(code), policy).value;
      expect(seen[0]).toMatch(/^global (posix|os)\.system$/);
      expect(seen[1]).toMatch(/^call (posix|os)\.system\(touch \/tmp\/pwned_by_pth\)$/);
      expect(v).toEqual({ called: seen[0]!.slice('global '.length) });
      expect(() => unpickle(hex(code), refuseAll)).toThrow(/refused (posix|os)\.system/);
    }
  });

  it.each([
    ['a truncated pickle', SAME_OBJECT[2]!.slice(0, -2), /without a STOP/],
    ['a cut float', SAME_OBJECT[2]!.slice(0, 44), /data ends early/],
    ['an unknown opcode', 'ff', /unknown pickle opcode 0xff/],
    ['a GET of an unset memo slot', '8002680a2e', /memo key 10 was never stored/],
    ['a stack underflow', '800230', /stack underflow/],
    ['SETITEM on a list', '80025d4b014b02732e', /SETITEM on a list/],
    ['APPEND on a tuple', '8002294b01612e', /APPEND on a tuple/],
    ['a huge LONG4', '80028bffffff7f2e', /data ends early/],
    ['a huge BINUNICODE8', '80048dffffffffffffff7f2e', /exceeds the data/],
    ['an EXT1 opcode', '800282012e', /EXT opcodes/],
    ['protocol 6', '80062e', /unsupported pickle protocol 6/],
    ['REDUCE with a non-tuple', '80024b014b02522e', /REDUCE arguments must be a tuple/],
    ['an odd DICT', '8002284b01642e', /odd number/],
    ['STOP inside a MARK', '8002282e', /STOP inside an open MARK/],
  ])('refuses %s with a FormatError', (_, code, message) => {
    let err: unknown;
    try {
      unpickle(hex(code), refuseAll);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FormatError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toMatch(/^pickle byte \d+: /);
  });

  it('reads deeply nested data without recursion', () => {
    // 100k nested EMPTY_LIST ... APPEND: a recursive reader would overflow its stack.
    const n = 100_000;
    const bytes = new Uint8Array(2 + n + (n - 1) + 1);
    bytes.set([0x80, 0x02]);
    bytes.fill(0x5d, 2, 2 + n);
    bytes.fill(0x61, 2 + n, 2 + n + n - 1);
    bytes[bytes.length - 1] = 0x2e;
    let v = unpickle(bytes, refuseAll).value as PyValue[];
    let depth = 1;
    while (v.length) {
      v = v[0] as PyValue[];
      depth++;
    }
    expect(depth).toBe(n);
  });
});
