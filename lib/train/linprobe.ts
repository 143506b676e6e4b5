/**
 * Linear probing (the official main_linprobe.py recipe, on cached features): the encoder is frozen, the features are
 * the cls token of the final-normed encoder output on whole (unmasked) images, computed once with the eval
 * transform (no augmentation) and kept in memory; the head is BatchNorm without affine (eps 1e-6) then a Linear
 * (trunc-normal std 0.01), trained with LARS (momentum 0.9, trust coefficient 0.001, weight decay 0 by default),
 * lr = blr * batch / 256 (blr 0.1), linear warm-up then half-cycle cosine set every iteration, cross-entropy.
 *
 * `rawPixels` runs the same head and optimizer on flattened normalised pixels: logistic regression, the baseline.
 *
 * `blrSweep` chooses the base lr without looking at the test set: the training features are split (seeded) into
 * a held-out part of `valSize` samples and the rest; a head is trained on the rest for every base lr of the sweep
 * and scored on the held-out part; the best one is then trained on all the training features and evaluated on the
 * test set. (With LARS the distance a head travels grows with lr x steps, so the paper's blr 0.1, tuned for batch
 * 16384, can leave a small-batch probe under-fitted.)
 *
 * Under an MPI launcher (or with `distributed: 'mpi'`) the ranks split the feature extraction, the encoder's cost,
 * and gather the features; every rank then trains the same head on them, and rank 0 alone writes the results. The
 * ranks first check that they were started alike (options, the checkpoint's weights, the data), and agree after every
 * epoch and before the results are written: a rank that fails or is stopped ends or stops them all, and then rank 0
 * writes no results.
 */
import { expectArrayOf, expectInteger, expectOptions, isFloat32Finite, type OptionType } from '../check.js';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as yieldNow } from 'node:timers/promises';
import { noGrad } from '../autograd.js';
import { Communicator, distributedSettings, type DistributedMode } from '../distributed/comm.js';
import { AgreedError, checkSameSettings, datasetFingerprint, modelFingerprint } from '../distributed/check.js';
import { CLASSIFIER_FILE, checkRunFolder, classifierFromPretrain, lockRunFolder, removeRun, removeStaleWrites, saveClassifier } from '../classify/checkpoint.js';
import { ProbeHead } from '../classify/model.js';
import { writeFileAtomic } from '../io/atomic.js';
import { writeSafetensors, type RawTensor } from '../io/safetensors.js';
import { MaskedAutoencoder, checkPrecision, type Precision } from '../mae/model.js';
import { checkThreads } from '../info.js';
import { native } from '../native.js';
import { cosineLr, scaledLr } from '../optim/schedule.js';
import { LARS } from '../optim/lars.js';
import * as ops from '../ops/index.js';
import { Generator } from '../random.js';
import { Tensor, owning, tidy, type Keep } from '../tensor.js';
import { loadModel } from './checkpoint.js';
import { checkChannels, checkDataSource, followUpData, hasTestSplit, openDataset, type DataSource } from './data.js';
import { MetricAccumulator, checkClassCount, writeConfusionPng, type ClassificationMetrics } from './evaluate.js';
import { FEATURE_POOLS, checkFeatureCache, checkLoaderOptions, extractFeatures, pixelDim, pixelFeatures, type FeaturePool, type Features } from './knn.js';

