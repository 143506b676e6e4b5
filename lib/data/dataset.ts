/**
 * The Dataset interface and the concrete datasets: in-memory 8-bit images (Fashion-MNIST, CIFAR-10) and image folders
 * (prepared shards: shards.ts).
 *
 * A Dataset hands out samples as float32 CHW images in [0, 1] plus an integer label (-1 when unlabelled). Datasets
 * of 8-bit images also hand out the pixels themselves (getPixels: uint8 HWC), which the DataLoader augments natively.
 * Datasets that can be rebuilt inside a worker thread also provide workerSpec(): a structured-clonable description
 * that datasetFromSpec() turns back into an equivalent dataset. In-memory pixels live in a SharedArrayBuffer, so
 * every worker reads the same memory instead of a copy.
 */
import { loadCifar10 } from './cifar.js';
import { decodeImageFile, scanImageFolder, type ImageFolderIndex, type OnBadFile } from './folder.js';
import { DEFAULT_FASHION_MNIST_DIR, loadFashionMnist, resolveFashionMnistDir } from './idx.js';
import { describeValue, expectArrayOf, expectFunction, expectInstance, expectInteger, expectKnownKeys, expectObject, expectString, optionNames } from '../check.js';
import { ShardDataset, type ShardDatasetSpec } from './shards.js';

export interface Sample {
  image: Float32Array; // [channels, height, width], values in [0, 1]
  label: number; // 0..numClasses-1, or -1 when unlabelled
  height?: number; // only for variable-size datasets (dataset.height === 0): this sample's height
  width?: number; // likewise its width
}

/** A sample as 8-bit pixels: what the DataLoader's native augmentation reads. */
export interface PixelSample {
  pixels: Uint8Array; // [height, width, channels] interleaved (HWC), channels = the dataset's
  height: number;
  width: number;
  label: number;
}

export interface Dataset {
  length: number;
  numClasses: number; // 0 when unlabelled
  channels: number;
  height: number; // every sample's height, or 0 when samples vary in size (then each Sample carries its own)
  width: number; // likewise
  /** Sample i, 0 <= i < length. In-memory datasets resolve immediately. */
  get(i: number): Promise<Sample>;
  /** Sample i as 8-bit HWC pixels, for datasets of 8-bit images (the same image get() returns, times 255). */
  getPixels?(i: number): Promise<PixelSample>;
  /** A description a worker thread can rebuild this dataset from; without it the DataLoader works in-process. */
  workerSpec?(): DatasetSpec;
  /** Where warnings raised by copies of this dataset in worker threads are reported (default console.warn). */
  onWarning?: (message: string) => void;
}

export interface MemoryDatasetSpec {
  kind: 'memory';
  images: Uint8Array; // backed by a SharedArrayBuffer
  labels: Int32Array;
  channels: number;
  height: number;
  width: number;
  numClasses: number;
}

export interface FolderDatasetSpec {
  kind: 'folder';
  index: ImageFolderIndex;
  channels: 1 | 3;
  onBadFile: OnBadFile;
  shorterSide: number | undefined;
}

export type DatasetSpec = MemoryDatasetSpec | FolderDatasetSpec | ShardDatasetSpec;

/** Sample index `i` of a dataset of `length`, checked in the name of `where` (Dataset.get, Dataset.getPixels). */
export function checkIndex(i: number, length: number, where = 'Dataset.get'): void {
  if (typeof i !== 'number') throw new Error(`${where}: index must be an integer in [0, ${length}), got ${describeValue(i)}`);
  if (!(Number.isInteger(i) && i >= 0 && i < length)) throw new RangeError(`${where}: index ${i} is out of range [0, ${length})`);
}

/** Copies `bytes` into a SharedArrayBuffer unless it already lives in one. */
function shareBytes(bytes: Uint8Array): Uint8Array {
  if (bytes.buffer instanceof SharedArrayBuffer) return bytes;
  const shared = new Uint8Array(new SharedArrayBuffer(bytes.length));
  shared.set(bytes);
  return shared;
}

