/**
 * The per-sample pipeline and the seeding scheme, shared by the DataLoader's in-process path and its worker threads
 * (so both produce bit-identical batches).
 *
 * Seeding: every random stream is a Generator whose full 128-bit state is a hash of integers, never a shared
 * stream, so results do not depend on how work is split or ordered:
 *   epoch order:      hash(SHUFFLE, seed, epoch)            -> permutation(n)
 *   sample in epoch:  hash(SAMPLE, seed, epoch, position)   -> crop and flip draws
 *   masking noise:    hash(MASK, seed, epoch, position)     -> the sample's L uniforms (pre-training)
 * `position` is the sample's place in the epoch order (0 .. n-1), so a resumed run, any worker count and any
 * prefetch depth see the same augmentation.
 *
 * Per sample: train (augment) = RandomResizedCrop(imageSize, scale, ratio, bicubic) -> horizontal flip (flipProb)
 * -> channel replication to inChans -> normalise; eval = resize shorter side to evalResize (bicubic) -> center crop
 * imageSize -> channel replication -> normalise (only the crop is computed, so a very elongated image, whose resized
 * long side can be huge, costs no more than any other). Bicubic is PIL's antialiased kernel (antialias, the default) or
 * F.interpolate's (see transforms.ts).
 *
 * Two implementations of those steps, with the same random draws (crop window, then the flip): for datasets with
 * getPixels (8-bit images: every built-in one) the native one, a single pass per sample from uint8 HWC into the
 * batch (native.resizedCrop, native/cpu/augment.cpp); otherwise, or with transforms 'typescript', the float64
 * TypeScript transforms on get()'s float images. The two agree to float32 rounding (tested within 1/255). A sample the
 * native code cannot take (a side, or in eval the resized long side, over NATIVE_MAX_SIDE: an aspect ratio over 256
 * at the usual evalResize 256) goes through the TypeScript transforms, with the same draws.
 */
import { describeValue, expectDataset, expectFinite, expectInstance, expectInteger, expectObject } from '../check.js';
import { native } from '../native.js';
import { Generator } from '../random.js';
import { labelFits, pixelsToImage, type Dataset, type Sample } from './dataset.js';
import {
  centerCropBox, normalize, randomHorizontalFlip, randomResizedCrop, randomResizedCropParams, resizedCrop, shorterSideSize, toChannels,
} from './transforms.js';

/** The longest side native.resizedCrop takes, for the image, the resize target and the window (bindings/ops.cpp). */
const NATIVE_MAX_SIDE = 65536;

export interface PipelineConfig {
  seed: number;
  augment: boolean;
  imageSize: number; // output images are [inChans, imageSize, imageSize]
  inChans: number;
  mean: number[]; // one per output channel (inChans)
  std: number[];
  scale: [number, number]; // RandomResizedCrop area fraction range
  ratio: [number, number]; // RandomResizedCrop aspect ratio range
  flipProb: number;
  evalResize: number; // eval: shorter side resized to this, then center-cropped to imageSize
  antialias: boolean; // PIL's antialiased bicubic (true) or F.interpolate's (false)
  transforms: 'native' | 'typescript'; // native: from getPixels where the dataset has it; typescript: always get()
}

/** One batch of work: `indices` are dataset indices, taken from epoch positions start .. start + indices.length - 1. */
export interface BatchJob {
  epoch: number;
  start: number;
  indices: Int32Array;
}

export interface BatchData {
  images: Float32Array; // [B, inChans, imageSize, imageSize], normalised
  labels: Int32Array; // [B]
}

const SHUFFLE = 1;
const SAMPLE = 2;
const MASK = 3;
const LANES = [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344];

