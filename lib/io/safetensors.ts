/**
 * Reading and writing the safetensors format on plain data (no tensor class involved).
 *
 * Layout: an 8-byte little-endian unsigned header length N, N bytes of UTF-8 JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: { key: string } }`, then the data buffer.
 * Offsets are relative to the start of the data buffer; all numbers are little-endian.
 *
 * Reading takes every dtype of the format. F32, F16, BF16, F8_E4M3 and F8_E5M2 become Float32Array exactly (each of
 * their values is a float32); F64 becomes Float32Array rounded to the nearest float32 (as torch's .float()); I8, U8,
 * I16, U16, I32 and BOOL become Int32Array, and U32, I64 and U64 too when every value fits in int32 (else an error).
 * Writing stores Float32Array as F32 and Int32Array as I32, tensors sorted by name, the header padded with spaces to
 * a multiple of 8 bytes.
 *
 * Every problem with a file throws an Error that starts with the file name (or `<buffer>`) and says what is wrong.
 */
import fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { expectFunction, expectInstance, expectKnownKeys, expectObject, expectString, optionNames } from '../check.js';
import { writeFileAtomic } from './atomic.js';

/** The dtypes of the format, all of which this module reads. */
export type SafetensorsDtype =
  | 'F64' | 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E5M2'
  | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

/** Tensor data on our side: floating point tensors are Float32Array, integer and boolean tensors Int32Array. */
export type TensorData = Float32Array | Int32Array;

/** A tensor as plain data: `data` holds product(shape) values in row-major order (a [] shape holds one value). */
export interface RawTensor {
  shape: number[];
  data: TensorData;
}

/** A tensor read from a file, with the dtype it was stored as. */
export interface StoredTensor extends RawTensor {
  dtype: SafetensorsDtype;
}

/** The contents of a safetensors file; `tensors` keeps the order of the header. */
export interface SafetensorsContents {
  tensors: Map<string, StoredTensor>;
  metadata: Record<string, string>;
}

/**
 * A tensor to write whose data is read only when its bytes are written (`read` is called once, at that time), so a
 * large file (a training checkpoint) never has all its tensors copied out at once.
 */
export interface DeferredTensor {
  shape: number[];
  dtype: 'F32' | 'I32';
  read(): TensorData;
}

/** Tensors to write, by name. */
export type TensorsToWrite = ReadonlyMap<string, RawTensor | DeferredTensor> | Readonly<Record<string, RawTensor | DeferredTensor>>;

/** Largest header we accept; real headers are kilobytes, so anything larger is a corrupt length field. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

/** The dtypes read as Float32Array (the others are read as Int32Array). */
export const FLOAT_DTYPES: ReadonlySet<SafetensorsDtype> = new Set(['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2']);

/** One validated header entry. */
interface HeaderEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/** The validated header: where the data buffer starts in the file, the entries in header order, the metadata. */
interface Header {
  dataStart: number;
  entries: HeaderEntry[];
  metadata: Record<string, string>;
}

/** Parses a whole safetensors file held in memory; `source` names it in error messages. */
export function parseSafetensors(bytes: Uint8Array, source = '<buffer>'): SafetensorsContents {
  expectInstance('parseSafetensors', 'bytes', bytes, Uint8Array, 'a Uint8Array');
  expectString('parseSafetensors', 'source', source, 'a name for messages');
  const header = parseHeader(bytes, bytes.byteLength, source);
  const tensors = new Map<string, StoredTensor>();
  for (const entry of header.entries) {
    const start = header.dataStart + entry.begin;
    tensors.set(entry.name, decodeEntry(entry, bytes.subarray(start, header.dataStart + entry.end), source));
  }
  return { tensors, metadata: header.metadata };
}

export interface ReadSafetensorsOptions {
  /** which tensors to read (default all); the others are neither read nor returned */
  select?: (name: string, dtype: SafetensorsDtype, metadata: Readonly<Record<string, string>>) => boolean;
}

