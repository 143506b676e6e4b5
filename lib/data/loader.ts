/**
 * DataLoader: batches of normalised images from a Dataset, one seeded epoch at a time, prepared ahead of the consumer
 * in worker threads.
 *
 *   const loader = new DataLoader(dataset, { batchSize: 256, seed: 0, augment: true });
 *   for await (const batch of loader.epoch(epoch, { startAt })) { ... batch.images [B, C, H, W] ... }
 *   await loader.close();
 *
 * Order and augmentation are pure functions of (seed, epoch, position in epoch); see pipeline.ts. So epoch k is the
 * same whether or not the run was resumed, `startAt` (a step within the epoch) continues from exactly the batch a
 * resumed run stopped at, and the number of workers changes nothing but speed.
 *
 * Data parallel: with `shard: { rank, count }` the loader is one of `count` processes that share each epoch: step s
 * is the global batch of positions [s * count * B, (s + 1) * count * B) of the epoch order, and this rank gets its
 * rank-th slice of B (so the ranks' batches are disjoint, and together are the batch of count * B that one process
 * would see); stepsPerEpoch counts global batches. Since augmentation is keyed to the position, a sample is augmented
 * the same whichever rank reads it.
 *
 * Threads: with `workers` >= 1 (default 1) decoding and augmentation run in a pool of node:worker_threads (no more
 * threads than an epoch has batches, nor than `prefetch`: numWorkers), up to `prefetch` (default 2 per thread, as
 * PyTorch's prefetch_factor) batches ahead of the consumer, each to the thread with the fewest batches owed. The time
 * the consumer spends waiting for a batch is recorded (stallMs, epochStallMs). Workers need the compiled worker.js next
 * to loader.js (dist/lib/data/). When this file runs from TypeScript sources (loader.ts, e.g. under vitest) there is no
 * worker.js, so the loader runs the same pipeline code in-process instead (`mode` / `inProcessReason` say so); so it
 * does for a Dataset without workerSpec(), and for one whose class overrides get() (a worker's copy, rebuilt from
 * workerSpec(), would not). In-process, each batch is built when it is awaited, so all of its cost counts as stall.
 *
 * Memory: each batch's images are fresh memory unless the consumer calls batch.release() when it is done with them
 * (after copying them into a Tensor, say): the buffer then goes back to its worker for a later batch, which saves
 * the page faults of fresh memory (as much CPU time as the augmentation of raw shards).
 *
 * Errors: a failing batch rejects with an Error naming the cause (for example the bad file); a crashed or exited worker
 * rejects every pending batch, so nothing waits forever on a dead worker; so does a dataset's onWarning that throws on
 * a warning a worker sent (in-process it fails the batch whose sample warned). A batch that never comes (a dataset's get()
 * that never resolves) is waited for without limit unless `timeout` (seconds) is set: then it rejects with an Error
 * naming it once it has been awaited that long (close() the loader then: a worker that still owes the batch keeps the
 * process alive). Either way a batch awaited for more than 60 s raises a process warning (MAE_DATA_SLOW, once per
 * loader), so that a hang is seen.
 *
 * close() terminates the workers and ends every epoch being iterated: no batch is handed out after it, not even one
 * already prefetched. The epoch's next next(), or one already waiting when close() is called, rejects with
 * 'DataLoader: closed during epoch E, before step S' (a loop that ended quietly would look like a finished epoch);
 * the iterator is done after that. To stop early without an error, break out of the loop, then close().
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import type { Dataset, DatasetSpec } from './dataset.js';
import { loadSharp } from './folder.js';
import { buildBatch, epochPermutation, overridesGet, type BatchData, type BatchJob, type PipelineConfig } from './pipeline.js';
import type { WorkerInit, WorkerReply, WorkerRequest } from './worker.js';
import { describeItems, describeValue, expectArrayOf, expectDataset, expectFinite, expectInstance, expectKnownKeys, expectObject, expectOptions, type OptionType } from '../check.js';

export const FASHION_MNIST_MEAN = [0.286];
export const FASHION_MNIST_STD = [0.353];
export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
export const IMAGENET_STD = [0.229, 0.224, 0.225];

/** The type of each DataLoader option (the Record makes the compiler list every key of DataLoaderOptions). */
const LOADER_OPTIONS = {
  batchSize: 'number', seed: 'number', shuffle: 'boolean', dropLast: 'boolean', augment: 'boolean', imageSize: 'number',
  inChans: 'number', mean: 'checked', std: 'checked', scale: 'checked', ratio: 'checked', flipProb: 'number',
  evalCropFraction: 'number', antialias: 'boolean', transforms: 'string', workers: 'number', prefetch: 'number',
  workerUrl: 'checked', shard: 'object', timeout: 'number',
} as const satisfies Record<keyof DataLoaderOptions, OptionType | readonly OptionType[]>;

