// Named data sources (lib/train/data.ts): argument checks of openDataset and syntheticDataset; pickSamples.
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ImageFolderDataset, InMemoryDataset, ShardDataset, prepareShards, type Dataset } from '../../lib/data/index.js';
import { checkDataSource, openDataset, pickSamples, syntheticDataset, type DataSource } from '../../lib/train/data.js';
import { pretrain } from '../../lib/train/pretrain.js';
import { writeImage } from '../helpers/images.js';

describe('openDataset and syntheticDataset arguments', () => {
  it('makes a synthetic set of the requested count, size and channels', async () => {
    const ds = await openDataset({ kind: 'synthetic', count: 5, imageSize: 8, channels: 3 });
    expect([ds.length, ds.channels, ds.height, ds.width, ds.numClasses]).toEqual([5, 3, 8, 8, 10]);
    expect(syntheticDataset(2, 1, 4, 0).length).toBe(2);
  });

  it.each([
    [{ count: -1 }, 'syntheticDataset: count must be a positive integer, got the number -1'],
    [{ count: 0 }, 'syntheticDataset: count must be a positive integer, got the number 0'],
    [{ count: 1.5 }, 'syntheticDataset: count must be a positive integer, got the number 1.5'],
    [{ count: '5' }, "syntheticDataset: count must be a positive integer, got the string '5'"],
    [{ imageSize: 1e6 }, 'syntheticDataset: imageSize must be an integer in [1, 4096], got the number 1000000'],
    [{ imageSize: 0 }, 'syntheticDataset: imageSize must be an integer in [1, 4096], got the number 0'],
    [{ channels: 2 }, 'syntheticDataset: channels must be 1 or 3, got the number 2'],
    [{ count: 100000, imageSize: 4096 }, 'syntheticDataset: count 100000 x channels 1 x imageSize 4096^2 = 1677721600000 bytes is more than 2147483648; use a smaller count or imageSize'],
  ])('synthetic %o: %s', async (extra, message) => {
    await expect(openDataset({ kind: 'synthetic', ...(extra as Partial<DataSource>) })).rejects.toThrow(message);
  });

  it('checkDataSource refuses a source a caller gives with a key it does not have; openDataset takes saved ones as they are', async () => {
    expect(() => checkDataSource('pretrain', 'data', { kind: 'synthetic', cnt: 64 })).toThrow("pretrain: data has no option 'cnt'; it takes kind, path, limit, channels, onBadFile, imageSize, count");
    expect(() => checkDataSource('finetune', 'testData', { kind: 'synthetic', image_size: 8 })).toThrow("finetune: testData has no option 'image_size' (did you mean imageSize?)");
    expect(() => checkDataSource('linprobe', 'data', 'mnist')).toThrow("linprobe: data must be an object, got the string 'mnist'");
    expect(() => checkDataSource('pretrain', 'data', undefined)).not.toThrow();
    const dataset = await openDataset({ kind: 'synthetic', count: 4 });
    expect(() => checkDataSource('finetune', 'data', dataset)).toThrow("finetune: data must be a data source such as { kind: 'folder', path } (kinds: fashion-mnist, mnist, cifar10, folder, shards, synthetic), not a Dataset object");
    // a checkpoint of an older run may hold a source with another key: it still opens
    expect((await openDataset({ kind: 'synthetic', count: 8, seed: 3 } as DataSource)).length).toBe(8);
    await expect(pretrain({ data: { kind: 'synthetic', cnt: 64 } as DataSource })).rejects.toThrow("pretrain: data has no option 'cnt'");
    await expect(pretrain({ data: { kind: 'synthetic' }, knn: { every: 1, data: { kind: 'synthetic', Limit: 9 } as DataSource } })).rejects.toThrow("pretrain: knn.data has no option 'Limit' (did you mean limit?)");
  });

  it('refuses a source that is not an object, and an unknown split', async () => {
    await expect(openDataset(null as unknown as DataSource)).rejects.toThrow("openDataset: src must be an object, got null; a data source such as { kind: 'fashion-mnist' }");
    await expect(openDataset('synthetic' as unknown as DataSource)).rejects.toThrow("openDataset: src must be an object, got the string 'synthetic'");
    await expect(openDataset({ kind: 'synthetic' }, 'val' as 'test')).rejects.toThrow("openDataset: split must be 'train' or 'test', got val");
    expect(() => syntheticDataset(4, 1, 8, -1)).toThrow('syntheticDataset: seed must be a non-negative integer, got the number -1');
  });
});

describe('pickSamples', () => {
  /** Every sample of `picked` is the sample of `ds` at its index: the same pixels, size and label. */
  async function expectPicked(ds: Dataset, picked: Dataset, indices: number[], kind: new (...a: never[]) => Dataset): Promise<void> {
    expect(picked).toBeInstanceOf(kind);
    expect([picked.length, picked.numClasses, picked.channels, picked.height, picked.width]).toEqual([indices.length, ds.numClasses, ds.channels, ds.height, ds.width]);
    for (let j = 0; j < indices.length; j++) expect(await picked.get(j)).toEqual(await ds.get(indices[j]!));
  }

  it('takes the samples at the indices, in their order, of an in-memory, a folder and a shard dataset', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mae-pick-'));
    for (const c of ['a', 'b']) mkdirSync(join(dir, 'images', c), { recursive: true });
    for (let k = 0; k < 7; k++) await writeImage(join(dir, 'images', k < 4 ? 'a' : 'b', `${k}.png`), 9 + k, 11, k);
    const indices = [6, 0, 5, 2];
    const mem = syntheticDataset(7, 3, 8, 1);
    await expectPicked(mem, pickSamples(mem, indices), indices, InMemoryDataset);
    const folder = await ImageFolderDataset.open(join(dir, 'images'));
    await expectPicked(folder, pickSamples(folder, indices), indices, ImageFolderDataset);
    const shards = await ShardDataset.open((await prepareShards({ data: join(dir, 'images'), out: join(dir, 'shards') })).dir);
    const picked = pickSamples(shards, indices) as ShardDataset;
    await expectPicked(shards, picked, indices, ShardDataset);
    expect(picked.sources).toEqual(indices.map((i) => shards.sources[i]));
    expect(pickSamples(mem, []).length).toBe(0);
    expect(() => pickSamples(mem, [7])).toThrow('pickSamples: index the number 7 is not a sample of a dataset of 7');
    expect(() => pickSamples(mem, [1.5])).toThrow('pickSamples: index the number 1.5 is not a sample of a dataset of 7');
  });
});
