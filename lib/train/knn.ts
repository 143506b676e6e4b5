/**
 * A k-nearest-neighbour monitor of encoder features, as the common SSL kNN monitors (InstDisc, DINO): features are
 * L2-normalised, each query takes the k most cosine-similar training features, and each neighbour votes for its
 * class with weight exp(similarity / temperature); the prediction is the class with the largest total. (The weights
 * are computed as exp((similarity - the query's top similarity) / temperature): the same ranking, which a small
 * temperature does not overflow to a tie of Infinity.) Similarities are computed with the native matrix product in
 * chunks of queries.
 *
 * The features of a pass are held in memory, n x dim float32 values in one array: a pass whose features cannot be
 * held (more than a Float32Array takes, or more than the machine's memory) is refused before it starts.
 *
 * In a data-parallel run (`comm`), every rank extracts the features of its share of the bank (which are then
 * gathered, so each rank holds the whole bank) and of the queries (classified where they were extracted; the counts
 * are summed over the ranks).
 */
import { totalmem } from 'node:os';
import { setImmediate as yieldNow } from 'node:timers/promises';
import { noGrad } from '../autograd.js';
import { DataLoader, type Dataset } from '../data/index.js';
import { MAX_WORKERS } from '../data/loader.js';
import { Communicator, expectCommunicator } from '../distributed/comm.js';
import { MaskedAutoencoder, type Precision } from '../mae/model.js';
import { checkPrecision } from '../mae/precision.js';
import * as ops from '../ops/index.js';
import { Tensor, tidy } from '../tensor.js';
import { describeValue, expectDataset, expectFinite, expectFunction, expectInstance, expectInteger, expectKnownKeys, expectObject, optionNames } from '../check.js';
import { hasTestSplit, openDataset, pickSamples, subset, type DataSource } from './data.js';

export interface Features {
  /** [n, dim] */
  features: Float32Array;
  labels: Int32Array;
  n: number;
  dim: number;
}

export const FEATURE_POOLS = ['cls', 'avg', 'cls+avg'] as const;
export type FeaturePool = (typeof FEATURE_POOLS)[number];

/**
 * Between two batches of a feature pass: throws `signal`'s reason once it is aborted. Ready batches resolve as
 * microtasks, so the pass first yields to the event loop, where timers and signal handlers run.
 */
export async function stopIfAsked(signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return;
  await yieldNow();
  signal.throwIfAborted();
}

/**
 * The DataLoader options of a pass over a dataset (batchSize, workers), checked in the name of `where`, so that a bad
 * one is not named by the DataLoader it makes.
 */
export function checkLoaderOptions(where: string, opts: { batchSize?: number; workers?: number }): void {
  if (opts.batchSize !== undefined) expectInteger(where, 'batchSize', opts.batchSize, 1);
  if (opts.workers !== undefined) expectFinite(where, 'workers', opts.workers, (w) => Number.isInteger(w) && w >= 0 && w <= MAX_WORKERS, `an integer in [0, ${MAX_WORKERS}]`);
}

/** A feature pool option (default 'cls'), checked in the name of `where`. */
function checkPool(where: string, pool: unknown): FeaturePool {
  const p = pool === undefined ? 'cls' : pool;
  if (!FEATURE_POOLS.includes(p as FeaturePool)) throw new Error(`${where}: pool must be one of ${FEATURE_POOLS.join(', ')}, got ${describeValue(p)}`);
  return p as FeaturePool;
}

/** The most values a Float32Array holds (V8's limit on a typed array's length). */
export const MAX_FEATURE_VALUES = 2 ** 32;

/**
 * Refuses, in the name of `where`, a feature cache of `n` rows of `dim` float32 values (`what`: "images", "train and
 * test images") that cannot be held: more than this machine's memory or than one Float32Array takes.
 */