export interface DataLoaderOptions {
  batchSize: number;
  seed?: number; // default 0
  shuffle?: boolean; // default true: a fresh seeded permutation per epoch
  dropLast?: boolean; // default false: the last batch may be smaller
  augment?: boolean; // default false. true: RandomResizedCrop + flip; false: resize + center crop
  imageSize?: number; // output H = W; default the dataset's size (required for variable-size datasets)
  inChans?: number; // output channels; default the dataset's; 1-channel data is replicated to inChans
  mean?: number[]; // per output channel; default Fashion-MNIST (1-channel data) or ImageNet (3-channel data)
  std?: number[];
  scale?: [number, number]; // RandomResizedCrop area range, default [0.2, 1] (MAE)
  ratio?: [number, number]; // RandomResizedCrop aspect range, default [3/4, 4/3]
  flipProb?: number; // default 0.5
  evalCropFraction?: number; // eval resize = floor(imageSize / this); default 1 (fixed-size data), else 0.875 up to 224 px and 1 above (official crop_pct)
  antialias?: boolean; // default true: PIL's antialiased bicubic (the official recipe's); false: F.interpolate's kernel
  transforms?: 'native' | 'typescript'; // default 'native' (8-bit datasets, one native pass); 'typescript': the reference
  workers?: number; // worker threads, default 1, at most MAX_WORKERS (256); 0 runs in-process
  prefetch?: number; // batches the workers prepare ahead of the consumer, default 2 per worker (in-process: built on demand)
  workerUrl?: URL; // the worker script; default worker.js next to this file
  shard?: { rank: number; count: number }; // this process's share of each epoch (data parallel; needs dropLast)
  /**
   * Seconds a batch may be awaited before it rejects with an Error naming it (epoch, step) and the timeout, as
   * PyTorch's DataLoader timeout; default 0: no limit. At most 2147483 (24.8 days, setTimeout's longest delay).
   */
  timeout?: number;
}

export interface Batch {
  images: Float32Array; // [size, inChans, imageSize, imageSize], normalised
  labels: Int32Array; // [size], -1 for unlabelled data
  indices: Int32Array; // [size], the dataset indices
  shape: [number, number, number, number]; // [size, inChans, imageSize, imageSize]
  size: number; // B (the last batch may be smaller unless dropLast)
  epoch: number;
  step: number; // 0 .. stepsPerEpoch - 1
  /**
   * Hands `images`' memory back to the worker thread that filled it, for reuse by a later batch; `images` is empty
   * afterwards. Optional (without it every batch gets fresh memory); a no-op in-process and on a second call.
   */
  release(): void;
  start: number; // the position of the first sample in the epoch's order (per-sample randomness is keyed to it)
}

function defaultStats(channels: number): { mean: number[]; std: number[] } | null {
  if (channels === 1) return { mean: FASHION_MNIST_MEAN, std: FASHION_MNIST_STD };
  if (channels === 3) return { mean: IMAGENET_MEAN, std: IMAGENET_STD };
  return null;
}

/** The most worker threads a DataLoader starts (each costs about 10 MB; far more than any machine has cores). */
export const MAX_WORKERS = 256;

/** The longest timeout, in seconds: setTimeout's limit of 2^31 - 1 ms (24.8 days; a longer delay fires at once). */
const MAX_TIMEOUT_S = 2147483;

/** Seconds a batch is awaited before the loader warns (MAE_DATA_SLOW) that it may never come. */
const SLOW_BATCH_S = 60;


