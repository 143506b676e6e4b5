/**
 * PyTorch checkpoint files (torch.save), read without PyTorch and without executing anything (see pickle.ts).
 *
 * Zip format (torch >= 1.6, the default since; PyTorch 1.13 writes it so): a zip archive of stored entries under one
 * folder, `<folder>/data.pkl` (the pickled object, protocol 2), `<folder>/data/<key>` (the raw little-endian bytes of
 * each storage), `<folder>/version`, and from torch 2.1 `<folder>/byteorder`. A tensor in data.pkl is
 * `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` whose storage is the persistent id
 * ('storage', torch.FloatStorage, key, location, numel).
 *
 * Legacy format (torch < 1.6, or _use_new_zipfile_serialization=False): five pickles in a row (a magic number, the
 * protocol version 1001, sys info, the object, the list of storage keys), then each storage as an int64 element count
 * followed by its bytes, in that order. Persistent ids are ('storage', type, key, location, numel, view) where view
 * is None or (view key, element offset, view numel).
 *
 * Tensors are read only when asked for (`readTensors`), one storage at a time, so the optimizer state of a training
 * checkpoint is never read. Float, Half, BFloat16 and Double storages become Float32Array (Double rounded); strides
 * and storage offsets are honoured; integer, boolean and complex tensors (a model's index or frequency buffers) are
 * reported by dtype without data.
 */
import { endianness } from 'node:os';
import fsp, { type FileHandle } from 'node:fs/promises';
import { f16ToNumber, readAt } from './safetensors.js';
import { describeValue, PickleGlobal, PickleTensor, PickleTruncatedError, unpickle } from './pickle.js';
import { readZipDirectory, readZipEntry, type ZipEntry } from './zip.js';

/** Element types of PyTorch storages. */
export type TorchDtype =
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'float64'
  | 'complex64'
  | 'complex128'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

const STORAGE_TYPES: Record<string, { dtype: TorchDtype; bytes: number }> = {
  FloatStorage: { dtype: 'float32', bytes: 4 },
  HalfStorage: { dtype: 'float16', bytes: 2 },
  BFloat16Storage: { dtype: 'bfloat16', bytes: 2 },
  DoubleStorage: { dtype: 'float64', bytes: 8 },
  ComplexFloatStorage: { dtype: 'complex64', bytes: 8 },
  ComplexDoubleStorage: { dtype: 'complex128', bytes: 16 },
  LongStorage: { dtype: 'int64', bytes: 8 },
  IntStorage: { dtype: 'int32', bytes: 4 },
  ShortStorage: { dtype: 'int16', bytes: 2 },
  CharStorage: { dtype: 'int8', bytes: 1 },
  ByteStorage: { dtype: 'uint8', bytes: 1 },
  BoolStorage: { dtype: 'bool', bytes: 1 },
};

const FLOAT_TYPES: ReadonlySet<TorchDtype> = new Set(['float32', 'float16', 'bfloat16', 'float64']);

/** A storage named by a persistent id; `elementOffset` is a legacy view's start inside its root storage. */
export class TorchStorage {
  constructor(
    readonly key: string,
    readonly dtype: TorchDtype,
    readonly elementBytes: number,
    readonly numel: number,
    readonly elementOffset = 0,
  ) {}
}

/** A tensor read from the file: floating point ones with their values as float32, others by dtype only. */
export type TorchTensor = { shape: number[]; dtype: TorchDtype; data: Float32Array } | { shape: number[]; dtype: TorchDtype; data: null };

export interface TorchFile {
  format: 'pth-zip' | 'pth-legacy';
  /** the unpickled object: Maps, arrays, primitives, PickleTensor (see pickle.ts) */
  root: unknown;
  /** reads the given tensors (any subset of those in `root`), each storage once */
  readTensors(tensors: ReadonlyMap<string, PickleTensor>): Promise<Map<string, TorchTensor>>;
  close(): Promise<void>;
}

