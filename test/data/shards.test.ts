// ShardDataset (lib/data/shards.ts): the same batches as an in-memory and a folder dataset of the same images, for
// raw and JPEG shards; the data source and its kind guessed from the index; forged or damaged indexes and shards.
// verifyShards and `mae verify-data`: every damaged record listed, none missed, none blamed wrongly.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DataLoader, ImageFolderDataset, InMemoryDataset, SHARD_INDEX_FILE, ShardDataset, prepareShards, verifyShards, type Batch, type Dataset, type ShardIndex,
  type VerifyShardsEvent,
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

describe('verifyShards and mae verify-data', () => {
  let rawDir = '';
  let jpegDir = '';
  beforeAll(async () => {
    rawDir = (await prepareShards({ data: same, out: join(root, 'verify-raw'), shardBytes: 3000 })).dir;
    jpegDir = (await prepareShards({ data: same, out: join(root, 'verify-jpeg'), format: 'jpeg' })).dir;
  });
  const index = (dir: string) => JSON.parse(readFileSync(join(dir, SHARD_INDEX_FILE), 'utf8')) as ShardIndex;

  /** A copy of shard folder `from` as `name`, with one bit flipped in the middle of each record of `samples`. */
  function damagedCopy(from: string, name: string, samples: number[]): string {
    const x = index(from);
    const dir = join(root, name);
    mkdirSync(dir);
    for (const f of x.shards) writeFileSync(join(dir, f.file), readFileSync(join(from, f.file)));
    writeFileSync(join(dir, SHARD_INDEX_FILE), JSON.stringify(x));
    for (const i of samples) {
      const shard = join(dir, x.shards[x.shard[i]!]!.file);
      const bytes = readFileSync(shard);
      bytes[x.offset[i]! + Math.floor(x.size[i]! / 2)]! ^= 0x10;
      writeFileSync(shard, bytes);
    }
    return dir;
  }

  it('reads every record of a sound folder once and finds nothing, with progress events', async () => {
    for (const dir of [rawDir, jpegDir]) {
      const x = index(dir);
      const events: VerifyShardsEvent[] = [];
      const r = await verifyShards(dir, { decode: true, onEvent: (e) => events.push(e) });
      const bytes = x.size.reduce((a, n) => a + n, 0);
      expect(r).toMatchObject({ dir, checksums: true, complete: true, samples: 12, bytes, checked: 12, decoded: x.pixels === 'jpeg' ? 12 : 0, damaged: [] });
      expect(events[0]).toEqual({ type: 'start', samples: 12, bytes, checksums: true, pixels: x.pixels });
      expect(events.at(-2)).toMatchObject({ type: 'progress', done: 12, samples: 12, bytes, etaSeconds: 0 });
      expect(events.at(-1)).toMatchObject({ type: 'end', complete: true, samples: 12, damaged: 0 });
    }
    if (index(rawDir).shards.length < 2) throw new Error('the raw folder should span several shards');
  });

  it('lists every damaged record by sample and source, in raw and JPEG folders, without stopping at the first', async () => {
    for (const [from, name] of [[rawDir, 'verify-damaged-raw'], [jpegDir, 'verify-damaged-jpeg']] as const) {
      const x = index(from);
      const dir = damagedCopy(from, name, [3, 8, 11]);
      const r = await verifyShards(dir);
      expect(r.samples).toBe(12);
      expect(r.damaged.map((d) => [d.sample, d.source])).toEqual([3, 8, 11].map((i) => [i, x.source[i]]));
      for (const d of r.damaged) {
        const hex = x.crc32![d.sample]!.toString(16).padStart(8, '0');
        expect(d.error).toContain(`${join(dir, x.shards[x.shard[d.sample]!]!.file)}: sample ${d.sample}: the record at byte ${x.offset[d.sample]} (${x.size[d.sample]} bytes) has CRC-32 `);
        expect(d.error).toContain(`says ${hex}`);
      }
      // the same error as training's first read of the record
      await expect((await ShardDataset.open(dir)).getPixels(8)).rejects.toThrow(r.damaged[1]!.error);
    }
  });

  it('counts every damaged record but lists only the first maxListed (a folder damaged throughout would fill memory)', async () => {
    const dir = damagedCopy(rawDir, 'verify-max-listed', [1, 3, 5, 8, 11]);
    const events: VerifyShardsEvent[] = [];
    const r = await verifyShards(dir, { maxListed: 2, onEvent: (e) => events.push(e) });
    expect(r.damagedCount).toBe(5);
    expect(r.damaged.map((d) => d.sample)).toEqual([1, 3]);
    // the events still give every one
    expect(events.filter((e) => e.type === 'damaged').map((e) => (e as { sample: number }).sample)).toEqual([1, 3, 5, 8, 11]);
    expect(events.at(-1)).toMatchObject({ type: 'end', damaged: 5 });
    expect((await verifyShards(dir, { maxListed: 0 })).damaged).toEqual([]);
    expect((await verifyShards(dir)).damaged).toHaveLength(5);
    await expect(verifyShards(dir, { maxListed: -1 })).rejects.toThrow('verifyShards: options.maxListed must be an integer >= 0, got -1');
  });

  it('lists the records of a shard cut short or removed while it runs, and goes on with the other shards', async () => {
    const x = index(rawDir);
    if (x.shards.length < 3) throw new Error('the raw folder should span three shards or more');
    const dir = damagedCopy(rawDir, 'verify-cut', []);
    const [cut, gone] = [x.shards[0]!.file, x.shards[1]!.file];
    // once the index is read and checked: the first shard loses its last byte, the second goes
    const r = await verifyShards(dir, {
      onEvent: (e) => {
        if (e.type !== 'start') return;
        truncateSync(join(dir, cut), x.shards[0]!.bytes - 1);
        unlinkSync(join(dir, gone));
      },
    });
    const inShard = (k: number) => x.shard.flatMap((s, i) => (s === k ? [i] : []));
    const last = inShard(0).sort((a, b) => x.offset[b]! - x.offset[a]!)[0]!;
    expect(r.complete).toBe(true);
    expect(r.samples).toBe(12);
    expect(r.damaged.map((d) => d.sample).sort((a, b) => a - b)).toEqual([last, ...inShard(1)].sort((a, b) => a - b));
    expect(r.damaged.find((d) => d.sample === last)!.error).toMatch(/ends after \d+ bytes; the shard is shorter than/);
    for (const d of r.damaged.filter((d) => d.sample !== last)) expect(d.error).toContain(`${join(dir, gone)}: cannot open shard: ENOENT`);
    // the records of the other shards were read and found sound
    expect(r.checked).toBe(12 - inShard(1).length - 1);
  });

  it('with decode, finds a JPEG record that matches its CRC-32 but not its index entry', async () => {
    const x = index(jpegDir);
    const dir = damagedCopy(jpegDir, 'verify-forged-jpeg', []);
    // a JPEG of 12 x 16 (fewer pixels than sample 6's 14 x 18) appended as sample 6's record, its CRC-32 kept in
    // step: only decoding tells
    const record = await sharp(smoothPixels(12, 16, 1), { raw: { width: 16, height: 12, channels: 3 } }).jpeg().toBuffer();
    const shard = join(dir, x.shards[0]!.file);
    const bytes = Buffer.concat([readFileSync(shard), record]);
    writeFileSync(shard, bytes);
    const y = structuredClone(x);
    y.offset[6] = bytes.length - record.length;
    y.size[6] = record.length;
    y.shards[0]!.bytes = bytes.length;
    y.crc32![6] = crc32(record);
    writeFileSync(join(dir, SHARD_INDEX_FILE), JSON.stringify(y));
    expect((await verifyShards(dir)).damaged).toEqual([]);
    const r = await verifyShards(dir, { decode: true });
    expect(r.decoded).toBe(12);
    expect(r.damaged).toHaveLength(1);
    expect(r.damaged[0]).toMatchObject({ sample: 6, source: x.source[6] });
    expect(r.damaged[0]!.error).toBe(`${shard} sample 6 (byte ${y.offset[6]}): decoded to 12x16, ${join(dir, SHARD_INDEX_FILE)} says ${x.height[6]}x${x.width[6]}`);
  });

  it('lists the damaged records in the order of the shards, those found by decoding among those found by CRC-32', async () => {
    const x = index(jpegDir);
    // sample 5's record damaged (CRC-32), sample 2's index entry one row taller than its JPEG (decoding)
    const dir = damagedCopy(jpegDir, 'verify-order', [5]);
    const y = structuredClone(x);
    y.height[2]! += 1;
    writeFileSync(join(dir, SHARD_INDEX_FILE), JSON.stringify(y));
    const events: number[] = [];
    const r = await verifyShards(dir, { decode: true, onEvent: (e) => e.type === 'damaged' && events.push(e.sample) });
    expect(r.damaged.map((d) => d.sample)).toEqual([2, 5]);
    expect(events).toEqual([2, 5]);
    expect(r.damaged[0]!.error).toMatch(/decoded to \d+x\d+/);
  });

  /** A copy of shard folder `from` as `name` whose index lists every record `times` times (the same bytes). */
  function repeatedCopy(from: string, name: string, times: number): string {
    const x = index(from);
    const dir = damagedCopy(from, name, []);
    const columns = ['shard', 'offset', 'size', 'height', 'width', 'label', 'source', 'crc32'] as const;
    const y = { ...x, count: x.count * times } as Record<string, unknown>;
    for (const k of columns) y[k] = Array.from({ length: times }, () => x[k] as unknown[]).flat();
    writeFileSync(join(dir, SHARD_INDEX_FILE), JSON.stringify(y));
    return dir;
  }

  it('stops at an abort that comes while it reads (a signal handler, a timer): it lets the event loop run', async () => {
    const dir = repeatedCopy(rawDir, 'verify-long', 4);
    const stop = new AbortController();
    // the abort comes from the event loop, as a signal handler's does, once the reading has begun
    const r = await verifyShards(dir, { signal: stop.signal, onEvent: (e) => e.type === 'start' && setImmediate(() => stop.abort()) });
    expect(r.complete).toBe(false);
    expect(r.samples).toBeLessThan(48);
  });

  it('reads a version 1 folder (no checksums) and says it checked none; stops at an abort', async () => {
    const x = index(rawDir);
    const dir = damagedCopy(rawDir, 'verify-v1', [2]);
    writeFileSync(join(dir, SHARD_INDEX_FILE), JSON.stringify({ ...x, version: 1, crc32: undefined }));
    expect(await verifyShards(dir)).toMatchObject({ checksums: false, complete: true, samples: 12, checked: 0, damaged: [] });
    const stop = new AbortController();
    stop.abort();
    expect(await verifyShards(rawDir, { signal: stop.signal })).toMatchObject({ complete: false, samples: 0 });
    await expect(verifyShards(rawDir, { decoded: true } as object)).rejects.toThrow("verifyShards: options has no option 'decoded' (did you mean decode?); it takes decode, signal, onEvent, maxListed");
    await expect(verifyShards(join(root, 'none'))).rejects.toThrow(`${join(root, 'none')}: not a shard folder (no ${SHARD_INDEX_FILE}); shard folders are made by mae prepare-data`);
    // an index that cannot be read for another reason: said as such
    mkdirSync(join(root, 'index-folder', SHARD_INDEX_FILE), { recursive: true });
    await expect(verifyShards(join(root, 'index-folder'))).rejects.toThrow(`${join(root, 'index-folder', SHARD_INDEX_FILE)}: cannot read the shard index: EISDIR`);
  });

  it('mae verify-data: exit 0 for a sound folder, 1 listing the damaged records, 2 without --data', () => {
    const cli = new URL('../../dist/lib/cli.js', import.meta.url).pathname;
    const mae = (args: string[]) => spawnSync(process.execPath, [cli, 'verify-data', ...args], { encoding: 'utf8' });
    const ok = mae(['--data', rawDir]);
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`^verifying 12 records \\([\\d.]+ MiB\\) in ${rawDir}\n`));
    expect(ok.stdout).toMatch(/\nok: 12 records \([\d.]+ MiB\), \d+s; every record matches its CRC-32\n$/);
    const x = index(jpegDir);
    const bad = mae(['--data', join(root, 'verify-damaged-jpeg'), '--decode']);
    expect(bad.status).toBe(1);
    const lines = bad.stderr.trim().split('\n');
    expect(lines.slice(0, 3).map((l) => /^damaged: sample \d+ \([^)]*\): [^:]*: sample \d+: /.exec(l)?.[0])).toEqual([3, 8, 11].map((i) => `damaged: sample ${i} (${x.source[i]}): ${join(root, 'verify-damaged-jpeg', x.shards[0]!.file)}: sample ${i}: `));
    expect(lines[3]).toMatch(/^mae verify-data: 3 of 12 records are damaged \(12 records \([\d.]+ MiB\), 9 decoded, \d+s\); prepare the data again/);
    expect(lines).toHaveLength(4);
    expect(mae([])).toMatchObject({ status: 2, stderr: 'mae verify-data: --data DIR is required (a shard folder from mae prepare-data)\n' });
    const none = mae(['--data', join(root, 'none')]);
    expect(none.status).toBe(1);
    expect(none.stderr).toBe(`mae verify-data: ${join(root, 'none')}: not a shard folder (no ${SHARD_INDEX_FILE}); shard folders are made by mae prepare-data (data.prepareShards)\n`);
    expect(mae(['--help']).stdout).toContain('--decode');
    // --decode on raw shards: said to do nothing there
    const rawDecode = mae(['--data', rawDir, '--decode']);
    expect([rawDecode.status, rawDecode.stderr]).toEqual([0, 'note: --decode applies to JPEG shards; these raw records have nothing to decode\n']);
  });

  it('gives its first progress after half a second of reading, its rate measured from the reading alone', async () => {
    // it gave one after the first 16 records, at a rate counted from before the index was read: on a large index
    // "0 MiB/s ETA 867m46s" for a run of seconds
    const dir = repeatedCopy(rawDir, 'verify-progress', 4);
    const events: VerifyShardsEvent[] = [];
    await verifyShards(dir, { onEvent: (e) => events.push(e) });
    expect(events.filter((e) => e.type === 'progress')).toEqual([expect.objectContaining({ done: 48, samples: 48, etaSeconds: 0 })]);
  });

  it('mae verify-data lists the first 20 damaged records and counts the rest, as its --help says', () => {
    const dir = repeatedCopy(damagedCopy(rawDir, 'verify-many-damaged-1', [...Array(12).keys()]), 'verify-many-damaged', 3);
    const cli = new URL('../../dist/lib/cli.js', import.meta.url).pathname;
    const r = spawnSync(process.execPath, [cli, 'verify-data', '--data', dir], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines.slice(0, 20).every((l) => l.startsWith('damaged: sample '))).toBe(true);
    expect(lines.slice(20, 21)).toEqual(['... and 16 more damaged records']);
    expect(lines[21]).toMatch(/^mae verify-data: 36 of 36 records are damaged/);
    expect(lines).toHaveLength(22);
    const help = spawnSync(process.execPath, [cli, 'verify-data', '--help'], { encoding: 'utf8' }).stdout.replace(/\s+/g, ' ');
    expect(help).toContain('listing the first 20 damaged records by sample and source file (and counting the rest)');
  });

  it('mae verify-data: Ctrl-C stops it with 130 and what it read so far (it read on to the end, then said ok)', async () => {
    // 120000 records: seconds of reading, which the signal comes at the start of
    const dir = repeatedCopy(rawDir, 'verify-ctrl-c', 10_000);
    const cli = new URL('../../dist/lib/cli.js', import.meta.url).pathname;
    const child = spawn(process.execPath, [cli, 'verify-data', '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    let sent = false;
    child.stdout.on('data', (d: Buffer) => {
      text += d.toString();
      if (!sent && text.includes('verifying 120000 records')) sent = child.kill('SIGINT');
    });
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    const code = await new Promise<number | null>((done) => child.on('close', done));
    expect(code, text).toBe(130);
    expect(text).toMatch(/\ninterrupted: stopping \(Ctrl-C again to quit at once\)\n(.*\n)?stopped after \d+ records \([\d.]+ MiB\), \d+s: 0 damaged so far\n$/);
    expect(Number(/stopped after (\d+) records/.exec(text)?.[1])).toBeLessThan(120_000);
  });
});