/** [min, max] of finite numbers with 0 < min <= max (and max <= maxLimit), checked in the name of `where`. */
export function range(where: string, name: string, v: unknown, maxLimit: number): [number, number] {
  const ok = Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number' && Number.isFinite(x)) && v[0] > 0 && v[0] <= v[1] && v[1] <= maxLimit;
  if (!ok) throw new Error(`${where}: ${name} must be [min, max] with 0 < min <= max${maxLimit < Infinity ? ` <= ${maxLimit}` : ''}, finite numbers, got ${describeItems(v)}`);
  return [v[0], v[1]];
}

function positiveInt(where: string, name: string, v: number): number {
  if (!(Number.isInteger(v) && v > 0)) throw new Error(`${where}: ${name} must be a positive integer, got ${v}`);
  return v;
}

/** Fills in the defaults of `opts` for `dataset` and checks them. */
export function resolvePipelineConfig(dataset: Dataset, opts: DataLoaderOptions): PipelineConfig {
  expectDataset('resolvePipelineConfig', 'dataset', dataset);
  expectObject('resolvePipelineConfig', 'opts', opts);
  expectOptions('resolvePipelineConfig', opts, LOADER_OPTIONS);
  return pipelineConfig('resolvePipelineConfig', dataset, opts);
}

/**
 * resolvePipelineConfig once `opts` has passed expectOptions, in the name of `where` (DataLoader, or
 * resolvePipelineConfig). An option left out or undefined takes its default; null is refused.
 */
function pipelineConfig(where: string, dataset: Dataset, opts: DataLoaderOptions): PipelineConfig {
  const c = dataset.channels;
  const fixed = dataset.height > 0 && dataset.width > 0;
  const inChans = positiveInt(where, 'inChans', opts.inChans ?? c);
  if (inChans !== c && c !== 1) throw new Error(`${where}: inChans ${inChans} does not match the dataset's ${c} channels (only 1-channel data can be replicated)`);
  let imageSize = opts.imageSize;
  if (imageSize === undefined) {
    if (!fixed || dataset.height !== dataset.width) {
      throw new Error(`${where}: imageSize is required for a dataset of ${fixed ? `non-square ${dataset.height}x${dataset.width}` : 'variable-size'} images`);
    }
    imageSize = dataset.height;
  }
  positiveInt(where, 'imageSize', imageSize);
  let mean = opts.mean;
  let std = opts.std;
  if (mean === undefined || std === undefined) {
    const stats = defaultStats(c);
    if (stats === null) throw new Error(`${where}: no default mean/std for ${c}-channel data; pass mean and std`);
    // (null is not a default: expectArrayOf refuses it below)
    if (mean === undefined) mean = Array.from({ length: inChans }, (_, k) => stats.mean[k % c]!);
    if (std === undefined) std = Array.from({ length: inChans }, (_, k) => stats.std[k % c]!);
  }
  expectArrayOf(where, 'mean', mean, (m) => typeof m === 'number' && Number.isFinite(m), 'a finite number');
  expectArrayOf(where, 'std', std, (s) => typeof s === 'number' && Number.isFinite(s) && s > 0, 'a finite number > 0');
  if (mean.length !== inChans || std.length !== inChans) {
    throw new Error(`${where}: mean and std need ${inChans} values (one per output channel), got ${mean.length} and ${std.length}`);
  }
  // (images of varying size: the official eval transform's crop_pct, 224 / 256 up to 224 px, else 1.0)
  const cropFraction = opts.evalCropFraction ?? (fixed || imageSize > 224 ? 1 : 224 / 256);
  if (!(cropFraction > 0 && cropFraction <= 1)) throw new Error(`${where}: evalCropFraction must be in (0, 1], got ${cropFraction}`);
  const flipProb = opts.flipProb ?? 0.5;
  if (!(flipProb >= 0 && flipProb <= 1)) throw new Error(`${where}: flipProb must be in [0, 1], got ${flipProb}`);
  const seed = opts.seed ?? 0;
  if (!(Number.isSafeInteger(seed) && seed >= 0)) throw new Error(`${where}: seed must be a non-negative safe integer, got ${seed}`);
  const transforms = opts.transforms ?? 'native';
  if (transforms !== 'native' && transforms !== 'typescript') throw new Error(`${where}: transforms must be 'native' or 'typescript', got ${String(transforms)}`);
  return {
    seed,
    augment: opts.augment ?? false,
    imageSize,
    inChans,
    mean: [...mean],
    std: [...std],
    scale: range(where, 'scale', opts.scale === undefined ? [0.2, 1] : opts.scale, 1),
    ratio: range(where, 'ratio', opts.ratio === undefined ? [3 / 4, 4 / 3] : opts.ratio, Infinity),
    flipProb,
    evalResize: Math.floor(imageSize / cropFraction),
    antialias: opts.antialias ?? true,
    transforms,
  };
}