/** Reads a safetensors file: the header, then each tensor region in turn (the file is never held in one buffer). */
export async function readSafetensors(path: string, opts: ReadSafetensorsOptions = {}): Promise<SafetensorsContents> {
  expectString('readSafetensors', 'path', path, 'a file path');
  expectObject('readSafetensors', 'opts', opts);
  expectKnownKeys('readSafetensors', 'opts', opts, optionNames<ReadSafetensorsOptions>({ select: true }));
  expectFunction('readSafetensors', 'select', opts.select, true);
  let handle: FileHandle;
  try {
    handle = await fsp.open(path, 'r');
  } catch (err) {
    throw new Error(`${path}: cannot open safetensors file: ${(err as Error).message}`, { cause: err });
  }
  try {
    return await readOpenSafetensors(handle, path, opts);
  } finally {
    await handle.close();
  }
}

/** readSafetensors on a file open already (`handle`, left open); `path` names it in errors. */
export async function readOpenSafetensors(handle: FileHandle, path: string, opts: ReadSafetensorsOptions = {}): Promise<SafetensorsContents> {
  const stat = await handle.stat();
  if (stat.isDirectory()) throw new Error(`${path}: is a folder, not a safetensors file`);
  const fileSize = stat.size;
  const prefix = await readAt(handle, 0, Math.min(fileSize, 8), path);
  const headerLength = checkHeaderLength(prefix, fileSize, path);
  const headerBytes = await readAt(handle, 0, 8 + headerLength, path);
  const header = parseHeader(headerBytes, fileSize, path);
  const tensors = new Map<string, StoredTensor>();
  for (const entry of header.entries) {
    if (opts.select && !opts.select(entry.name, entry.dtype, header.metadata)) continue;
    const region = await readAt(handle, header.dataStart + entry.begin, entry.end - entry.begin, path);
    tensors.set(entry.name, decodeEntry(entry, region, path));
  }
  return { tensors, metadata: header.metadata };
}

