// ShardDataset (lib/data/shards.ts): the same batches as an in-memory and a folder dataset of the same images, for
// raw and JPEG shards; the data source and its kind guessed from the index; forged or damaged indexes and shards.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DataLoader, ImageFolderDataset, InMemoryDataset, SHARD_INDEX_FILE, ShardDataset, prepareShards, type Batch, type Dataset, type ShardIndex,
} from '../../lib/data/index.js';
import { guessDataKind } from '../../lib/cli.js';
import { crc32 } from '../../lib/io/crc32.js';
import { openDataset } from '../../lib/train/data.js';
import { smoothPixels, writeImage } from '../helpers/images.js';

const root = mkdtempSync(join(tmpdir(), 'mae-shards-'));
const same = join(root, 'same'); // class folders of 14 x 18 PNG images
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  for (const d of ['x', 'y']) mkdirSync(join(same, d), { recursive: true });
  for (let k = 0; k < 12; k++) await writeImage(join(same, k < 7 ? 'x' : 'y', `${k}.png`), 14, 18, 100 + k);
});

describe('ShardDataset', () => {
  let shardsDir = '';
  let jpegDir = '';
  beforeAll(async () => {
    shardsDir = (await prepareShards({ data: same, out: join(root, 'same-raw'), shardBytes: 3000 })).dir;
    jpegDir = (await prepareShards({ data: same, out: join(root, 'same-jpeg'), format: 'jpeg' })).dir;
  });

  async function batches(ds: Dataset, opts: { augment: boolean; seed: number }, epoch: number): Promise<Batch[]> {
    const loader = new DataLoader(ds, { batchSize: 5, imageSize: 12, evalCropFraction: 0.875, workers: 0, ...opts });
    const out: Batch[] = [];
    for await (const b of loader.epoch(epoch)) out.push(b);
    return out;
  }
  const flat = (bs: Batch[]) => bs.map((b) => [Array.from(b.indices), Array.from(b.labels), Array.from(b.images)]);

  it('gives the same batches as an in-memory and a folder dataset of the same images, for any seed and epoch', async () => {
    const shards = await ShardDataset.open(shardsDir);
    const n = shards.length;
    const chw = new Uint8Array(n * 3 * 14 * 18);
    const labels: number[] = [];
    for (let i = 0; i < n; i++) {
      const { pixels: px, label } = await shards.getPixels(i);
      for (let p = 0; p < 14 * 18; p++) for (let c = 0; c < 3; c++) chw[(i * 3 + c) * 252 + p] = px[p * 3 + c]!;
      labels.push(label);
    }
    expect(labels).toEqual([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    const memory = new InMemoryDataset({ images: chw, labels, channels: 3, height: 14, width: 18, numClasses: 2 });
    const folder = await ImageFolderDataset.open(same);
    for (const augment of [true, false]) {
      for (const [seed, epoch] of [[0, 0], [7, 2]] as const) {
        const a = flat(await batches(shards, { augment, seed }, epoch));
        expect(a).toEqual(flat(await batches(memory, { augment, seed }, epoch)));
        expect(a).toEqual(flat(await batches(folder, { augment, seed }, epoch)));
      }
    }
    expect(flat(await batches(shards, { augment: true, seed: 0 }, 0))).not.toEqual(flat(await batches(shards, { augment: true, seed: 0 }, 1)));
    // JPEG shards: the same order and crops, pixels within JPEG error
    const jpeg = flat(await batches(await ShardDataset.open(jpegDir), { augment: true, seed: 7 }, 2));
    const raw = flat(await batches(shards, { augment: true, seed: 7 }, 2));
    expect(jpeg.map((b) => b.slice(0, 2))).toEqual(raw.map((b) => b.slice(0, 2)));
  });

  it('opens as a data source (kind guessed from the index), cut by limit', async () => {
    expect(guessDataKind(shardsDir)).toBe('shards');
    const ds = await openDataset({ kind: 'shards', path: shardsDir, limit: 4 });
    expect(ds).toBeInstanceOf(ShardDataset);
    expect(ds.length).toBe(4);
    expect(Array.from((await ds.getPixels!(3)).pixels)).toEqual(Array.from((await (await ShardDataset.open(shardsDir)).getPixels(3)).pixels));
    await expect(openDataset({ kind: 'shards' })).rejects.toThrow('shards: pass the folder written by mae prepare-data');
  });

  it('refuses a forged or damaged index with an Error naming it, before allocating from its numbers', async () => {
    const good = JSON.parse(readFileSync(join(shardsDir, SHARD_INDEX_FILE), 'utf8')) as ShardIndex;
    const dir = join(root, 'forged');
    mkdirSync(dir);
    for (const s of good.shards) writeFileSync(join(dir, s.file), readFileSync(join(shardsDir, s.file)));
    const path = join(dir, SHARD_INDEX_FILE);
    const cases: [(x: ShardIndex) => unknown, string][] = [
      [(x) => ({ ...x, version: 3 }), 'shard index version 3 is not supported (this library reads versions 1 to 2)'],
      [(x) => ({ ...x, crc32: undefined }), 'crc32 must be an array of count (12) entries, got "undefined"'],
      [(x) => ({ ...x, crc32: x.crc32!.map((v, i) => (i === 4 ? -1 : v)) }), 'sample 4: crc32 must be an integer in [0, 2^32 - 1], got -1'],
      [(x) => ({ ...x, crc32: x.crc32!.map((v, i) => (i === 4 ? 2 ** 32 : v)) }), `sample 4: crc32 must be an integer in [0, 2^32 - 1], got ${2 ** 32}`],
      [(x) => ({ ...x, crc32: x.crc32!.map((v, i) => (i === 4 ? String(v) : v)) }), 'sample 4: crc32 must be an integer in [0, 2^32 - 1], got "'],
      [(x) => ({ ...x, format: 'other' }), 'not a shard index: format is "other", expected "mae-shards"'],
      [(x) => ({ ...x, count: 1e12 }), 'count must be a positive integer, got 1000000000000'],
      [(x) => ({ ...x, count: 13 }), 'shard must be an array of count (13) entries, got 12 entries'],
      [(x) => ({ ...x, size: x.size.map((v, i) => (i === 3 ? 2 ** 40 : v)) }), `sample 3: offset must be an integer >= 0 and size one in [1, ${2 ** 31 - 1}], got`],
      [(x) => ({ ...x, offset: x.offset.map((v, i) => (i === 11 ? v + 1 : v)) }), 'sample 11: bytes'],
      [(x) => ({ ...x, height: x.height.map((v, i) => (i === 0 ? v + 1 : v)) }), 'sample 0: a raw 15x18x3 record has 810 bytes, the index says 756'],
      [(x) => ({ ...x, label: x.label.map((v, i) => (i === 5 ? 2 : v)) }), 'sample 5: label 2 is not a class index (0 .. 1)'],
      [(x) => ({ ...x, shard: x.shard.map((v, i) => (i === 2 ? 99 : v)) }), 'sample 2: shard 99 is not an index into shards'],
      [(x) => ({ ...x, shards: [{ file: '../secret', bytes: 10 }, ...x.shards.slice(1)] }), 'shards[0].file must be a plain file name in the folder, got "../secret"'],
      [(x) => ({ ...x, shards: x.shards.map((s, k) => (k === 0 ? { ...s, bytes: s.bytes + 1 } : s)) }), `shard ${good.shards[0]!.file} has ${good.shards[0]!.bytes} bytes, the index says ${good.shards[0]!.bytes + 1}`],
    ];
    for (const [forge, message] of cases) {
      writeFileSync(path, JSON.stringify(forge(good)));
      await expect(ShardDataset.open(dir), message).rejects.toThrow(`${path}: ${message}`);
    }
    writeFileSync(path, '{"format": "mae-shards", "vers');
    await expect(ShardDataset.open(dir)).rejects.toThrow(`${path}: not a valid shard index (JSON:`);
    // the index is fine but a shard is cut short after opening: the read names the shard
    writeFileSync(path, JSON.stringify(good));
    const ds = await ShardDataset.open(dir);
    const last = join(dir, good.shards.at(-1)!.file);
    truncateSync(last, 100);
    await expect(ds.get(ds.length - 1)).rejects.toThrow(`${last}: sample ${ds.length - 1}: the record at byte`);
    rmSync(last);
    await expect(ds.get(ds.length - 1)).rejects.toThrow(`${last}: cannot open shard`);
    await expect(ds.get(ds.length)).rejects.toThrow(`Dataset.get: index ${ds.length} is out of range [0, ${ds.length})`);
  });

  it('refuses a JPEG record of another format or of more pixels than its index entry before decoding it', async () => {
    // tools/fuzz.ts (shards-jpeg): sharp decoded any format in full before the size check, and an SVG of 70 bytes
    // can name 16383 x 16383 pixels (1 GiB resident, 2 s)
    const good = JSON.parse(readFileSync(join(jpegDir, SHARD_INDEX_FILE), 'utf8')) as ShardIndex;
    const dir = join(root, 'forged-jpeg');
    mkdirSync(dir);
    const path = join(dir, SHARD_INDEX_FILE);
    const shard = join(dir, good.shards[0]!.file);
    const records: [Uint8Array, string][] = [
      [new TextEncoder().encode(`<svg xmlns="http://www.w3.org/2000/svg" width="${good.width[2]}" height="${good.height[2]}"/>`), 'not a JPEG record (no JPEG start marker)'],
      [await sharp(smoothPixels(40, 50, 1), { raw: { width: 50, height: 40, channels: 3 } }).jpeg().toBuffer(), `cannot decode image: its header gives more than the ${good.height[2]! * good.width[2]!} pixels allowed`],
    ];
    for (const [record, message] of records) {
      // sample 2's record appended to the shard, the index kept in step: only the record is wrong
      const bytes = Buffer.concat([readFileSync(join(jpegDir, good.shards[0]!.file)), record]);
      writeFileSync(shard, bytes);
      const x = structuredClone(good);
      x.offset[2] = bytes.length - record.length;
      x.size[2] = record.length;
      x.shards[0]!.bytes = bytes.length;
      x.crc32![2] = crc32(record);
      writeFileSync(path, JSON.stringify(x));
      const ds = await ShardDataset.open(dir);
      await expect(ds.getPixels(2)).rejects.toThrow(`${shard} sample 2 (byte ${x.offset[2]}): ${message}`);
      expect((await ds.getPixels(1)).height).toBe(good.height[1]);
    }
  });

  it('checks each record once: the worker threads mark the records they checked for every thread', async () => {
    const ds = await ShardDataset.open(shardsDir);
    expect(ds.spec.verified).toEqual(new Int32Array(1));
    const loader = new DataLoader(ds, { batchSize: 4, imageSize: 12, evalCropFraction: 0.875, workers: 2, augment: false, seed: 0 });
    let n = 0;
    for await (const b of loader.epoch(0)) n += b.indices.length;
    expect(n).toBe(12);
    expect(ds.spec.verified![0]).toBe(0xfff); // 12 samples, set by the workers in shared memory
    const part = ds.slice(4, 9);
    expect(part.spec.verified).toBe(ds.spec.verified);
    expect(Array.from(part.spec.sample)).toEqual([4, 5, 6, 7, 8]);
    const picked = part.pick([3, 0]);
    expect(picked.spec.verified).toBe(ds.spec.verified);
    expect(Array.from(picked.spec.sample)).toEqual([7, 4]);
    expect(picked.spec.sample.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(ds.spec.sample.buffer).toBeInstanceOf(SharedArrayBuffer);
  });

  it('refuses a record damaged on disk by its CRC-32 (raw and JPEG, in a slice, through worker threads) and reads a version 1 index unchecked', async () => {
    for (const [from, name] of [[shardsDir, 'damaged-raw'], [jpegDir, 'damaged-jpeg']] as const) {
      const good = JSON.parse(readFileSync(join(from, SHARD_INDEX_FILE), 'utf8')) as ShardIndex;
      expect(good.version).toBe(2);
      const dir = join(root, name);
      mkdirSync(dir);
      for (const f of good.shards) writeFileSync(join(dir, f.file), readFileSync(join(from, f.file)));
      writeFileSync(join(dir, SHARD_INDEX_FILE), JSON.stringify(good));
      const before = await (await ShardDataset.open(dir)).getPixels(5);
      // one bit of sample 5's record flipped, in the middle of the record: sizes, offsets and index all still agree
      const shard = join(dir, good.shards[good.shard[5]!]!.file);
      const bytes = readFileSync(shard);
      const at = good.offset[5]! + Math.floor(good.size[5]! / 2);
      bytes[at]! ^= 0x10;
      writeFileSync(shard, bytes);
      const ds = await ShardDataset.open(dir);
      const message = `${shard}: sample 5: the record at byte ${good.offset[5]} (${good.size[5]} bytes) has CRC-32 `;
      await expect(ds.getPixels(5)).rejects.toThrow(message);
      await expect(ds.getPixels(5)).rejects.toThrow(`says ${good.crc32![5]!.toString(16).padStart(8, '0')}: the shard is damaged`);
      await expect(ds.get(5)).rejects.toThrow(message);
      await expect(ds.slice(3, 7).getPixels(2)).rejects.toThrow(message);
      await expect(ds.pick([4, 5]).getPixels(1)).rejects.toThrow(message);
      await expect(ds.slice(2, 9).pick([6, 3]).getPixels(1)).rejects.toThrow(message);
      expect(Array.from((await ds.slice(3, 7).getPixels(1)).pixels)).toEqual(Array.from((await ds.getPixels(4)).pixels));
      const loader = new DataLoader(ds, { batchSize: 4, imageSize: 12, evalCropFraction: 0.875, workers: 1, augment: false, seed: 0 });
      await expect((async () => {
        for await (const _ of loader.epoch(0)) void _;
      })()).rejects.toThrow(message);
      // checked records are marked (bit n of verified for the index's sample n; the loader's worker read the others),
      // a damaged one never
      expect(Array.from(ds.spec.verified!)).toEqual([0xfff & ~(1 << 5)]);
      await expect(ds.getPixels(5)).rejects.toThrow(message);
      // the same folder as version 1 (no checksums): read as it is, raw damaged pixels included
      writeFileSync(join(dir, SHARD_INDEX_FILE), JSON.stringify({ ...good, version: 1, crc32: undefined }));
      const v1 = await ShardDataset.open(dir);
      expect(v1.spec.crc32).toBeNull();
      // a crc32 field in a version 1 index is not read (tools/fuzz.ts: one of the wrong length was used, and threw a
      // TypeError at the sample it lacked)
      writeFileSync(join(dir, SHARD_INDEX_FILE), JSON.stringify({ ...good, version: 1, crc32: good.crc32!.slice(0, 4) }));
      const v1crc = await ShardDataset.open(dir);
      expect(v1crc.spec.crc32).toBeNull();
      expect((await v1crc.getPixels(good.count - 1)).height).toBe(good.height[good.count - 1]);
      expect(Array.from((await v1.getPixels(4)).pixels)).toEqual(Array.from((await ds.getPixels(4)).pixels));
      if (good.pixels === 'raw') {
        const after = await v1.getPixels(5);
        expect(after.height).toBe(before.height);
        expect(Array.from(after.pixels)).not.toEqual(Array.from(before.pixels));
      }
    }
  });
});
