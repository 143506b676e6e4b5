/**
 * MAE pre-training (the official main_pretrain.py / engine_pretrain.py loop):
 *   lr = blr * batch * accumIter / 256, set every iteration from the fractional epoch (warm-up, then cosine);
 *   AdamW(0.9, 0.95), weight decay 0.05 on >= 2-D tensors; the loss of each micro-batch is divided by accumIter
 *   and the optimizer steps every accumIter batches; gradients left over at an epoch's end are dropped.
 *
 * The loop is async and yields to the event loop between batches; progress goes to `onEvent` and to a JSON-lines
 * log (with the achieved model GFLOP/s: maeFlops' training FLOPs per image x img/s); checkpoints (weights, optimizer
 * state, position, the run's options and settings, the epoch's and the log line's sums) are written atomically every
 * `checkpointEvery` steps and at the end, and `resume` continues the same run exactly, log included. A non-finite
 * loss stops the run with an Error that names the last good checkpoint. Reconstructions of fixed images are written
 * as PNG. Nothing in a step waits for the device: the loss is read once, after the optimizer step.
 *
 * Every per-sample random draw is keyed to the sample's position in its epoch's seeded order: its crop and flip
 * (data/pipeline.ts) and its masking noise (maskGenerator(seed, epoch, position)). So the run is the same however the
 * epoch is cut into batches, and data-parallel training (`distributed`, see lib/distributed) is one training run whatever
 * the world size: each of N ranks takes a disjoint slice of each global batch of N x batchSize images, gradients are
 * averaged over the ranks in buckets while backward goes on, and N ranks at batch b train the same model as one
 * process at batch N x b (up to the order of floating-point sums). `batchSize` is per rank; the lr follows the
 * effective batch batchSize x accumIter x N. Rank 0 alone locks the output folder (outDir) and writes the checkpoint,
 * the log and the reconstructions; every rank resumes from rank 0's checkpoint, also with another world size (the
 * effective batch must stay the same).
 */
import { appendFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as yieldNow } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { lockRunFolder, releaseRunFolder, removeRun } from '../classify/checkpoint.js';
import { expectFinite, expectFunction, expectInteger, expectKnownKeys, expectObject, expectOptions, isFloat32Finite, optionNames, type OptionType } from '../check.js';
import { removeOwnTemps, removeStaleTemps, tempTargets, writeFileAtomic } from '../io/atomic.js';
import { DataLoader, resolvePipelineConfig } from '../data/index.js';
import { MaskedAutoencoder, checkPrecision, getPreset, maeFlops, type MaeConfig, type Precision } from '../mae/index.js';
import { expectPresetName } from '../mae/presets.js';
import { native, packageRoot } from '../native.js';
import { AdamW, cosineLr, scaledLr } from '../optim/index.js';
import { noGrad } from '../autograd.js';
import * as ops from '../ops/index.js';
import { maskGenerator } from '../data/pipeline.js';
import { Communicator, distributedSettings, type DistributedMode } from '../distributed/comm.js';
import { AgreedError, checkSameSettings, datasetFingerprint } from '../distributed/check.js';
import { checkThreads } from '../info.js';
import { GradReducer, type ReduceStats } from '../distributed/reducer.js';
import { Tensor, owning, tidy, type Keep } from '../tensor.js';
import { CHECKPOINT_FILE, CHECKPOINT_FORMAT, cutLog, loadCheckpoint, resumeDataProblem, resumeThreads, saveCheckpoint, type LoadedCheckpoint, type TrainPosition } from './checkpoint.js';

export { cutLog } from './checkpoint.js';
import { checkChannels, checkDataSource, openDataset, type DataSource } from './data.js';
import { writeReconstructions } from './visualize.js';
import { checkKnnOptions, knnData, knnEvaluate } from './knn.js';

export interface PretrainOptions {
  /** a preset name (default mae_vit_tiny_patch4_28) and overrides of its config */
  preset?: string;
  config?: Partial<MaeConfig>;
  data?: DataSource;
  /**
   * without `data` only: cuts the default data to its first `limit` images; with `resume`, the run's data.limit as
   * the caller knows it (the CLI's --limit alone): a run whose data has another limit is an error, as for `data`
   */
  limit?: number;
  /**
   * output folder: checkpoint.safetensors, log.jsonl, reconstructions/ (default runs/pretrain). The run holds it with a
   * lock file, .lock (its pid and host), from its start until it ends, however it ends: another run into it, fresh or
   * resumed, is refused while that process runs; a lock whose process has died is taken over with a warning
   */
  outDir?: string;
  epochs?: number;
  /** images per batch (per optimizer micro-step), per rank in a data-parallel run */
  batchSize?: number;
  /** batches per optimizer step (gradient accumulation) */
  accumIter?: number;
  /** base lr; the absolute lr is blr * batchSize * accumIter * ranks / 256 unless `lr` is given */
  blr?: number;
  lr?: number;
  minLr?: number;
  /** default min(40, ceil(epochs / 20)) */
  warmupEpochs?: number;
  weightDecay?: number;
  maskRatio?: number;
  seed?: number;
  /**
   * CPU threads, as setNumThreads: of the calling JavaScript thread, and still set after the run, so runs started
   * together in one thread share the count set last (default: OMP_NUM_THREADS, else all cores). Kept in the
   * checkpoint: a resumed run takes the run's count (on the same number of processes) unless given (OMP_NUM_THREADS
   * set counts as given); another count is allowed, but the result is then not bit-identical to the uninterrupted
   * run's (resumeNote)
   */
  threads?: number;
  /**
   * where the model trains: 'cpu' (default), 'cuda' or 'cuda:N'; CUDA that cannot be used is an Error saying why. This
   * and `precision` are kept in the checkpoint: a resumed run takes the run's unless given; another one is allowed,
   * but the result is then not bit-identical (resumeNote)
   */
  device?: string;
  /** activation precision: 'fp32' (default) or 'bf16' (CUDA, or the CPU with oneDNN; fp32 master weights, optimizer and loss) */
  precision?: Precision;
  /**
   * data-loading worker threads (default 1). This and the three cadences below are kept in the checkpoint: a
   * resumed run takes the run's unless given (given ones may differ from the run's)
   */
  workers?: number;
  /** optimizer steps between checkpoints, besides the one at each epoch end (default 0: only at epoch ends) */
  checkpointEvery?: number;
  /** optimizer steps per log line (default 10) */
  logEvery?: number;
  /**
   * epochs between reconstruction images, reconstructions/epoch-NNN.png after NNN epochs (default: every epoch); 0
   * writes only the final one. A run that ends between epoch ends (a stop, maxSteps) with no figure written yet
   * writes reconstructions/step-NNNNNN.png (NNNNNN optimizer steps), never replacing an epoch's figure
   */
  visualizeEvery?: number;
  /** continue the run whose checkpoint is in outDir (true) or at this path */
  resume?: boolean | string;
  /**
   * start afresh in an outDir that holds a run already (a checkpoint): once the new run's data, options and model
   * are checked, the old run's checkpoint, log and figures are removed; without it (or resume) such an outDir is an
   * error, so that no run is lost by mistake
   */
  overwrite?: boolean;
  /** stop after this many optimizer steps in total (the schedule still follows `epochs`) */
  maxSteps?: number;
  /**
   * stops at the next step boundary, writes a checkpoint and returns with stopped: true: one aborted during a step or
   * by its events (onEvent's 'step' or 'checkpoint') stops the run right after that step; in a data-parallel run a
   * signal on any rank stops every rank, after the same step
   */
  signal?: AbortSignal;
  /**
   * called at each event, synchronously: an exception it throws ends the run with that error (what the step was
   * doing is not saved: the last checkpoint stays), and a promise it returns is not awaited
   */
  onEvent?: (e: TrainEvent) => void;
  /** a kNN monitor of the encoder's cls features every `every` epochs (emits a 'knn' event); off by default */
  knn?: KnnMonitorOptions;
  /**
   * data-parallel training: 'mpi' (this process is a rank of an MPI job), 'none', or 'auto' (default: 'mpi' when an
   * MPI launcher such as mpirun or srun started the process). See lib/distributed.
   */
  distributed?: DistributedMode;
  /** Open MPI's libmpi.so.40 or its folder (default $MAE_MPI_LIB, then the loader's search path) */
  mpiLibrary?: string;
  /**
   * NCCL's libnccl.so.2 or its folder, for CUDA ranks (default $MAE_NCCL_LIB, then the loader's search path); unused
   * elsewhere, which a warning MAE_NCCL_UNUSED says
   */
  ncclLibrary?: string;
  /** seconds a collective may take before the run fails with a timeout (default 600) */
  distTimeout?: number;
  /** MiB of gradients per all-reduce bucket in a data-parallel run (default 25; the first bucket is at most 1 MiB) */
  bucketMb?: number;
}