/** Opens a PyTorch checkpoint (zip or legacy format); `close()` it when done. */
export async function openTorchFile(path: string): Promise<TorchFile> {
  let handle: FileHandle;
  try {
    handle = await fsp.open(path, 'r');
  } catch (err) {
    throw new Error(`${path}: cannot open PyTorch file: ${(err as Error).message}`, { cause: err });
  }
  try {
    const size = (await handle.stat()).size;
    const head = await readAt(handle, 0, Math.min(size, 512), path);
    if (head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) return await openZip(handle, size, path);
    if (head[0] === 0x80 && head[1] !== undefined && head[1] >= 2) return await openLegacy(handle, size, path);
    const tar = size >= 263 && new TextDecoder('latin1').decode(head.subarray(257, 262)) === 'ustar';
    throw new Error(
      tar
        ? `${path}: a PyTorch file in the tar format of torch < 0.4, which is not read here; in Python: ` +
            `torch.save(torch.load(path), new_path) writes it in the zip format`
        : `${path}: not a PyTorch checkpoint (neither the zip format nor a legacy pickle: first bytes ${hex(head.subarray(0, 4))})`,
    );
  } catch (e) {
    await handle.close();
    throw e;
  }
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ') || '(empty file)';
}

function storageType(g: unknown, source: string): { dtype: TorchDtype; bytes: number } {
  const t = g instanceof PickleGlobal && g.module === 'torch' ? STORAGE_TYPES[g.name] : undefined;
  if (!t) throw new Error(`${source}: unsupported storage type ${describeValue(g)} (supported: ${Object.keys(STORAGE_TYPES).join(', ')})`);
  return t;
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

async function openZip(handle: FileHandle, fileSize: number, source: string): Promise<TorchFile> {
  const entries = await readZipDirectory(handle, fileSize, source);
  const pkl = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkl.length !== 1)
    throw new Error(`${source}: a zip archive but not a PyTorch checkpoint (${pkl.length ? 'several' : 'no'} <folder>/data.pkl entries)`);
  const prefix = pkl[0]!.slice(0, -'data.pkl'.length);
  if (entries.has(`${prefix}constants.pkl`) || [...entries.keys()].some((n) => n.startsWith(`${prefix}code/`)))
    throw new Error(
      `${source}: a TorchScript archive (torch.jit.save), not a state dict; in Python, load the model and ` +
        `torch.save(model.state_dict(), path)`,
    );
  const order = entries.get(`${prefix}byteorder`);
  if (order) {
    const text = new TextDecoder().decode(await readZipEntry(handle, fileSize, order, source)).trim();
    if (text !== 'little') throw new Error(`${source}: saved with byte order '${text}'; only little-endian files are read`);
  }
  const pickle = await readZipEntry(handle, fileSize, entries.get(pkl[0]!)!, source);
  const { value: root } = unpickle(pickle, {
    source: `${source} (${pkl[0]})`,
    persistentLoad: (pid) => {
      if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5)
        throw new Error(`${source}: unsupported persistent id ${describeValue(pid)} (expected a storage)`);
      const [, type, key, , numel] = pid as unknown[];
      const t = storageType(type, source);
      if (typeof key !== 'string' || !isCount(numel)) throw new Error(`${source}: a storage id with a bad key or size`);
      return new TorchStorage(key, t.dtype, t.bytes, numel);
    },
  });
  const storageEntry = (s: TorchStorage): ZipEntry => {
    const e = entries.get(`${prefix}data/${s.key}`);
    if (!e) throw new Error(`${source}: storage ${s.key} is missing from the archive (no ${prefix}data/${s.key})`);
    return e;
  };
  return {
    format: 'pth-zip',
    root,
    readTensors: (tensors) =>
      readGrouped(tensors, source, async (s) => {
        const e = storageEntry(s);
        if (e.size < s.numel * s.elementBytes)
          throw new Error(`${source}: storage ${s.key} holds ${e.size} bytes, fewer than its ${s.numel} ${s.dtype} values need`);
        return readZipEntry(handle, fileSize, e, source);
      }),
    close: () => handle.close(),
  };
}