/** Serializes tensors (and optional string metadata) into one safetensors byte array. */
export function serializeSafetensors(tensors: TensorsToWrite, metadata?: Readonly<Record<string, string>>): Uint8Array {
  expectTensorsToWrite('serializeSafetensors', tensors, metadata);
  const parts = [...serializeParts(tensors, metadata)];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/**
 * Writes a safetensors file atomically (see writeFileAtomic) one tensor at a time: nothing is joined into one array,
 * and a DeferredTensor's data is read only when its turn comes.
 */
export async function writeSafetensors(
  path: string,
  tensors: TensorsToWrite,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  expectString('writeSafetensors', 'path', path, 'a file path');
  expectTensorsToWrite('writeSafetensors', tensors, metadata);
  await writeFileAtomic(path, serializeParts(tensors, metadata));
}

/** The tensors (a Map or a plain object of name -> tensor) and the optional metadata object of `where`. */
function expectTensorsToWrite(where: string, tensors: unknown, metadata: unknown): void {
  expectObject(where, 'tensors', tensors, false, 'a Map or an object of name -> { dtype, shape, data }');
  expectObject(where, 'metadata', metadata, true);
}

/** Narrows read tensors to Float32 ones, throwing for any integer tensor; `source` names the file in the error. */
export function requireFloat32(
  tensors: ReadonlyMap<string, RawTensor>,
  source = '<buffer>',
): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of tensors) {
    if (!(t.data instanceof Float32Array)) {
      throw new Error(`${source}: tensor "${name}" is not a floating point tensor`);
    }
    out.set(name, { shape: t.shape, data: t.data });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

/** Validates the 8-byte length prefix against the file size and returns the header length N. */
function checkHeaderLength(bytes: Uint8Array, fileSize: number, source: string): number {
  if (fileSize < 8 || bytes.byteLength < 8) {
    throw new Error(`${source}: file is ${fileSize} bytes, shorter than the 8-byte safetensors header length`);
  }
  const length = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (length > BigInt(MAX_HEADER_BYTES)) {
    // a PyTorch file starts with a zip entry (PK\x03\x04) or, in the legacy format, a pickle (0x80 and its protocol)
    const pth = (bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04) || (bytes[0] === 0x80 && bytes[1]! >= 2 && bytes[1]! <= 5);
    throw new Error(
      pth
        ? `${source}: a PyTorch file (.pth), not safetensors: loadWeights / MaskedAutoencoder.fromPretrained read those`
        : `${source}: header length ${length} is larger than the ${MAX_HEADER_BYTES}-byte limit (corrupt file?)`,
    );
  }
  if (length > BigInt(fileSize - 8)) {
    throw new Error(
      `${source}: header length ${length} is larger than the ${fileSize - 8} bytes after the length field`,
    );
  }
  return Number(length);
}

/**
 * Validates the header. `bytes` holds at least the length field and the header; `fileSize` is the size of the whole
 * file, used to check that every tensor region lies inside the data buffer.
 */
function parseHeader(bytes: Uint8Array, fileSize: number, source: string): Header {
  const headerLength = checkHeaderLength(bytes, fileSize, source);
  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  // the format: the JSON object starts at byte 8 (no leading space or byte order mark), padding may follow it
  if (headerLength === 0 || bytes[8] !== 0x7b) {
    const found = headerLength === 0 ? 'empty' : `byte 0x${bytes[8]!.toString(16).padStart(2, '0')}`;
    throw new Error(`${source}: header does not begin with '{' (${found}): not a safetensors file, or a damaged one`);
  }

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, dataStart));
  } catch {
    throw new Error(`${source}: header is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source}: header is not valid JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(json)) throw new Error(`${source}: header JSON is not an object`);

  let metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(value, source);
    } else {
      entries.push(parseEntry(name, value, source));
    }
  }

  for (const entry of entries) {
    if (entry.end > dataLength) {
      throw new Error(
        `${source}: truncated file: tensor "${entry.name}" needs data bytes [${entry.begin}, ${entry.end}) ` +
          `but the data buffer holds only ${dataLength} bytes`,
      );
    }
  }
  checkTiling(entries, dataLength, source);
  return { dataStart, entries, metadata };
}

function parseMetadata(value: unknown, source: string): Record<string, string> {
  if (!isPlainObject(value)) throw new Error(`${source}: "__metadata__" is not an object`);
  const metadata: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw new Error(`${source}: metadata value for "${key}" is not a string`);
    Object.defineProperty(metadata, key, { value: v, enumerable: true, writable: true, configurable: true }); // '__proto__' too
  }
  return metadata;
}

function parseEntry(name: string, value: unknown, source: string): HeaderEntry {
  const where = `${source}: tensor "${name}"`;
  if (!isPlainObject(value)) throw new Error(`${where}: header entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) {
    throw new Error(
      `${where}: unknown or unsupported dtype ${JSON.stringify(dtype)} ` +
        `(supported: ${Object.keys(DTYPE_BYTES).join(', ')})`,
    );
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    throw new Error(`${where}: shape ${JSON.stringify(shape)} is not an array of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
    throw new Error(`${where}: data_offsets ${JSON.stringify(offsets)} is not [begin, end] of non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) throw new Error(`${where}: data_offsets [${begin}, ${end}] has begin after end`);
  const size = DTYPE_BYTES[dtype as SafetensorsDtype];
  const count = shape.reduce((n: number, d: number) => n * d, 1);
  if (!Number.isSafeInteger(count * size) || end - begin !== count * size) {
    throw new Error(
      `${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes, but shape [${shape.join(', ')}] ` +
        `of ${dtype} needs ${count} x ${size} = ${count * size} bytes`,
    );
  }
  return { name, dtype: dtype as SafetensorsDtype, shape: [...shape], begin, end };
}

/**
 * Regions may come in any order, but together they must fill the data buffer, each byte once (as the format's own
 * reader requires): a hole is what a tensor named twice in the header leaves (JSON.parse keeps the last).
 */
function checkTiling(entries: readonly HeaderEntry[], dataLength: number, source: string): void {
  const sorted = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
  let at = 0;
  for (let i = 0; i < sorted.length; i++) {
    const cur = sorted[i]!;
    if (i > 0 && cur.begin < at) {
      const prev = sorted[i - 1]!;
      throw new Error(
        `${source}: data regions of tensors "${prev.name}" [${prev.begin}, ${prev.end}) and ` +
          `"${cur.name}" [${cur.begin}, ${cur.end}) overlap`,
      );
    }
    if (cur.begin > at)
      throw new Error(`${source}: data bytes [${at}, ${cur.begin}) belong to no tensor (a damaged header, or a tensor named twice in it)`);
    at = cur.end;
  }
  if (at !== dataLength) throw new Error(`${source}: data bytes [${at}, ${dataLength}) at the end of the file belong to no tensor`);
}

/** Decodes one tensor from exactly its region's bytes (any alignment). */
function decodeEntry(entry: HeaderEntry, region: Uint8Array, source: string): StoredTensor {
  const view = new DataView(region.buffer, region.byteOffset, region.byteLength);
  const count = region.byteLength / DTYPE_BYTES[entry.dtype];
  const shape = entry.shape;
  switch (entry.dtype) {
    case 'F32': {
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getFloat32(4 * i, true);
      return { dtype: 'F32', shape, data };
    }
    case 'F16': {
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = f16ToNumber(view.getUint16(2 * i, true));
      return { dtype: 'F16', shape, data };
    }
    case 'BF16': {
      // A bfloat16 is the high half of a float32: write the bits through a Uint32 view of the result.
      const data = new Float32Array(count);
      const bits = new Uint32Array(data.buffer);
      for (let i = 0; i < count; i++) bits[i] = view.getUint16(2 * i, true) << 16;
      return { dtype: 'BF16', shape, data };
    }
    case 'I32': {
      const data = new Int32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getInt32(4 * i, true);
      return { dtype: 'I32', shape, data };
    }
    case 'F64': {
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getFloat64(8 * i, true);
      return { dtype: 'F64', shape, data };
    }
    case 'F8_E4M3': {
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = f8e4m3ToNumber(view.getUint8(i));
      return { dtype: 'F8_E4M3', shape, data };
    }
    case 'F8_E5M2': {
      // an F8_E5M2 is the high byte of an F16
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = f16ToNumber(view.getUint8(i) << 8);
      return { dtype: 'F8_E5M2', shape, data };
    }
    case 'I64':
    case 'U64': {
      const data = new Int32Array(count);
      const signed = entry.dtype === 'I64';
      for (let i = 0; i < count; i++) {
        const lo = view.getUint32(8 * i, true);
        const hi = signed ? view.getInt32(8 * i + 4, true) : view.getUint32(8 * i + 4, true);
        if (!((hi === 0 && lo <= 0x7fffffff) || (hi === -1 && lo >= 0x80000000))) {
          const value = (BigInt(hi) << 32n) | BigInt(lo);
          throw new Error(`${source}: tensor "${entry.name}": ${entry.dtype} value ${value} at index ${i} does not fit in int32`);
        }
        data[i] = lo | 0;
      }
      return { dtype: entry.dtype, shape, data };
    }
    case 'U32': {
      const data = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const v = view.getUint32(4 * i, true);
        if (v > 0x7fffffff) throw new Error(`${source}: tensor "${entry.name}": U32 value ${v} at index ${i} does not fit in int32`);
        data[i] = v;
      }
      return { dtype: 'U32', shape, data };
    }
    case 'I16': {
      const data = new Int32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getInt16(2 * i, true);
      return { dtype: 'I16', shape, data };
    }
    case 'U16': {
      const data = new Int32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getUint16(2 * i, true);
      return { dtype: 'U16', shape, data };
    }
    case 'I8': {
      const data = new Int32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getInt8(i);
      return { dtype: 'I8', shape, data };
    }
    case 'U8': {
      const data = new Int32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getUint8(i);
      return { dtype: 'U8', shape, data };
    }
    case 'BOOL': {
      const data = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const b = view.getUint8(i);
        if (b > 1) {
          throw new Error(`${source}: tensor "${entry.name}": BOOL byte ${b} at index ${i} is neither 0 nor 1`);
        }
        data[i] = b;
      }
      return { dtype: 'BOOL', shape, data };
    }
  }
}