/** A batch as it arrives: from worker thread `worker` (null: built in-process). */
type Arrived = BatchData & { worker: number | null };

interface Pending {
  resolve: (data: Arrived) => void;
  reject: (e: Error) => void;
  promise: Promise<Arrived>;
  worker: number;
}

export class DataLoader {
  readonly dataset: Dataset;
  readonly config: PipelineConfig;
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  /** batches in flight to the worker threads at most: the prefetch option, else 2 per thread */
  readonly prefetch: number;
  /** seconds a batch may be awaited (0: no limit) */
  readonly timeout: number;
  readonly stepsPerEpoch: number;
  readonly shard: { rank: number; count: number };
  /** 'workers': batches are built in worker threads; 'in-process': on this thread (see inProcessReason). */
  readonly mode: 'workers' | 'in-process';
  readonly inProcessReason: string | null;
  /** The worker threads it starts: the workers option, at most stepsPerEpoch and prefetch (more would have no batch); 0 in-process. */
  readonly numWorkers: number;

  private readonly workerUrl: URL | null;
  private readonly warned = new Set<string>();
  private warnedSlow = false;
  private readonly stallByEpoch = new Map<number, number>();
  private totalStallMs = 0;
  private workers: Worker[] = [];
  private outstanding: number[] = [];
  private starting: Promise<void> | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private failure: Error | null = null;
  private closed = false;
  /** the consumers waiting for a batch (arrival()): close() wakes them. One per wait, dropped when it ends, so that
   * no reaction piles up on a promise that stays pending for the loader's life (a leak of about 1 KB a batch) */
  private readonly waiting = new Set<() => void>();
  /** the dataset's length when the loader was made */
  private readonly length: number;

