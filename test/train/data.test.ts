// Named data sources (lib/train/data.ts): argument checks of openDataset and syntheticDataset.
import { describe, expect, it } from 'vitest';
import { openDataset, syntheticDataset, type DataSource } from '../../lib/train/data.js';

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

  it('refuses a source that is not an object, and an unknown split', async () => {
    await expect(openDataset(null as unknown as DataSource)).rejects.toThrow("openDataset: src must be an object, got null; a data source such as { kind: 'fashion-mnist' }");
    await expect(openDataset('synthetic' as unknown as DataSource)).rejects.toThrow("openDataset: src must be an object, got the string 'synthetic'");
    await expect(openDataset({ kind: 'synthetic' }, 'val' as 'test')).rejects.toThrow("openDataset: split must be 'train' or 'test', got val");
    expect(() => syntheticDataset(4, 1, 8, -1)).toThrow('syntheticDataset: seed must be a non-negative integer, got the number -1');
  });
});
