/**
 * Reader for IDX files, the format of MNIST and Fashion-MNIST, plus the Fashion-MNIST loader.
 *
 * An IDX file is: 2 zero bytes, a type byte (0x08 = unsigned byte, the only type these datasets use), a byte with
 * the number of dimensions n, n big-endian uint32 sizes, then the data in row-major order. Files may be gzipped
 * (detected from the gzip magic bytes 1f 8b, not from the name). Every check names the file and says what was
 * expected and what was found.
 *
 * Fashion-MNIST images come back as Uint8Array [N, 28, 28] (0 = background, 255 = ink) and labels as Uint8Array [N]
 * with values 0..9.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { expectFunction, expectInstance, expectString } from '../check.js';

/** Where the Debian/Ubuntu package `dataset-fashion-mnist` installs the four Fashion-MNIST files. */
export const DEFAULT_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

export interface IdxImages {
  images: Uint8Array; // [count, rows, cols]
  count: number;
  rows: number;
  cols: number;
}

export interface MnistSplit extends IdxImages {
  labels: Uint8Array; // [count], values 0..9
}

const IDX_TYPE_NAMES: Record<number, string> = {
  0x08: 'unsigned byte',
  0x09: 'signed byte',
  0x0b: 'int16',
  0x0c: 'int32',
  0x0d: 'float32',
  0x0e: 'float64',
};

/**
 * Reads a whole file, gunzipping it when it starts with the gzip magic bytes. `path` is only used in errors.
 * `expectedBytes`, given the output so far, returns how long the whole output should be once it can tell (null
 * before): the gunzip stops one byte past it, so a small file that expands without end (a gzip bomb) or past what
 * its own header says costs no more memory than the data it should hold.
 */
export async function readMaybeGzip(path: string, expectedBytes?: (head: Uint8Array) => number | null): Promise<Uint8Array> {
  expectString('readMaybeGzip', 'path', path, 'a file path');
  expectFunction('readMaybeGzip', 'expectedBytes', expectedBytes, true);
  let raw: Buffer;
  try {
    raw = await readFile(path);
  } catch (e) {
    throw new Error(`${path}: cannot read file: ${(e as Error).message}`);
  }
  if (!(raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b)) return new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
  const chunks: Buffer[] = [];
  let length = 0;
  let limit: number | null = null;
  const gz = createGunzip();
  try {
    await new Promise<void>((resolve, reject) => {
      gz.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        length += chunk.length;
        if (limit === null && expectedBytes) limit = expectedBytes(chunks.length === 1 ? chunk : Buffer.concat(chunks));
        if (limit !== null && length > limit) {
          gz.destroy();
          reject(new Error(`${path}: gzip data expands past the ${limit} bytes its contents say they hold (corrupt or hostile file?)`));
        }
      });
      gz.on('end', () => resolve());
      gz.on('error', (e) => reject(new Error(`${path}: gzip data is corrupt or truncated (${e.message})`)));
      gz.end(raw);
    });
  } catch (e) {
    chunks.length = 0;
    throw e;
  }
  const out = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** The size of a whole IDX file from its header, once `head` holds the header (null before, or when it is not one). */
function idxBytes(head: Uint8Array): number | null {
  if (head.length < 4) return null;
  const headerBytes = 4 + 4 * head[3]!;
  if (head.length < headerBytes) return null;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  let data = 1;
  for (let d = 0; d < head[3]!; d++) data *= view.getUint32(4 + 4 * d, false);
  return headerBytes + data;
}