  constructor(dataset: Dataset, opts: DataLoaderOptions) {
    expectDataset('DataLoader', 'dataset', dataset);
    if (!(Number.isSafeInteger(dataset.length) && dataset.length >= 0))
      throw new Error(`DataLoader: dataset.length must be a non-negative safe integer (the number of samples), got ${dataset.length}`);
    expectObject('DataLoader', 'opts', opts, false, 'e.g. { batchSize: 64 }');
    expectOptions('DataLoader', opts, LOADER_OPTIONS);
    this.dataset = dataset;
    this.length = dataset.length;
    this.config = pipelineConfig('DataLoader', dataset, opts);
    this.batchSize = positiveInt('DataLoader', 'batchSize', opts.batchSize);
    this.shuffle = opts.shuffle ?? true;
    this.dropLast = opts.dropLast ?? false;
    this.timeout = opts.timeout ?? 0;
    expectFinite('DataLoader', 'timeout', this.timeout, (t) => t >= 0 && t <= MAX_TIMEOUT_S, `a number of seconds in [0, ${MAX_TIMEOUT_S}] (0: no limit)`);
    const workers = opts.workers ?? 1;
    if (!(Number.isInteger(workers) && workers >= 0 && workers <= MAX_WORKERS))
      throw new Error(`DataLoader: workers must be an integer in [0, ${MAX_WORKERS}], got ${workers}`);
    if (dataset.length === 0) throw new Error('DataLoader: the dataset is empty');
    const shard = opts.shard ?? { rank: 0, count: 1 };
    if (!(Number.isInteger(shard.count) && shard.count > 0 && Number.isInteger(shard.rank) && shard.rank >= 0 && shard.rank < shard.count))
      throw new Error(`DataLoader: shard must be { rank, count } with 0 <= rank < count, got ${JSON.stringify(shard)}`);
    if (shard.count > 1 && !this.dropLast) throw new Error('DataLoader: a shard of the data (shard.count > 1) needs dropLast, so that every rank has a full batch');
    this.shard = { rank: shard.rank, count: shard.count };
    const global = this.batchSize * shard.count;
    this.stepsPerEpoch = this.dropLast ? Math.floor(dataset.length / global) : Math.ceil(dataset.length / global);
    if (this.stepsPerEpoch === 0)
      throw new Error(`DataLoader: dropLast with batchSize ${this.batchSize}${shard.count > 1 ? ` x ${shard.count} ranks` : ''} > dataset length ${dataset.length} leaves no batches`);

    let reason: string | null = null;
    if (workers === 0) reason = 'workers: 0';
    else if (dataset.workerSpec === undefined) reason = 'the dataset has no workerSpec(), so worker threads cannot rebuild it';
    else if (overridesGet(dataset)) reason = "the dataset's class overrides get(), which the copy a worker rebuilds from workerSpec() would not";
    else if (opts.workerUrl === undefined && import.meta.url.endsWith('.ts')) {
      reason = 'running from TypeScript sources (no compiled worker.js); use the compiled dist/ build for worker threads';
    }
    this.mode = reason === null ? 'workers' : 'in-process';
    this.inProcessReason = reason;
    // a thread is busy only while a batch is owed to it: no more threads than batches in flight (prefetch), which
    // default to two per thread
    if (opts.prefetch !== undefined) positiveInt('DataLoader', 'prefetch', opts.prefetch);
    if (opts.workerUrl !== undefined) expectInstance('DataLoader', 'workerUrl', opts.workerUrl, URL, 'a URL (of the worker script)');
    this.numWorkers = reason === null ? Math.min(workers, this.stepsPerEpoch, opts.prefetch ?? Infinity) : 0;
    this.prefetch = opts.prefetch ?? 2 * Math.max(1, this.numWorkers);
    this.workerUrl = reason === null ? (opts.workerUrl ?? new URL('./worker.js', import.meta.url)) : null;
  }

  /** Total milliseconds the consumer has waited for batches, over all epochs. */
  get stallMs(): number {
    return this.totalStallMs;
  }

  /** Milliseconds the consumer waited for batches of epoch `epoch`. */
  epochStallMs(epoch: number): number {
    expectFinite('DataLoader', 'epoch', epoch, (e) => Number.isSafeInteger(e) && e >= 0, 'a non-negative integer');
    return this.stallByEpoch.get(epoch) ?? 0;
  }

  /** The dataset order of epoch `epoch` (identity when shuffle is off). */
  order(epoch: number): Int32Array {
    if (!(Number.isSafeInteger(epoch) && epoch >= 0)) throw new Error(`DataLoader: epoch must be a non-negative integer, got ${epoch}`);
    if (!this.shuffle) return Int32Array.from({ length: this.dataset.length }, (_, i) => i);
    return epochPermutation(this.config.seed, epoch, this.dataset.length);
  }