export interface LinprobeOptions {
  /** a pre-training checkpoint (file or run folder); required unless rawPixels */
  checkpoint?: string;
  /** logistic regression on flattened normalised pixels instead of encoder features */
  rawPixels?: boolean;
  /** the features: 'cls' (default, the official probe), or, as variants, 'avg' (mean of the normed patch tokens)
   * or 'cls+avg' (both concatenated); only 'cls' writes a classifier file */
  pool?: FeaturePool;
  /** training data (default: the checkpoint's data without its limit, else Fashion-MNIST) */
  data?: DataSource;
  /** at most this many training images of the default data (not with `data`, which carries its own limit) */
  limit?: number;
  /**
   * evaluation data (default: the test split of `data`); required for data with no test split of its own (image
   * folders, shards), whose test score would otherwise be measured on the training images
   */
  testData?: DataSource;
  /**
   * output folder: classifier.safetensors (or head.safetensors), results.json, log.jsonl, confusion.png; locked (.lock,
   * as pretrain's outDir; by rank 0, which writes) from when the probe starts writing there until it ends: another run
   * into it is refused
   */
  outDir?: string;
  /**
   * start afresh in an outDir that holds a run already (any of checkpoint.safetensors, classifier.safetensors,
   * results.json, log.jsonl, head.safetensors): once the new probe's data, checkpoint and options are checked and its
   * features computed, the old run's files are removed; without it such an outDir is an error
   */
  overwrite?: boolean;
  epochs?: number;
  batchSize?: number;
  blr?: number;
  /** base lrs to choose from on a held-out part of the training features (overrides blr and lr) */
  blrSweep?: number[];
  /** the size of that held-out part (default: a sixth of the training samples) */
  valSize?: number;
  lr?: number;
  minLr?: number;
  warmupEpochs?: number;
  weightDecay?: number;
  seed?: number;
  threads?: number;
  workers?: number;
  /** evaluate on the test features every N epochs (default 0: only at the end) */
  evalEvery?: number;
  /** precision of the frozen encoder's feature pass: 'fp32' (default) or 'bf16'; the head trains in fp32 */
  precision?: Precision;
  /**
   * stops the probe after the current batch of the feature pass, the current sweep entry or the current epoch of the
   * head: it then returns with stopped: true and writes no head, classifier, confusion matrix or results.json (the
   * log holds the epochs done); in an MPI job a stop on any rank stops every rank at the same point, the feature
   * pass (shared by the ranks) run to its end
   */
  signal?: AbortSignal;
  onEvent?: (e: LinprobeEvent) => void;
  /** split the feature extraction over the ranks of an MPI job: 'auto' (default: under an MPI launcher), 'mpi', 'none' */
  distributed?: DistributedMode;
  /** Open MPI's libmpi.so.40 or its folder */
  mpiLibrary?: string;
  /** seconds a collective may take before the run fails (default 600) */
  distTimeout?: number;
}

export type LinprobeEvent =
  | { type: 'features'; split: 'train' | 'test'; n: number; dim: number; seconds: number }
  | { type: 'sweep'; blr: number; lr: number; valTop1: number; seconds: number }
  | { type: 'start'; steps: number; lr: number; dim: number }
  | { type: 'epoch'; epoch: number; loss: number; lr: number; top1?: number; seconds: number }
  /** stopped (`signal`) after `epochs` epochs of the final head (0: before it); nothing but the log was written */
  | { type: 'stopped'; epochs: number; seconds: number }
  /** a lock of a run that died taken over, or an unfinished write of a killed run removed from the output folder */
  | { type: 'warning'; message: string }
  | { type: 'end'; top1: number; top5: number; seconds: number };

export interface LinprobeResult {
  /** the probe was stopped (`signal`): it was not evaluated (top1 and top5 NaN, metrics null) */
  stopped: boolean;
  /** the lr the final head was trained with (chosen by the sweep when there is one) */
  lr: number;
  /** the sweep: held-out top-1 of every base lr tried */
  sweep: { blr: number; lr: number; valTop1: number }[];
  top1: number;
  top5: number;
  metrics: ClassificationMetrics | null;
  epochLosses: number[];
  featureSeconds: number;
  trainSeconds: number;
  seconds: number;
  outDir: string;
}

/** The type of each option linprobe takes (the Record makes the compiler list every key of LinprobeOptions). */
const LINPROBE_OPTIONS = {
  checkpoint: 'string', rawPixels: 'boolean', pool: 'string', data: 'object', limit: 'number', testData: 'object',
  outDir: 'string', overwrite: 'boolean', epochs: 'number', batchSize: 'number', blr: 'number', blrSweep: 'number[]',
  valSize: 'number', lr: 'number', minLr: 'number', warmupEpochs: 'number', weightDecay: 'number', seed: 'number',
  threads: 'number', workers: 'number', evalEvery: 'number', precision: 'string', signal: 'AbortSignal', onEvent: 'function',
  distributed: 'string', mpiLibrary: 'string', distTimeout: 'number',
} as const satisfies Record<keyof LinprobeOptions, OptionType | readonly OptionType[]>;