/** Parses the bytes of an (already gunzipped) IDX file of unsigned bytes. */
export function parseIdx(bytes: Uint8Array, path: string): IdxArray {
  expectInstance('parseIdx', 'bytes', bytes, Uint8Array, 'a Uint8Array');
  expectString('parseIdx', 'path', path, 'a file path');
  if (bytes.length < 4) throw new Error(`${path}: not an IDX file: ${bytes.length} bytes, shorter than the 4-byte magic number`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    const magic = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new Error(`${path}: not an IDX file: magic number must start with 00 00, found ${magic}`);
  }
  const type = bytes[2]!;
  const ndim = bytes[3]!;
  if (type !== 0x08) {
    const name = IDX_TYPE_NAMES[type] ?? 'unknown';
    throw new Error(`${path}: IDX data type 0x${type.toString(16).padStart(2, '0')} (${name}) is not supported, expected 0x08 (unsigned byte)`);
  }
  if (ndim === 0) throw new Error(`${path}: IDX header declares 0 dimensions`);
  const headerBytes = 4 + 4 * ndim;
  if (bytes.length < headerBytes) {
    throw new Error(`${path}: truncated IDX header: ${ndim} dimensions need ${headerBytes} header bytes, file has ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  let total = 1;
  for (let d = 0; d < ndim; d++) {
    const size = view.getUint32(4 + 4 * d, false);
    dims.push(size);
    total *= size;
  }
  const expected = headerBytes + total;
  if (bytes.length < expected) {
    throw new Error(`${path}: truncated IDX file: dimensions [${dims.join(', ')}] need ${expected} bytes (${headerBytes} header + ${total} data), found ${bytes.length}`);
  }
  if (bytes.length > expected) {
    throw new Error(`${path}: IDX file has ${bytes.length - expected} unexpected trailing bytes: dimensions [${dims.join(', ')}] need ${expected} bytes, found ${bytes.length}`);
  }
  return { dims, data: bytes.subarray(headerBytes, expected) };
}

/** Reads an IDX image file (3 dimensions: count, rows, cols), gzipped or raw. */
export async function readIdxImages(path: string): Promise<IdxImages> {
  expectString('readIdxImages', 'path', path, 'a file path');
  const { dims, data } = parseIdx(await readMaybeGzip(path, idxBytes), path);
  if (dims.length !== 3) throw new Error(`${path}: expected an IDX image file with 3 dimensions [count, rows, cols], found ${dims.length} dimensions [${dims.join(', ')}]`);
  return { images: data, count: dims[0]!, rows: dims[1]!, cols: dims[2]! };
}

/** Reads an IDX label file (1 dimension: count), gzipped or raw. */
export async function readIdxLabels(path: string): Promise<Uint8Array> {
  expectString('readIdxLabels', 'path', path, 'a file path');
  const { dims, data } = parseIdx(await readMaybeGzip(path, idxBytes), path);
  if (dims.length !== 1) throw new Error(`${path}: expected an IDX label file with 1 dimension [count], found ${dims.length} dimensions [${dims.join(', ')}]`);
  return data;
}

/** The Fashion-MNIST file names of a split, without the optional `.gz`. */
export function fashionMnistFileNames(split: 'train' | 'test'): { images: string; labels: string } {
  const prefix = split === 'train' ? 'train' : 't10k';
  return { images: `${prefix}-images-idx3-ubyte`, labels: `${prefix}-labels-idx1-ubyte` };
}

/** `dir/name.gz` if it exists, else `dir/name` if it exists, else null. */
function findIdxFile(dir: string, name: string): string | null {
  for (const candidate of [join(dir, `${name}.gz`), join(dir, name)]) {
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

/**
 * Returns `dir` (default DEFAULT_FASHION_MNIST_DIR) if it holds all four Fashion-MNIST files (gzipped or raw), else
 * throws an Error listing what is missing and how to get it.
 */
export function resolveFashionMnistDir(dir: string = DEFAULT_FASHION_MNIST_DIR): string {
  expectString('resolveFashionMnistDir', 'dir', dir, 'a folder path');
  const missing: string[] = [];
  for (const split of ['train', 'test'] as const) {
    const names = fashionMnistFileNames(split);
    for (const name of [names.images, names.labels]) if (findIdxFile(dir, name) === null) missing.push(`${name}.gz`);
  }
  if (missing.length > 0) {
    throw new Error(
      `Fashion-MNIST not found in ${dir}: missing ${missing.join(', ')}. ` +
        `Install it with: sudo apt-get install dataset-fashion-mnist, or pass --data <dir> with ` +
        `train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (gzipped or raw).`,
    );
  }
  return dir;
}

/** Loads one split of Fashion-MNIST (or MNIST, same format) from `dir`: images [N, 28, 28] and labels 0..9. */
export async function loadFashionMnist(dir: string, split: 'train' | 'test'): Promise<MnistSplit> {
  expectString('loadFashionMnist', 'dir', dir, 'a folder path');
  if (split !== 'train' && split !== 'test') throw new Error(`loadFashionMnist: split must be 'train' or 'test', got ${String(split)}`);
  resolveFashionMnistDir(dir);
  const names = fashionMnistFileNames(split);
  const imagePath = findIdxFile(dir, names.images)!;
  const labelPath = findIdxFile(dir, names.labels)!;
  const [img, labels] = await Promise.all([readIdxImages(imagePath), readIdxLabels(labelPath)]);
  if (img.rows !== 28 || img.cols !== 28) throw new Error(`${imagePath}: expected 28x28 images, found ${img.rows}x${img.cols}`);
  if (labels.length !== img.count) {
    throw new Error(`${labelPath}: has ${labels.length} labels but ${imagePath} has ${img.count} images`);
  }
  for (let i = 0; i < labels.length; i++) {
    if (labels[i]! > 9) throw new Error(`${labelPath}: label ${i} is ${labels[i]}, expected 0..9`);
  }
  return { ...img, labels };
}