export interface KnnMonitorOptions {
  every: number;
  /**
   * labelled data (default: the training data); the bank is its train split, the queries its test split (data without
   * a test split, an image folder or shards: every 5th image a query, the others the bank; knnData)
   */
  data?: DataSource;
  /** bank size (default 10000) and query count (default 2000) */
  trainLimit?: number;
  testLimit?: number;
  k?: number;
  temperature?: number;
}

export type TrainEvent =
  /** resumeNote: why a resumed run will not be bit-identical to the uninterrupted one (another thread count, device or precision) */
  | { type: 'start'; config: MaeConfig; parameters: number; datasetSize: number; stepsPerEpoch: number; totalSteps: number; lr: number; effectiveBatch: number; resumedFrom: TrainPosition | null; resumeNote?: string; dataMode: string; trainingFlopsPerImage: number; rank: number; worldSize: number; device: string; precision: Precision }
  /** loss: the step's mean over every rank; imgPerSec: of the whole run; comm: this rank's gradient averaging (data parallel) */
  | { type: 'step'; step: number; totalSteps: number; epoch: number; lr: number; loss: number; imgPerSec: number; etaSeconds: number; comm?: ReduceStats }
  /** epoch: the index of the epoch just finished, from 0 (the figure and kNN events count the epochs finished) */
  | { type: 'epoch'; epoch: number; loss: number; seconds: number; stallMs: number }
  | { type: 'checkpoint'; step: number; path: string }
  /** epoch: the epochs finished; step: the optimizer steps (a figure between epoch ends is named by its step) */
  | { type: 'visualize'; epoch: number; step: number; path: string }
  | { type: 'warning'; message: string }
  | { type: 'knn'; epoch: number; top1: number; top5: number; seconds: number }
  | { type: 'end'; steps: number; loss: number; seconds: number; stopped: boolean };

export interface PretrainResult {
  outDir: string;
  checkpoint: string;
  steps: number;
  /** mean loss of each finished epoch */
  epochLosses: number[];
  /** loss of every optimizer step of this run (mean over its micro-batches) */
  losses: number[];
  reconstructions: string[];
  stallMs: number;
  seconds: number;
  stopped: boolean;
  /** this process's rank and the world size (0 and 1 for a run of one process) */
  rank: number;
  worldSize: number;
}

/**
 * The options a run is defined by (stored in checkpoints; resume must not change them). Of batchSize and accumIter
 * only the effective batch (batchSize x accumIter x world size) must stay, so that a run may resume on another number
 * of processes.
 */
const RUN_KEYS = ['preset', 'config', 'data', 'epochs', 'batchSize', 'accumIter', 'blr', 'lr', 'minLr', 'warmupEpochs', 'weightDecay', 'maskRatio', 'seed'] as const;
/**
 * The run's settings, also stored in checkpoints (with the thread count): a resumed run takes them unless given,
 * and given ones may differ. Checkpoints written before they were kept resume with the defaults.
 */
const SETTING_KEYS = ['workers', 'checkpointEvery', 'logEvery', 'visualizeEvery', 'bucketMb'] as const;
/** Also kept and taken unless given; given ones may differ, but the resumed run then says it is not bit-identical. */
const RESULT_KEYS = ['device', 'precision'] as const;

export async function pretrain(options: PretrainOptions = {}): Promise<PretrainResult> {
  const o = withDefaults(options);
  const comm = Communicator.open({ distributed: options.distributed, mpiLibrary: options.mpiLibrary, timeoutSeconds: options.distTimeout });
  try {
    // what the run makes on the native side (model, optimizer, the step's losses) is freed however it ends
    return await owning((keep) => run(options, o, comm, keep));
  } catch (e) {
    // the other ranks must not wait for this one: they stop too, saying why (unless every rank raised this error)
    if (!(e instanceof AgreedError)) comm.fail(e);
    throw e;
  }
}