/** Exact IEEE 754 half precision to number: normals, subnormals, signed zeros, infinities and NaN. */
export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/**
 * Exact float8 e4m3 (PyTorch's float8_e4m3fn, the format's F8_E4M3) to number: bias 7, subnormals, no infinities,
 * NaN for S.1111.111.
 */
export function f8e4m3ToNumber(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exponent = (b >> 3) & 0xf;
  const mantissa = b & 0x7;
  if (exponent === 0xf && mantissa === 0x7) return NaN;
  if (exponent === 0) return sign * mantissa * 2 ** -9;
  return sign * (1 + mantissa / 8) * 2 ** (exponent - 7);
}

/** Reads exactly `length` bytes at `position` of an open file; an Error naming `source` if the file is shorter. */
export async function readAt(handle: FileHandle, position: number, length: number, source: string): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    // at most 1 GiB a read: Node's fs.read takes lengths below 2^31 only
    const { bytesRead } = await handle.read(out, done, Math.min(length - done, 1 << 30), position + done);
    if (bytesRead === 0) {
      throw new Error(`${source}: truncated file: unexpected end of file at byte ${position + done}`);
    }
    done += bytesRead;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

/**
 * The file as parts: length field and padded header, then each tensor's bytes in name order, made as they are taken.
 * The header is built (and every shape checked) before the first part is returned.
 */