/** 8-bit HWC pixels -> float32 CHW in [0, 1]. */
export function pixelsToImage(pixels: Uint8Array, c: number, height: number, width: number): Float32Array {
  expectInstance('pixelsToImage', 'pixels', pixels, Uint8Array, 'a Uint8Array [height, width, c]');
  for (const [name, v] of [['c', c], ['height', height], ['width', width]] as const) expectInteger('pixelsToImage', name, v, 1);
  const plane = height * width;
  const image = new Float32Array(c * plane);
  for (let p = 0; p < plane; p++) {
    for (let ch = 0; ch < c; ch++) image[ch * plane + p] = pixels[p * c + ch]! / 255;
  }
  return image;
}

export interface InMemoryDatasetOptions {
  images: Uint8Array; // [count, channels, height, width], 0..255
  labels: ArrayLike<number>; // [count]
  channels: number;
  height: number;
  width: number;
  numClasses: number; // 0 for unlabelled images, whose labels are all -1
}

/** Whether `label` fits a dataset of `numClasses` classes: a class index in [0, numClasses), or -1 when it has none (0). */
export function labelFits(label: unknown, numClasses: number): boolean {
  return numClasses === 0 ? label === -1 : Number.isInteger(label) && (label as number) >= 0 && (label as number) < numClasses;
}

/** 8-bit images held in memory; get(i) returns pixel / 255. */
export class InMemoryDataset implements Dataset {
  readonly length: number;
  readonly numClasses: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly images: Uint8Array;
  readonly labels: Int32Array;

  constructor(opts: InMemoryDatasetOptions) {
    const where = 'InMemoryDataset';
    expectObject(where, 'opts', opts, false, 'e.g. { images, labels, channels, height, width, numClasses }');
    expectKnownKeys(where, 'opts', opts, optionNames<InMemoryDatasetOptions>({ images: true, labels: true, channels: true, height: true, width: true, numClasses: true }));
    expectInstance(where, 'opts.images', opts.images, Uint8Array, 'a Uint8Array of [count, channels, height, width] bytes');
    if (opts.labels === null || typeof opts.labels !== 'object' || typeof opts.labels.length !== 'number')
      throw new Error(`${where}: opts.labels must be an array of class indices, got ${describeValue(opts.labels)}`);
    for (const k of ['channels', 'height', 'width'] as const) expectInteger(where, `opts.${k}`, opts[k], 1);
    expectInteger(where, 'opts.numClasses', opts.numClasses, 0); // 0: unlabelled, every label -1
    const { channels, height, width, numClasses } = opts;
    const count = opts.labels.length;
    const per = channels * height * width;
    if (!(per > 0)) throw new Error(`InMemoryDataset: channels, height and width must be positive, got ${channels}x${height}x${width}`);
    if (opts.images.length !== count * per) {
      throw new Error(`InMemoryDataset: images has ${opts.images.length} bytes, expected labels (${count}) x ${channels} x ${height} x ${width} = ${count * per}`);
    }
    for (let i = 0; i < count; i++) {
      const label = opts.labels[i];
      if (!labelFits(label, numClasses))
        throw new Error(
          `${where}: opts.labels[${i}] must be ${numClasses === 0 ? '-1 (numClasses 0: unlabelled images)' : `a class index, an integer in [0, ${numClasses}) (numClasses ${numClasses})`}, got ${describeValue(label)}`,
        );
    }
    this.images = shareBytes(opts.images);
    this.labels = Int32Array.from(opts.labels);
    this.length = count;
    this.numClasses = numClasses;
    this.channels = channels;
    this.height = height;
    this.width = width;
  }

  get(i: number): Promise<Sample> {
    checkIndex(i, this.length);
    const per = this.channels * this.height * this.width;
    const image = new Float32Array(per);
    const src = this.images.subarray(i * per, (i + 1) * per);
    for (let k = 0; k < per; k++) image[k] = src[k]! / 255;
    return Promise.resolve({ image, label: this.labels[i]! });
  }

  /** The stored CHW bytes of sample i, interleaved to HWC (a view, no copy, for 1 channel). */
  getPixels(i: number): Promise<PixelSample> {
    checkIndex(i, this.length, 'Dataset.getPixels');
    const { channels: c, height, width } = this;
    const plane = height * width;
    const chw = this.images.subarray(i * c * plane, (i + 1) * c * plane);
    let pixels = chw;
    if (c > 1) {
      pixels = new Uint8Array(c * plane);
      for (let ch = 0; ch < c; ch++) for (let p = 0; p < plane; p++) pixels[p * c + ch] = chw[ch * plane + p]!;
    }
    return Promise.resolve({ pixels, height, width, label: this.labels[i]! });
  }

