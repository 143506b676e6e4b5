// CIFAR-10 binary batches, on synthetic files: parsing, split assembly, size and label validation.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CIFAR_RECORD_BYTES, cifar10Dataset, loadCifar10, parseCifarBatch } from '../../lib/data/index.js';

const dir = mkdtempSync(join(tmpdir(), 'mae-cifar-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `n` records; record i has label (first + i) % 10 and pixel p = (first + i + p) % 256. */
function batch(n: number, first: number): Uint8Array {
  const out = new Uint8Array(n * CIFAR_RECORD_BYTES);
  for (let i = 0; i < n; i++) {
    out[i * CIFAR_RECORD_BYTES] = (first + i) % 10;
    for (let p = 0; p < 3072; p++) out[i * CIFAR_RECORD_BYTES + 1 + p] = (first + i + p) % 256;
  }
  return out;
}

describe('CIFAR-10 binary', () => {
  it('parses records into CHW images and labels', () => {
    const { images, labels, count } = parseCifarBatch(batch(3, 0), 'b.bin');
    expect(count).toBe(3);
    expect(Array.from(labels)).toEqual([0, 1, 2]);
    expect(images.length).toBe(3 * 3072);
    expect(images[3072 + 1024 + 5]).toBe((1 + 1024 + 5) % 256); // image 1, green plane, pixel 5
  });

  it('rejects sizes that are not whole records and labels above 9', () => {
    expect(() => parseCifarBatch(new Uint8Array(3073 * 2 + 5), '/d/data_batch_1.bin')).toThrow(
      '/d/data_batch_1.bin: not a CIFAR-10 binary batch: size 6151 bytes is not a positive multiple of the 3073-byte record (1 label + 3072 pixels); 2 whole records and 5 bytes left over',
    );
    expect(() => parseCifarBatch(new Uint8Array(0), 'empty.bin')).toThrow('empty.bin: not a CIFAR-10 binary batch: size 0 bytes');
    const bad = batch(2, 0);
    bad[CIFAR_RECORD_BYTES] = 10;
    expect(() => parseCifarBatch(bad, 'x.bin')).toThrow('x.bin: record 1 (byte offset 3073) has label 10, expected 0..9');
  });

  it('loads the train split from 5 batch files in order (also from a nested cifar-10-batches-bin/) and names missing files', async () => {
    const nested = join(dir, 'cifar-10-batches-bin');
    mkdirSync(nested);
    for (let k = 1; k <= 5; k++) writeFileSync(join(nested, `data_batch_${k}.bin`), batch(2, 2 * (k - 1)));
    const train = await loadCifar10(dir, 'train');
    expect(train.count).toBe(10);
    expect(Array.from(train.labels)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(train.images[7 * 3072]).toBe(7);
    await expect(loadCifar10(dir, 'test')).rejects.toThrow(`CIFAR-10 test split not found in ${dir}: missing test_batch.bin`);
    writeFileSync(join(nested, 'test_batch.bin'), batch(4, 3));
    const ds = await cifar10Dataset('test', nested);
    expect([ds.length, ds.channels, ds.height, ds.width, ds.numClasses]).toEqual([4, 3, 32, 32, 10]);
    const s = await ds.get(2);
    expect(s.label).toBe(5);
    expect(s.image[1024]).toBeCloseTo(((5 + 1024) % 256) / 255, 7);
  });
});