async function run(options: PretrainOptions, o: ReturnType<typeof withDefaults>, comm: Communicator, keep: Keep): Promise<PretrainResult> {
  // the caller's onEvent: its first exception ends the run, where it was thrown or (an event raised from a data
  // thread's message, or while a figure was written) at the next step
  let handlerError: { error: unknown } | null = null;
  const emit = (e: TrainEvent) => {
    try {
      options.onEvent?.(e);
    } catch (error) {
      handlerError ??= { error };
      throw error;
    }
  };
  const raiseHandlerError = () => {
    if (handlerError) throw handlerError.error;
  };
  const outDir = o.outDir;
  const writer = comm.rank === 0;
  const ckPath = join(outDir, CHECKPOINT_FILE);
  const logPath = join(outDir, 'log.jsonl');
  if (writer) {
    // a run to resume must be there (the lock would make the folder of a mistyped outDir, empty)
    if (options.resume === true && !existsSync(ckPath))
      throw new Error(`resume: ${outDir} holds no run to resume (no ${CHECKPOINT_FILE}); start a new run there without --resume, or give the folder of the run (--out)`);
    // the folder is this run's until it ends (another run into it is refused), taken before anything in it is read
    // or written
    keep(lockRunFolder('pretrain', outDir, (message) => emit({ type: 'warning', message })));
    if (!options.resume && !options.overwrite && existsSync(ckPath))
      throw new Error(`${outDir} holds a run already (${CHECKPOINT_FILE}): resume it (--resume), start it again (--overwrite) or choose another folder (--out)`);
    // what a run killed while writing its checkpoint left (a checkpoint is written whole or not at all)
    for (const file of removeStaleTemps(ckPath)) emit({ type: 'warning', message: `removed ${file}, a checkpoint write that a killed process left unfinished` });
    // and while writing its log (cut when a run resumes) or a figure
    const figures = join(outDir, 'reconstructions');
    const figureFiles = tempTargets(figures).flatMap((f) => (/^(epoch|step)-\d+\.png$/.test(f) ? [join(figures, f)] : []));
    for (const file of [logPath, ...figureFiles].flatMap((f) => removeStaleTemps(f)))
      emit({ type: 'warning', message: `removed ${file}, a write that a killed process left unfinished` });
  }
  // the first collective: every rank must take the same path through the ones that follow
  checkSameSettings(
    comm,
    { ...pick(o, RUN_KEYS), resume: options.resume ?? false, maxSteps: o.maxSteps ?? null, device: o.device.replace(/:\d+$/, ''), precision: o.precision, knn: options.knn ?? null, package: packageVersion() },
    'run options',
  );

  // resume: the run's own options come from the checkpoint (read by rank 0, sent to every rank)
  let position: TrainPosition | null = null;
  let ck: LoadedCheckpoint | null = null;
  let threads = options.threads;
  let knn = options.knn;
  const changes: string[] = [];
  if (options.resume) {
    const where = options.resume === true ? outDir : options.resume;
    ck = shareCheckpoint(comm, writer ? await loadCheckpoint(where) : null);
    if (ck.meta.format !== CHECKPOINT_FORMAT)
      throw new AgreedError(`resume: ${where} is not a checkpoint of pretrain (${ck.meta.format}); only this library's runs can be resumed`);
    const saved = ck.meta.options as Partial<typeof o> & { worldSize?: number; threads?: number; knn?: KnnMonitorOptions | null };
    for (const k of RUN_KEYS)
      if (k !== 'batchSize' && k !== 'accumIter' && k !== 'config' && options[k] !== undefined && JSON.stringify(options[k]) !== JSON.stringify(saved[k]))
        throw new AgreedError(`resume: option ${k} differs from the checkpoint's (${JSON.stringify(saved[k])} there, ${JSON.stringify(options[k])} here)`);
    // a model option agrees when it is the run's value, given to the run or from its preset
    const runConfig: Partial<MaeConfig> = { ...getPreset(saved.preset ?? o.preset), ...saved.config };
    // (a name that is no model option is named as such, as a new run's model names it)
    try {
      expectKnownKeys('pretrain', 'config', options.config ?? {}, Object.keys(runConfig));
    } catch (e) {
      throw new AgreedError((e as Error).message);
    }
    for (const [k, v] of Object.entries(options.config ?? {}) as [keyof MaeConfig, unknown][])
      if (v !== undefined && v !== runConfig[k])
        throw new AgreedError(`resume: option config.${k} differs from the checkpoint's (${JSON.stringify(runConfig[k])} there, ${JSON.stringify(v)} here)`);
    if (options.limit !== undefined && options.limit !== saved.data?.limit)
      throw new AgreedError(`resume: option limit differs from the checkpoint's (${saved.data?.limit ?? 'none: all of its data'} there, ${options.limit} here)`);
    Object.assign(o, pick(saved, RUN_KEYS));
    for (const k of SETTING_KEYS) if (options[k] === undefined && saved[k] !== undefined) o[k] = saved[k];
    for (const k of RESULT_KEYS) {
      if (saved[k] === undefined) continue;
      if (options[k] === undefined) Object.assign(o, { [k]: saved[k] });
      else if (options[k] !== saved[k]) changes.push(`${k} ${options[k]}, not the run's ${saved[k]}`);
    }
    if (knn === undefined && saved.knn) knn = saved.knn;
    try {
      checkDevice(o.device, o.precision, 'pretrain');
    } catch (e) {
      if (options.device !== undefined) throw e;
      throw new AgreedError(`resume: the run's device '${o.device}' comes from its checkpoint and cannot be used here (${(e as Error).message}); give another, e.g. --device cpu, with which the result will not be bit-identical to the uninterrupted run's`);
    }
    // the effective batch defines the run; on another number of processes the per-rank batch follows from it
    const savedWorld = saved.worldSize ?? 1;
    // the run's thread count keeps the result bit-identical (on as many processes: else each takes its default);
    // OMP_NUM_THREADS set counts as given
    threads = resumeThreads(threads, saved.threads, savedWorld === comm.size, changes);
    const savedBatch = saved.batchSize ?? o.batchSize;
    const effective = savedBatch * (saved.accumIter ?? 1) * savedWorld;
    o.accumIter = options.accumIter ?? saved.accumIter ?? 1;
    o.batchSize = options.batchSize ?? effective / (o.accumIter * comm.size);
    if (!Number.isInteger(o.batchSize) || o.batchSize * o.accumIter * comm.size !== effective)
      throw new AgreedError(
        `resume: the checkpoint's run has an effective batch of ${effective} (batch ${savedBatch} x accumIter ${saved.accumIter ?? 1} x ${savedWorld} process(es)); ` +
          `batch ${options.batchSize ?? o.batchSize} x accumIter ${o.accumIter} x ${comm.size} process(es) here ${Number.isInteger(o.batchSize) ? `is ${o.batchSize * o.accumIter * comm.size}` : 'cannot make it'}: pass --batch-size / --accum-iter to keep it`,
      );
    const p = ck.meta.position;
    const samples = p.iter * savedBatch * savedWorld;
    const iter = samples / (o.batchSize * comm.size);
    if (!Number.isInteger(iter)) throw new AgreedError(`resume: the checkpoint stopped ${samples} images into epoch ${p.epoch}, not at a batch of ${o.batchSize} x ${comm.size} process(es)`);
    position = { epoch: p.epoch, iter, step: p.step };
  }
  const device = rankDevice(o.device, comm);
  if (threads !== undefined) native.setNumThreads(threads);
  else if (comm.localSize > 1 && process.env.OMP_NUM_THREADS === undefined) native.setNumThreads(comm.defaultThreads());

  const config = { ...getPreset(o.preset), ...o.config };
  const model = keep(new MaskedAutoencoder(config, { seed: o.seed }).to(device));
  const warn = (message: string) => {
    try {
      emit({ type: 'warning', message });
    } catch {
      // a data thread's warning: the handler's error ends the run at the next step (raiseHandlerError)
    }
  };
  const dataset = await openDataset(o.data, 'train', warn);
  checkChannels('pretrain', 'the data', dataset.channels, config.inChans);
  // (with the settings a resumed run may take from its checkpoint that shape the gradient all-reduces: ranks whose
  // buckets differ would pair all-reduces of different sizes)
  const data = { images: dataset.length, fingerprint: await datasetFingerprint(dataset) };
  checkSameSettings(comm, { data: data.fingerprint, batchSize: o.batchSize, accumIter: o.accumIter, bucketMb: o.bucketMb, device: o.device.replace(/:\d+$/, ''), precision: o.precision }, 'data');
  // a resumed run reads the run's data: another number of images would change every epoch's order and the schedule;
  // changed images (the fingerprint: 16 of them hashed) only make the result differ (checkpoints written before the
  // data was kept resume unchecked)
  const dataProblem = resumeDataProblem(ck?.meta.data, data, o.data.path ?? `the ${o.data.kind} data`, changes);
  if (dataProblem) throw new AgreedError(dataProblem);
  const resumeNote = changes.length ? `${changes.join('; ')}: the result will not be bit-identical to the uninterrupted run's` : undefined;
  // the kNN monitor needs labels, and images the model takes: found out now, not after the first epoch's training
  const knnSet = knn && knn.every > 0 ? (knn.data ? await openDataset({ ...knn.data, limit: 1 }, 'train') : dataset) : null;
  if (knn && knnSet?.numClasses === 0)
    throw new AgreedError(`pretrain: the kNN monitor (knn.every ${knn.every}) needs labelled data (class sub-folders), and ${knn.data ? 'knn.data' : 'the training data'} has none; give knn.data, or leave the monitor off`);
  if (knn?.data && knnSet) checkChannels('pretrain', 'the kNN monitor\'s data (knn.data)', knnSet.channels, config.inChans);
  // the bank and the queries, opened once (data too small to be cut in two is refused now)
  const knnSets = knn && knn.every > 0
    ? await knnData(knn.data ?? o.data, { bank: knn.trainLimit ?? 10000, query: knn.testLimit ?? 2000 }, 'pretrain', `the kNN monitor's data (${knn.data ? 'knn.data' : 'the training data'}) `)
    : null;
  const loader = new DataLoader(dataset, { batchSize: o.batchSize, seed: o.seed, augment: true, dropLast: true, imageSize: config.imgSize, inChans: config.inChans, workers: o.workers, shard: { rank: comm.rank, count: comm.size } });
  const pipeline = resolvePipelineConfig(dataset, { batchSize: o.batchSize, imageSize: config.imgSize, inChans: config.inChans });
  const stepsPerEpoch = loader.stepsPerEpoch;
  if (stepsPerEpoch < o.accumIter)
    throw new Error(`${stepsPerEpoch} batches per epoch are fewer than accumIter ${o.accumIter}: use a smaller batch or accumulation`);
  const stepsPerEpochOpt = Math.floor(stepsPerEpoch / o.accumIter);
  const runSteps = stepsPerEpochOpt * o.epochs;
  const totalSteps = Math.min(o.maxSteps ?? Infinity, runSteps);
  const effectiveBatch = o.batchSize * o.accumIter * comm.size;
  const lr = o.lr ?? scaledLr(o.blr, effectiveBatch);
  const optimizer = keep(new AdamW(model.parameterGroups(o.weightDecay), { lr, betas: [0.9, 0.95] }));
  if (ck && position) {
    model.loadStateDict(ck.weights);
    optimizer.loadStateDict({ step: ck.meta.optimizer?.step ?? 0, lr: ck.meta.optimizer?.lr ?? lr, steps: ck.meta.optimizer?.steps, tensors: ck.optimizer });
  }
  let pos: TrainPosition = position ?? { epoch: 0, iter: 0, step: 0 };
  // gradients averaged over the ranks, overlapping backward (also for a world of one rank under MPI: the same path);
  // in bf16 on NCCL only: CPU ranks (MPI) average float32 gradients whatever the precision
  if (comm.kind === 'mpi' && device !== 'cpu') comm.startNccl(Number(device.slice(5)), options.ncclLibrary);
  else if (options.ncclLibrary !== undefined && comm.rank === 0)
    process.emitWarning(`the NCCL library ${options.ncclLibrary} is not used: only data-parallel runs on CUDA (under MPI) use NCCL, and this one ${comm.kind === 'mpi' ? 'trains on the CPU' : 'runs on its own'}`, { code: 'MAE_NCCL_UNUSED' });
  const bucketBytes = o.bucketMb * 2 ** 20;
  const reducer =
    comm.kind === 'mpi'
      ? new GradReducer(comm, model.parameters(), { bucketBytes, firstBucketBytes: Math.min(2 ** 20, bucketBytes), bf16: o.precision === 'bf16' && device !== 'cpu', label: () => `step ${pos.step + 1}` })
      : null;

  // a new run replaces the folder's old one only now that its data, options and model are good; the old run's
  // checkpoint goes first, so that it is never left beside the new run's log
  if (writer && !options.resume) removeRun(outDir);
  if (position && writer) await cutLog(logPath, position);
  const runOptions = { ...pick(o, RUN_KEYS), worldSize: comm.size, ...pick(o, SETTING_KEYS), ...pick(o, RESULT_KEYS), threads: native.info().threads, knn: knn ?? null };
  // the step of the checkpoint on disk: a second save at the same step would write the same weights again
  let savedStep = -1;
  const save = async (p: TrainPosition) => {
    if (!writer || p.step === savedStep) return;
    const logWindow = { loss: windowLoss, steps: windowSteps, images: windowImages, seconds: (performance.now() - windowStart) / 1000 };
    await saveCheckpoint(ckPath, model, optimizer, { position: p, options: runOptions, data, epochLoss: { sum: epochLoss, steps: epochSteps }, logWindow });
    savedStep = p.step;
    emit({ type: 'checkpoint', step: p.step, path: ckPath });
  };
  // the figure of the model at `p`: at an epoch end epoch-NNN.png (NNN epochs done), else (a stop, maxSteps)
  // step-NNNNNN.png, which never replaces an epoch's figure. One that cannot be written (a full disk, a folder in its
  // place) is a warning: training goes on
  const visualize = async (p: TrainPosition) => {
    if (!writer) return;
    const [what, file] = p.iter === 0 ? [`epoch ${p.epoch}`, `epoch-${String(p.epoch).padStart(3, '0')}`] : [`step ${p.step}`, `step-${String(p.step).padStart(6, '0')}`];
    const path = join(outDir, 'reconstructions', `${file}.png`);
    try {
      await writeReconstructions(model, dataset, pipeline, path, { maskRatio: o.maskRatio, seed: o.seed });
    } catch (e) {
      raiseHandlerError(); // the figure failed in the caller's onEvent (a warning of its data): not a disk problem
      emit({ type: 'warning', message: `the reconstructions of ${what} were not written: ${(e as Error).message}` });
      return;
    }
    emit({ type: 'visualize', epoch: p.epoch, step: p.step, path });
    reconstructions.push(path);
  };

  const knnMonitor = async (epoch: number) => {
    const k = knn!;
    const t = performance.now();
    // disjoint: the train and test splits, or (image folders, shards) every 5th image a query, the others the bank
    const { bank, query } = knnSets!;
    // the kNN monitor computes on the CPU: the weights go there for it and come back (identity kept, so the
    // optimizer's state still belongs to them); every rank computes a share of the features
    if (device !== 'cpu') model.to('cpu');
    let r: Awaited<ReturnType<typeof knnEvaluate>>;
    try {
      r = await knnEvaluate(model, bank, query, { k: k.k, temperature: k.temperature, comm });
    } finally {
      if (device !== 'cpu') model.to(device);
    }
    const seconds = (performance.now() - t) / 1000;
    if (writer) appendFileSync(logPath, JSON.stringify({ knnEpoch: epoch, top1: r.top1, top5: r.top5, seconds: round(seconds, 1) }) + '\n');
    emit({ type: 'knn', epoch, top1: r.top1, top5: r.top5, seconds });
  };

  const flopsPerImage = maeFlops(model.config, o.maskRatio).training;
  emit({ type: 'start', config, parameters: model.numParameters(), datasetSize: dataset.length, stepsPerEpoch: stepsPerEpochOpt, totalSteps, lr, effectiveBatch, resumedFrom: position, ...(resumeNote ? { resumeNote } : {}), dataMode: loader.mode === 'workers' ? `${loader.numWorkers} worker thread(s)` : `in-process (${loader.inProcessReason})`, trainingFlopsPerImage: flopsPerImage, rank: comm.rank, worldSize: comm.size, device, precision: o.precision });

  const started = performance.now();
  const losses: number[] = [];
  const epochLosses: number[] = [];
  const reconstructions: string[] = [];
  const L = model.numPatches;
  let stopped = false;
  // the epoch under way: summed loss and steps (an epoch resumed part-way starts from the checkpoint's)
  let epochLoss = ck?.meta.epochLoss?.sum ?? 0;
  let epochSteps = ck?.meta.epochLoss?.steps ?? 0;
  // the log line under way: summed loss, steps, images and its start (a resumed run goes on with the checkpoint's)
  const lw = ck?.meta.logWindow;
  let windowLoss = lw?.loss ?? 0;
  let windowSteps = lw?.steps ?? 0;
  let windowStart = performance.now() - (lw?.seconds ?? 0) * 1000;
  let windowImages = lw?.images ?? 0;
  const scaleGrad = Tensor.full([1], 1 / o.accumIter, 'float32', device).keep();
  // the losses of the micro-batches of the optimizer step being made (read and freed at the step)
  const microLosses: Tensor[] = [];
  keep({ dispose: () => microLosses.splice(0).forEach((l) => l.dispose()) });
  // whether any rank was asked to stop, until now: during the step or by its events (all stop after this step)
  const stopAgreed = () => comm.allreduce([options.signal?.aborted ? 1 : 0], 'max', `the agreement of the ranks to stop after step ${pos.step}`)[0]! > 0;
  try {
    for (let epoch = pos.epoch; epoch < o.epochs && pos.step < totalSteps && !stopped; epoch++) {
      const epochStart = performance.now();
      const stallBefore = loader.stallMs;
      optimizer.zeroGrad();
      if (pos.iter === 0) [epochLoss, epochSteps] = [0, 0]; // (pos.epoch is this epoch here)
      const startAt = epoch === pos.epoch ? pos.iter : 0;
      for await (const batch of loader.epoch(epoch, { startAt })) {
        const it = batch.step;
        const stepping = (it + 1) % o.accumIter === 0;
        if (it % o.accumIter === 0) optimizer.lr = cosineLr(it / stepsPerEpoch + epoch, { lr, minLr: o.minLr, warmupEpochs: o.warmupEpochs, epochs: o.epochs });
        const noise = maskNoise(o.seed, epoch, batch.start, batch.size, L);
        // the loss stays on the device until the optimizer step is queued: nothing in the step waits for the device;
        // the micro-batch that steps the optimizer averages its gradients over the ranks as backward finishes them
        microLosses.push(
          tidy(() => {
            const imgs = Tensor.fromArray(batch.images, batch.shape, { device });
            const out = model.forward(imgs, { maskRatio: o.maskRatio, noise, precision: o.precision });
            out.loss.backward(scaleGrad, stepping && reducer ? { onGradReady: reducer.onGradReady } : undefined);
            return out.loss;
          }),
        );
        batch.release(); // copied into imgs: its memory goes back to the data worker
        windowImages += batch.size * comm.size;
        if (!stepping) continue;

        const reduced = reducer?.finish();
        optimizer.step();
        optimizer.zeroGrad();
        // the step's loss over every rank (read now, after the step)
        const [lossSum] = comm.allreduce([sumLosses(microLosses)], 'sum', `the all-reduce of the loss of step ${pos.step + 1}`);
        const stepLoss = lossSum! / (o.accumIter * comm.size);
        if (!Number.isFinite(stepLoss)) {
          // every rank has the same sum, so every rank stops here with this error
          const at = `epoch ${epoch}, iteration ${it}, step ${pos.step + 1}`;
          throw new AgreedError(`the loss became ${stepLoss} at ${at}; training stopped. The last good checkpoint is ${ckPath} (lower the lr or check the data)`);
        }
        losses.push(stepLoss);
        epochLoss += stepLoss;
        epochSteps++;
        windowLoss += stepLoss;
        windowSteps++;
        pos = { epoch, iter: it + 1, step: pos.step + 1 };
        const now = performance.now();
        const imgPerSec = (windowImages / (now - windowStart)) * 1000;
        const fracEpoch = epoch + (it + 1) / stepsPerEpoch;
        emit({ type: 'step', step: pos.step, totalSteps, epoch: fracEpoch, lr: optimizer.lr, loss: stepLoss, imgPerSec, etaSeconds: ((totalSteps - pos.step) * effectiveBatch) / imgPerSec, ...(reduced ? { comm: reduced } : {}) });
        raiseHandlerError();
        // the run's lines: every logEvery steps and at its last step; a line at maxSteps between two of them is
        // marked partial and its sums go on, so that a resumed run drops it and writes the run's own line
        const onCadence = pos.step % o.logEvery === 0 || pos.step === runSteps;
        if (onCadence || pos.step === totalSteps) {
          if (writer)
            appendFileSync(logPath, JSON.stringify({ step: pos.step, epoch: round(fracEpoch, 4), lr: optimizer.lr, loss: windowLoss / windowSteps, imgPerSec: round(imgPerSec, 1), gflopPerSec: round((flopsPerImage * imgPerSec) / 1e9, 1), stallMs: round(loader.stallMs, 1), time: new Date().toISOString(), ...(onCadence ? {} : { partial: true }) }) + '\n');
        }
        if (onCadence) {
          windowLoss = 0;
          windowSteps = 0;
          windowImages = 0;
          windowStart = performance.now();
        }
        if (o.checkpointEvery && pos.step % o.checkpointEvery === 0) await save(pos);
        if (pos.step >= totalSteps) break;
        // (the epoch's last step: agreed once its end is done, below, whose events and checkpoint are this step's)
        if (pos.iter < stepsPerEpochOpt * o.accumIter && stopAgreed()) {
          stopped = true;
          break;
        }
        await yieldNow();
      }
      microLosses.splice(0).forEach((l) => l.dispose());
      // an epoch is done when its last full optimizer step is taken (left-over micro-batches are dropped)
      if (pos.epoch === epoch && pos.iter >= stepsPerEpochOpt * o.accumIter) {
        pos = { ...pos, epoch: epoch + 1, iter: 0 };
        if (epochSteps > 0) {
          epochLosses.push(epochLoss / epochSteps);
          emit({ type: 'epoch', epoch, loss: epochLoss / epochSteps, seconds: (performance.now() - epochStart) / 1000, stallMs: loader.stallMs - stallBefore });
        }
        await save(pos);
        if (o.visualizeEvery > 0 && (epoch + 1) % o.visualizeEvery === 0) await visualize(pos);
        if (knn && knn.every > 0 && (epoch + 1) % knn.every === 0) await knnMonitor(epoch + 1);
        if (pos.step < totalSteps && stopAgreed()) stopped = true;
      }
    }
    // a run resumed from outDir's checkpoint that took no step (it had finished, or was stopped at once) rewrites
    // nothing: its checkpoint and figure are that step's already (one resumed from elsewhere writes outDir's)
    if (pos.step !== position?.step || !(writer && ck && sameFile(ck.path, ckPath))) {
      await save(pos);
      if (o.visualizeEvery === 0 || reconstructions.length === 0) await visualize(pos);
    }
    // every rank returns once rank 0's checkpoint is written
    comm.barrier('the barrier at the end of training (rank 0 writes the checkpoint)');
  } finally {
    scaleGrad.dispose();
    await loader.close();
  }
  const seconds = (performance.now() - started) / 1000;
  const last = losses[losses.length - 1] ?? NaN;
  raiseHandlerError();
  emit({ type: 'end', steps: pos.step, loss: last, seconds, stopped });
  const result: PretrainResult = { outDir, checkpoint: ckPath, steps: pos.step, epochLosses, losses, reconstructions, stallMs: loader.stallMs, seconds, stopped, rank: comm.rank, worldSize: comm.size };
  return result;
}