  /** The batches of epoch `epoch`, from step `startAt` (default 0) to the end. */
  async *epoch(epoch: number, opts: { startAt?: number } = {}): AsyncGenerator<Batch, void, undefined> {
    if (this.closed) throw new Error('DataLoader: epoch() called after close()');
    expectObject('DataLoader', 'opts', opts, false, 'e.g. { startAt: 0 }');
    expectKnownKeys('DataLoader', 'opts', opts, ['startAt']);
    if (this.dataset.length !== this.length)
      throw new Error(`DataLoader: the dataset's length changed from ${this.length} to ${this.dataset.length} after the loader was made (its steps per epoch were counted then): make a new DataLoader`);
    const startAt = opts.startAt === undefined ? 0 : opts.startAt; // (null is refused, as any non-integer)
    if (!(Number.isInteger(startAt) && startAt >= 0 && startAt <= this.stepsPerEpoch)) {
      throw new Error(`DataLoader: startAt must be an integer step in [0, ${this.stepsPerEpoch}], got ${describeValue(startAt)}`);
    }
    const order = this.order(epoch);
    const B = this.batchSize;
    // In-process, work done ahead would block this thread just the same: build each batch when it is awaited, so
    // its whole cost shows up as stall time.
    const ahead = this.mode === 'workers' ? this.prefetch : 0;
    const queue: { step: number; job: BatchJob; promise: Promise<Arrived> }[] = [];
    let next = startAt;
    const submitNext = () => {
      const start = (next * this.shard.count + this.shard.rank) * B;
      const job: BatchJob = { epoch, start, indices: order.slice(start, Math.min(start + B, order.length)) };
      const promise = this.submit(job);
      promise.catch(() => {}); // a batch abandoned by an early break must not become an unhandled rejection
      queue.push({ step: next, job, promise });
      next++;
    };
    const fill = () => {
      while (queue.length < ahead && next < this.stepsPerEpoch) submitNext();
    };
    fill();
    while (queue.length > 0 || next < this.stepsPerEpoch) {
      const t0 = performance.now();
      if (queue.length === 0) submitNext();
      const head = queue.shift()!;
      const data = await this.arrival(head.promise, epoch, head.step);
      const waited = performance.now() - t0;
      this.totalStallMs += waited;
      this.stallByEpoch.set(epoch, this.epochStallMs(epoch) + waited);
      fill();
      const size = head.job.indices.length;
      const s = this.config.imageSize;
      yield {
        images: data.images,
        labels: data.labels,
        indices: head.job.indices,
        shape: [size, this.config.inChans, s, s],
        size,
        epoch,
        step: head.step,
        release: () => this.recycle(data.worker, data.images),
        start: head.job.start,
      };
    }
  }

  /**
   * The batch of `step` once `promise` delivers it. Rejects instead once close() is called (also while it waits),
   * or when it has waited `timeout` seconds; warns (once per loader) when it has waited SLOW_BATCH_S.
   */
  private async arrival(promise: Promise<Arrived>, epoch: number, step: number): Promise<Arrived> {
    const closed = () => new Error(`DataLoader: closed during epoch ${epoch}, before step ${step}`);
    if (this.closed) throw closed();
    let wake = () => {};
    const waits: Promise<Arrived | null>[] = [promise, new Promise((resolve) => (wake = () => resolve(null)))];
    this.waiting.add(wake);
    // the warning's timer alone does not keep the process alive (a batch owed by a worker does, see post()); the
    // timeout's does, so that a wait the caller bounded ends in its error, not in an exit with the batch pending
    const timers = [setTimeout(() => this.warnSlow(epoch, step), SLOW_BATCH_S * 1000).unref()];
    if (this.timeout > 0) {
      const message = `DataLoader: the batch of epoch ${epoch}, step ${step} was not ready within the timeout of ${this.timeout} s`;
      waits.push(new Promise((_, reject) => timers.push(setTimeout(() => reject(new Error(message)), this.timeout * 1000))));
    }
    let data: Arrived | null;
    try {
      data = await Promise.race(waits);
    } catch (e) {
      if (!this.closed) throw e;
      data = null;
    } finally {
      for (const t of timers) clearTimeout(t);
      this.waiting.delete(wake);
    }
    // a batch that arrived as close() was called is not handed out either
    if (data === null || this.closed) throw closed();
    return data;
  }

  private warnSlow(epoch: number, step: number): void {
    if (this.warnedSlow) return;
    this.warnedSlow = true;
    process.emitWarning(
      `DataLoader: the batch of epoch ${epoch}, step ${step} has been awaited for ${SLOW_BATCH_S} s and is not ready; a dataset whose get() never resolves makes training wait forever (the DataLoader option timeout turns such a wait into an error)`,
      { code: 'MAE_DATA_SLOW' },
    );
  }

  /** Sends a released batch's image buffer back to the worker that filled it. */
  private recycle(worker: number | null, images: Float32Array): void {
    if (worker === null || this.closed || this.failure !== null || images.buffer.byteLength === 0) return;
    const request: WorkerRequest = { type: 'recycle', buffer: images.buffer as ArrayBuffer };
    this.workers[worker]?.postMessage(request, [request.buffer]);
  }