export function checkFeatureCache(where: string, n: number, dim: number, what = 'images'): void {
  const values = n * dim;
  const size = `the features of ${n} ${what} (${dim} float32 values each) take ${((4 * values) / 2 ** 30).toFixed(1)} GiB`;
  if (4 * values > totalmem())
    throw new Error(`${where}: ${size}, more than this machine's memory (${(totalmem() / 2 ** 30).toFixed(1)} GiB); use fewer images (a limit)`);
  if (values > MAX_FEATURE_VALUES) throw new Error(`${where}: ${size}, more than one Float32Array holds (2^32 values); use fewer images (a limit)`);
}

/** This rank's contiguous share of a dataset: samples [floor(r n / size), floor((r + 1) n / size)). */
export function shareOf(dataset: Dataset, comm: Communicator): Dataset {
  if (comm.size === 1) return dataset;
  const n = dataset.length;
  return subset(dataset, Math.floor(((comm.rank + 1) * n) / comm.size), Math.floor((comm.rank * n) / comm.size));
}

/**
 * Encoder features of whole images (no masking, eval transform): the cls token of the final-normed output ('cls',
 * the linear-probe features), the mean of the normed patch tokens ('avg') or both concatenated ('cls+avg'). With
 * `comm`, each rank computes its share and every rank gets all of them. An aborted `signal` ends the pass after its
 * current batch with the signal's reason (not with `comm` over several ranks: each must finish its share).
 */
export async function extractFeatures(
  model: MaskedAutoencoder,
  dataset: Dataset,
  opts: { pool?: FeaturePool; batchSize?: number; workers?: number; precision?: Precision; onProgress?: (done: number, total: number) => void; comm?: Communicator; signal?: AbortSignal } = {},
): Promise<Features> {
  expectInstance('extractFeatures', 'model', model, MaskedAutoencoder, 'a MaskedAutoencoder');
  expectDataset('extractFeatures', 'dataset', dataset);
  expectObject('extractFeatures', 'opts', opts);
  expectKnownKeys('extractFeatures', 'opts', opts, ['pool', 'batchSize', 'workers', 'precision', 'onProgress', 'comm', 'signal']);
  const pool = checkPool('extractFeatures', opts.pool);
  checkLoaderOptions('extractFeatures', opts);
  checkPrecision(opts.precision, 'extractFeatures');
  expectFunction('extractFeatures', 'onProgress', opts.onProgress, true);
  if (opts.comm !== undefined) expectCommunicator('extractFeatures', 'comm', opts.comm);
  if (opts.signal !== undefined) expectInstance('extractFeatures', 'signal', opts.signal, AbortSignal, 'an AbortSignal');
  const c = model.config;
  const D = pool === 'cls+avg' ? 2 * c.embedDim : c.embedDim;
  // (with comm, every rank holds the features of the whole dataset)
  checkFeatureCache('extractFeatures', dataset.length, D);
  const comm = opts.comm;
  if (comm && comm.size > 1) {
    if (opts.signal) throw new Error('extractFeatures: a signal cannot stop a pass shared by several ranks');
    const part = await extractFeatures(model, shareOf(dataset, comm), { ...opts, comm: undefined });
    const features = comm.allgatherConcat(part.features, 'the all-gather of encoder features');
    const labels = comm.allgatherConcat(part.labels, 'the all-gather of labels');
    return { features, labels, n: labels.length, dim: part.dim };
  }
  const n = dataset.length;
  const features = new Float32Array(n * D);
  const labels = new Int32Array(n);
  const loader = new DataLoader(dataset, { batchSize: opts.batchSize ?? 256, shuffle: false, augment: false, imageSize: c.imgSize, inChans: c.inChans, workers: opts.workers ?? 1 });
  let at = 0;
  try {
    for await (const batch of loader.epoch(0)) {
      const f = noGrad(() =>
        tidy(() => {
          const x = model.embed(Tensor.fromArray(batch.images, batch.shape), { precision: opts.precision });
          const L = x.shape[1]! - 1;
          const B = x.shape[0]!;
          const cls = () => ops.reshape(ops.sliceTokens(x, 0, 1), [B, c.embedDim]);
          const avg = () => ops.meanTokens(ops.sliceTokens(x, 1, L));
          if (pool === 'cls') return cls().dataSync();
          if (pool === 'avg') return avg().dataSync();
          const a = cls().dataSync();
          const m = avg().dataSync();
          const out = new Float32Array(B * D);
          for (let b = 0; b < B; b++) {
            out.set(a.subarray(b * c.embedDim, (b + 1) * c.embedDim), b * D);
            out.set(m.subarray(b * c.embedDim, (b + 1) * c.embedDim), b * D + c.embedDim);
          }
          return out;
        }),
      );
      batch.release(); // copied: the buffer goes back to the data worker
      features.set(f, at * D);
      labels.set(batch.labels, at);
      at += batch.size;
      opts.onProgress?.(at, n);
      await stopIfAsked(opts.signal);
    }
  } finally {
    await loader.close();
  }
  return { features, labels, n, dim: D };
}