function serializeParts(tensors: TensorsToWrite, metadata?: Readonly<Record<string, string>>): Iterable<Uint8Array> {
  const named: [string, RawTensor | DeferredTensor][] = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  named.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        throw new Error(`serializeSafetensors: metadata value for "${key}" is not a string`);
      }
      if (!wellFormed(key) || !wellFormed(value))
        throw new Error(`serializeSafetensors: metadata ${JSON.stringify(key)}: not well-formed Unicode (a lone surrogate), which the header's UTF-8 cannot hold`);
    }
    header['__metadata__'] = { ...metadata };
  }

  let offset = 0;
  for (const [name, tensor] of named) {
    const count = checkShape(name, tensor.shape);
    const dtype = 'read' in tensor ? tensor.dtype : tensor.data instanceof Float32Array ? 'F32' : 'I32';
    header[name] = { dtype, shape: tensor.shape, data_offsets: [offset, offset + 4 * count] };
    offset += 4 * count;
  }

  const json = new TextEncoder().encode(JSON.stringify(header));
  const paddedLength = Math.ceil(json.byteLength / 8) * 8;
  if (paddedLength > MAX_HEADER_BYTES)
    throw new Error(`serializeSafetensors: the header (tensor names and shapes, metadata) is ${paddedLength} bytes, more than the ${MAX_HEADER_BYTES} a reader takes; keep large data out of the metadata`);
  const head = new Uint8Array(8 + paddedLength).fill(0x20, 8 + json.byteLength);
  new DataView(head.buffer).setBigUint64(0, BigInt(paddedLength), true);
  head.set(json, 8);
  return (function* parts() {
    yield head;
    for (const [name, tensor] of named) {
      const want = (header[name] as { dtype: 'F32' | 'I32' }).dtype;
      yield encodeTensor(name, tensor.shape, 'read' in tensor ? tensor.read() : tensor.data, want);
    }
  })();
}

/** The element count of a valid shape. */
function checkShape(name: string, shape: unknown): number {
  const where = `serializeSafetensors: tensor "${name}"`;
  if (name === '' || name === '__metadata__') throw new Error(`${where}: invalid tensor name`);
  if (!wellFormed(name))
    throw new Error(`serializeSafetensors: tensor ${JSON.stringify(name)}: the name is not well-formed Unicode (a lone surrogate), which the header's UTF-8 cannot hold`);
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    throw new Error(`${where}: shape ${JSON.stringify(shape)} is not an array of non-negative integers`);
  }
  return shape.reduce((n: number, d: number) => n * d, 1);
}

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** A tensor's bytes, little-endian: on a little-endian machine a view of `data` itself (no copy). */
function encodeTensor(name: string, shape: number[], data: TensorData, dtype: 'F32' | 'I32'): Uint8Array {
  const where = `serializeSafetensors: tensor "${name}"`;
  const count = shape.reduce((n, d) => n * d, 1);
  if (!(data instanceof Float32Array) && !(data instanceof Int32Array)) throw new Error(`${where}: data must be a Float32Array or an Int32Array`);
  if ((dtype === 'F32') !== data instanceof Float32Array) throw new Error(`${where}: data must be ${dtype === 'F32' ? 'a Float32Array' : 'an Int32Array'} (dtype ${dtype})`);
  if (data.length !== count) {
    throw new Error(`${where}: shape [${shape.join(', ')}] holds ${count} values but data has ${data.length}`);
  }
  if (LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const bytes = new Uint8Array(4 * count);
  const view = new DataView(bytes.buffer);
  if (data instanceof Float32Array) {
    for (let i = 0; i < count; i++) view.setFloat32(4 * i, data[i]!, true);
  } else {
    for (let i = 0; i < count; i++) view.setInt32(4 * i, data[i]!, true);
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------------------------

/** Whether a string is well-formed UTF-16 (no lone surrogate): JSON.stringify writes one as an escape, \ud800. */
function wellFormed(text: string): boolean {
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