function mix32(h: number, x: number): number {
  x = Math.imul(x, 0xcc9e2d51);
  x = (x << 15) | (x >>> 17);
  x = Math.imul(x, 0x1b873593);
  h ^= x;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finish32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Words of a derived generator's seed (seed, epoch, position): non-negative safe integers, each named. */
function expectSeedWords(where: string, words: Record<string, number>): void {
  for (const [name, v] of Object.entries(words)) expectFinite(where, name, v, (x) => Number.isSafeInteger(x) && x >= 0, 'a non-negative safe integer');
}

/** A Generator whose 4 state words are independent hashes of `words` (non-negative safe integers). */
export function derivedGenerator(words: number[]): Generator {
  const split: number[] = [];
  for (const w of words) {
    if (!(Number.isSafeInteger(w) && w >= 0)) throw new Error(`derivedGenerator: inputs must be non-negative safe integers, got ${w}`);
    split.push(w >>> 0, Math.floor(w / 2 ** 32) >>> 0);
  }
  const s = LANES.map((lane) => finish32(split.reduce(mix32, lane) ^ split.length));
  if ((s[0]! | s[1]! | s[2]! | s[3]!) === 0) s[0] = 1; // xoshiro must not start from the all-zero state
  const gen = new Generator(0);
  gen.setState({ s, spareNormal: null });
  return gen;
}

/** The order of epoch `epoch`: a permutation of 0 .. n-1 that depends only on (seed, epoch). */
export function epochPermutation(seed: number, epoch: number, n: number): Int32Array {
  expectSeedWords('epochPermutation', { seed, epoch });
  expectInteger('epochPermutation', 'n', n, 0);
  return derivedGenerator([SHUFFLE, seed, epoch]).permutation(n);
}

/** The generator for the sample at `position` of epoch `epoch`'s order. */
export function sampleGenerator(seed: number, epoch: number, position: number): Generator {
  expectSeedWords('sampleGenerator', { seed, epoch, position });
  return derivedGenerator([SAMPLE, seed, epoch, position]);
}

/** The generator of the masking noise of the sample at `position` of epoch `epoch`'s order. */
export function maskGenerator(seed: number, epoch: number, position: number): Generator {
  expectSeedWords('maskGenerator', { seed, epoch, position });
  return derivedGenerator([MASK, seed, epoch, position]);
}

/** Runs the per-sample pipeline: Sample (CHW in [0, 1]) -> normalised [inChans, imageSize, imageSize]. */
export function transformSample(sample: Sample, dataset: Dataset, cfg: PipelineConfig, gen: Generator): Float32Array {
  expectObject('transformSample', 'sample', sample);
  expectDataset('transformSample', 'dataset', dataset);
  expectObject('transformSample', 'cfg', cfg);
  expectInstance('transformSample', 'gen', gen, Generator, 'a Generator');
  const c = dataset.channels;
  const h = sample.height ?? dataset.height;
  const w = sample.width ?? dataset.width;
  const size = cfg.imageSize;
  let img: Float32Array;
  if (cfg.augment) {
    img = randomResizedCrop(sample.image, c, h, w, size, gen, { scale: cfg.scale, ratio: cfg.ratio, antialias: cfg.antialias });
    img = randomHorizontalFlip(img, c, size, size, gen, cfg.flipProb);
  } else {
    const r = shorterSideSize(h, w, cfg.evalResize);
    img = resizedCrop(sample.image, c, h, w, 0, 0, h, w, r.height, r.width, cfg.antialias, centerCropBox(r.height, r.width, size, size));
  }
  img = toChannels(img, c, size, size, cfg.inChans);
  return normalize(img, cfg.inChans, size, size, cfg.mean, cfg.std);
}

/** An Error for sample `i` of the dataset: `why`, or the message of what its get() / getPixels() threw. */
function sampleError(i: number, why: unknown): Error {
  return new Error(`DataLoader: sample ${i} of the dataset: ${why instanceof Error ? why.message : String(why)}`, why instanceof Error ? { cause: why } : undefined);
}

/**
 * Samples of one batch fetched at once, at most: enough to keep sharp's decoding threads busy, few enough that a batch
 * of large images (each decoded in full before it is cropped) does not hold all of them in memory at once.
 */
export const FETCH_CONCURRENCY = 16;

/**
 * Runs `each(b)` for b = 0 .. n-1, at most FETCH_CONCURRENCY at a time, in any order; rejects with the first error
 * (and starts no more).
 */
async function forEachSample(n: number, each: (b: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const run = async () => {
    while (next < n && !failed) {
      const b = next++;
      try {
        await each(b);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, FETCH_CONCURRENCY) }, run));
}

/** Sample `i` from `fetch`; one that cannot be had is an Error naming its index. */
async function fetchSample<T>(i: number, fetch: (i: number) => Promise<T>): Promise<T> {
  try {
    return await fetch(i);
  } catch (e) {
    throw sampleError(i, e);
  }
}

/** A label fits the dataset: a class index in [0, numClasses), or -1 when the dataset is unlabelled (numClasses 0). */
function checkLabel(dataset: Dataset, i: number, label: unknown): number {
  const k = dataset.numClasses;
  if (!labelFits(label, k)) throw sampleError(i, `its label must be ${k === 0 ? '-1 (the dataset has numClasses 0: unlabelled)' : `a class index, an integer in [0, ${k})`}, got ${describeValue(label)}`);
  return label as number;
}

/** A get() sample fits the dataset: an image of channels x height x width values in [0, 1], a label that fits. */
function checkSample(dataset: Dataset, i: number, sample: Sample): void {
  if (sample === null || typeof sample !== 'object' || !(sample.image instanceof Float32Array))
    throw sampleError(i, `get(i) must resolve to a Sample { image: Float32Array, label }, got ${describeValue(sample)}`);
  const c = dataset.channels;
  const h = sample.height ?? dataset.height;
  const w = sample.width ?? dataset.width;
  if (!(Number.isInteger(h) && h > 0 && Number.isInteger(w) && w > 0)) throw sampleError(i, `its size must be positive integers, got ${h} x ${w}`);
  if (sample.image.length !== c * h * w) throw sampleError(i, `its image has ${sample.image.length} values, expected channels x height x width = ${c} x ${h} x ${w} = ${c * h * w}`);
  const img = sample.image;
  for (let k = 0; k < img.length; k++) {
    const v = img[k]!;
    if (!(v >= 0 && v <= 1)) throw sampleError(i, `its pixel values must be in [0, 1], got ${v} at ${k}${v > 1 ? ' (8-bit values are divided by 255)' : ''}`);
  }
  checkLabel(dataset, i, sample.label);
}

/**
 * Whether `dataset`'s get() comes from a class below the one that gives it getPixels(): a subclass that changed its
 * samples, which getPixels() (and a worker's copy, rebuilt from workerSpec()) would not see.
 */
export function overridesGet(dataset: Dataset): boolean {
  if (dataset.getPixels === undefined) return false;
  for (let p: object | null = dataset; p !== null; p = Object.getPrototypeOf(p)) {
    if (Object.hasOwn(p, 'getPixels')) return false;
    if (Object.hasOwn(p, 'get')) return true;
  }
  return false;
}

/**
 * Loads and transforms one batch. Samples are fetched concurrently (image decoding overlaps), at most
 * FETCH_CONCURRENCY at a time, and each is transformed into its place as soon as it comes, so that a batch holds
 * only those few samples' pixels at once; its randomness is keyed to its position, so the order they come in changes
 * nothing. A sample that cannot be had or does not fit the dataset (its size, label, values in [0, 1]) is an Error
 * naming its index. `into`, when given and large enough, holds the images (every value is overwritten): a recycled buffer saves
 * the page faults of fresh memory, which cost as much CPU time as the augmentation itself.
 */
export async function buildBatch(dataset: Dataset, cfg: PipelineConfig, job: BatchJob, into?: ArrayBuffer): Promise<BatchData> {
  const n = job.indices.length;
  const size = cfg.imageSize;
  const per = cfg.inChans * size * size;
  const images = into !== undefined && into.byteLength >= 4 * n * per ? new Float32Array(into, 0, n * per) : new Float32Array(n * per);
  const labels = new Int32Array(n);
  if (cfg.transforms === 'native' && dataset.getPixels !== undefined && !overridesGet(dataset)) {
    const c = dataset.channels;
    await forEachSample(n, async (b) => {
      const i = job.indices[b]!;
      const { pixels, height: h, width: w, label } = await fetchSample(i, (k) => dataset.getPixels!(k));
      if (!(pixels instanceof Uint8Array && Number.isInteger(h) && h > 0 && Number.isInteger(w) && w > 0 && pixels.length === h * w * c))
        throw sampleError(i, `getPixels(i) must resolve to { pixels: Uint8Array of height x width x ${c} bytes, height, width, label }, got ${describeValue(pixels)} for ${h} x ${w}`);
      const gen = sampleGenerator(cfg.seed, job.epoch, job.start + b);
      const r = shorterSideSize(h, w, cfg.evalResize);
      labels[b] = checkLabel(dataset, i, label);
      if (Math.max(h, w) > NATIVE_MAX_SIDE || (!cfg.augment && Math.max(r.height, r.width) > NATIVE_MAX_SIDE)) {
        images.set(transformSample({ image: pixelsToImage(pixels, c, h, w), label, height: h, width: w }, dataset, cfg, gen), b * per);
        return;
      }
      if (cfg.augment) {
        const box = randomResizedCropParams(h, w, gen, { scale: cfg.scale, ratio: cfg.ratio });
        const flip = gen.uniform() < cfg.flipProb; // randomHorizontalFlip's draw
        native.resizedCrop(pixels, [h, w, c], [box.top, box.left, box.height, box.width], [size, size], [0, 0, size, size], flip, cfg.antialias, cfg.mean, cfg.std, images, b * per);
      } else {
        const win = centerCropBox(r.height, r.width, size, size);
        native.resizedCrop(pixels, [h, w, c], [0, 0, h, w], [r.height, r.width], [win.top, win.left, size, size], false, cfg.antialias, cfg.mean, cfg.std, images, b * per);
      }
    });
    return { images, labels };
  }
  await forEachSample(n, async (b) => {
    const i = job.indices[b]!;
    const sample = await fetchSample(i, (k) => dataset.get(k));
    checkSample(dataset, i, sample);
    images.set(transformSample(sample, dataset, cfg, sampleGenerator(cfg.seed, job.epoch, job.start + b)), b * per);
    labels[b] = sample.label;
  });
  return { images, labels };
}