  /**
   * Stops the workers (after letting in-flight batches finish, at most 5 s). Pending batches reject, and so does the
   * next batch of an epoch being iterated (see the top of this file).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const wake of this.waiting) wake();
    if (this.starting !== null) await this.starting.catch(() => {});
    const inFlight = [...this.pending.values()].map((p) => p.promise.catch(() => {}));
    await Promise.race([Promise.all(inFlight), sleep(5000, undefined, { ref: false })]);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.rejectAll(new Error('DataLoader: closed while a batch was pending'));
  }

  private submit(job: BatchJob): Promise<Arrived> {
    if (this.closed) return Promise.reject(new Error('DataLoader: closed'));
    if (this.mode === 'in-process') return buildBatch(this.dataset, this.config, job).then((data) => ({ ...data, worker: null }));
    return this.startWorkers().then(() => this.post(job));
  }

  private post(job: BatchJob): Promise<Arrived> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('DataLoader: closed'));
    let k = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.outstanding[i]! < this.outstanding[k]!) k = i;
    const id = this.nextId++;
    let resolve!: (data: Arrived) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<Arrived>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.pending.set(id, { resolve, reject, promise, worker: k });
    this.outstanding[k]!++;
    this.workers[k]!.ref(); // keep the process alive while a batch is owed
    const request: WorkerRequest = { type: 'batch', id, job };
    this.workers[k]!.postMessage(request);
    return promise;
  }

  private startWorkers(): Promise<void> {
    this.starting ??= (async () => {
      const spec: DatasetSpec = this.dataset.workerSpec!();
      // sharp must be loaded in the main thread before workers use it
      if (spec.kind === 'folder' || (spec.kind === 'shards' && spec.pixels === 'jpeg')) await loadSharp();
      const init: WorkerInit = { dataset: spec, config: this.config };
      for (let k = 0; k < this.numWorkers; k++) {
        let worker: Worker;
        try {
          // none of the parent's Node flags: some stop a worker (--input-type), others are refused in one
          worker = new Worker(this.workerUrl!, { workerData: init, execArgv: [] });
        } catch (e) {
          // workerData is structured-cloned: a spec holding a function or a symbol cannot be sent
          if (e instanceof DOMException && e.name === 'DataCloneError')
            throw new Error(`DataLoader: the dataset's workerSpec() cannot be sent to a worker thread: ${e.message}`, { cause: e });
          throw e;
        }
        worker.on('message', (reply: WorkerReply) => this.onReply(k, reply));
        worker.on('error', (e: Error) => this.fail(new Error(`DataLoader: worker thread ${k} failed: ${e.message}`, { cause: e })));
        worker.on('exit', (code) => {
          if (!this.closed) this.fail(new Error(`DataLoader: worker thread ${k} exited unexpectedly (exit code ${code})`));
        });
        worker.unref();
        this.workers.push(worker);
        this.outstanding.push(0);
      }
    })();
    return this.starting;
  }

  private onReply(worker: number, reply: WorkerReply): void {
    if (reply.type === 'warning') {
      // each worker has its own copy of the dataset, so the same bad file can be reported by several of them
      if (!this.warned.has(reply.message)) {
        this.warned.add(reply.message);
        try {
          (this.dataset.onWarning ?? console.warn)(reply.message);
        } catch (e) {
          // thrown from a Worker event it would crash the process; in-process it fails the batch: fail the loader
          const why = e instanceof Error ? e.message : String(e);
          this.fail(new Error(`DataLoader: the dataset's onWarning threw on a warning from worker thread ${worker} (${reply.message}): ${why}`, { cause: e }));
        }
      }
      return;
    }
    const p = this.pending.get(reply.id);
    if (p === undefined) return;
    this.pending.delete(reply.id);
    if (--this.outstanding[p.worker]! === 0) this.workers[p.worker]!.unref();
    if (reply.type === 'batch') p.resolve({ images: reply.images, labels: reply.labels, worker: p.worker });
    else p.reject(new Error(`DataLoader: batch failed in worker thread ${p.worker}: ${reply.message.replace(/^DataLoader: /, '')}`));
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.rejectAll(this.failure);
  }

  private rejectAll(e: Error): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      this.outstanding[p.worker] = 0;
      this.workers[p.worker]?.unref();
      p.reject(e);
    }
  }
}
