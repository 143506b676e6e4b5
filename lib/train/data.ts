/**
 * Named data sources for the training commands: Fashion-MNIST / MNIST (IDX files), CIFAR-10 (binary batches),
 * image folders, shard folders written by `mae prepare-data`, and a synthetic set (seeded random shapes, for tests
 * and benchmarks), each optionally cut to its first `limit` samples.
 */
import { InMemoryDataset, ImageFolderDataset, ShardDataset, cifar10Dataset, fashionMnistDataset, type Dataset, type OnBadFile } from '../data/index.js';
import { Generator } from '../random.js';
import { describeValue, expectFunction, expectKnownKeys, expectObject } from '../check.js';

export type DataKind = 'fashion-mnist' | 'mnist' | 'cifar10' | 'folder' | 'shards' | 'synthetic';
export const DATA_KINDS: readonly DataKind[] = ['fashion-mnist', 'mnist', 'cifar10', 'folder', 'shards', 'synthetic'];

export interface DataSource {
  kind: DataKind;
  /** folder holding the files; Fashion-MNIST defaults to the Debian package's folder */
  path?: string;
  /** use only the first `limit` samples */
  limit?: number;
  /** image folders: decode as 1 or 3 channels (default 3) */
  channels?: 1 | 3;
  onBadFile?: OnBadFile;
  /** synthetic: image size and channels (defaults 28 and 1) and sample count (default 1024) */
  imageSize?: number;
  count?: number;
}

/** What a source of each kind with files must name as its `path` (Fashion-MNIST has a default folder). */
export const DATA_PATHS: Readonly<Partial<Record<DataKind, string>>> = {
  mnist: 'the folder with train-images-idx3-ubyte(.gz) and the other IDX files',
  cifar10: 'the folder with data_batch_1.bin .. data_batch_5.bin and test_batch.bin',
  folder: 'the image folder',
  shards: 'the folder written by mae prepare-data',
};

const DATA_SOURCE_KEYS = Object.keys({ kind: 1, path: 1, limit: 1, channels: 1, onBadFile: 1, imageSize: 1, count: 1 } satisfies Record<keyof DataSource, 1>);

/**
 * A data source a caller gives a run (`where`'s option `name`): an object with no key a DataSource does not have, so
 * that a misspelt one is an Error rather than ignored. Not applied to sources read back from checkpoints (openDataset
 * takes those as they are), which older runs may have saved with other keys.
 */
export function checkDataSource(where: string, name: string, src: unknown): void {
  if (src === undefined) return;
  expectObject(where, name, src);
  if (typeof (src as { get?: unknown }).get === 'function')
    throw new Error(`${where}: ${name} must be a data source such as { kind: 'folder', path } (kinds: ${DATA_KINDS.join(', ')}), not a Dataset object: a run opens its data itself (also in its data-loading threads and on every rank); write the images to a folder, or to shards with mae prepare-data`);
  expectKnownKeys(where, name, src as object, DATA_SOURCE_KEYS);
}

/**
 * The training data of a job on a pre-trained encoder (linprobe, finetune): `given`, else the pre-training run's data
 * (`saved`, from its checkpoint) without its limit, else Fashion-MNIST; `limit` cuts that default (a `given` source
 * carries its own).
 */
export function followUpData(given: DataSource | undefined, saved: unknown, limit: number | undefined): DataSource {
  if (given) return given;
  const data: DataSource = saved ? { ...(saved as DataSource), limit: undefined } : { kind: 'fashion-mnist' };
  return limit === undefined ? data : { ...data, limit };
}

/**
 * Refuses data whose images a model of `inChans` input channels cannot take (1-channel data is replicated), naming
 * `where` and the data: before any work, where the data loader would refuse them only when the data is first read.
 */
export function checkChannels(where: string, name: string, channels: number, inChans: number): void {
  if (channels !== inChans && channels !== 1) throw new Error(`${where}: ${name} has ${channels} channels but the model takes ${inChans} (only 1-channel data is replicated)`);
}