export async function linprobe(options: LinprobeOptions): Promise<LinprobeResult> {
  expectOptions('linprobe', options, LINPROBE_OPTIONS);
  checkDataSource('linprobe', 'data', options.data);
  checkDataSource('linprobe', 'testData', options.testData);
  if (options.pool !== undefined && !FEATURE_POOLS.includes(options.pool))
    throw new Error(`linprobe: pool must be one of ${FEATURE_POOLS.join(', ')}, got '${options.pool}'`);
  distributedSettings('linprobe', options.distributed, 'distTimeout', options.distTimeout); // (Communicator.open's, named as linprobe's)
  const comm = Communicator.open({ distributed: options.distributed, mpiLibrary: options.mpiLibrary, timeoutSeconds: options.distTimeout });
  try {
    // the models and the head the probe makes are freed however it ends
    return await owning((keep) => probe(options, comm, keep));
  } catch (e) {
    // the other ranks must not wait for this one (unless every rank raised this error)
    if (!(e instanceof AgreedError)) comm.fail(e);
    throw e;
  }
}

async function probe(options: LinprobeOptions, comm: Communicator, keep: Keep): Promise<LinprobeResult> {
  const started = performance.now();
  const writer = comm.rank === 0;
  const emit = options.onEvent ?? (() => {});
  const epochs = options.epochs ?? 90;
  const batchSize = options.batchSize ?? 256;
  const warmupEpochs = options.warmupEpochs ?? Math.min(10, epochs / 9);
  const seed = options.seed ?? 0;
  const minLr = options.minLr ?? 0;
  const weightDecay = options.weightDecay ?? 0;
  const every = options.evalEvery ?? 0;
  for (const [k, v] of [['epochs', epochs], ['batchSize', batchSize]] as const)
    if (!(Number.isSafeInteger(v) && v > 0)) throw new Error(`linprobe: ${k} must be a positive integer, got ${v}`);
  if (!(Number.isSafeInteger(every) && every >= 0)) throw new Error(`linprobe: evalEvery must be a non-negative integer, got ${every}`);
  if (!(Number.isSafeInteger(seed) && seed >= 0)) throw new Error(`linprobe: seed must be a non-negative integer, got ${seed}`);
  if (!(Number.isFinite(warmupEpochs) && warmupEpochs >= 0)) throw new Error(`linprobe: warmupEpochs must be a finite number >= 0, got ${warmupEpochs}`);
  // the optimizer runs in float32
  for (const [k, v] of [['minLr', minLr], ['weightDecay', weightDecay]] as const)
    if (!(isFloat32Finite(v) && v >= 0)) throw new Error(`linprobe: ${k} must be a finite number >= 0 (in float32: at most 3.4e38), got ${v}`);
  for (const [k, v] of [['blr', options.blr], ['lr', options.lr]] as const)
    if (v !== undefined && !(isFloat32Finite(v) && v > 0)) throw new Error(`linprobe: ${k} must be a positive finite number (in float32: at most 3.4e38), got ${v}`);
  if (options.blrSweep !== undefined) expectArrayOf('linprobe', 'blrSweep', options.blrSweep, (b) => isFloat32Finite(b as number) && (b as number) > 0, 'a positive base lr, finite in float32 (at most 3.4e38)');
  // checked here, in linprobe's name, not by what they reach after the checkpoint is loaded (pixelFeatures, extractFeatures, setNumThreads)
  for (const k of ['limit', 'valSize'] as const) if (options[k] !== undefined) expectInteger('linprobe', k, options[k], 1);
  if (options.limit !== undefined && options.data !== undefined) throw new Error('linprobe: limit is for the default data (the checkpoint\'s, else Fashion-MNIST): give data.limit with data');
  checkLoaderOptions('linprobe', { workers: options.workers });
  checkThreads('linprobe', options.threads);
  const precision = checkPrecision(options.precision, 'linprobe');
  const outDir = options.outDir ?? (options.rawPixels ? 'runs/linprobe-pixels' : 'runs/linprobe');
  if (writer) checkRunFolder('linprobe', outDir, options.overwrite, options.checkpoint);
  if (options.threads !== undefined) native.setNumThreads(options.threads);
  else if (comm.localSize > 1 && process.env.OMP_NUM_THREADS === undefined) native.setNumThreads(comm.defaultThreads());
  if (!options.rawPixels && !options.checkpoint) throw new Error('linprobe: pass a pre-training checkpoint (or rawPixels for the pixel baseline)');
  if (options.valSize !== undefined && !options.blrSweep?.length) throw new Error('linprobe: valSize (--val-size) only applies with a base-lr sweep (blrSweep, --blr-sweep)');
  // options that would not be used: refused, not ignored
  if (options.blrSweep?.length && (options.blr !== undefined || options.lr !== undefined))
    throw new Error('linprobe: blr and lr (--blr, --lr) do not apply with a base-lr sweep (blrSweep, --blr-sweep), which chooses the base lr');
  if (options.rawPixels && options.pool !== undefined) throw new Error('linprobe: pool (--pool) only applies to encoder features, not with rawPixels (--raw-pixels)');
  if (options.rawPixels && options.precision !== undefined)
    throw new Error("linprobe: precision (--precision) only applies to the encoder's feature pass, not with rawPixels (--raw-pixels)");
  const pool = options.rawPixels ? 'pixels' : (options.pool ?? 'cls');

  let mae: MaskedAutoencoder | null = null;
  let pretrainOptions: Record<string, unknown> = {};
  let weights: string | null = null;
  if (options.checkpoint) {
    const ck = await loadModel(options.checkpoint);
    keep(ck.model);
    pretrainOptions = ck.meta.options;
    if (comm.size > 1) weights = modelFingerprint(ck.model);
    if (!options.rawPixels) mae = ck.model.eval();
    else ck.model.dispose();
  }
  const data = followUpData(options.data, pretrainOptions.data, options.limit);
  if (!options.testData && !hasTestSplit(data))
    throw new Error(`linprobe: the data (${data.kind} ${data.path}) has no test split: its test score would be measured on its training images; give test data (testData, --test-data PATH)`);
  const testData = options.testData ?? { ...data, limit: undefined };
  // the first collectives: every rank must probe the same encoder on the same data with the same recipe
  checkSameSettings(
    comm,
    { checkpointWeights: weights, pool, data, testData, epochs, batchSize, blr: options.blr ?? null, lr: options.lr ?? null, blrSweep: options.blrSweep ?? null, valSize: options.valSize ?? null, minLr, warmupEpochs, weightDecay, seed, evalEvery: every, precision },
    'run options',
  );
  const trainSet = await openDataset(data, 'train');
  const testSet = await openDataset(testData, 'test');
  if (comm.size > 1) checkSameSettings(comm, { train: await datasetFingerprint(trainSet), test: await datasetFingerprint(testSet) }, 'data');
  const numClasses = trainSet.numClasses || 10;
  // the test data is scored after the features and the head: refused now if the encoder or the head cannot take it
  if (mae) {
    checkChannels('linprobe', 'the data', trainSet.channels, mae.config.inChans);
    checkChannels('linprobe', 'the test data', testSet.channels, mae.config.inChans);
  }
  checkClassCount('linprobe', 'the test data', testSet.numClasses, numClasses);
  // what the head trains on, and the feature cache, refused now rather than after the features (every rank holds them all)
  const trainN = trainSet.length;
  if (trainN < batchSize) throw new Error(`linprobe: the ${trainN} training samples are fewer than a batch of ${batchSize} (batchSize, --batch-size)`);
  const valSize = options.blrSweep?.length ? (options.valSize ?? Math.floor(trainN / 6)) : 0;
  if (options.blrSweep?.length && !(valSize >= 1 && trainN - valSize >= batchSize))
    throw new Error(`linprobe: the held-out part (valSize, --val-size) of ${valSize} of the ${trainN} training samples leaves ${Math.max(trainN - valSize, 0)} to train on, fewer than a batch of ${batchSize}`);
  if (!mae)
    for (const [name, ds, src] of [['the data', trainSet, data], ['the test data', testSet, testData]] as const)
      if (ds.height === 0)
        throw new Error(`linprobe: rawPixels (--raw-pixels) flattens images of one size, and ${name} (${src.path}) holds images whose size is known only once decoded (an image folder); probe encoder features instead`);
  const featureDim = mae ? (pool === 'cls+avg' ? 2 : 1) * mae.config.embedDim : pixelDim(trainSet, {});
  if (featureDim > 0) checkFeatureCache('linprobe', trainN + testSet.length, featureDim, 'train and test images');
  // whether to stop (`signal`, on any rank): every rank asks at the same points, so that all stop together; a rank
  // that failed makes the others' question throw, naming it, before rank 0 writes anything more
  const stopAsked = (where: string): boolean => comm.allreduce([options.signal?.aborted ? 1 : 0], 'max', `the agreement of the ranks ${where}`)[0]! > 0;
  const stop = (epochsDone: number): LinprobeResult => {
    const seconds = (performance.now() - started) / 1000;
    emit({ type: 'stopped', epochs: epochsDone, seconds });
    return { stopped: true, lr: NaN, sweep: [], top1: NaN, top5: NaN, metrics: null, epochLosses: [], featureSeconds: NaN, trainSeconds: NaN, seconds, outDir };
  };

  // a single process stops within the feature pass (after its current batch); ranks stop together after it
  const signal = comm.size === 1 ? options.signal : undefined;
  const feats = async (split: 'train' | 'test'): Promise<Features> => {
    const t = performance.now();
    const ds = split === 'train' ? trainSet : testSet;
    const f = mae
      ? await extractFeatures(mae, ds, { pool: options.pool ?? 'cls', batchSize: 256, workers: options.workers ?? 1, precision: options.precision, comm, signal })
      : await pixelFeatures(ds, { workers: options.workers ?? 1, signal });
    emit({ type: 'features', split, n: f.n, dim: f.dim, seconds: (performance.now() - t) / 1000 });
    return f;
  };
  let train: Features;
  let test: Features;
  try {
    train = await feats('train');
    test = await feats('test');
  } catch (e) {
    if (signal?.aborted && e === signal.reason) return stop(0);
    throw e;
  } finally {
    mae?.dispose(); // the features are all the probe needs of the encoder
  }
  const featureSeconds = (performance.now() - started) / 1000;
  if (stopAsked('after the features')) return stop(0);
  // the folder is made and locked (until the probe ends), and an old run in it removed, only now that the data,
  // checkpoint and options are good; checked again under the lock: a run that ended since the first check left files
  if (writer) {
    keep(lockRunFolder('linprobe', outDir, (message) => emit({ type: 'warning', message })));
    checkRunFolder('linprobe', outDir, options.overwrite, options.checkpoint);
    if (options.overwrite) removeRun(outDir);
    for (const file of removeStaleWrites(outDir)) emit({ type: 'warning', message: `removed ${file}, a write that a killed process left unfinished` });
  }

  const D = train.dim;
  const sweep: { blr: number; lr: number; valTop1: number }[] = [];
  let lr = options.lr ?? scaledLr(options.blr ?? 0.1, batchSize);
  const fitOptions = { epochs, batchSize, warmupEpochs, minLr, weightDecay, numClasses };
  if (options.blrSweep && options.blrSweep.length > 0) {
    const [rest, held] = splitFeatures(train, valSize, new Generator(seed + 1));
    for (const blr of options.blrSweep) {
      const t0 = performance.now();
      const sweepLr = scaledLr(blr, batchSize);
      let valTop1 = 0; // a base lr whose loss diverges scores 0
      try {
        const fit = await fitHead(rest, sweepLr, fitOptions, new Generator(seed));
        valTop1 = evaluateHead(fit.head, held, numClasses).top1;
        fit.head.dispose();
      } catch (e) {
        if (!(e instanceof DivergedError)) throw e;
      }
      sweep.push({ blr, lr: sweepLr, valTop1 });
      emit({ type: 'sweep', blr, lr: sweepLr, valTop1, seconds: (performance.now() - t0) / 1000 });
      if (stopAsked(`after base lr ${blr} of the sweep`)) return stop(0);
    }
    lr = sweep.reduce((best, r) => (r.valTop1 > best.valTop1 ? r : best)).lr;
  }
  emit({ type: 'start', steps: Math.floor(train.n / batchSize) * epochs, lr, dim: D });
  const logPath = join(outDir, 'log.jsonl');
  if (writer) writeFileSync(logPath, '');

  const trainStart = performance.now();
  let epochsDone = 0;
  const { head, epochLosses } = await fitHead(train, lr, fitOptions, new Generator(seed), (epoch, loss, epochLr, seconds, current) => {
    const top1 = every > 0 && epoch % every === 0 && epoch < epochs ? evaluateHead(current, test, numClasses).top1 : undefined;
    if (writer) appendFileSync(logPath, JSON.stringify({ epoch, loss, lr: epochLr, ...(top1 !== undefined ? { top1 } : {}), seconds }) + '\n');
    emit({ type: 'epoch', epoch, loss, lr: epochLr, ...(top1 !== undefined ? { top1 } : {}), seconds });
    epochsDone = epoch;
    // a rank that failed in this epoch ends this one here, before the next epoch's line is written
    return stopAsked(`after epoch ${epoch} of the head`);
  });
  keep(head);
  if (epochsDone < epochs) return stop(epochsDone);
  const trainSeconds = (performance.now() - trainStart) / 1000;
  const metrics = evaluateHead(head, test, numClasses);
  // the last agreement: no rank failed, so rank 0 may write the results
  stopAsked('before the results are written');
  if (writer) await writeConfusionPng(join(outDir, 'confusion.png'), metrics.confusion, numClasses);

  // the probe: the whole classifier (encoder + head.0 BatchNorm + head.1) or, for pixels, the head alone
  const recipe = { checkpoint: options.checkpoint ?? null, data, testData: options.testData ?? null, pool, epochs, batchSize, lr, warmupEpochs, minLr, weightDecay, seed, precision };
  if (writer && options.checkpoint && !options.rawPixels && pool === 'cls') {
    const { model } = await classifierFromPretrain(options.checkpoint, { globalPool: false, headBatchNorm: true, headInitStd: 0.01, numClasses });
    keep(model);
    const own = model.stateDict();
    for (const [n, p] of head.namedParameters()) own.get(`head.${n}`)!.write(p.dataSync());
    await saveClassifier(join(outDir, CLASSIFIER_FILE), model, { job: 'linprobe', recipe, top1: metrics.top1, top5: metrics.top5 });
  } else if (writer) {
    const tensors = new Map<string, RawTensor>();
    for (const [n, p] of head.namedParameters()) tensors.set(`head.${n}`, { shape: [...p.shape], data: p.dataSync() });
    await writeSafetensors(join(outDir, 'head.safetensors'), tensors, { 'mae-linprobe': JSON.stringify({ rawPixels: options.rawPixels ?? false, pool, dim: D, numClasses, recipe }) });
  }
  const seconds = (performance.now() - started) / 1000;
  const summary = {
    job: options.rawPixels ? 'linprobe-raw-pixels' : 'linprobe',
    checkpoint: options.checkpoint ?? null,
    pretrainData: pretrainOptions.data ?? null,
    data,
    testData: options.testData ?? null,
    trainSamples: train.n,
    testSamples: test.n,
    featureDim: D,
    pool,
    epochs,
    batchSize,
    lr,
    blr: lr / (batchSize / 256),
    sweep,
    valSize,
    warmupEpochs,
    weightDecay,
    seed,
    precision,
    top1: metrics.top1,
    top5: metrics.top5,
    finalTrainLoss: epochLosses[epochLosses.length - 1],
    featureSeconds,
    trainSeconds,
    seconds,
    confusion: Array.from(metrics.confusion),
  };
  if (writer) await writeFileAtomic(join(outDir, 'results.json'), JSON.stringify(summary, null, 2) + '\n');
  emit({ type: 'end', top1: metrics.top1, top5: metrics.top5, seconds });
  return { stopped: false, lr, sweep, top1: metrics.top1, top5: metrics.top5, metrics, epochLosses, featureSeconds, trainSeconds, seconds, outDir };
}

