/**
 * Reading entries of a zip archive from an open file, as PyTorch's zip checkpoints need: the central directory
 * (ZIP64 included: checkpoints over 4 GB), then any entry's bytes, stored or deflated, read on demand so that a
 * large archive is never held in memory whole. Every size and offset is checked against the file size before
 * anything is read or allocated; the CRC-32 of each entry read is checked. An archive with two
 * entries of one name is refused: readers differ on which one counts.
 */
import type { FileHandle } from 'node:fs/promises';
import zlib from 'node:zlib';
import { crc32 } from './crc32.js';
import { readAt } from './safetensors.js';

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflated */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  /** offset of the entry's local header */
  headerOffset: number;
}

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

/** The entries of the zip archive in `handle` (a file of `fileSize` bytes), by name. */
export async function readZipDirectory(handle: FileHandle, fileSize: number, source: string): Promise<Map<string, ZipEntry>> {
  const bad = (msg: string): never => {
    throw new Error(`${source}: damaged zip archive: ${msg}`);
  };
  // the end-of-central-directory record: 22 bytes plus a comment of up to 65535 bytes, at the end of the file
  const tailLength = Math.min(fileSize, 22 + 65535);
  const tail = await readAt(handle, fileSize - tailLength, tailLength, source);
  const tv = new DataView(tail.buffer);
  let at = -1;
  for (let i = tailLength - 22; i >= 0; i--)
    if (tv.getUint32(i, true) === EOCD) {
      at = i;
      break;
    }
  if (at < 0) bad('no end-of-central-directory record (the file is truncated or not a zip archive)');
  let count = tv.getUint16(at + 10, true);
  let cdSize = tv.getUint32(at + 12, true);
  let cdOffset = tv.getUint32(at + 16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const eocdPos = fileSize - tailLength + at;
    if (eocdPos < 20) bad('ZIP64 fields without a ZIP64 locator');
    const loc = new DataView((await readAt(handle, eocdPos - 20, 20, source)).buffer);
    if (loc.getUint32(0, true) !== ZIP64_LOCATOR) bad('ZIP64 fields without a ZIP64 locator');
    const recPos = num64(loc.getBigUint64(8, true), fileSize - 56, 'ZIP64 record offset', bad);
    const rec = new DataView((await readAt(handle, recPos, 56, source)).buffer);
    if (rec.getUint32(0, true) !== ZIP64_EOCD) bad('no ZIP64 end-of-central-directory record where the locator points');
    count = num64(rec.getBigUint64(32, true), fileSize, 'entry count', bad);
    cdSize = num64(rec.getBigUint64(40, true), fileSize, 'central directory size', bad);
    cdOffset = num64(rec.getBigUint64(48, true), fileSize, 'central directory offset', bad);
  }
  if (cdOffset + cdSize > fileSize) bad(`the central directory [${cdOffset}, ${cdOffset + cdSize}) lies past the end of the ${fileSize}-byte file`);
  const cd = await readAt(handle, cdOffset, cdSize, source);
  const v = new DataView(cd.buffer);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize || v.getUint32(p, true) !== CENTRAL) bad(`central directory entry ${i} is damaged`);
    const method = v.getUint16(p + 10, true);
    const crc32 = v.getUint32(p + 16, true);
    let compressedSize = v.getUint32(p + 20, true);
    let size = v.getUint32(p + 24, true);
    const nameLength = v.getUint16(p + 28, true);
    const extraLength = v.getUint16(p + 30, true);
    const commentLength = v.getUint16(p + 32, true);
    let headerOffset = v.getUint32(p + 42, true);
    const end = p + 46 + nameLength + extraLength + commentLength;
    if (end > cdSize) bad(`central directory entry ${i} runs past the directory`);
    const name = new TextDecoder().decode(cd.subarray(p + 46, p + 46 + nameLength));
    if (entries.has(name)) bad(`two entries are named ${name}`);
    // ZIP64 extra field: the 64-bit values of the fields that hold 0xffffffff, in this order
    const extraEnd = p + 46 + nameLength + extraLength;
    for (let e = p + 46 + nameLength; e + 4 <= extraEnd; ) {
      const id = v.getUint16(e, true);
      const len = v.getUint16(e + 2, true);
      if (e + 4 + len > extraEnd) bad(`entry ${name}: an extra field of ${len} bytes runs past the entry's ${extraLength}`);
      if (id === 0x0001) {
        let q = e + 4;
        const next = (): number => {
          if (q + 8 > e + 4 + len) bad(`entry ${name}: short ZIP64 extra field`);
          const x = num64(v.getBigUint64(q, true), fileSize, `entry ${name} size`, bad);
          q += 8;
          return x;
        };
        if (size === 0xffffffff) size = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (headerOffset === 0xffffffff) headerOffset = next();
      }
      e += 4 + len;
    }
    if (headerOffset + 30 + compressedSize > fileSize) bad(`entry ${name} lies past the end of the file`);
    if (method === 0 && compressedSize !== size) bad(`stored entry ${name} has compressed size ${compressedSize} but size ${size}`);
    entries.set(name, { name, method, compressedSize, size, crc32, headerOffset });
    p = end;
  }
  return entries;
}

/** The bytes of one entry, inflated if deflated; checked against its size and CRC-32. */
export async function readZipEntry(handle: FileHandle, fileSize: number, entry: ZipEntry, source: string): Promise<Uint8Array> {
  const bad = (msg: string): never => {
    throw new Error(`${source}: damaged zip archive: entry ${entry.name}: ${msg}`);
  };
  const header = new DataView((await readAt(handle, entry.headerOffset, 30, source)).buffer);
  if (header.getUint32(0, true) !== LOCAL) bad('no local header where the directory points');
  const dataAt = entry.headerOffset + 30 + header.getUint16(26, true) + header.getUint16(28, true);
  if (dataAt + entry.compressedSize > fileSize) bad(`its data [${dataAt}, ${dataAt + entry.compressedSize}) lies past the end of the ${fileSize}-byte file`);
  let bytes = await readAt(handle, dataAt, entry.compressedSize, source);
  if (entry.method === 8) {
    // weights do not deflate by more than a few times; a higher ratio would only make this reader allocate much
    if (entry.size > 100 * entry.compressedSize + 1024) bad(`claims to inflate ${entry.compressedSize} bytes to ${entry.size}`);
    try {
      bytes = new Uint8Array(zlib.inflateRawSync(bytes, { maxOutputLength: Math.max(1, entry.size) }));
    } catch (e) {
      bad(`cannot inflate: ${(e as Error).message}`);
    }
  } else if (entry.method !== 0) bad(`compression method ${entry.method} is not supported (only stored and deflated)`);
  if (bytes.length !== entry.size) bad(`${bytes.length} bytes, the directory says ${entry.size}`);
  if (crc32(bytes) !== entry.crc32) bad('CRC-32 mismatch (the file is corrupt)');
  return bytes;
}

function num64(v: bigint, max: number, what: string, bad: (msg: string) => never): number {
  if (v > BigInt(max)) bad(`${what} ${v} is larger than the file allows`);
  return Number(v);
}