/**
 * Whether the data has a test split of its own: image folders and prepared shards do not (openDataset gives their
 * one set of images for either split), so a test score on them needs other data, e.g. ImageNet's val folder.
 */
export function hasTestSplit(src: DataSource): boolean {
  return src.kind !== 'folder' && src.kind !== 'shards';
}

export async function openDataset(src: DataSource, split: 'train' | 'test' = 'train', onWarning?: (m: string) => void): Promise<Dataset> {
  expectObject('openDataset', 'src', src, false, `a data source such as { kind: 'fashion-mnist' }; kinds: ${DATA_KINDS.join(', ')}`);
  if (split !== 'train' && split !== 'test') throw new Error(`openDataset: split must be 'train' or 'test', got ${String(split)}`);
  expectFunction('openDataset', 'onWarning', onWarning, true);
  if (src.limit !== undefined && !(Number.isInteger(src.limit) && src.limit > 0))
    throw new Error(`data limit must be a positive integer, got ${src.limit}`);
  const needed = Object.hasOwn(DATA_PATHS, src.kind) ? DATA_PATHS[src.kind] : undefined;
  if (needed !== undefined && !src.path) throw new Error(`${src.kind}: pass ${needed}`);
  let ds: Dataset;
  switch (src.kind) {
    case 'fashion-mnist':
      ds = await fashionMnistDataset(split, src.path);
      break;
    case 'mnist':
      ds = await fashionMnistDataset(split, src.path);
      break;
    case 'cifar10':
      ds = await cifar10Dataset(split, src.path!);
      break;
    case 'folder':
      ds = await ImageFolderDataset.open(src.path!, { channels: src.channels ?? 3, onBadFile: src.onBadFile ?? 'skip', ...(onWarning ? { onWarning } : {}) });
      break;
    case 'shards':
      ds = await ShardDataset.open(src.path!);
      break;
    case 'synthetic':
      ds = syntheticDataset(src.count ?? 1024, src.channels ?? 1, src.imageSize ?? 28, split === 'train' ? 1 : 2);
      break;
    default:
      throw new Error(`unknown data kind '${String(src.kind)}'; use one of ${DATA_KINDS.join(', ')}`);
  }
  if (ds.length === 0) throw new Error(`${src.kind}${src.path ? ` (${src.path})` : ''}: the ${split} split holds no samples`);
  return src.limit !== undefined && src.limit < ds.length ? subset(ds, src.limit) : ds;
}

/** Samples start .. end - 1 of a dataset (by default the first `end`). */
export function subset(ds: Dataset, end: number, start = 0): Dataset {
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= ds.length))
    throw new Error(`subset: [${start}, ${end}) is not a range of a dataset of ${ds.length} samples`);
  if (ds instanceof InMemoryDataset) {
    const per = ds.channels * ds.height * ds.width;
    return new InMemoryDataset({
      images: ds.images.subarray(start * per, end * per),
      labels: ds.labels.subarray(start, end),
      channels: ds.channels,
      height: ds.height,
      width: ds.width,
      numClasses: ds.numClasses,
    });
  }
  if (ds instanceof ImageFolderDataset) {
    const index = { ...ds.index, files: ds.index.files.slice(start, end), labels: ds.index.labels.slice(start, end) };
    return new ImageFolderDataset(index, { channels: ds.channels, onBadFile: ds.onBadFile, shorterSide: ds.shorterSide, onWarning: ds.onWarning });
  }
  if (ds instanceof ShardDataset) return ds.slice(start, end);
  throw new Error('subset: only in-memory, folder and shard datasets can be cut');
}

/**
 * The samples of a dataset at `indices`, in that order, as a dataset of the same kind (in-memory, folder or shards):
 * e.g. every 5th image, to hold out part of data that has no test split.
 */