/** Flattened normalised pixels as features (the raw-pixel baseline); an aborted `signal` ends it after the current batch. */
export async function pixelFeatures(dataset: Dataset, opts: { imageSize?: number; inChans?: number; batchSize?: number; workers?: number; signal?: AbortSignal } = {}): Promise<Features> {
  expectDataset('pixelFeatures', 'dataset', dataset);
  expectObject('pixelFeatures', 'opts', opts);
  expectKnownKeys('pixelFeatures', 'opts', opts, ['imageSize', 'inChans', 'batchSize', 'workers', 'signal']);
  // (0 or NaN was taken as no imageSize or inChans, the dataset's own)
  for (const k of ['imageSize', 'inChans'] as const) if (opts[k] !== undefined) expectInteger('pixelFeatures', k, opts[k], 1);
  checkLoaderOptions('pixelFeatures', opts);
  if (opts.signal !== undefined) expectInstance('pixelFeatures', 'signal', opts.signal, AbortSignal, 'an AbortSignal');
  let dim = pixelDim(dataset, opts);
  if (dim > 0) checkFeatureCache('pixelFeatures', dataset.length, dim);
  const loader = new DataLoader(dataset, { batchSize: opts.batchSize ?? 512, shuffle: false, augment: false, imageSize: opts.imageSize, inChans: opts.inChans, workers: opts.workers ?? 1 });
  const n = dataset.length;
  let features: Float32Array | null = null;
  const labels = new Int32Array(n);
  let at = 0;
  try {
    for await (const batch of loader.epoch(0)) {
      if (!features) {
        dim = batch.images.length / batch.size;
        checkFeatureCache('pixelFeatures', n, dim);
        features = new Float32Array(n * dim);
      }
      features.set(batch.images, at * dim);
      batch.release();
      labels.set(batch.labels, at);
      at += batch.size;
      await stopIfAsked(opts.signal);
    }
  } finally {
    await loader.close();
  }
  return { features: features!, labels, n, dim };
}

/**
 * The values of one image of `dataset` as the pixel baseline's loader gives them (`imageSize` x `imageSize` when
 * given, `inChans` channels when given), or 0 where its images vary in size and no imageSize is given.
 */
export function pixelDim(dataset: Dataset, opts: { imageSize?: number; inChans?: number }): number {
  const h = opts.imageSize ?? dataset.height;
  const w = opts.imageSize ?? dataset.width;
  return (opts.inChans ?? dataset.channels) * h * w;
}

/** Each row of `dim` values of `x` divided by its L2 norm (at least 1e-12). */
export function l2Normalize(x: Float32Array, dim: number): Float32Array {
  expectInstance('l2Normalize', 'x', x, Float32Array, 'a Float32Array [n, dim]');
  if (!(Number.isInteger(dim) && dim > 0 && x.length % dim === 0))
    throw new Error(`l2Normalize: dim must be a positive integer that divides the ${x.length} values, got ${dim}`);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i += dim) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += x[i + k]! * x[i + k]!;
    const r = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let k = 0; k < dim; k++) out[i + k] = x[i + k]! * r;
  }
  return out;
}

