/**
 * Prepared shards: an image folder converted once (prepare.ts, `mae prepare-data`) into a few large files of 8-bit
 * images at a reduced size plus one index, read back as a Dataset with one positioned read per sample.
 *
 * A shard folder holds:
 *   mae-shards.json      the index, written last (atomically): its presence means the preparation finished
 *   shard-00000.bin ...  records back to back; raw: height x width x channels bytes (uint8, HWC);
 *                        jpeg: a baseline JPEG of that size
 * The index is JSON:
 *   format 'mae-shards', version 2, pixels 'raw' | 'jpeg', channels 1 | 3, shortSide, quality (jpeg; else null),
 *   root (the source folder), classes (sorted class folder names, [] for a flat folder: labels -1),
 *   shards [{ file, bytes }], count, and per sample (arrays of `count`, in the source folder's sorted order):
 *   shard, offset, size (bytes), height, width, label, source (path relative to root), crc32 (the record's CRC-32);
 *   skipped [{ source, error }]: the bad source files left out.
 * Version 1 (written before the checksums) is the same without crc32, and is still read, unchecked.
 * Opening checks the whole index against itself and the shard files (sizes, every record inside its shard, raw
 * records of exactly height x width x channels bytes, labels, file names) before anything is allocated from its
 * numbers, so a damaged or forged index gives an Error naming the index file.
 *
 * Reads are synchronous positioned reads of whole records (one open/read/close per sample: no descriptors stay open
 * in worker threads that are terminated). The first read of each record in a process (its worker threads included:
 * they share which records are checked) checks it against its CRC-32, so a shard damaged on disk gives an Error naming
 * the sample, never other pixels; later epochs skip the check (it costs about 15% of a raw record's read and
 * augmentation at 224 px). Raw records then go to the augmentation as they are, JPEG records are decoded
 * with sharp (in its thread pool, concurrently across a batch) once their header shows a JPEG of no more pixels than
 * the index says, so a damaged or forged record never costs more memory than its index entry.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as yieldNow } from 'node:timers/promises';
import { expectArrayOf, expectInteger, expectObject, expectOptions, expectString } from '../check.js';
import { crc32 } from '../io/crc32.js';
import { checkIndex, pixelsToImage, type Dataset, type PixelSample, type Sample } from './dataset.js';
import { decodeImageBytes } from './folder.js';

/** The index file of a shard folder. */
export const SHARD_INDEX_FILE = 'mae-shards.json';
/** The version prepareShards writes; readShardIndex reads this one and version 1 (no checksums). */
export const SHARD_FORMAT_VERSION = 2;
/** Largest image side a shard record may have. */
export const MAX_SHARD_SIDE = 65535;
/** Largest record (bytes): sizes are kept in an Int32Array. */
export const MAX_RECORD_BYTES = 2 ** 31 - 1;

export type ShardPixels = 'raw' | 'jpeg';

/** The index as stored (mae-shards.json). */
export interface ShardIndex {
  format: 'mae-shards';
  version: number;
  pixels: ShardPixels;
  channels: 1 | 3;
  shortSide: number | null; // null: stored at the source size
  quality: number | null;
  root: string;
  classes: string[];
  shards: { file: string; bytes: number }[];
  count: number;
  shard: number[];
  offset: number[];
  size: number[];
  height: number[];
  width: number[];
  label: number[];
  source: string[];
  crc32?: number[]; // version 2 and later
  skipped: { source: string; error: string }[];
}

/** What a worker thread rebuilds a ShardDataset from: the per-sample columns live in SharedArrayBuffers. */
export interface ShardDatasetSpec {
  kind: 'shards';
  index: string; // path of mae-shards.json, for messages
  pixels: ShardPixels;
  channels: 1 | 3;
  numClasses: number;
  files: string[]; // shard paths
  shard: Int32Array;
  offset: Float64Array;
  size: Int32Array;
  height: Int32Array;
  width: Int32Array;
  labels: Int32Array;
  crc32: Uint32Array | null; // null: a version 1 index (no checksums)
  sample: Int32Array; // the index's number of each sample (they differ from 0, 1, ... in a slice or a pick)
  verified: Int32Array | null; // bit n set: the index's sample n matched its crc32 (one bit per sample of the index)
}

type Column = Int32Array | Uint32Array | Float64Array;

