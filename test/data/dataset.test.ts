// InMemoryDataset and ImageFolderDataset built from an index: their labels must be class indices of numClasses.
import { describe, expect, it } from 'vitest';
import { ImageFolderDataset, InMemoryDataset } from '../../lib/data/index.js';

describe('dataset labels', () => {
  const images = new Uint8Array(5 * 4).fill(100); // 5 grey images of 2 x 2
  const make = (labels: ArrayLike<number>) => new InMemoryDataset({ images: images.subarray(0, labels.length * 4), labels, channels: 1, height: 2, width: 2, numClasses: 10 });

  it('InMemoryDataset keeps labels in [0, numClasses) as they are', async () => {
    const ds = make([0, 9, 3, 0, 5]);
    expect(Array.from(ds.labels)).toEqual([0, 9, 3, 0, 5]);
    expect((await ds.get(1)).label).toBe(9);
  });

  it.each([
    [[1.7], 0, 'the number 1.7'],
    [[0, -3], 1, 'the number -3'],
    [[0, 1, 12], 2, 'the number 12'],
    [[2 ** 32 + 3], 0, 'the number 4294967299'],
    [[0, NaN], 1, 'the number NaN'],
    [[0, '1' as unknown as number], 1, "the string '1'"],
  ])('InMemoryDataset refuses labels %o, naming position %i', (labels, at, got) => {
    expect(() => make(labels)).toThrow(`InMemoryDataset: opts.labels[${at}] must be a class index, an integer in [0, 10) (numClasses 10), got ${got}`);
  });

  it('get and getPixels name an index that is not a number (an Error), and one out of range (a RangeError)', () => {
    const ds = make([0, 9, 3]);
    for (const bad of [null, undefined, 'x', {}, [1]])
      for (const [name, read] of [['get', (i: number) => ds.get(i)], ['getPixels', (i: number) => ds.getPixels(i)]] as const) {
        let err: unknown;
        try {
          read(bad as unknown as number);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(Error);
        expect(err).not.toBeInstanceOf(RangeError);
        expect((err as Error).message).toMatch(new RegExp(`^Dataset\\.${name}: index must be an integer in \\[0, 3\\), got (null|undefined|the string 'x'|an object|an array of 1)$`));
      }
    expect(() => ds.get(3)).toThrow(new RangeError('Dataset.get: index 3 is out of range [0, 3)'));
    expect(() => ds.get(1.5)).toThrow(new RangeError('Dataset.get: index 1.5 is out of range [0, 3)'));
    expect(() => ds.getPixels(3)).toThrow(new RangeError('Dataset.getPixels: index 3 is out of range [0, 3)'));
  });

  it('InMemoryDataset holds unlabelled images (numClasses 0, every label -1), as the Dataset interface has them', async () => {
    const images = new Uint8Array(2 * 4).fill(255);
    const ds = new InMemoryDataset({ images, labels: [-1, -1], channels: 1, height: 2, width: 2, numClasses: 0 });
    expect([ds.numClasses, (await ds.get(1)).label]).toEqual([0, -1]);
    expect(() => new InMemoryDataset({ images, labels: [-1, 0], channels: 1, height: 2, width: 2, numClasses: 0 })).toThrow(
      'InMemoryDataset: opts.labels[1] must be -1 (numClasses 0: unlabelled images), got the number 0',
    );
  });

  it('ImageFolderDataset refuses an index whose labels are not class indices of its classes (or not -1 in a flat folder)', () => {
    const files = ['/d/a/0.png', '/d/b/1.png'];
    expect(new ImageFolderDataset({ root: '/d', files, labels: Int32Array.of(0, 1), classes: ['a', 'b'] }).numClasses).toBe(2);
    expect(new ImageFolderDataset({ root: '/d', files, labels: Int32Array.of(-1, -1), classes: [] }).numClasses).toBe(0);
    expect(() => new ImageFolderDataset({ root: '/d', files, labels: Int32Array.of(0, 7), classes: ['a', 'b'] })).toThrow(
      'ImageFolderDataset: index.labels[1] (/d/b/1.png) must be a class index in [0, 2) (index.classes has 2), got 7',
    );
    expect(() => new ImageFolderDataset({ root: '/d', files, labels: Int32Array.of(-1, 1), classes: ['a', 'b'] })).toThrow(
      'ImageFolderDataset: index.labels[0] (/d/a/0.png) must be a class index in [0, 2) (index.classes has 2), got -1',
    );
    expect(() => new ImageFolderDataset({ root: '/d', files, labels: Int32Array.of(-1, 0), classes: [] })).toThrow(
      'ImageFolderDataset: index.labels[1] (/d/b/1.png) must be -1 (index.classes is empty: an unlabelled folder), got 0',
    );
  });
});