export interface KnnOptions {
  k?: number;
  temperature?: number;
  numClasses?: number;
  /** queries per similarity chunk (default 256) */
  chunk?: number;
}

const KNN_OPTIONS = optionNames<KnnOptions>({ k: true, temperature: true, numClasses: true, chunk: true });

export interface KnnResult {
  top1: number;
  top5: number;
  n: number;
  /** the neighbours each query was scored on: k, or the whole bank when it holds fewer */
  k: number;
  /** predicted class of every query */
  predictions: Int32Array;
}

/**
 * The kNN options, checked in the name of `where`, each named `${prefix}${key}` (pretrain's are knn.k, knn.temperature):
 * k and the temperature with their defaults filled in (20, 0.07), and the chunk (256); numClasses when given.
 */
export function checkKnnOptions(where: string, prefix: string, opts: KnnOptions): { k: number; temperature: number; chunk: number } {
  const k = opts.k === undefined ? 20 : opts.k;
  const temperature = opts.temperature === undefined ? 0.07 : opts.temperature;
  const chunk = opts.chunk === undefined ? 256 : opts.chunk;
  const positiveInteger = (x: number) => Number.isSafeInteger(x) && x > 0;
  expectFinite(where, `${prefix}k`, k, positiveInteger, 'a positive integer');
  expectFinite(where, `${prefix}temperature`, temperature, (x) => x > 0, 'a positive finite number');
  expectFinite(where, `${prefix}chunk`, chunk, positiveInteger, 'a positive integer');
  if (opts.numClasses !== undefined) expectFinite(where, `${prefix}numClasses`, opts.numClasses, positiveInteger, 'a positive integer');
  return { k, temperature, chunk };
}

/** Refuses features (`name` of `where`: bank, query) whose n, dim, values and labels disagree. */
function checkFeatures(where: string, name: string, f: Features): void {
  if (!(Number.isSafeInteger(f.n) && f.n >= 0)) throw new Error(`${where}: ${name}.n must be a non-negative integer, got ${describeValue(f.n)}`);
  if (!(Number.isSafeInteger(f.dim) && f.dim > 0)) throw new Error(`${where}: ${name}.dim must be a positive integer, got ${describeValue(f.dim)}`);
  if (!(f.features instanceof Float32Array) || f.features.length !== f.n * f.dim)
    throw new Error(`${where}: ${name}.features must be a Float32Array of n x dim = ${f.n} x ${f.dim} values, got ${f.features instanceof Float32Array ? f.features.length : describeValue(f.features)}`);
  if (!(f.labels instanceof Int32Array) || f.labels.length !== f.n)
    throw new Error(`${where}: ${name}.labels must be an Int32Array of n = ${f.n} labels, got ${f.labels instanceof Int32Array ? f.labels.length : describeValue(f.labels)}`);
}

/** Refuses labels outside [0, numClasses) (of features `name` of `where`). */
function checkLabels(where: string, name: string, f: Features, numClasses: number): void {
  const bad = f.labels.findIndex((y) => y < 0 || y >= numClasses);
  if (bad >= 0 && f.labels[bad] === -1) throw new Error(`${where}: ${name}.labels[${bad}] is -1: unlabelled data (no class sub-folders) cannot be scored`);
  if (bad >= 0) throw new Error(`${where}: ${name}.labels[${bad}] is ${f.labels[bad]}, outside the ${numClasses} classes [0, ${numClasses})`);
}

/**
 * Weighted kNN classification of `query` by `bank` (cosine similarity, k = 20, temperature 0.07 by default). Classes
 * are [0, numClasses); without numClasses, up to the largest label of either set.
 */