export function pickSamples(ds: Dataset, indices: readonly number[]): Dataset {
  for (const i of indices)
    if (!(Number.isInteger(i) && i >= 0 && i < ds.length)) throw new Error(`pickSamples: index ${describeValue(i)} is not a sample of a dataset of ${ds.length}`);
  if (ds instanceof InMemoryDataset) {
    const per = ds.channels * ds.height * ds.width;
    const images = new Uint8Array(indices.length * per);
    indices.forEach((i, j) => images.set(ds.images.subarray(i * per, (i + 1) * per), j * per));
    return new InMemoryDataset({ images, labels: Int32Array.from(indices, (i) => ds.labels[i]!), channels: ds.channels, height: ds.height, width: ds.width, numClasses: ds.numClasses });
  }
  if (ds instanceof ImageFolderDataset) {
    const index = { ...ds.index, files: indices.map((i) => ds.index.files[i]!), labels: Int32Array.from(indices, (i) => ds.index.labels[i]!) };
    return new ImageFolderDataset(index, { channels: ds.channels, onBadFile: ds.onBadFile, shorterSide: ds.shorterSide, onWarning: ds.onWarning });
  }
  if (ds instanceof ShardDataset) return ds.pick(indices);

  throw new Error('pickSamples: only in-memory, folder and shard datasets can be cut');
}

/** The largest synthetic images (a side) and set (count x channels x size x size bytes). */
const SYNTHETIC_MAX_SIDE = 4096;
const SYNTHETIC_MAX_BYTES = 2 ** 31;

/**
 * `count` images of bright rectangles and discs on a dark background, 10 classes by shape and position; a pure
 * function of (count, channels, size, seed). channels 1 or 3, size 1 .. 4096, at most 2 GiB of pixels in all.
 */
export function syntheticDataset(count: number, channels: number, size: number, seed: number): InMemoryDataset {
  const where = 'syntheticDataset';
  if (!(Number.isSafeInteger(count) && count >= 1)) throw new Error(`${where}: count must be a positive integer, got ${describeValue(count)}`);
  if (channels !== 1 && channels !== 3) throw new Error(`${where}: channels must be 1 or 3, got ${describeValue(channels)}`);
  if (!(Number.isInteger(size) && size >= 1 && size <= SYNTHETIC_MAX_SIDE))
    throw new Error(`${where}: imageSize must be an integer in [1, ${SYNTHETIC_MAX_SIDE}], got ${describeValue(size)}`);
  if (count * channels * size * size > SYNTHETIC_MAX_BYTES)
    throw new Error(`${where}: count ${count} x channels ${channels} x imageSize ${size}^2 = ${count * channels * size * size} bytes is more than ${SYNTHETIC_MAX_BYTES}; use a smaller count or imageSize`);
  if (!(Number.isSafeInteger(seed) && seed >= 0)) throw new Error(`${where}: seed must be a non-negative integer, got ${describeValue(seed)}`);
  const gen = new Generator(seed);
  const per = channels * size * size;
  const images = new Uint8Array(count * per);
  const labels = new Int32Array(count);
  for (let n = 0; n < count; n++) {
    const label = gen.int(10);
    labels[n] = label;
    const disc = label % 2 === 0;
    const cx = ((label % 5) + 1) * (size / 6) + (gen.uniform() - 0.5) * 2;
    const cy = size / 2 + (gen.uniform() - 0.5) * size * 0.3;
    const r = size * (0.15 + 0.1 * gen.uniform());
    const tint = Array.from({ length: channels }, () => 0.5 + 0.5 * gen.uniform());
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const inside = disc ? (x - cx) ** 2 + (y - cy) ** 2 < r * r : Math.abs(x - cx) < r && Math.abs(y - cy) < r * 0.6;
        for (let c = 0; c < channels; c++)
          images[n * per + (c * size + y) * size + x] = Math.round(255 * (inside ? tint[c]! : 0.1 * gen.uniform()));
      }
  }
  return new InMemoryDataset({ images, labels, channels, height: size, width: size, numClasses: 10 });
}