  workerSpec(): MemoryDatasetSpec {
    const { images, labels, channels, height, width, numClasses } = this;
    return { kind: 'memory', images, labels, channels, height, width, numClasses };
  }
}

/**
 * ImageFolderOptions with their defaults, checked in the name of `where`: an option left out or undefined takes its
 * default; null is refused as any other value of the wrong type.
 */
function folderOptions(where: string, opts: ImageFolderOptions): Required<Omit<ImageFolderOptions, 'shorterSide'>> & { shorterSide: number | undefined } {
  expectKnownKeys(where, 'opts', opts, optionNames<ImageFolderOptions>({ channels: true, onBadFile: true, onWarning: true, shorterSide: true }));
  const channels = opts.channels === undefined ? 3 : opts.channels;
  const onBadFile = opts.onBadFile === undefined ? 'skip' : opts.onBadFile;
  if (channels !== 1 && channels !== 3) throw new Error(`${where}: channels must be 1 or 3, got ${describeValue(channels)}`);
  if (onBadFile !== 'skip' && onBadFile !== 'stop') throw new Error(`${where}: onBadFile must be 'skip' or 'stop', got ${describeValue(onBadFile)}`);
  if (opts.shorterSide !== undefined) expectInteger(where, 'shorterSide', opts.shorterSide, 1);
  expectFunction(where, 'onWarning', opts.onWarning, true);
  return { channels, onBadFile, shorterSide: opts.shorterSide, onWarning: opts.onWarning ?? console.warn };
}

export interface ImageFolderOptions {
  channels?: 1 | 3; // decode as greyscale or sRGB (default 3)
  onBadFile?: OnBadFile; // default 'skip'
  onWarning?: (message: string) => void; // default console.warn
  shorterSide?: number; // shrink larger images at decode time so the shorter side is this (default: full size)
}

/**
 * Images from a folder (see folder.ts for the layout), decoded on every get(). Variable size: height = width = 0
 * and each Sample carries its own size. A file that fails to decode either stops with an Error naming it
 * (onBadFile 'stop'), or (onBadFile 'skip') is reported once through onWarning and replaced by the next good file
 * in order, so get() still returns a sample.
 */
export class ImageFolderDataset implements Dataset {
  readonly length: number;
  readonly numClasses: number;
  readonly channels: 1 | 3;
  readonly height = 0;
  readonly width = 0;
  readonly index: ImageFolderIndex;
  readonly onBadFile: OnBadFile;
  readonly shorterSide: number | undefined;
  readonly onWarning: (message: string) => void;
  private readonly bad = new Set<number>();

  constructor(index: ImageFolderIndex, opts: ImageFolderOptions = {}) {
    const open = 'to read a folder, use await ImageFolderDataset.open(path) or openDataset({ kind: \'folder\', path })';
    expectObject('ImageFolderDataset', 'index', index, false, open);
    expectArrayOf('ImageFolderDataset', 'index.files', index.files, (f) => typeof f === 'string', 'a file path');
    expectInstance('ImageFolderDataset', 'index.labels', index.labels, Int32Array, 'an Int32Array of class indices', open);
    expectArrayOf('ImageFolderDataset', 'index.classes', index.classes, (c) => typeof c === 'string', 'a class name');
    if (index.labels.length !== index.files.length)
      throw new Error(`ImageFolderDataset: index.labels has ${index.labels.length} entries for ${index.files.length} files`);
    const k = index.classes.length;
    const bad = index.labels.findIndex((label) => (k === 0 ? label !== -1 : !(label >= 0 && label < k)));
    if (bad >= 0) {
      throw new Error(`ImageFolderDataset: index.labels[${bad}] (${index.files[bad]}) must be ${k === 0 ? '-1 (index.classes is empty: an unlabelled folder)' : `a class index in [0, ${k}) (index.classes has ${k})`}, got ${index.labels[bad]}`);
    }
    expectObject('ImageFolderDataset', 'opts', opts, false);
    this.index = index;
    this.length = index.files.length;
    this.numClasses = index.classes.length;
    ({ channels: this.channels, onBadFile: this.onBadFile, shorterSide: this.shorterSide, onWarning: this.onWarning } = folderOptions('ImageFolderDataset', opts));
  }