/** The head's loss became NaN or infinite (the lr is too large). */
class DivergedError extends Error {}

interface FitOptions {
  epochs: number;
  batchSize: number;
  warmupEpochs: number;
  minLr: number;
  weightDecay: number;
  numClasses: number;
}

/** Trains a fresh probe head on the features with LARS and the warm-up + cosine schedule; `onEpoch` after each epoch. */
async function fitHead(
  train: Features,
  lr: number,
  o: FitOptions,
  gen: Generator,
  onEpoch?: (epoch: number, loss: number, lr: number, seconds: number, head: ProbeHead) => boolean,
): Promise<{ head: ProbeHead; epochLosses: number[] }> {
  const D = train.dim;
  const head = new ProbeHead(D, o.numClasses, 0.01, gen);
  const opt = new LARS(head.parameters(), { lr, weightDecay: o.weightDecay });
  try {
    const stepsPerEpoch = Math.floor(train.n / o.batchSize);
    if (stepsPerEpoch < 1) throw new Error(`linprobe: ${train.n} training samples are fewer than a batch of ${o.batchSize}`);
    const epochLosses: number[] = [];
    const xb = new Float32Array(o.batchSize * D);
    const yb = new Int32Array(o.batchSize);
    for (let epoch = 0; epoch < o.epochs; epoch++) {
      const t0 = performance.now();
      const perm = gen.permutation(train.n);
      let sum = 0;
      for (let it = 0; it < stepsPerEpoch; it++) {
        opt.lr = cosineLr(epoch + it / stepsPerEpoch, { lr, minLr: o.minLr, warmupEpochs: o.warmupEpochs, epochs: o.epochs });
        for (let b = 0; b < o.batchSize; b++) {
          const i = perm[it * o.batchSize + b]!;
          xb.set(train.features.subarray(i * D, (i + 1) * D), b * D);
          yb[b] = train.labels[i]!;
        }
        const loss = tidy(() => {
          const l = ops.crossEntropy(head.forward(Tensor.fromArray(xb, [o.batchSize, D])), Tensor.fromArray(yb, [o.batchSize]));
          l.backward();
          return l.item();
        });
        if (!Number.isFinite(loss)) throw new DivergedError(`linprobe: the loss became ${loss} at epoch ${epoch}, step ${it} with lr ${lr.toExponential(2)}; lower the lr`);
        opt.step();
        opt.zeroGrad();
        sum += loss;
      }
      epochLosses.push(sum / stepsPerEpoch);
      await yieldNow(); // a signal arrives
      if (onEpoch?.(epoch + 1, sum / stepsPerEpoch, opt.lr, (performance.now() - t0) / 1000, head)) break;
    }
    return { head, epochLosses };
  } catch (e) {
    head.dispose();
    throw e;
  }
}