/**
 * The masking noise [B, L] of the batch whose first sample is at `start` of epoch `epoch`'s order: each sample's L
 * uniforms come from its own generator, keyed to (seed, epoch, position), so they do not depend on the batching.
 */
export function maskNoise(seed: number, epoch: number, start: number, B: number, L: number): Float32Array {
  for (const [name, v] of [['seed', seed], ['epoch', epoch], ['start', start]] as const) expectFinite('maskNoise', name, v, (x) => Number.isSafeInteger(x) && x >= 0, 'a non-negative safe integer');
  for (const [name, v] of [['B', B], ['L', L]] as const) expectInteger('maskNoise', name, v, 0);
  const noise = new Float32Array(B * L);
  for (let b = 0; b < B; b++) {
    const gen = maskGenerator(seed, epoch, start + b);
    for (let l = 0; l < L; l++) noise[b * L + l] = gen.uniform();
  }
  return noise;
}

/** This package's version (ranks of one run must all run the same). */
function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

/** The device of this rank: 'cuda' is the GPU of the rank's local rank in a data-parallel run (one GPU per rank). */
function rankDevice(device: string, comm: Communicator): string {
  if (device !== 'cuda' || comm.kind !== 'mpi') return device;
  const n = native.info().cuda.devices?.length ?? 0;
  if (comm.localRank >= n)
    throw new Error(`pretrain: local rank ${comm.localRank} needs cuda:${comm.localRank}, but this machine has ${n} CUDA device(s): start at most ${n} rank(s) per machine`);
  return `cuda:${comm.localRank}`;
}