/** `s` with each per-sample column replaced by f(column) (a slice's subarrays, a pick's gathered copies). */
function mapColumns(s: ShardDatasetSpec, f: <T extends Column>(column: T) => T): ShardDatasetSpec {
  return {
    ...s, shard: f(s.shard), offset: f(s.offset), size: f(s.size), height: f(s.height), width: f(s.width),
    labels: f(s.labels), crc32: s.crc32 && f(s.crc32), sample: f(s.sample),
  };
}

/** `values` in a new array of type C over shared memory (worker threads read the same columns). */
function shared<T extends Column>(C: { new (buffer: SharedArrayBuffer): T; BYTES_PER_ELEMENT: number }, values: ArrayLike<number>): T {
  const a = new C(new SharedArrayBuffer(C.BYTES_PER_ELEMENT * values.length));
  a.set(values);
  return a;
}

function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;
}

/** A shard file name as prepare writes them: no folders, nothing hidden. */
function isShardFileName(v: unknown): v is string {
  return typeof v === 'string' && /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(v);
}

/**
 * Reads and checks `dir`/mae-shards.json (see the top of this file). Throws an Error naming the index file for
 * anything that does not hold together, and one naming the folder if the preparation did not finish.
 */
export async function readShardIndex(dir: string): Promise<ShardIndex> {
  expectString('readShardIndex', 'dir', dir, 'a folder path');
  const path = join(dir, SHARD_INDEX_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const unfinished = await stat(join(dir, '.prepare')).then(() => true, () => false);
    if (unfinished) throw new Error(`${dir}: the preparation of these shards did not finish (no ${SHARD_INDEX_FILE} yet); run the same mae prepare-data command again to resume it`);
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${dir}: not a shard folder (no ${SHARD_INDEX_FILE}); shard folders are made by mae prepare-data (data.prepareShards)`);
    throw new Error(`${path}: cannot read the shard index: ${(e as Error).message}`);
  }
  const fail: (msg: string) => never = (msg) => {
    throw new Error(`${path}: ${msg}`);
  };
  let x: Record<string, unknown>;
  try {
    x = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    return fail(`not a valid shard index (JSON: ${(e as Error).message})`);
  }
  if (typeof x !== 'object' || x === null || Array.isArray(x)) fail('not a valid shard index (not a JSON object)');
  if (x.format !== 'mae-shards') fail(`not a shard index: format is ${JSON.stringify(x.format)}, expected "mae-shards"`);
  if (x.version !== 1 && x.version !== SHARD_FORMAT_VERSION) fail(`shard index version ${JSON.stringify(x.version)} is not supported (this library reads versions 1 to ${SHARD_FORMAT_VERSION})`);
  if (x.pixels !== 'raw' && x.pixels !== 'jpeg') fail(`pixels must be "raw" or "jpeg", got ${JSON.stringify(x.pixels)}`);
  if (x.channels !== 1 && x.channels !== 3) fail(`channels must be 1 or 3, got ${JSON.stringify(x.channels)}`);
  if (!(x.shortSide === null || isInt(x.shortSide, 1, MAX_SHARD_SIDE))) fail(`shortSide must be null or a positive integer, got ${JSON.stringify(x.shortSide)}`);
  if (!(x.quality === null || isInt(x.quality, 1, 100))) fail(`quality must be null or an integer in [1, 100], got ${JSON.stringify(x.quality)}`);
  if (typeof x.root !== 'string') fail('root must be a string');
  if (!Array.isArray(x.classes) || !x.classes.every((c) => typeof c === 'string')) fail('classes must be an array of strings');
  if (!Array.isArray(x.skipped) || !x.skipped.every((s) => typeof s?.source === 'string' && typeof s?.error === 'string')) fail('skipped must be an array of { source, error }');
  if (!Array.isArray(x.shards) || x.shards.length === 0) fail('shards must be a non-empty array');
  const shards = x.shards as { file: unknown; bytes: unknown }[];
  for (let k = 0; k < shards.length; k++) {
    const s = shards[k]!;
    if (!isShardFileName(s?.file)) fail(`shards[${k}].file must be a plain file name in the folder, got ${JSON.stringify(s?.file)}`);
    if (!isInt(s.bytes, 1, Number.MAX_SAFE_INTEGER)) fail(`shards[${k}].bytes must be a positive integer, got ${JSON.stringify(s.bytes)}`);
    const file = join(dir, s.file);
    const st = await stat(file).catch((e: Error) => fail(`shard ${s.file} cannot be read: ${e.message}`));
    if (!st.isFile() || st.size !== s.bytes) fail(`shard ${s.file} has ${st.size} bytes, the index says ${s.bytes}`);
  }
  if (!isInt(x.count, 1, 2 ** 31 - 1)) fail(`count must be a positive integer, got ${JSON.stringify(x.count)}`);
  const count = x.count;
  // (version 1 has no checksums: a crc32 field there is not read)
  if (x.version === 1) delete x.crc32;
  const columns = ['shard', 'offset', 'size', 'height', 'width', 'label', 'source', ...(x.version === 1 ? [] : ['crc32'])];
  for (const column of columns) {
    const v = x[column];
    if (!Array.isArray(v) || v.length !== count) fail(`${column} must be an array of count (${count}) entries, got ${Array.isArray(v) ? `${v.length} entries` : JSON.stringify(typeof v)}`);
  }
  const col = (name: string) => x[name] as unknown[];
  const [shard, offset, size, height, width, label, source, crc] = columns.map(col) as unknown[][];
  const c = x.channels as number;
  const classes = (x.classes as string[]).length;
  for (let i = 0; i < count; i++) {
    const at = `sample ${i}`;
    const k = shard![i];
    if (!isInt(k, 0, shards.length - 1)) fail(`${at}: shard ${JSON.stringify(k)} is not an index into shards (0 .. ${shards.length - 1})`);
    const [o, n, h, w] = [offset![i], size![i], height![i], width![i]];
    if (!isInt(h, 1, MAX_SHARD_SIDE) || !isInt(w, 1, MAX_SHARD_SIDE)) fail(`${at}: height and width must be integers in [1, ${MAX_SHARD_SIDE}], got ${JSON.stringify(h)} and ${JSON.stringify(w)}`);
    if (!isInt(o, 0, Number.MAX_SAFE_INTEGER) || !isInt(n, 1, MAX_RECORD_BYTES)) fail(`${at}: offset must be an integer >= 0 and size one in [1, ${MAX_RECORD_BYTES}], got ${JSON.stringify(o)} and ${JSON.stringify(n)}`);
    const bytes = shards[k]!.bytes as number;
    if (o + n > bytes) fail(`${at}: bytes ${o} .. ${o + n} lie outside ${String(shards[k]!.file)} (${bytes} bytes)`);
    if (x.pixels === 'raw' && n !== h * w * c) fail(`${at}: a raw ${h}x${w}x${c} record has ${h * w * c} bytes, the index says ${n}`);
    const l = label![i];
    if (classes === 0 ? l !== -1 : !isInt(l, 0, classes - 1)) fail(`${at}: label ${JSON.stringify(l)} is not ${classes === 0 ? '-1 (a flat folder has no classes)' : `a class index (0 .. ${classes - 1})`}`);
    if (typeof source![i] !== 'string') fail(`${at}: source must be a string`);
    if (crc && !isInt(crc[i], 0, 2 ** 32 - 1)) fail(`${at}: crc32 must be an integer in [0, 2^32 - 1], got ${JSON.stringify(crc[i])}`);
  }
  return x as unknown as ShardIndex;
}

/** What is wrong with sample i's record, naming its shard and sample, or null if it matches its crc32. */
function crcProblem(s: ShardDatasetSpec, i: number, record: Uint8Array): string | null {
  const [got, expected] = [crc32(record), s.crc32![i]!];
  if (got === expected) return null;
  const hex = (c: number) => c.toString(16).padStart(8, '0');
  return `${s.files[s.shard[i]!]}: sample ${s.sample[i]}: the record at byte ${s.offset[i]} (${record.length} bytes) has CRC-32 ${hex(got)}, ${s.index} says ${hex(expected)}`;
}

const DAMAGED_HINT = 'the shard is damaged; prepare the data again (mae prepare-data) or restore the shard';

/** Checks sample i's record against its crc32, the first time any thread reads it (see the top of this file). */
function verifyRecord(s: ShardDatasetSpec, i: number, record: Uint8Array): void {
  const n = s.sample[i]!;
  const bit = 1 << (n & 31);
  if (Atomics.load(s.verified!, n >>> 5) & bit) return;
  const problem = crcProblem(s, i, record);
  if (problem) throw new Error(`${problem}: ${DAMAGED_HINT}`);
  Atomics.or(s.verified!, n >>> 5, bit);
}

/** The record of sample i of `s` (an index already checked), with one positioned read. */
function readRecordUnchecked(s: ShardDatasetSpec, i: number): Uint8Array {
  const file = s.files[s.shard[i]!]!;
  const offset = s.offset[i]!;
  const size = s.size[i]!;
  const bytes = Buffer.allocUnsafe(size);
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new Error(`${file}: cannot open shard: ${(e as Error).message}`);
  }
  try {
    for (let got = 0; got < size; ) {
      const n = readSync(fd, bytes, got, size - got, offset + got);
      if (n === 0) throw new Error(`${file}: sample ${s.sample[i]}: the record at byte ${offset} (${size} bytes) ends after ${got} bytes; the shard is shorter than ${s.index} says`);
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, size);
}

/** The record of sample i of `s` (an index already checked), checked against its CRC-32 on its first read. */
function readAt(s: ShardDatasetSpec, i: number): Uint8Array {
  const record = readRecordUnchecked(s, i);
  if (s.crc32 && s.verified) verifyRecord(s, i, record);
  return record;
}

/** The pixels of sample i's JPEG record, which must decode to the size its index entry gives. */
async function decodeJpegRecord(s: ShardDatasetSpec, i: number, record: Uint8Array): Promise<Uint8Array> {
  const [height, width] = [s.height[i]!, s.width[i]!];
  const where = `${s.files[s.shard[i]!]} sample ${s.sample[i]} (byte ${s.offset[i]})`;
  // checked before decoding (see the top of this file): sharp decodes any format, and an SVG of a few bytes can
  // name any size
  if (!(record[0] === 0xff && record[1] === 0xd8 && record[2] === 0xff)) {
    throw new Error(`${where}: not a JPEG record (no JPEG start marker), ${s.index} says pixels "jpeg"`);
  }
  const decoded = await decodeImageBytes(record, where, s.channels, height * width);
  if (decoded.height !== height || decoded.width !== width) {
    throw new Error(`${where}: decoded to ${decoded.height}x${decoded.width}, ${s.index} says ${height}x${width}`);
  }
  return decoded.pixels;
}

/**
 * A shard folder as a Dataset of variable-size 8-bit images (height = width = 0: each sample carries its size).
 * The same images in an InMemoryDataset or an ImageFolderDataset give the same batches: the DataLoader's order and
 * augmentation depend only on (seed, epoch, position) and the pixels.
 */
export class ShardDataset implements Dataset {
  readonly length: number;
  readonly numClasses: number;
  readonly channels: 1 | 3;
  readonly height = 0;
  readonly width = 0;
  readonly spec: ShardDatasetSpec;
  /** Class folder names and each sample's source file (relative to the source folder); empty in worker threads. */
  readonly classes: string[];
  readonly sources: string[];

  constructor(spec: ShardDatasetSpec, names: { classes: string[]; sources: string[] } = { classes: [], sources: [] }) {
    expectObject('ShardDataset', 'spec', spec, false, 'to read a shard folder, use await ShardDataset.open(dir)');
    expectObject('ShardDataset', 'names', names);
    this.spec = spec;
    this.length = spec.labels.length;
    this.numClasses = spec.numClasses;
    this.channels = spec.channels;
    this.classes = names.classes;
    this.sources = names.sources;
  }

  /** Opens the shard folder `dir` (checking its index, see readShardIndex). */
  static async open(dir: string): Promise<ShardDataset> {
    expectString('ShardDataset.open', 'dir', dir, 'a folder path');
    const x = await readShardIndex(dir);
    const spec: ShardDatasetSpec = {
      kind: 'shards',
      index: join(dir, SHARD_INDEX_FILE),
      pixels: x.pixels,
      channels: x.channels,
      numClasses: x.classes.length,
      files: x.shards.map((s) => join(dir, s.file)),
      shard: shared(Int32Array, x.shard),
      offset: shared(Float64Array, x.offset),
      size: shared(Int32Array, x.size),
      height: shared(Int32Array, x.height),
      width: shared(Int32Array, x.width),
      labels: shared(Int32Array, x.label),
      crc32: x.crc32 ? shared(Uint32Array, x.crc32) : null,
      sample: shared(Int32Array, Array.from({ length: x.count }, (_, i) => i)),
      verified: x.crc32 ? new Int32Array(new SharedArrayBuffer(4 * Math.ceil(x.count / 32))) : null,
    };
    return new ShardDataset(spec, { classes: x.classes, sources: x.source });
  }

  /** The record of sample i, read with one positioned read. */
  readRecord(i: number): Uint8Array {
    checkIndex(i, this.length, 'ShardDataset.readRecord');
    return readAt(this.spec, i);
  }


  async getPixels(i: number): Promise<PixelSample> {
    checkIndex(i, this.length, 'Dataset.getPixels');
    const record = readAt(this.spec, i);
    const s = this.spec;
    const height = s.height[i]!;
    const width = s.width[i]!;
    const label = s.labels[i]!;
    if (s.pixels === 'raw') return { pixels: record, height, width, label };
    return { pixels: await decodeJpegRecord(s, i, record), height, width, label };
  }

  async get(i: number): Promise<Sample> {
    checkIndex(i, this.length);
    const { pixels, height, width, label } = await this.getPixels(i);
    return { image: pixelsToImage(pixels, this.channels, height, width), label, height, width };
  }

  workerSpec(): ShardDatasetSpec {
    return this.spec;
  }

  /** Samples start .. end - 1. */
  slice(start: number, end: number): ShardDataset {
    expectInteger('ShardDataset.slice', 'start', start, 0);
    expectInteger('ShardDataset.slice', 'end', end, 0);
    if (!(start < end && end <= this.length))
      throw new Error(`ShardDataset.slice: [${start}, ${end}) is not a non-empty range of a dataset of ${this.length} samples`);
    const spec = mapColumns(this.spec, (c) => c.subarray(start, end) as typeof c);
    return new ShardDataset(spec, { classes: this.classes, sources: this.sources.slice(start, end) });
  }

  /** The samples at `indices`, in that order (copies of their index entries, in shared memory for worker threads). */
  pick(indices: readonly number[]): ShardDataset {
    expectArrayOf('ShardDataset.pick', 'indices', indices, (i) => Number.isInteger(i) && (i as number) >= 0 && (i as number) < this.length, `a sample index in [0, ${this.length})`);
    const spec = mapColumns(this.spec, (c) => shared(c.constructor as { new (buffer: SharedArrayBuffer): typeof c; BYTES_PER_ELEMENT: number }, indices.map((i) => c[i]!)));
    return new ShardDataset(spec, { classes: this.classes, sources: this.sources.length ? indices.map((i) => this.sources[i]!) : [] });
  }

}

export interface VerifyShardsOptions {
  decode?: boolean; // also decode every JPEG record and check its size against the index (default false)
  signal?: AbortSignal; // stops after the records in hand (the result says complete: false)
  onEvent?: (e: VerifyShardsEvent) => void; // a 'damaged' event for every damaged record, also past maxListed
  maxListed?: number; // damaged records kept in the result's list (default 10000; the count goes on past it)
}

export type VerifyShardsEvent =
  | { type: 'start'; samples: number; bytes: number; checksums: boolean; pixels: ShardPixels } // raw records have nothing to decode
  | { type: 'progress'; done: number; samples: number; bytes: number; mibPerSec: number; etaSeconds: number }
  | { type: 'damaged'; sample: number; source: string; error: string }
  | { type: 'end'; complete: boolean; samples: number; damaged: number; seconds: number };

export interface VerifyShardsResult {
  dir: string;
  checksums: boolean; // false: a version 1 index, whose records can only be read (and decoded, with decode)
  complete: boolean; // false after an abort
  samples: number; // records read
  bytes: number;
  checked: number; // records compared with their CRC-32
  decoded: number; // JPEG records decoded (decode: true)
  damaged: { sample: number; source: string; error: string }[]; // in the order of the shards, the first maxListed
  damagedCount: number; // all damaged records, listed or not
  seconds: number;
}

/** Damaged records a result lists by default: a folder damaged throughout would otherwise fill memory with them. */
const VERIFY_MAX_LISTED = 10_000;

/** Records read (and, with decode, decoded concurrently) at a time. */
const VERIFY_BATCH = 16;

/**
 * Reads every record of the shard folder `dir` once, shard by shard in file order, and checks it against its CRC-32
 * (and with `decode`, a JPEG record by decoding it to the size its index entry gives), without stopping at a damaged
 * one: the result counts them all and lists the first `maxListed` by sample, source file and what is wrong. A record
 * that cannot be read (a shard cut short or removed since the index was checked, a read error) is listed too.
 * Training finds the same damage only when it first reads the record; this finds it before a long run. The index
 * itself is checked as ShardDataset.open does (an Error for an index that does not hold together).
 */
export async function verifyShards(dir: string, options: VerifyShardsOptions = {}): Promise<VerifyShardsResult> {
  expectString('verifyShards', 'dir', dir, 'a folder path');
  expectOptions('verifyShards', options, { decode: 'boolean', signal: 'AbortSignal', onEvent: 'function', maxListed: 'number' });
  const maxListed = options.maxListed ?? VERIFY_MAX_LISTED;
  if (!(Number.isSafeInteger(maxListed) && maxListed >= 0)) throw new Error(`verifyShards: options.maxListed must be an integer >= 0, got ${maxListed}`);
  const emit = options.onEvent ?? (() => {});
  const t0 = performance.now();
  const data = await ShardDataset.open(dir);
  const s = data.spec;
  const decode = options.decode === true && s.pixels === 'jpeg';
  const total = s.size.reduce((a, n) => a + n, 0);
  const r: VerifyShardsResult = { dir, checksums: s.crc32 !== null, complete: true, samples: 0, bytes: 0, checked: 0, decoded: 0, damaged: [], damagedCount: 0, seconds: 0 };
  emit({ type: 'start', samples: data.length, bytes: total, checksums: r.checksums, pixels: s.pixels });
  const damaged = (i: number, error: string) => {
    const d = { sample: s.sample[i]!, source: data.sources[i] ?? '', error };
    if (r.damagedCount++ < maxListed) r.damaged.push(d);
    emit({ type: 'damaged', ...d });
  };
  // the rate and the first progress from the start of the reading (not from before the index, which can take
  // seconds to read and check)
  let reading = 0;
  let lastProgress = 0;
  const progress = (force: boolean) => {
    const now = performance.now();
    if (!force && now - lastProgress < 500) return;
    lastProgress = now;
    const seconds = (now - reading) / 1000;
    const rate = r.bytes / Math.max(seconds, 1e-3);
    emit({ type: 'progress', done: r.samples, samples: data.length, bytes: r.bytes, mibPerSec: rate / 2 ** 20, etaSeconds: (total - r.bytes) / Math.max(rate, 1) });
  };
  // each shard's samples in file order: one pass over each file
  const order = Array.from({ length: data.length }, (_, i) => i).sort((a, b) => s.shard[a]! - s.shard[b]! || s.offset[a]! - s.offset[b]!);
  reading = lastProgress = performance.now();
  for (let at = 0; at < order.length && r.complete; at += VERIFY_BATCH) {
    if (options.signal?.aborted) {
      r.complete = false;
      break;
    }
    const batch = order.slice(at, at + VERIFY_BATCH);
    // a record that cannot be read is listed with the reason, and the check goes on
    const records = batch.map((i) => {
      try {
        return readRecordUnchecked(s, i);
      } catch (e) {
        return e as Error;
      }
    });
    // what is wrong with each record of the batch, listed in the batch's order once its decodes have finished
    const problems: (string | null)[] = batch.map(() => null);
    const decodes: Promise<void>[] = [];
    batch.forEach((i, k) => {
      const record = records[k]!;
      r.samples++;
      if (record instanceof Error) return void (problems[k] = record.message);
      r.bytes += record.length;
      if (s.crc32) {
        r.checked++;
        const problem = crcProblem(s, i, record);
        if (problem) return void (problems[k] = problem);
      }
      if (decode) {
        decodes.push(decodeJpegRecord(s, i, record).then(
          () => void r.decoded++,
          (e: Error) => {
            r.decoded++;
            problems[k] = e.message;
          },
        ));
      }
    });
    await Promise.all(decodes);
    batch.forEach((i, k) => problems[k] !== null && damaged(i, problems[k]!));
    progress(false);
    // the reads are synchronous: without a turn of the event loop an abort from a signal handler or a timer would
    // never be seen before the end
    await yieldNow();
  }
  progress(true);
  r.seconds = (performance.now() - t0) / 1000;
  emit({ type: 'end', complete: r.complete, samples: r.samples, damaged: r.damagedCount, seconds: r.seconds });
  return r;
}