  /** Scans `root` and returns the dataset over what it found. */
  static async open(root: string, opts: ImageFolderOptions = {}): Promise<ImageFolderDataset> {
    expectString('ImageFolderDataset.open', 'root', root, 'a folder path');
    expectObject('ImageFolderDataset.open', 'opts', opts);
    const { onWarning } = folderOptions('ImageFolderDataset.open', opts); // (before the folder is scanned)
    return new ImageFolderDataset(await scanImageFolder(root, onWarning), opts);
  }

  async get(i: number): Promise<Sample> {
    checkIndex(i, this.length);
    const { pixels, height, width, label } = await this.getPixels(i);
    return { image: pixelsToImage(pixels, this.channels, height, width), label, height, width };
  }

  async getPixels(i: number): Promise<PixelSample> {
    checkIndex(i, this.length, 'Dataset.getPixels');
    for (let k = 0; k < this.length; k++) {
      const j = (i + k) % this.length;
      if (this.bad.has(j)) continue;
      const path = this.index.files[j]!;
      let decoded;
      try {
        decoded = await decodeImageFile(path, this.channels, this.shorterSide);
      } catch (e) {
        if (this.onBadFile === 'stop') throw new Error(`${(e as Error).message} (onBadFile is 'stop'; use 'skip' to leave bad files out)`);
        // samples fetched concurrently can fail on the same file: the first to fail reports it
        if (!this.bad.has(j)) {
          this.bad.add(j);
          this.onWarning(`skipping bad image file: ${(e as Error).message}`);
        }
        continue;
      }
      return { pixels: decoded.pixels, height: decoded.height, width: decoded.width, label: this.index.labels[j]! };
    }
    throw new Error(`${this.index.root}: all ${this.length} image files failed to decode`);
  }

  workerSpec(): FolderDatasetSpec {
    return { kind: 'folder', index: this.index, channels: this.channels, onBadFile: this.onBadFile, shorterSide: this.shorterSide };
  }
}

/** Rebuilds a dataset from workerSpec() (inside a worker thread); warnings go to `onWarning`. */
export function datasetFromSpec(spec: DatasetSpec, onWarning: (message: string) => void): Dataset {
  expectObject('datasetFromSpec', 'spec', spec, false, "what a dataset's workerSpec() returned");
  expectFunction('datasetFromSpec', 'onWarning', onWarning);
  if (spec.kind === 'memory') {
    return new InMemoryDataset({ images: spec.images, labels: spec.labels, channels: spec.channels, height: spec.height, width: spec.width, numClasses: spec.numClasses });
  }
  if (spec.kind === 'folder') {
    return new ImageFolderDataset(spec.index, { channels: spec.channels, onBadFile: spec.onBadFile, shorterSide: spec.shorterSide, onWarning });
  }
  if (spec.kind === 'shards') return new ShardDataset(spec);
  throw new Error(`datasetFromSpec: unknown dataset kind ${String((spec as { kind: unknown }).kind)}`);
}

/** A Fashion-MNIST split as a 1 x 28 x 28, 10-class dataset (dir defaults to DEFAULT_FASHION_MNIST_DIR). */
export async function fashionMnistDataset(split: 'train' | 'test', dir: string = DEFAULT_FASHION_MNIST_DIR): Promise<InMemoryDataset> {
  if (split !== 'train' && split !== 'test') throw new Error(`fashionMnistDataset: split must be 'train' or 'test', got ${describeValue(split)}`);
  expectString('fashionMnistDataset', 'dir', dir, 'a folder path');
  const data = await loadFashionMnist(resolveFashionMnistDir(dir), split);
  return new InMemoryDataset({ images: data.images, labels: data.labels, channels: 1, height: 28, width: 28, numClasses: 10 });
}

/** A CIFAR-10 split (binary version in `dir`) as a 3 x 32 x 32, 10-class dataset. */
export async function cifar10Dataset(split: 'train' | 'test', dir: string): Promise<InMemoryDataset> {
  if (split !== 'train' && split !== 'test') throw new Error(`cifar10Dataset: split must be 'train' or 'test', got ${describeValue(split)}`);
  expectString('cifar10Dataset', 'dir', dir, 'a folder path');
  const data = await loadCifar10(dir, split);
  return new InMemoryDataset({ images: data.images, labels: data.labels, channels: 3, height: 32, width: 32, numClasses: 10 });
}