/** Rank 0's checkpoint on every rank: its metadata as JSON, then each tensor, broadcast from rank 0. */
function shareCheckpoint(comm: Communicator, ck: LoadedCheckpoint | null): LoadedCheckpoint {
  if (comm.size === 1) return ck!;
  const manifest = comm.broadcastJson(
    ck ? { path: ck.path, meta: ck.meta, weights: [...ck.weights].map(([k, t]) => [k, t.shape]), optimizer: [...ck.optimizer].map(([k, t]) => [k, t.shape]) } : undefined,
    0,
    'the broadcast of the checkpoint to resume from',
  ) as { path: string; meta: LoadedCheckpoint['meta']; weights: [string, number[]][]; optimizer: [string, number[]][] };
  const receive = (entries: [string, number[]][], own: Map<string, { shape: number[]; data: Float32Array }> | undefined) => {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, shape] of entries) {
      const mine = own?.get(name)?.data;
      const bytes = comm.broadcast(mine ? new Uint8Array(mine.buffer, mine.byteOffset, mine.byteLength) : null, 0, `the broadcast of checkpoint tensor ${name}`);
      out.set(name, { shape, data: mine ?? new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) });
    }
    return out;
  };
  return { path: manifest.path, meta: manifest.meta, weights: receive(manifest.weights, ck?.weights), optimizer: receive(manifest.optimizer, ck?.optimizer) };
}

