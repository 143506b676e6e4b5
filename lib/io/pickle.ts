/**
 * A pickle reader for what PyTorch state dicts and training checkpoints hold, and nothing more. It never executes
 * anything: the opcodes that would call a Python callable (REDUCE, NEWOBJ, BUILD) are interpreted here, for a short
 * list of known callables, and
 *   - REDUCE (a function call) of any other callable is refused: the reader throws, naming the callable;
 *   - NEWOBJ (making an instance of a class without running its __init__, how argparse.Namespace is pickled) of any
 *     other class gives an inert PickleObject: the class name, the arguments and, after BUILD, the state; the items
 *     that SETITEMS / APPENDS add to an instance of a dict or list subclass (an EasyDict of a config) are kept with it.
 * The known callables are PyTorch's tensor rebuilders, OrderedDict, and the plain Python values that protocol 2 (what
 * torch.save writes) pickles as calls, as do the other entries of training checkpoints (their args, statistics):
 * set, frozenset, bytes (_codecs.encode), bytearray, complex, slice, defaultdict, Counter, torch.device, torch.Size,
 * and NumPy scalars (numpy.dtype and multiarray.scalar: numbers, booleans; NumPy arrays are refused).
 *
 * Values: None -> null, bool -> boolean, int -> number (bigint beyond 2^53), float -> number, str -> string,
 * bytes/bytearray -> Uint8Array, list/tuple/set/frozenset/torch.Size -> array, dict/OrderedDict/defaultdict/Counter ->
 * Map (insertion order, keys as values; a defaultdict's factory is dropped), torch.device -> string ('cuda:1'),
 * complex and slice -> PickleObject ('builtins.complex', [re, im]), persistent ids -> whatever `persistentLoad` makes
 * of them (storage references in PyTorch files), NumPy scalars -> number (bigint for 64-bit integers beyond 2^53) or
 * boolean.
 *
 * Supported: the binary opcodes of protocols 2 to 4 (PyTorch writes protocol 2), plus protocol 5's frames. The text
 * opcodes of protocols 0 and 1 and extension codes are refused. Every length is checked against the bytes left before
 * anything is allocated, so a damaged or hostile file can only produce an Error that names `source` and the byte.
 */
import { f16ToNumber } from './safetensors.js';

/** A reference to a Python global (module.name), made by GLOBAL; never resolved to anything executable. */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An instance of a class this reader does not know, kept as data: class name, constructor arguments, state. */
export class PickleObject {
  state: unknown = undefined;
  /** the items SETITEMS gave an instance of a dict subclass, else null */
  dictItems: Map<unknown, unknown> | null = null;
  /** the items APPEND(S) gave an instance of a list subclass, else null */
  listItems: unknown[] | null = null;
  constructor(
    readonly className: string,
    readonly args: unknown[],
  ) {}
}