/** The legacy format's magic number (torch/serialization.py MAGIC_NUMBER) and protocol version. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;

async function openLegacy(handle: FileHandle, fileSize: number, source: string): Promise<TorchFile> {
  // the five pickles come first; read more of the file until they fit
  let length = Math.min(fileSize, 1 << 20);
  let head: { root: unknown; storages: Map<string, TorchStorage>; keys: string[]; dataStart: number };
  for (;;) {
    const bytes = await readAt(handle, 0, length, source);
    try {
      head = parseLegacyHead(bytes, source);
      break;
    } catch (e) {
      if (!(e instanceof PickleTruncatedError) || length === fileSize) throw e;
      if (e.needs > fileSize) throw new Error(`${source}: truncated file: its pickles need ${e.needs} bytes or more, the file has ${fileSize}`);
      length = Math.min(fileSize, Math.max(length * 4, e.needs));
    }
  }
  // where each storage's bytes are: an int64 element count, then the bytes, in the order of `keys`
  const where = new Map<string, number>();
  let pos = head.dataStart;
  for (const key of head.keys) {
    const s = head.storages.get(key);
    if (!s) throw new Error(`${source}: the storage list names ${key}, which no tensor uses`);
    if (pos + 8 > fileSize) throw new Error(`${source}: truncated file: storage ${key} should start at byte ${pos} of ${fileSize}`);
    const count = new DataView((await readAt(handle, pos, 8, source)).buffer).getBigInt64(0, true);
    if (count !== BigInt(s.numel)) throw new Error(`${source}: storage ${key} has ${count} elements in the data, ${s.numel} in its id`);
    const bytes = s.numel * s.elementBytes;
    if (pos + 8 + bytes > fileSize) throw new Error(`${source}: truncated file: storage ${key} needs bytes [${pos + 8}, ${pos + 8 + bytes}) of ${fileSize}`);
    where.set(key, pos + 8);
    pos += 8 + bytes;
  }
  return {
    format: 'pth-legacy',
    root: head.root,
    readTensors: (tensors) =>
      readGrouped(tensors, source, async (s) => {
        const at = where.get(s.key);
        if (at === undefined) throw new Error(`${source}: storage ${s.key} is not in the file's storage list`);
        return readAt(handle, at, s.numel * s.elementBytes, source);
      }),
    close: () => handle.close(),
  };
}

function parseLegacyHead(bytes: Uint8Array, source: string) {
  const magic = unpickle(bytes, { source });
  if (magic.value !== LEGACY_MAGIC && !(typeof magic.value === 'number' && BigInt(magic.value) === LEGACY_MAGIC))
    throw new Error(`${source}: not a PyTorch checkpoint (a pickle, but without PyTorch's magic number)`);
  const protocol = unpickle(bytes, { source, start: magic.end });
  if (protocol.value !== LEGACY_PROTOCOL) throw new Error(`${source}: legacy PyTorch protocol ${String(protocol.value)}, expected ${LEGACY_PROTOCOL}`);
  const info = unpickle(bytes, { source, start: protocol.end });
  if (info.value instanceof Map && info.value.get('little_endian') === false)
    throw new Error(`${source}: saved on a big-endian machine; only little-endian files are read`);
  const storages = new Map<string, TorchStorage>();
  const object = unpickle(bytes, {
    source,
    start: info.end,
    persistentLoad: (pid) => {
      if (Array.isArray(pid) && pid[0] === 'module')
        throw new Error(`${source}: holds a whole pickled nn.Module (torch.save(model)), not a state dict; in Python: torch.save(model.state_dict(), path)`);
      if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 6) throw new Error(`${source}: unsupported persistent id (expected a storage)`);
      const [, type, key, , numel, view] = pid as unknown[];
      const t = storageType(type, source);
      if (typeof key !== 'string' || !isCount(numel)) throw new Error(`${source}: a storage id with a bad key or size`);
      const known = storages.get(key);
      if (known && known.numel !== numel) throw new Error(`${source}: storage ${key} is named with two sizes`);
      const root = known ?? new TorchStorage(key, t.dtype, t.bytes, numel);
      storages.set(key, root);
      if (view === null || view === undefined) return root;
      const [, offset, size] = Array.isArray(view) ? (view as unknown[]) : [];
      if (!isCount(offset) || !isCount(size) || offset + size > numel) throw new Error(`${source}: storage view of ${key} is out of range`);
      return new TorchStorage(key, t.dtype, t.bytes, numel, offset);
    },
  });
  const keys = unpickle(bytes, { source, start: object.end });
  if (!Array.isArray(keys.value) || !keys.value.every((k) => typeof k === 'string')) throw new Error(`${source}: the storage key list is damaged`);
  return { root: object.value, storages, keys: keys.value as string[], dataStart: keys.end };
}

/** Reads the tensors grouped by storage: each storage's bytes are read once and dropped before the next. */
async function readGrouped(
  tensors: ReadonlyMap<string, PickleTensor>,
  source: string,
  readStorage: (s: TorchStorage) => Promise<Uint8Array>,
): Promise<Map<string, TorchTensor>> {
  const byStorage = new Map<string, [string, PickleTensor][]>();
  for (const [name, t] of tensors) {
    if (!(t.storage instanceof TorchStorage)) throw new Error(`${source}: tensor "${name}" has no storage`);
    const list = byStorage.get(t.storage.key) ?? [];
    list.push([name, t]);
    byStorage.set(t.storage.key, list);
  }
  const out = new Map<string, TorchTensor>();
  for (const list of byStorage.values()) {
    const s = list[0]![1].storage as TorchStorage;
    const float = FLOAT_TYPES.has(s.dtype);
    const values = float ? decode(await readStorage(s), s) : null;
    for (const [name, t] of list) {
      const st = t.storage as TorchStorage;
      const data = view(values, t, st.elementOffset, s.numel, `${source}: tensor "${name}"`);
      out.set(name, data ? { shape: t.shape, dtype: s.dtype, data } : { shape: t.shape, dtype: s.dtype, data: null });
    }
  }
  // the order of the request, not of the storages
  return new Map([...tensors.keys()].map((k) => [k, out.get(k)!]));
}