/** Whether `a` and `b` are the same existing file (also through a link or another spelling of the path). */
function sameFile(a: string, b: string): boolean {
  try {
    const [x, y] = [statSync(a), statSync(b)];
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

/** The sum of the micro-batches' losses [1], summed on their device and read to the host at once; frees them. */
function sumLosses(losses: Tensor[]): number {
  try {
    return noGrad(() => tidy(() => losses.reduce((a, b) => ops.add(a, b)).item()));
  } finally {
    for (const l of losses) l.dispose();
    losses.length = 0;
  }
}

/** The output folder of a run given no outDir. */
const DEFAULT_OUT_DIR = 'runs/pretrain';

/** The type of each option pretrain takes (the Record makes the compiler list every key of PretrainOptions). */
const PRETRAIN_OPTIONS = {
  preset: 'string', config: 'object', data: 'object', limit: 'number', outDir: 'string', epochs: 'number', batchSize: 'number',
  accumIter: 'number', blr: 'number', lr: 'number', minLr: 'number', warmupEpochs: 'number', weightDecay: 'number',
  maskRatio: 'number', seed: 'number', threads: 'number', device: 'string', precision: 'string', workers: 'number',
  checkpointEvery: 'number', logEvery: 'number', visualizeEvery: 'number', resume: ['boolean', 'string'], overwrite: 'boolean',
  maxSteps: 'number', signal: 'AbortSignal', onEvent: 'function', knn: 'object', distributed: 'string', mpiLibrary: 'string',
  ncclLibrary: 'string', distTimeout: 'number', bucketMb: 'number',
} as const satisfies Record<keyof PretrainOptions, OptionType | readonly OptionType[]>;

function withDefaults(opts: PretrainOptions) {
  // every option is checked here, before anything is read or written (an overwrite removes the old run only after)
  expectOptions('pretrain', opts, PRETRAIN_OPTIONS);
  checkDataSource('pretrain', 'data', opts.data);
  checkDataSource('pretrain', 'knn.data', opts.knn?.data);
  // the ranges; expectOptions has made every number option a number (or left it undefined: the default)
  const need = (k: string, v: number | undefined, ok: boolean, what: string) => {
    if (!ok) throw new Error(`pretrain: ${k} must be ${what}, got ${v}`);
  };
  const epochs = opts.epochs ?? 10;
  const o = {
    preset: opts.preset ?? 'mae_vit_tiny_patch4_28',
    config: opts.config ?? {},
    data: opts.data ?? ({ kind: 'fashion-mnist', ...(opts.limit !== undefined ? { limit: opts.limit } : {}) } as DataSource),
    outDir: opts.outDir ?? DEFAULT_OUT_DIR,
    epochs,
    batchSize: opts.batchSize ?? 64,
    accumIter: opts.accumIter ?? 1,
    blr: opts.blr ?? 1.5e-4,
    lr: opts.lr,
    minLr: opts.minLr ?? 0,
    warmupEpochs: opts.warmupEpochs ?? Math.min(40, Math.ceil(epochs / 20)),
    weightDecay: opts.weightDecay ?? 0.05,
    maskRatio: opts.maskRatio ?? 0.75,
    seed: opts.seed ?? 0,
    workers: opts.workers ?? 1,
    checkpointEvery: opts.checkpointEvery ?? 0,
    logEvery: opts.logEvery ?? 10,
    visualizeEvery: opts.visualizeEvery ?? 1,
    maxSteps: opts.maxSteps,
    device: opts.device ?? 'cpu',
    precision: opts.precision ?? 'fp32',
    bucketMb: opts.bucketMb ?? 25,
  };
  if (opts.limit !== undefined) {
    if (opts.data) throw new Error('pretrain: limit is for the default data or a resumed run: give data.limit with data');
    if (!(Number.isInteger(opts.limit) && opts.limit > 0)) throw new Error(`pretrain: limit must be a positive integer, got ${opts.limit}`);
  }
  // safe integers: the checkpoint's metadata holds no other count (1e300 is an integer to Number.isInteger)
  for (const k of ['epochs', 'batchSize', 'accumIter', 'logEvery'] as const) need(k, o[k], Number.isSafeInteger(o[k]) && o[k] > 0, 'a positive integer');
  for (const k of ['checkpointEvery', 'visualizeEvery'] as const) need(k, o[k], Number.isSafeInteger(o[k]) && o[k] >= 0, 'a non-negative integer');
  need('workers', o.workers, Number.isSafeInteger(o.workers) && o.workers >= 0 && o.workers <= 256, 'an integer in [0, 256] (the DataLoader takes at most 256)');
  need('maxSteps', o.maxSteps, o.maxSteps === undefined || (Number.isSafeInteger(o.maxSteps) && o.maxSteps > 0), 'a positive integer');
  // the optimizer runs in float32
  need('blr', o.blr, o.blr > 0 && isFloat32Finite(o.blr), 'positive and finite in float32 (at most 3.4e38)');
  need('bucketMb', o.bucketMb, o.bucketMb > 0 && Number.isFinite(o.bucketMb), 'positive and finite'); // (a checkpoint holds no Infinity)
  need('lr', o.lr, o.lr === undefined || (o.lr > 0 && isFloat32Finite(o.lr)), 'positive and finite in float32 (at most 3.4e38)');
  need('warmupEpochs', o.warmupEpochs, o.warmupEpochs >= 0 && Number.isFinite(o.warmupEpochs), 'a finite number >= 0');
  for (const k of ['minLr', 'weightDecay'] as const) need(k, o[k], o[k] >= 0 && isFloat32Finite(o[k]), 'a non-negative number, finite in float32 (at most 3.4e38)');
  need('maskRatio', o.maskRatio, o.maskRatio >= 0 && o.maskRatio < 1, 'in [0, 1)');
  need('seed', o.seed, Number.isSafeInteger(o.seed) && o.seed >= 0, 'a non-negative integer');
  if (opts.knn) {
    // checked now, not at the first kNN epoch
    expectKnownKeys('pretrain', 'knn', opts.knn, optionNames<KnnMonitorOptions>({ every: true, data: true, trainLimit: true, testLimit: true, k: true, temperature: true }));
    if (!(Number.isSafeInteger(opts.knn.every) && opts.knn.every >= 0)) throw new Error(`pretrain: knn.every must be a non-negative integer, got ${opts.knn.every}`);
    for (const k of ['trainLimit', 'testLimit'] as const) if (opts.knn[k] !== undefined) expectInteger('pretrain', `knn.${k}`, opts.knn[k], 1);
    checkKnnOptions('pretrain', 'knn.', opts.knn);
  }
  checkThreads('pretrain', opts.threads); // (setNumThreads would name itself)
  expectPresetName('pretrain', 'preset', o.preset); // an unknown name is an error before anything is written
  checkDevice(o.device, o.precision, 'pretrain');
  distributedSettings('pretrain', opts.distributed, 'distTimeout', opts.distTimeout); // (Communicator.open's, named as pretrain's)
  return o;
}

/**
 * The device and precision options (of `where`: pretrain, bench): a clear Error for a bad name or CUDA that cannot
 * be used.
 */
export function checkDevice(device: string, precision: string, where: string): void {
  if (typeof device !== 'string' || !/^(cpu|cuda|cuda:\d+)$/.test(device))
    throw new Error(`${where}: device must be 'cpu', 'cuda' or 'cuda:N', got '${device}'`);
  checkPrecision(precision, where);
  if (device === 'cpu') return;
  const cuda = native.info().cuda;
  if (!cuda.available) throw new Error(`${where}: device '${device}' was asked for, but CUDA is not available: ${cuda.reason ?? 'unknown reason'}`);
  const index = device === 'cuda' ? 0 : Number(device.slice(5));
  const n = cuda.devices?.length ?? 0;
  if (index >= n) throw new Error(`${where}: device '${device}' does not exist; this machine has ${n} CUDA device(s)`);
}

function pick<T extends object, K extends readonly (keyof T)[]>(o: T, keys: K): Pick<T, K[number]> {
  const out = {} as Pick<T, K[number]>;
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * Runs pretrain() in a worker thread, so a host application's event loop stays free. Options must be plain data
 * (no callbacks or signals); events arrive through `onEvent` (an exception it throws ends the run with that error,
 * as in pretrain()); `stop()` ends the run at the next step boundary with a checkpoint: after the step under way in
 * the worker, as an AbortSignal of pretrain() does (called before the run starts: after its first step). An error of the run rejects
 * `result` with its name, message, code and stack (the worker's). Needs the compiled package (dist/), since worker
 * threads run JavaScript.
 */
export function pretrainInWorker(
  options: Omit<PretrainOptions, 'onEvent' | 'signal'>,
  onEvent?: (e: TrainEvent) => void,
): { result: Promise<PretrainResult>; stop: () => void } {
  expectObject('pretrainInWorker', 'options', options, false, "e.g. { data: { kind: 'fashion-mnist' }, epochs: 1 }");
  expectFunction('pretrainInWorker', 'onEvent', onEvent, true);
  const url = new URL('./worker.js', import.meta.url);
  if (!existsSync(fileURLToPath(url)))
    throw new Error(`pretrainInWorker: ${fileURLToPath(url)} is missing; worker threads need the compiled package (npm run build)`);
  // before the options are cloned for the worker: a Dataset object loses its methods there
  checkDataSource('pretrainInWorker', 'data', options.data);
  checkDataSource('pretrainInWorker', 'knn.data', options.knn?.data);
  // stop() sets it; the worker reads it at each event, so a stop made during a step ends the run after that step (a
  // message alone is read only when the worker's event loop next turns, after the following step has started)
  const stop = new Int32Array(new SharedArrayBuffer(4));
  let worker: Worker;
  try {
    // none of the parent's Node flags: some stop a worker (--input-type), others are refused in one
    worker = new Worker(url, { workerData: { options, stop } satisfies PretrainWorkerData, execArgv: [] });
  } catch (e) {
    throw new Error(`pretrainInWorker: the options must be plain data (${(e as Error).message}); give onEvent as the second argument, and stop the run with stop()`);
  }
  const thread = worker.threadId; // -1 once the worker has exited
  const result = new Promise<PretrainResult>((resolve, reject) => {
    let settled = false;
    // an error that ends the run once the worker has stopped: the handler's (the worker is stopped for it, as
    // pretrain() ends the run with it) or one the worker did not catch
    let failure: { error: unknown } | null = null;
    worker.on('message', (m: { event?: TrainEvent; result?: PretrainResult; error?: WorkerError }) => {
      if (settled || failure) return;
      if (m.event) {
        try {
          onEvent?.(m.event);
        } catch (error) {
          failure = { error };
          void worker.terminate();
          return;
        }
      }
      if (m.result) {
        settled = true;
        resolve(m.result);
      }
      if (m.error !== undefined) {
        settled = true;
        reject(workerError(m.error));
      }
    });
    worker.on('error', (error) => {
      failure ??= { error };
    });
    worker.on('exit', (code) => {
      // a worker stopped mid-run (its onEvent threw, it crashed) leaves the lock of its output folder, and maybe the
      // temporary file of a write it was making (a checkpoint, a figure), which removeStaleTemps keeps while this
      // process runs: the folder was the worker's (it held the lock), so this process's temporary files there are its
      const outDir = options.outDir ?? DEFAULT_OUT_DIR;
      if (releaseRunFolder(outDir, thread)) for (const dir of [outDir, join(outDir, 'reconstructions')]) removeOwnTemps(dir);
      if (!settled) reject(failure ? failure.error : new Error(`pretrainInWorker: the worker exited with code ${code} before finishing`));
    });
  });
  return {
    result,
    stop: () => {
      Atomics.store(stop, 0, 1);
      worker.postMessage('stop'); // read while the run awaits something (data, a checkpoint), between events
    },
  };
}

/** What pretrainInWorker gives its worker thread: the options, and the flag stop() sets (shared memory, 1 = stop). */
export interface PretrainWorkerData {
  options: Omit<PretrainOptions, 'onEvent' | 'signal'>;
  stop: Int32Array;
}

/** An error of pretrain() in pretrainInWorker's worker thread, as it posts it. */
export interface WorkerError {
  name: string;
  message: string;
  stack?: string;
  /** a Node.js system error's code ('ENOTDIR', ...) */
  code?: string;
}

/** The worker's error as an Error of the calling thread: its name, message, code and stack (the worker's frames). */
function workerError(e: WorkerError): Error {
  const error: Error & { code?: string } = new Error(e.message);
  error.name = e.name;
  if (e.code !== undefined) error.code = e.code;
  if (e.stack !== undefined) error.stack = e.stack;
  return error;
}
