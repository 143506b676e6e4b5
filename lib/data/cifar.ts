/**
 * Reader for the CIFAR-10 binary version (cifar-10-binary.tar.gz, extracted).
 *
 * Each batch file is a sequence of 3073-byte records: 1 label byte (0..9) then 3072 pixel bytes, a 32x32 image as
 * 1024 red, 1024 green, 1024 blue values (CHW, row-major). The train split is data_batch_1.bin .. data_batch_5.bin
 * (10000 records each), the test split test_batch.bin. Images come back as Uint8Array [N, 3, 32, 32], labels as
 * Uint8Array [N].
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeValue, expectInstance, expectString } from '../check.js';

export const CIFAR_IMAGE_BYTES = 3 * 32 * 32;
export const CIFAR_RECORD_BYTES = 1 + CIFAR_IMAGE_BYTES;

export interface CifarSplit {
  images: Uint8Array; // [count, 3, 32, 32]
  labels: Uint8Array; // [count], values 0..9
  count: number;
}

/** Splits the bytes of one CIFAR-10 batch file into images and labels, validating size and labels. */
export function parseCifarBatch(bytes: Uint8Array, path: string): CifarSplit {
  expectInstance('parseCifarBatch', 'bytes', bytes, Uint8Array, 'a Uint8Array');
  expectString('parseCifarBatch', 'path', path, 'a file path');
  if (bytes.length === 0 || bytes.length % CIFAR_RECORD_BYTES !== 0) {
    throw new Error(
      `${path}: not a CIFAR-10 binary batch: size ${bytes.length} bytes is not a positive multiple of the ${CIFAR_RECORD_BYTES}-byte record ` +
        `(1 label + 3072 pixels); ${Math.floor(bytes.length / CIFAR_RECORD_BYTES)} whole records and ${bytes.length % CIFAR_RECORD_BYTES} bytes left over`,
    );
  }
  const count = bytes.length / CIFAR_RECORD_BYTES;
  const images = new Uint8Array(count * CIFAR_IMAGE_BYTES);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const at = i * CIFAR_RECORD_BYTES;
    const label = bytes[at]!;
    if (label > 9) throw new Error(`${path}: record ${i} (byte offset ${at}) has label ${label}, expected 0..9`);
    labels[i] = label;
    images.set(bytes.subarray(at + 1, at + CIFAR_RECORD_BYTES), i * CIFAR_IMAGE_BYTES);
  }
  return { images, labels, count };
}

/** The batch file names of a split. */
export function cifar10FileNames(split: 'train' | 'test'): string[] {
  if (split !== 'train' && split !== 'test') throw new Error(`cifar10FileNames: split must be 'train' or 'test', got ${describeValue(split)}`);
  return split === 'train' ? [1, 2, 3, 4, 5].map((k) => `data_batch_${k}.bin`) : ['test_batch.bin'];
}

/**
 * Loads a CIFAR-10 split from `dir`, which holds the .bin batch files (or holds the extracted
 * `cifar-10-batches-bin/` folder that does).
 */
export async function loadCifar10(dir: string, split: 'train' | 'test'): Promise<CifarSplit> {
  expectString('loadCifar10', 'dir', dir, 'a folder path');
  if (split !== 'train' && split !== 'test') throw new Error(`loadCifar10: split must be 'train' or 'test', got ${String(split)}`);
  const names = cifar10FileNames(split);
  const nested = join(dir, 'cifar-10-batches-bin');
  const base = !existsSync(join(dir, names[0]!)) && existsSync(join(nested, names[0]!)) ? nested : dir;
  const missing = names.filter((n) => !existsSync(join(base, n)));
  if (missing.length > 0) {
    throw new Error(`CIFAR-10 ${split} split not found in ${base}: missing ${missing.join(', ')} (expected the binary version, cifar-10-binary.tar.gz extracted)`);
  }
  const parts: CifarSplit[] = [];
  for (const name of names) {
    const path = join(base, name);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (e) {
      throw new Error(`${path}: cannot read file: ${(e as Error).message}`);
    }
    parts.push(parseCifarBatch(bytes, path));
  }
  const count = parts.reduce((n, p) => n + p.count, 0);
  const images = new Uint8Array(count * CIFAR_IMAGE_BYTES);
  const labels = new Uint8Array(count);
  let at = 0;
  for (const p of parts) {
    images.set(p.images, at * CIFAR_IMAGE_BYTES);
    labels.set(p.labels, at);
    at += p.count;
  }
  return { images, labels, count };
}