export function knnClassify(bank: Features, query: Features, opts: KnnOptions = {}): KnnResult {
  const where = 'knnClassify';
  for (const [name, f] of [['bank', bank], ['query', query]] as const) {
    expectObject(where, name, f, false, 'features { features, labels, n, dim }');
    checkFeatures(where, name, f);
  }
  expectObject(where, 'opts', opts);
  expectKnownKeys(where, 'opts', opts, KNN_OPTIONS);
  const { k: asked, temperature: T, chunk } = checkKnnOptions(where, '', opts);
  let C = opts.numClasses ?? 0;
  if (opts.numClasses === undefined) for (const f of [bank, query]) for (const y of f.labels) C = Math.max(C, y + 1);
  checkLabels(where, 'bank', bank, C);
  checkLabels(where, 'query', query, C);
  if (bank.n === 0) throw new Error(`${where}: the bank holds no features`);
  if (bank.dim !== query.dim) throw new Error(`${where}: bank features have ${bank.dim} dims, queries ${query.dim}`);
  const k = Math.min(asked, bank.n);
  const D = bank.dim;
  const bankT = Tensor.fromArray(l2Normalize(bank.features, D), [bank.n, D]).keep();
  const q = l2Normalize(query.features, D);
  const predictions = new Int32Array(query.n);
  let hits1 = 0;
  let hits5 = 0;
  const topSim = new Float64Array(k);
  const topIdx = new Int32Array(k);
  const scores = new Float64Array(C);
  try {
    for (let s = 0; s < query.n; s += chunk) {
      const m = Math.min(chunk, query.n - s);
      const sims = noGrad(() => tidy(() => ops.linear(Tensor.fromArray(q.subarray(s * D, (s + m) * D), [m, D]), bankT).dataSync()));
      for (let i = 0; i < m; i++) {
        const row = sims.subarray(i * bank.n, (i + 1) * bank.n);
        // the k largest, kept sorted descending by insertion
        let filled = 0;
        for (let j = 0; j < bank.n; j++) {
          const v = row[j]!;
          if (filled === k && v <= topSim[k - 1]!) continue;
          let p = filled < k ? filled++ : k - 1;
          while (p > 0 && topSim[p - 1]! < v) {
            topSim[p] = topSim[p - 1]!;
            topIdx[p] = topIdx[p - 1]!;
            p--;
          }
          topSim[p] = v;
          topIdx[p] = j;
        }
        scores.fill(0);
        // exp(sim / T) / exp(top / T): the ranking of exp(sim / T), with the largest weight 1 however small T is
        for (let t = 0; t < filled; t++) scores[bank.labels[topIdx[t]!]!]! += Math.exp((topSim[t]! - topSim[0]!) / T);
        const y = query.labels[s + i]!;
        let best = 0;
        for (let c = 1; c < C; c++) if (scores[c]! > scores[best]!) best = c;
        let higher = 0;
        for (let c = 0; c < C; c++) if (c !== y && (scores[c]! > scores[y]! || (scores[c] === scores[y] && c < y))) higher++;
        predictions[s + i] = best;
        if (best === y) hits1++;
        if (higher < 5) hits5++;
      }
    }
  } finally {
    bankT.dispose();
  }
  return { top1: hits1 / query.n, top5: hits5 / query.n, n: query.n, k, predictions };
}