const littleEndian = endianness() === 'LE';
let halfTable: Float32Array | null = null;

/** A whole floating point storage as float32. */
function decode(bytes: Uint8Array, s: TorchStorage): Float32Array {
  const n = s.numel;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (s.dtype) {
    case 'float32': {
      if (littleEndian && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n).slice();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      return out;
    }
    case 'float16': {
      if (!halfTable) {
        halfTable = new Float32Array(65536);
        for (let h = 0; h < 65536; h++) halfTable[h] = f16ToNumber(h);
      }
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfTable[dv.getUint16(2 * i, true)]!;
      return out;
    }
    case 'bfloat16': {
      // a bfloat16 is the high half of a float32
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = dv.getUint16(2 * i, true) << 16;
      return out;
    }
    case 'float64': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
      return out;
    }
    default:
      throw new Error(`decode: ${s.dtype} is not a floating point type`);
  }
}

/**
 * The elements of tensor t (offset, shape, strides into its storage of `numel` elements) in row-major order; null
 * for non-float storages (after the same bounds check).
 */
function view(values: Float32Array | null, t: PickleTensor, extraOffset: number, numel: number, where: string): Float32Array | null {
  const { shape, stride } = t;
  const offset = t.offset + extraOffset;
  let count = 1;
  for (const d of shape) count *= d;
  // more elements than the storage holds would be a view repeating elements (stride 0): refused, so that a file can
  // never make this reader allocate more than the storage it holds
  if (!Number.isSafeInteger(count) || count > numel)
    throw new Error(`${where}: shape [${shape.join(', ')}] has more elements than its storage of ${numel} (views with stride 0 are not read)`);
  if (count > 0) {
    let last = offset;
    for (let i = 0; i < shape.length; i++) last += (shape[i]! - 1) * stride[i]!;
    if (last >= numel)
      throw new Error(`${where}: size [${shape.join(', ')}], stride [${stride.join(', ')}] and offset ${offset} reach element ${last} of a storage of ${numel}`);
  }
  if (values === null) return null;
  let contiguous = true;
  for (let i = shape.length - 1, expect = 1; i >= 0; i--) {
    if (shape[i]! !== 1 && stride[i] !== expect) contiguous = false;
    expect *= shape[i]!;
  }
  if (contiguous) return offset === 0 && count === values.length ? values : values.slice(offset, offset + count);
  const out = new Float32Array(count);
  const index = new Array<number>(shape.length).fill(0);
  let src = offset;
  for (let k = 0; k < count; k++) {
    out[k] = values[src]!;
    for (let d = shape.length - 1; d >= 0; d--) {
      index[d]!++;
      src += stride[d]!;
      if (index[d]! < shape[d]!) break;
      src -= shape[d]! * stride[d]!;
      index[d] = 0;
    }
  }
  return out;
}