/** A tensor as torch._utils._rebuild_tensor_v2 describes it: a view (offset, shape, strides) of a storage. */
export class PickleTensor {
  constructor(
    readonly storage: unknown,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

/** The callables REDUCE may call: each turns its arguments into a value here, without running Python code. */
const REDUCERS: Record<string, (args: unknown[], fail: (msg: string) => never) => unknown> = {
  'collections.OrderedDict': (args, fail) => {
    const m = new Map<unknown, unknown>();
    if (args.length === 0) return m;
    if (args.length !== 1 || !Array.isArray(args[0])) fail('OrderedDict takes no arguments or one list of pairs');
    for (const pair of args[0] as unknown[]) {
      if (!Array.isArray(pair) || pair.length !== 2) fail('OrderedDict items must be (key, value) pairs');
      const [k, v] = pair as [unknown, unknown];
      m.set(k, v);
    }
    return m;
  },
  'torch._utils._rebuild_tensor_v2': (args, fail) => rebuildTensor(args, 6, fail),
  'torch._utils._rebuild_tensor': (args, fail) => rebuildTensor(args, 4, fail),
  'torch._utils._rebuild_parameter': (args, fail) => parameterData(args, fail),
  'torch._utils._rebuild_parameter_with_state': (args, fail) => parameterData(args, fail),
  // protocol 0/1 instances, and protocol 2 for classes with __reduce__ returning copyreg._reconstructor
  'copyreg._reconstructor': (args, fail) => reconstruct(args, fail),
  'copy_reg._reconstructor': (args, fail) => reconstruct(args, fail),
  // plain values (protocol 2 names builtins `__builtin__`, looked up here as `builtins`)
  'builtins.set': (args, fail) => sequence(args, 'set', fail),
  'builtins.frozenset': (args, fail) => sequence(args, 'frozenset', fail),
  'builtins.bytes': (args, fail) => (args.length === 0 ? new Uint8Array(0) : fail('bytes() with arguments')),
  '_codecs.encode': (args, fail) => latin1(args, fail),
  'builtins.bytearray': (args, fail) => (args.length === 0 ? new Uint8Array(0) : args[0] instanceof Uint8Array ? args[0].slice() : latin1(args, fail)),
  'builtins.complex': (args, fail) => {
    if (args.length > 2 || !args.every((x) => typeof x === 'number')) fail(`complex of ${describeValue(args)}`);
    return new PickleObject('builtins.complex', [args[0] ?? 0, args[1] ?? 0]);
  },
  'builtins.slice': (args, fail) => (args.length <= 3 ? new PickleObject('builtins.slice', args) : fail(`slice of ${args.length} arguments`)),
  // filled by the SETITEMS that follow; the default factory (a global, e.g. builtins.list) is not kept
  'collections.defaultdict': (args, fail) => (args.length <= 1 ? new Map() : fail(`defaultdict of ${args.length} arguments`)),
  'collections.Counter': (args, fail) => {
    if (args.length === 0) return new Map();
    if (args.length !== 1 || !(args[0] instanceof Map)) fail('Counter takes no arguments or one dict');
    return new Map(args[0] as Map<unknown, unknown>);
  },
  'torch.device': (args, fail) => {
    const [type, index] = args;
    if (typeof type !== 'string' || args.length > 2 || !(index === undefined || index === null || isCount(index))) fail(`torch.device of ${describeValue(args)}`);
    return index === undefined || index === null ? type : `${type}:${index}`;
  },
  // NumPy scalars: scalar(dtype, bytes); NumPy 2 names its module numpy._core
  'numpy.dtype': (args, fail) => (typeof args[0] === 'string' ? new PickleObject('numpy.dtype', [args[0]]) : fail(`numpy.dtype of ${describeValue(args)}`)),
  'numpy.core.multiarray.scalar': (args, fail) => numpyScalar(args, fail),
  'numpy._core.multiarray.scalar': (args, fail) => numpyScalar(args, fail),
  'torch.Size': (args, fail) => (args.length === 1 && Array.isArray(args[0]) ? [...(args[0] as unknown[])] : fail(`torch.Size of ${describeValue(args)}`)),
};

/** numpy.core.multiarray.scalar(dtype, bytes): the value of a NumPy number or boolean. */
function numpyScalar(args: unknown[], fail: (msg: string) => never): number | bigint | boolean {
  const [dtype, data] = args;
  if (!(dtype instanceof PickleObject) || dtype.className !== 'numpy.dtype' || !(data instanceof Uint8Array))
    return fail(`a NumPy scalar of ${describeValue(args)} (expected a numpy.dtype and bytes)`);
  const code = String(dtype.args[0]);
  // the dtype's state (BUILD) is a tuple whose second item is its byte order: '<', '>', '=' (this machine's) or '|'
  const little = !(Array.isArray(dtype.state) && dtype.state[1] === '>');
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (!/^(f[248]|[iu][1248]|b1)$/.test(code) || data.length !== Number(code.slice(1)))
    return fail(`a NumPy scalar of dtype '${code}' and ${data.length} bytes (read: f2 f4 f8, i1 to i8, u1 to u8, b1)`);
  const int64 = (x: bigint) => (x >= BigInt(Number.MIN_SAFE_INTEGER) && x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x);
  switch (code) {
    case 'f2':
      return f16ToNumber(v.getUint16(0, little));
    case 'f4':
      return v.getFloat32(0, little);
    case 'f8':
      return v.getFloat64(0, little);
    case 'i1':
      return v.getInt8(0);
    case 'i2':
      return v.getInt16(0, little);
    case 'i4':
      return v.getInt32(0, little);
    case 'i8':
      return int64(v.getBigInt64(0, little));
    case 'u1':
      return v.getUint8(0);
    case 'u2':
      return v.getUint16(0, little);
    case 'u4':
      return v.getUint32(0, little);
    case 'u8':
      return int64(v.getBigUint64(0, little));
    default: // b1
      return data[0] !== 0;
  }
}

/** set(items) / frozenset(items): an array of the items. */
function sequence(args: unknown[], what: string, fail: (msg: string) => never): unknown[] {
  if (args.length === 0) return [];
  if (args.length !== 1 || !Array.isArray(args[0])) fail(`${what} takes no arguments or one list`);
  return [...(args[0] as unknown[])];
}

/** _codecs.encode(text, 'latin1'): how protocol 2 pickles bytes (each character one byte). */
function latin1(args: unknown[], fail: (msg: string) => never): Uint8Array {
  const [text, encoding] = args;
  if (args.length !== 2 || typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1'))
    fail(`_codecs.encode of ${describeValue(args)} (expected a text and 'latin1', as pickled bytes are)`);
  const out = new Uint8Array((text as string).length);
  for (let i = 0; i < out.length; i++) {
    const c = (text as string).charCodeAt(i);
    if (c > 0xff) fail('_codecs.encode: a character beyond latin1');
    out[i] = c;
  }
  return out;
}

function rebuildTensor(args: unknown[], minArgs: number, fail: (msg: string) => never): PickleTensor {
  if (args.length < minArgs) fail(`_rebuild_tensor takes at least ${minArgs} arguments, got ${args.length}`);
  const [storage, offset, shape, stride] = args;
  if (!isCount(offset)) fail(`tensor storage offset ${String(offset)} is not a non-negative integer`);
  if (!Array.isArray(shape) || !shape.every(isCount)) fail(`tensor size ${describeValue(shape)} is not a tuple of non-negative integers`);
  if (!Array.isArray(stride) || stride.length !== shape.length || !stride.every(isCount))
    fail(`tensor stride ${describeValue(stride)} is not a tuple of ${shape.length} non-negative integers`);
  return new PickleTensor(storage, offset, shape as number[], stride as number[]);
}

function parameterData(args: unknown[], fail: (msg: string) => never): unknown {
  if (!(args[0] instanceof PickleTensor)) fail('_rebuild_parameter: its data is not a tensor');
  return args[0];
}

function reconstruct(args: unknown[], fail: (msg: string) => never): PickleObject {
  if (!(args[0] instanceof PickleGlobal)) fail('_reconstructor: the class is not a global');
  const obj = new PickleObject((args[0] as PickleGlobal).qualifiedName, []);
  obj.state = args[2];
  return obj;
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * A short text of an unpickled value for messages: tuples and lists to a depth of 3 and 8 items each, at most 200
 * characters (a value of the file may be nested or shared without bound, or hold itself).
 */
export function describeValue(v: unknown, depth = 0): string {
  let s: string;
  if (Array.isArray(v))
    s = depth >= 3 ? `(${v.length} items)` : `(${v.slice(0, 8).map((x) => describeValue(x, depth + 1)).join(', ')}${v.length > 8 ? ', ...' : ''})`;
  else if (typeof v === 'string') s = JSON.stringify(v);
  else if (v instanceof Uint8Array) s = `<${v.length} bytes>`;
  else if (v instanceof PickleGlobal) s = v.qualifiedName;
  else if (v instanceof PickleObject) s = `<${v.className}>`;
  else if (v instanceof Map) s = `<dict of ${v.size}>`;
  else if (typeof v === 'object' && v !== null) s = `<${(v.constructor as { name?: string } | undefined)?.name ?? 'object'}>`;
  else s = String(v);
  return s.length > 200 ? `${s.slice(0, 197)}...` : s;
}

/** Thrown when the pickle runs past the end of the bytes given: more of the file may be needed (see unpickle). */
export class PickleTruncatedError extends Error {
  constructor(
    message: string,
    /** how many bytes from the start of those given the pickle needs at least */
    readonly needs: number,
  ) {
    super(message);
  }
}

export interface UnpickleOptions {
  /** names the file in errors */
  source?: string;
  /** where the pickle starts in `bytes` (default 0) */
  start?: number;
  /** turns a persistent id (BINPERSID) into a value; without it persistent ids are refused */
  persistentLoad?: (pid: unknown) => unknown;
  /** the file offset of bytes[0], for error messages */
  fileOffset?: number;
}

const MARK = Symbol('mark');

/** Reads one pickle from `bytes`; returns its value and the index just after its STOP opcode. */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions = {}): { value: unknown; end: number } {
  const source = opts.source ?? '<pickle>';
  const base = opts.fileOffset ?? 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let pos = opts.start ?? 0;
  let opAt = pos;

  const fail = (msg: string): never => {
    throw new Error(`${source}: pickle at byte ${base + opAt}: ${msg}`);
  };
  const need = (n: number | bigint): number => {
    if (typeof n === 'bigint' ? n > BigInt(bytes.length - pos) : n > bytes.length - pos)
      throw new PickleTruncatedError(`${source}: pickle at byte ${base + opAt}: truncated (needs ${n} more bytes, ${bytes.length - pos} left)`, pos + Number(n));
    const at = pos;
    pos += Number(n);
    return at;
  };
  const u8 = () => bytes[need(1)]!;
  const u16 = () => view.getUint16(need(2), true);
  const u32 = () => view.getUint32(need(4), true);
  const u64 = () => view.getBigUint64(need(8), true);
  const text = (n: number | bigint) => {
    const at = need(n);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(at, at + Number(n)));
    } catch {
      return fail('a string is not valid UTF-8');
    }
  };
  const raw = (n: number | bigint) => {
    const at = need(n);
    return bytes.slice(at, at + Number(n));
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw new PickleTruncatedError(`${source}: pickle at byte ${base + opAt}: truncated (no end of line)`, bytes.length + 1);
    const s = new TextDecoder('latin1').decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail('stack underflow');
    const v = stack.pop();
    if (v === MARK) fail('unexpected mark');
    return v;
  };
  const top = (): unknown => {
    const v = stack[stack.length - 1];
    if (stack.length === 0 || v === MARK) fail('stack underflow');
    return v;
  };
  const popMark = (): unknown[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) fail('no mark on the stack');
    const items = stack.splice(i);
    items.shift();
    return items;
  };
  const memoGet = (i: number) => {
    if (!memo.has(i)) fail(`memo entry ${i} was never stored`);
    return memo.get(i);
  };
  const setItems = (target: unknown, items: unknown[]) => {
    // an instance of a dict subclass keeps its items beside its state
    const map = target instanceof PickleObject ? (target.dictItems ??= new Map()) : target;
    if (!(map instanceof Map)) fail('SETITEM(S) on something that is not a dict');
    if (items.length % 2 !== 0) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) (map as Map<unknown, unknown>).set(items[i], items[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[]) => {
    const list = target instanceof PickleObject ? (target.listItems ??= []) : target;
    if (!Array.isArray(list)) fail('APPEND(S) on something that is not a list');
    for (const x of items) (list as unknown[]).push(x);
  };
  const long = (n: number) => {
    const at = need(n);
    if (n === 0) return 0;
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at + i]!);
    if (bytes[at + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const global = (module: string, name: string) => new PickleGlobal(module, name);
  const reduce = (callable: unknown, args: unknown) => {
    if (!(callable instanceof PickleGlobal)) fail('REDUCE of something that is not a global');
    if (!Array.isArray(args)) fail('REDUCE arguments are not a tuple');
    const g = callable as PickleGlobal;
    const reducer = REDUCERS[g.module === '__builtin__' ? `builtins.${g.name}` : g.qualifiedName];
    if (!reducer)
      fail(
        `refused to call ${g.qualifiedName}: a state dict has no such call, so this file holds more than weights ` +
          `(or is hostile); nothing was executed`,
      );
    return reducer!(args as unknown[], fail);
  };
  const newObject = (cls: unknown, args: unknown) => {
    if (!(cls instanceof PickleGlobal)) fail('NEWOBJ of something that is not a class');
    if (!Array.isArray(args)) fail('NEWOBJ arguments are not a tuple');
    if ((cls as PickleGlobal).qualifiedName === 'collections.OrderedDict') return new Map();
    return new PickleObject((cls as PickleGlobal).qualifiedName, args as unknown[]);
  };
  const build = (obj: unknown, state: unknown) => {
    if (obj instanceof PickleObject) obj.state = state;
    else if (!(obj instanceof Map) && !(obj instanceof PickleTensor)) fail('BUILD on a value that takes no state');
    // an OrderedDict's state is its attributes (state_dict()'s _metadata), a tensor's its Python attributes: not kept
  };

  for (;;) {
    opAt = pos;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail('pickle protocol above 5');
        break;
      case 0x95: // FRAME: a length hint only
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) fail(`STOP with ${stack.length} values on the stack`);
        return { value: stack[0], end: pos };
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x30: // POP
        stack.length ? stack.pop() : fail('stack underflow');
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(view.getInt32(need(4), true));
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(long(u8()));
        break;
      case 0x8b: {
        // LONG4: Python ints of up to 4 GB of digits; nothing in a checkpoint needs more than a few bytes
        const n = u32();
        if (n > 64) fail(`an integer of ${n} bytes`);
        stack.push(long(n));
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        stack.push(view.getFloat64(need(8), false));
        break;
      case 0x58: // BINUNICODE
        stack.push(text(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(text(u64()));
        break;
      case 0x42: // BINBYTES
        stack.push(raw(u32()));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(raw(u8()));
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        stack.push(raw(u64()));
        break;
      case 0x54: // BINSTRING (Python 2 str)
        stack.push(new TextDecoder('latin1').decode(raw(view.getInt32(need(4), true) >>> 0)));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(new TextDecoder('latin1').decode(raw(u8())));
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x74: // TUPLE
      case 0x6c: // LIST
      case 0x91: // FROZENSET
        stack.push(popMark());
        break;
      case 0x5d: // EMPTY_LIST
      case 0x8f: // EMPTY_SET
        stack.push([]);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: {
        // DICT
        const m = new Map();
        setItems(m, popMark());
        stack.push(m);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: // APPENDS
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
        stack.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()));
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        stack.push(global(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        stack.push(reduce(pop(), args));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        stack.push(newObject(pop(), args));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX (keyword arguments dropped with the rest of the call)
        pop();
        const args = pop();
        stack.push(newObject(pop(), args));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        build(top(), state);
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop();
        if (!opts.persistentLoad) fail('a persistent id, but this file type has none');
        stack.push(opts.persistentLoad!(pid));
        break;
      }
      default:
        fail(
          `unsupported opcode 0x${op.toString(16).padStart(2, '0')}` +
            (op >= 0x20 && op < 0x7f ? ` ('${String.fromCharCode(op)}')` : '') +
            ' (not a binary pickle of protocol 2 to 5 as PyTorch writes, or a damaged file)',
        );
    }
  }
}

/**
 * Turns unpickled data into plain JSON-like data: Maps with string keys become objects (other keys are turned into
 * strings), PickleObjects their dict or list items, else their state (or {__class__, args, state}), bigints strings,
 * bytes and tensors short descriptions.
 * Cycles, nesting deeper than 64 levels and whatever comes after the first 100,000 lists, dicts and objects become
 * '<...>' (a value the pickle stores once can be shared without bound).
 */
export function toPlain(value: unknown, depth = 0, seen = new Set<unknown>(), budget = { values: 100_000 }): unknown {
  if (value === null || typeof value === 'boolean' || typeof value === 'number' || typeof value === 'string') return value;
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  if (value instanceof PickleTensor) return `<tensor [${value.shape.join(', ')}]>`;
  if (value instanceof PickleGlobal) return `<${value.qualifiedName}>`;
  // a value shared n times in a pickle is stored once but expands n times here: the whole result is bounded too
  if (depth >= 64 || seen.has(value) || --budget.values < 0) return '<...>';
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v) => toPlain(v, depth + 1, seen, budget));
    if (value instanceof Map) {
      const o: Record<string, unknown> = {};
      // defined, not assigned: a key '__proto__' stays a key
      for (const [k, v] of value)
        Object.defineProperty(o, typeof k === 'string' ? k : describeValue(k), { value: toPlain(v, depth + 1, seen, budget), enumerable: true, writable: true, configurable: true });
      return o;
    }
    if (value instanceof PickleObject) {
      // a dict or list subclass: its items (an EasyDict's state repeats them as attributes)
      if (value.dictItems) return toPlain(value.dictItems, depth + 1, seen, budget);
      if (value.listItems) return toPlain(value.listItems, depth + 1, seen, budget);
      if (value.state instanceof Map) return toPlain(value.state, depth + 1, seen, budget);
      return { __class__: value.className, args: toPlain(value.args, depth + 1, seen, budget), state: toPlain(value.state ?? null, depth + 1, seen, budget) };
    }
    return `<${typeof value}>`;
  } finally {
    seen.delete(value);
  }
}