/** kNN accuracy of an MAE encoder: features of `train` as the bank, `test` as queries (split over `comm`'s ranks). */
export async function knnEvaluate(
  model: MaskedAutoencoder,
  train: Dataset,
  test: Dataset,
  opts: KnnOptions & { pool?: FeaturePool; batchSize?: number; workers?: number; comm?: Communicator } = {},
): Promise<KnnResult> {
  expectInstance('knnEvaluate', 'model', model, MaskedAutoencoder, 'a MaskedAutoencoder');
  expectDataset('knnEvaluate', 'train', train);
  expectDataset('knnEvaluate', 'test', test);
  expectObject('knnEvaluate', 'opts', opts);
  expectKnownKeys('knnEvaluate', 'opts', opts, [...KNN_OPTIONS, 'pool', 'batchSize', 'workers', 'comm']);
  checkKnnOptions('knnEvaluate', '', opts);
  const pool = checkPool('knnEvaluate', opts.pool);
  checkLoaderOptions('knnEvaluate', opts);
  if (opts.comm !== undefined) expectCommunicator('knnEvaluate', 'comm', opts.comm);
  // labels it cannot score: refused now, not after the feature passes
  for (const [name, ds] of [['train', train], ['test', test]] as const)
    if (ds.numClasses === 0) throw new Error(`knnEvaluate: ${name} has no labels (no class sub-folders): kNN accuracy is measured on labelled images`);
  if (opts.numClasses !== undefined && test.numClasses > opts.numClasses)
    throw new Error(`knnEvaluate: test has ${test.numClasses} classes and numClasses is ${opts.numClasses}`);
  if (opts.numClasses === undefined && test.numClasses > train.numClasses)
    throw new Error(`knnEvaluate: test has ${test.numClasses} classes and the bank (train) ${train.numClasses}: its classes past ${train.numClasses} could never be predicted`);
  const comm = opts.comm ?? Communicator.single();
  const fo = { pool, batchSize: opts.batchSize ?? 256, workers: opts.workers ?? 1 };
  const bank = await extractFeatures(model, train, { ...fo, comm });
  const query = await extractFeatures(model, shareOf(test, comm), fo);
  const r = knnClassify(bank, query, { k: opts.k, temperature: opts.temperature, chunk: opts.chunk, numClasses: opts.numClasses ?? (train.numClasses || undefined) });
  if (comm.size === 1) return r;
  const [hits1, hits5, n] = comm.allreduce([Math.round(r.top1 * r.n), Math.round(r.top5 * r.n), r.n], 'sum', 'the all-reduce of kNN hits');
  return { top1: hits1! / n!, top5: hits5! / n!, n: n!, k: r.k, predictions: comm.allgatherConcat(r.predictions, 'the all-gather of kNN predictions') };
}

/** In data without a test split, every KNN_QUERY_EVERY-th image (the first, the 6th, ...) is a query, the others the bank. */
export const KNN_QUERY_EVERY = 5;

export interface KnnData {
  bank: Dataset;
  query: Dataset;
  /** what was scored, for a report: "2000 test images against a bank of 10000 train images" */
  scored: string;
}

/**
 * The bank and the queries of a kNN evaluation on `src` (its own limit is not used), disjoint: the train and test
 * splits where the data has them; else (image folders, shards) its one set of images cut in two, every
 * KNN_QUERY_EVERY-th image a query and the others the bank. Then the first `bank` and the first `query` of each.
 * Data too small to be cut in two is refused in the name of `where`, as `name` ("the kNN monitor's data ") + its path.
 */
export async function knnData(src: DataSource, limits: { bank?: number; query?: number } = {}, where = 'knn', name = ''): Promise<KnnData> {
  for (const k of ['bank', 'query'] as const) if (limits[k] !== undefined) expectInteger('knnData', `limits.${k}`, limits[k], 1);
  const whole = { ...src, limit: undefined };
  if (hasTestSplit(src)) {
    const bank = await openDataset({ ...whole, limit: limits.bank }, 'train');
    const query = await openDataset({ ...whole, limit: limits.query }, 'test');
    return { bank, query, scored: `${query.length} test images against a bank of ${bank.length} train images` };
  }
  const all = await openDataset(whole, 'train');
  if (all.length < 2)
    throw new Error(`${where}: ${name}${src.path} holds ${all.length} image${all.length === 1 ? '' : 's'}: a bank and queries need 2 or more (every ${KNN_QUERY_EVERY}th image a query, the others the bank)`);
  const q: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < all.length; i++) (i % KNN_QUERY_EVERY === 0 ? q : b).push(i);
  const query = pickSamples(all, q.slice(0, limits.query));
  const bank = pickSamples(all, b.slice(0, limits.bank));
  return { bank, query, scored: `${query.length} images of ${src.path} (every ${KNN_QUERY_EVERY}th) against a bank of ${bank.length} of its other images` };
}