/** Top-1 / top-5 and the confusion matrix of the head on the features (eval mode, in blocks of 1024). */
function evaluateHead(head: ProbeHead, f: Features, numClasses: number): ClassificationMetrics {
  const D = f.dim;
  head.eval();
  const acc = new MetricAccumulator(numClasses);
  for (let s = 0; s < f.n; s += 1024) {
    const m = Math.min(1024, f.n - s);
    const logits = noGrad(() => tidy(() => head.forward(Tensor.fromArray(f.features.subarray(s * D, (s + m) * D), [m, D])).dataSync()));
    acc.add(logits, f.labels.subarray(s, s + m));
  }
  head.train();
  return acc.result();
}

/** A seeded split of the samples: [the rest, `size` held-out samples]. */
function splitFeatures(f: Features, size: number, gen: Generator): [Features, Features] {
  const perm = gen.permutation(f.n);
  const take = (idx: ArrayLike<number>): Features => {
    const features = new Float32Array(idx.length * f.dim);
    const labels = new Int32Array(idx.length);
    for (let k = 0; k < idx.length; k++) {
      features.set(f.features.subarray(idx[k]! * f.dim, (idx[k]! + 1) * f.dim), k * f.dim);
      labels[k] = f.labels[idx[k]!]!;
    }
    return { features, labels, n: idx.length, dim: f.dim };
  };
  return [take(perm.subarray(size)), take(perm.subarray(0, size))];
}
