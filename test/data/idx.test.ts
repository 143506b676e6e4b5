// IDX parsing (raw and gzipped, corrupt files) and the Fashion-MNIST loader, on small files written to a temp dir
// and on the real dataset installed by the dataset-fashion-mnist package.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_FASHION_MNIST_DIR, FASHION_MNIST_MEAN, FASHION_MNIST_STD, fashionMnistDataset, loadFashionMnist, parseIdx, readIdxImages, readIdxLabels, resolveFashionMnistDir,
} from '../../lib/data/index.js';

const dir = mkdtempSync(join(tmpdir(), 'mae-idx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An IDX file of unsigned bytes with the given dimensions and data. */
function idx(dims: number[], data: Uint8Array, type = 0x08): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  out[2] = type;
  out[3] = dims.length;
  const view = new DataView(out.buffer);
  dims.forEach((d, k) => view.setUint32(4 + 4 * k, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

function write(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

const pixels = Uint8Array.from({ length: 3 * 2 * 4 }, (_, i) => i * 10);

describe('IDX files', () => {
  it('reads raw and gzipped image and label files identically', async () => {
    const raw = write('img', idx([3, 2, 4], pixels));
    const gz = write('img.gz', gzipSync(idx([3, 2, 4], pixels)));
    for (const path of [raw, gz]) {
      const img = await readIdxImages(path);
      expect([img.count, img.rows, img.cols]).toEqual([3, 2, 4]);
      expect(Array.from(img.images)).toEqual(Array.from(pixels));
    }
    const labels = await readIdxLabels(write('lab.gz', gzipSync(idx([3], Uint8Array.from([7, 0, 9])))));
    expect(Array.from(labels)).toEqual([7, 0, 9]);
  });

  it('rejects a bad magic number, naming the file and the bytes found', () => {
    const bytes = idx([3, 2, 4], pixels);
    bytes[0] = 0x12;
    expect(() => parseIdx(bytes, '/x/bad-magic')).toThrow(/\/x\/bad-magic: not an IDX file: magic number must start with 00 00, found 12 00 08 03/);
  });

  it('rejects unsupported data types', () => {
    expect(() => parseIdx(idx([2], Uint8Array.from([1, 2]), 0x0d), 'f.idx')).toThrow(/f\.idx: IDX data type 0x0d \(float32\) is not supported, expected 0x08/);
  });

  it('rejects truncated and over-long files with expected vs found sizes', async () => {
    const full = idx([3, 2, 4], pixels); // 16 header + 24 data = 40 bytes
    const truncated = write('trunc', full.subarray(0, 39));
    await expect(readIdxImages(truncated)).rejects.toThrow(`${truncated}: truncated IDX file: dimensions [3, 2, 4] need 40 bytes (16 header + 24 data), found 39`);
    const header = write('trunc-header', full.subarray(0, 10));
    await expect(readIdxImages(header)).rejects.toThrow(`${header}: truncated IDX header: 3 dimensions need 16 header bytes, file has 10`);
    const extra = new Uint8Array(42);
    extra.set(full);
    expect(() => parseIdx(extra, 'long')).toThrow('long: IDX file has 2 unexpected trailing bytes: dimensions [3, 2, 4] need 40 bytes, found 42');
  });

  it('rejects corrupt gzip data and the wrong number of dimensions', async () => {
    const gz = gzipSync(idx([3, 2, 4], pixels));
    const cut = write('cut.gz', gz.subarray(0, gz.length - 10));
    await expect(readIdxImages(cut)).rejects.toThrow(`${cut}: gzip data is corrupt or truncated`);
    const labels = write('labels-as-images', idx([3], Uint8Array.from([1, 2, 3])));
    await expect(readIdxImages(labels)).rejects.toThrow(`${labels}: expected an IDX image file with 3 dimensions [count, rows, cols], found 1 dimensions [3]`);
    await expect(readIdxLabels(join(dir, 'missing'))).rejects.toThrow(`${join(dir, 'missing')}: cannot read file`);
  });
});

describe('Fashion-MNIST loader', () => {
  it('names the missing files and how to install them', () => {
    const empty = mkdtempSync(join(dir, 'empty-'));
    let message = '';
    try {
      resolveFashionMnistDir(empty);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain(`Fashion-MNIST not found in ${empty}: missing train-images-idx3-ubyte.gz`);
    expect(message).toContain('sudo apt-get install dataset-fashion-mnist');
    expect(message).toContain('--data <dir>');
  });

  it('loads a small synthetic copy (raw and gz mixed) and checks counts and labels', async () => {
    const small = mkdtempSync(join(dir, 'fm-'));
    const img = (n: number) => idx([n, 28, 28], new Uint8Array(n * 784).fill(5));
    writeFileSync(join(small, 'train-images-idx3-ubyte.gz'), gzipSync(img(4)));
    writeFileSync(join(small, 'train-labels-idx1-ubyte'), idx([4], Uint8Array.from([0, 1, 2, 9])));
    writeFileSync(join(small, 't10k-images-idx3-ubyte'), img(2));
    writeFileSync(join(small, 't10k-labels-idx1-ubyte.gz'), gzipSync(idx([3], Uint8Array.from([0, 1, 2]))));
    const train = await loadFashionMnist(small, 'train');
    expect([train.count, train.rows, train.cols]).toEqual([4, 28, 28]);
    expect(Array.from(train.labels)).toEqual([0, 1, 2, 9]);
    await expect(loadFashionMnist(small, 'test')).rejects.toThrow(/t10k-labels-idx1-ubyte\.gz: has 3 labels but .*t10k-images-idx3-ubyte has 2 images/);
    writeFileSync(join(small, 'train-labels-idx1-ubyte'), idx([4], Uint8Array.from([0, 1, 12, 9])));
    await expect(loadFashionMnist(small, 'train')).rejects.toThrow('train-labels-idx1-ubyte: label 2 is 12, expected 0..9');
  });

  it('loads the real dataset from /usr/share/datasets/fashion-mnist (installed by dataset-fashion-mnist)', async () => {
    expect(DEFAULT_FASHION_MNIST_DIR).toBe('/usr/share/datasets/fashion-mnist');
    const train = await loadFashionMnist(resolveFashionMnistDir(), 'train');
    expect([train.count, train.rows, train.cols]).toEqual([60000, 28, 28]);
    expect(train.images.length).toBe(60000 * 28 * 28);
    const counts = new Array(10).fill(0);
    for (const l of train.labels) counts[l]++;
    expect(counts).toEqual(new Array(10).fill(6000));
    // the DataLoader's default 1-channel normalisation is these statistics
    let sum = 0;
    let sq = 0;
    for (const p of train.images) {
      sum += p / 255;
      sq += (p / 255) ** 2;
    }
    const mean = sum / train.images.length;
    expect(mean).toBeCloseTo(FASHION_MNIST_MEAN[0]!, 3);
    expect(Math.sqrt(sq / train.images.length - mean * mean)).toBeCloseTo(FASHION_MNIST_STD[0]!, 3);
    const test = await fashionMnistDataset('test');
    expect([test.length, test.channels, test.height, test.width, test.numClasses]).toEqual([10000, 1, 28, 28, 10]);
    const s = await test.get(0);
    expect(s.image.length).toBe(784);
    expect(Math.min(...s.image)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...s.image)).toBeLessThanOrEqual(1);
    expect(s.label).toBe(9); // the first t10k image is an ankle boot
  });
});
