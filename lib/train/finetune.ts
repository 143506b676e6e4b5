/**
 * End-to-end fine-tuning (the official main_finetune.py / engine_finetune.py recipe) of the ViT classifier on the
 * MAE encoder, or of the same classifier from random initialisation (`fromScratch`, the baseline: same recipe):
 *   global average pooling of the patch tokens + fc_norm + head (trunc-normal std 2e-5), drop path;
 *   AdamW (0.9, 0.999), weight decay 0.05 except 1-D parameters, pos_embed and cls_token; layer-wise lr decay
 *   (util/lr_decay.py); lr = blr * batch * accumIter / 256 with linear warm-up then cosine to minLr, set every
 *   iteration from the fractional epoch; RandomResizedCrop + flip, random erasing (p 0.25, pixel mode, on
 *   normalised images), mixup 0.8 / cutmix 1.0 (switch prob 0.5) with label smoothing 0.1 in the soft targets
 *   (plain label-smoothed cross-entropy when mixup and cutmix are off). No masking.
 * Not implemented, unlike main_finetune.py: RandAugment (its --aa rand-m9-mstd0.5-inc1, on by default in the official
 * training transform: here the crop and flip go straight to normalisation and random erasing), gradient clipping
 * (--clip_grad, off by default there), mixup modes other than 'batch' and cutmix_minmax, and data-parallel training.
 *
 * A training checkpoint (checkpoint.safetensors in outDir: weights, AdamW state, position, the generators of the
 * batch augmentations and of drop path, the sums of the epoch and log line under way, the history, the run's options)
 * is written atomically at each epoch end, every `checkpointEvery` steps and when the run is stopped; `resume`
 * continues the run from it exactly (the data's order and crops are keyed to (seed, epoch, position)). It is removed
 * once the run has written its classifier and results.json.
 */
import { expectInteger, expectKnownKeys, expectOptions, isFloat32Finite, type OptionType } from '../check.js';
import { appendFileSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as yieldNow } from 'node:timers/promises';
import { CLASSIFIER_FILE, checkRunFolder, classifierFromPretrain, lockRunFolder, removeRun, removeStaleWrites, saveClassifier } from '../classify/checkpoint.js';
import { VisionTransformerClassifier, classifierConfigFrom } from '../classify/model.js';
import { DataLoader } from '../data/index.js';
import { range } from '../data/loader.js';
import { datasetFingerprint } from '../distributed/check.js';
import { checkThreads } from '../info.js';
import { writeFileAtomic } from '../io/atomic.js';
import { checkPrecision, type Precision } from '../mae/precision.js';
import { expectPresetName, getPreset, type MaeConfig } from '../mae/presets.js';
import { native } from '../native.js';
import { AdamW } from '../optim/adamw.js';
import { paramGroupsLrd } from '../optim/lr_decay.js';
import { cosineLr, scaledLr } from '../optim/schedule.js';
import * as ops from '../ops/index.js';
import { Generator } from '../random.js';
import { Tensor, owning, tidy, type Keep } from '../tensor.js';
import { CHECKPOINT_FILE, cutLog, loadCheckpoint, loadFinetuneCheckpoint, resumeDataProblem, resumeThreads, saveFinetuneCheckpoint, type FinetuneCheckpointMeta, type LoadedCheckpoint, type TrainPosition } from './checkpoint.js';
import { checkChannels, checkDataSource, followUpData, hasTestSplit, openDataset, type DataSource } from './data.js';
import { checkClassCount, evaluateClassifier, writeConfusionPng, type ClassificationMetrics } from './evaluate.js';
import { checkLoaderOptions } from './knn.js';
import { Mixup, randomErasing } from './mixup.js';

export interface FinetuneOptions {
  /** a pre-training checkpoint (file or run folder): its encoder weights, or only its architecture with fromScratch */
  checkpoint?: string;
  /** random initialisation instead of the checkpoint's weights (the from-scratch baseline) */
  fromScratch?: boolean;
  /** without a checkpoint: a preset (default mae_vit_tiny_patch4_28) and overrides */
  preset?: string;
  config?: Partial<MaeConfig>;
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
   * output folder: classifier.safetensors, results.json, log.jsonl, confusion.png, and while the run is unfinished its
   * training checkpoint, checkpoint.safetensors (default runs/finetune); locked (.lock, as pretrain's outDir) from when
   * the run starts writing there until it ends: another run into it is refused
   */
  outDir?: string;
  /**
   * continue the run in outDir from its training checkpoint: the run's options come from the checkpoint, and those
   * given must agree with them, but for the settings threads, workers, evalEvery, logEvery and checkpointEvery, which
   * are the run's unless given (OMP_NUM_THREADS set counts as a thread count given); log.jsonl is cut back to the
   * checkpoint's step. In fp32 with the run's thread count the result is bit-identical to the uninterrupted run's
   */
  resume?: boolean;
  /** optimizer steps between training checkpoints, besides the one at each epoch end (default 0: only at epoch ends) */
  checkpointEvery?: number;
  /**
   * start afresh in an outDir that holds a run already (any of checkpoint.safetensors, classifier.safetensors,
   * results.json, log.jsonl, head.safetensors): once the new run's data, checkpoint and options are checked, the old
   * run's files are removed; without it such an outDir is an error, so that no run is lost by mistake
   */
  overwrite?: boolean;
  epochs?: number;
  batchSize?: number;
  accumIter?: number;
  blr?: number;
  lr?: number;
  minLr?: number;
  warmupEpochs?: number;
  weightDecay?: number;
  layerDecay?: number;
  dropPath?: number;
  smoothing?: number;
  mixup?: number;
  cutmix?: number;
  mixupProb?: number;
  mixupSwitchProb?: number;
  /** random erasing probability (0.25) */
  reprob?: number;
  /** RandomResizedCrop area range (default [0.08, 1], timm's) */
  cropScale?: [number, number];
  /** horizontal flip probability (default 0.5) */
  flipProb?: number;
  seed?: number;
  threads?: number;
  workers?: number;
  /** evaluate on the test split every N epochs (default 0: only at the end) */
  evalEvery?: number;
  /** optimizer steps per log line (default 20) */
  logEvery?: number;
  /** training precision: 'fp32' (default) or 'bf16' (bf16 activations, fp32 master weights, optimizer and loss;
   * on the CPU through oneDNN); evaluation runs in fp32 */
  precision?: Precision;
  /**
   * stops the training after the optimizer step under way (at an epoch's last step, once the epoch's end is done):
   * the run writes its training checkpoint and returns with stopped: true, its log.jsonl holding the steps taken, and
   * writes no classifier, confusion matrix or results.json; `resume` continues it
   */
  signal?: AbortSignal;
  onEvent?: (e: FinetuneEvent) => void;
}

export type FinetuneEvent =
  /**
   * resumedFrom: the checkpoint's position (a resumed run: loaded, ignored and missing are then the run's start's); resumeNote: why
   * the resumed run will not be bit-identical to the uninterrupted one (another thread count, other images)
   */
  | { type: 'start'; parameters: number; loaded: number; ignored: string[]; missing: string[]; trainSamples: number; totalSteps: number; lr: number; fromScratch: boolean; resumedFrom: TrainPosition | null; resumeNote?: string }
  | { type: 'step'; step: number; totalSteps: number; epoch: number; lr: number; loss: number; imgPerSec: number; etaSeconds: number }
  | { type: 'epoch'; epoch: number; loss: number; seconds: number; top1?: number }
  | { type: 'checkpoint'; step: number; path: string }
  /** the run was stopped (`signal`) after `step` optimizer steps; the log and the training checkpoint were written */
  | { type: 'stopped'; step: number; totalSteps: number; seconds: number; checkpoint: string }
  /** a lock of a run that died taken over, or an unfinished write of a killed run removed from the output folder */
  | { type: 'warning'; message: string }
  | { type: 'end'; top1: number; top5: number; seconds: number };

export interface FinetuneResult {
  /** the run was stopped (`signal`) after `steps` optimizer steps: it was not evaluated (top1 and top5 NaN, metrics null) */
  stopped: boolean;
  steps: number;
  top1: number;
  top5: number;
  metrics: ClassificationMetrics | null;
  epochLosses: number[];
  history: { epoch: number; loss: number; top1?: number }[];
  seconds: number;
  trainSeconds: number;
  outDir: string;
}

/** The type of each option finetune takes (the Record makes the compiler list every key of FinetuneOptions). */
const FINETUNE_OPTIONS = {
  checkpoint: 'string', fromScratch: 'boolean', preset: 'string', config: 'object', data: 'object', limit: 'number',
  testData: 'object', outDir: 'string', resume: 'boolean', checkpointEvery: 'number', overwrite: 'boolean', epochs: 'number', batchSize: 'number', accumIter: 'number',
  blr: 'number', lr: 'number', minLr: 'number', warmupEpochs: 'number', weightDecay: 'number', layerDecay: 'number',
  dropPath: 'number', smoothing: 'number', mixup: 'number', cutmix: 'number', mixupProb: 'number', mixupSwitchProb: 'number',
  reprob: 'number', cropScale: 'number[]', flipProb: 'number', seed: 'number', threads: 'number', workers: 'number',
  evalEvery: 'number', logEvery: 'number', precision: 'string', signal: 'AbortSignal', onEvent: 'function',
} as const satisfies Record<keyof FinetuneOptions, OptionType | readonly OptionType[]>;

/**
 * The options that define a run, kept in its checkpoint with their defaults resolved (data: the data trained on):
 * a resumed run takes them, and those given must agree.
 */
const RUN_KEYS = [
  'checkpoint', 'fromScratch', 'preset', 'config', 'data', 'testData', 'epochs', 'batchSize', 'accumIter', 'blr', 'lr', 'minLr', 'warmupEpochs',
  'weightDecay', 'layerDecay', 'dropPath', 'smoothing', 'mixup', 'cutmix', 'mixupProb', 'mixupSwitchProb', 'reprob', 'cropScale', 'flipProb', 'seed', 'precision',
] as const satisfies readonly (keyof FinetuneOptions)[];
/** The run's settings, also kept (with the thread count): a resumed run takes them unless given; given ones may differ. */
const SETTING_KEYS = ['workers', 'evalEvery', 'logEvery', 'checkpointEvery'] as const satisfies readonly (keyof FinetuneOptions)[];

export async function finetune(options: FinetuneOptions): Promise<FinetuneResult> {
  expectOptions('finetune', options, FINETUNE_OPTIONS);
  checkDataSource('finetune', 'data', options.data);
  checkDataSource('finetune', 'testData', options.testData);
  // the model and the optimizer the run makes are freed however it ends
  return owning((keep) => run(options, keep));
}

async function run(options: FinetuneOptions, keep: Keep): Promise<FinetuneResult> {
  const started = performance.now();
  const emit = options.onEvent ?? (() => {});
  const outDir = options.outDir ?? (options.fromScratch ? 'runs/scratch' : 'runs/finetune');
  const ckPath = join(outDir, CHECKPOINT_FILE);
  // resume: the run's options come from its checkpoint; `o` are the options the run trains with
  let ck: LoadedCheckpoint<FinetuneCheckpointMeta> | null = null;
  const changes: string[] = [];
  let o = options;
  if (options.resume) {
    if (options.overwrite) throw new Error('finetune: resume continues the run in outDir and overwrite removes it: give one of them');
    ck = await checkpointToResume(outDir, ckPath);
    o = resumedOptions(options, ck, changes);
  }
  const epochs = o.epochs ?? 100;
  const batchSize = o.batchSize ?? 64;
  const accumIter = o.accumIter ?? 1;
  const warmupEpochs = o.warmupEpochs ?? Math.min(5, epochs / 10);
  const seed = o.seed ?? 0;
  const fromScratch = o.fromScratch ?? false;
  const minLr = o.minLr ?? 1e-6;
  const weightDecay = o.weightDecay ?? 0.05;
  const layerDecay = o.layerDecay ?? 0.75;
  const dropPath = o.dropPath ?? 0.1;
  const smoothing = o.smoothing ?? 0.1;
  const mixup = o.mixup ?? 0.8;
  const cutmix = o.cutmix ?? 1.0;
  const mixupProb = o.mixupProb ?? 1;
  const mixupSwitchProb = o.mixupSwitchProb ?? 0.5;
  const reprob = o.reprob ?? 0.25;
  const flipProb = o.flipProb ?? 0.5;
  const every = o.evalEvery ?? 0;
  const logEvery = o.logEvery ?? 20;
  const checkpointEvery = o.checkpointEvery ?? 0;
  for (const [k, v] of [['epochs', epochs], ['batchSize', batchSize], ['accumIter', accumIter], ['logEvery', logEvery]] as const)
    if (!(Number.isSafeInteger(v) && v > 0)) throw new Error(`finetune: ${k} must be a positive integer, got ${v}`);
  for (const [k, v] of [['evalEvery', every], ['checkpointEvery', checkpointEvery]] as const)
    if (!(Number.isSafeInteger(v) && v >= 0)) throw new Error(`finetune: ${k} must be a non-negative integer, got ${v}`);
  if (!(Number.isSafeInteger(seed) && seed >= 0)) throw new Error(`finetune: seed must be a non-negative integer, got ${seed}`);
  for (const [k, v] of [['warmupEpochs', warmupEpochs], ['mixup', mixup], ['cutmix', cutmix]] as const)
    if (!(Number.isFinite(v) && v >= 0)) throw new Error(`finetune: ${k} must be a finite number >= 0, got ${v}`);
  // the optimizer runs in float32
  for (const [k, v] of [['minLr', minLr], ['weightDecay', weightDecay]] as const)
    if (!(isFloat32Finite(v) && v >= 0)) throw new Error(`finetune: ${k} must be a finite number >= 0 (in float32: at most 3.4e38), got ${v}`);
  for (const [k, v] of [['mixupProb', mixupProb], ['mixupSwitchProb', mixupSwitchProb], ['reprob', reprob], ['flipProb', flipProb]] as const)
    if (!(v >= 0 && v <= 1)) throw new Error(`finetune: ${k} must be in [0, 1], got ${v}`);
  for (const [k, v] of [['dropPath', dropPath], ['smoothing', smoothing]] as const)
    if (!(v >= 0 && v < 1)) throw new Error(`finetune: ${k} must be in [0, 1), got ${v}`);
  if (!(layerDecay > 0 && layerDecay <= 1)) throw new Error(`finetune: layerDecay must be in (0, 1], got ${layerDecay}`);
  for (const [k, v] of [['blr', o.blr], ['lr', o.lr]] as const)
    if (v !== undefined && !(isFloat32Finite(v) && v > 0)) throw new Error(`finetune: ${k} must be a positive finite number (in float32: at most 3.4e38), got ${v}`);
  // checked here, in finetune's name, not by what they reach after the data is loaded (DataLoader, setNumThreads)
  if (o.limit !== undefined) expectInteger('finetune', 'limit', o.limit, 1);
  if (o.limit !== undefined && o.data !== undefined) throw new Error('finetune: limit is for the default data (the checkpoint\'s, else Fashion-MNIST): give data.limit with data');
  if (o.cropScale !== undefined) range('finetune', 'cropScale', o.cropScale, 1);
  checkLoaderOptions('finetune', { workers: o.workers });
  checkThreads('finetune', o.threads);
  if (o.preset !== undefined) expectPresetName('finetune', 'preset', o.preset);
  const precision = checkPrecision(o.precision, 'finetune');
  for (const [k, v] of [['preset', o.preset], ['config', o.config]] as const)
    if (o.checkpoint && v !== undefined)
      throw new Error(`finetune: the model comes from the checkpoint ${o.checkpoint}, so ${k} ${JSON.stringify(v)} would not be used; preset and config apply only with fromScratch and no checkpoint`);
  // (a misspelt model option was ignored: the preset's value trained)
  if (o.config !== undefined) expectKnownKeys('finetune', 'config', o.config, Object.keys(getPreset('mae_vit_tiny_patch4_28')));
  // (a resumed run writes into the folder of its run)
  if (!ck) checkRunFolder('finetune', outDir, o.overwrite, o.checkpoint);
  if (o.threads !== undefined) native.setNumThreads(o.threads);
  if (!o.checkpoint && !fromScratch) throw new Error('finetune: pass a pre-training checkpoint, or fromScratch for the baseline');

  // the data first (default: the checkpoint's, without its limit), so that the head gets its number of classes
  const saved = !o.data && o.checkpoint ? (await loadCheckpoint(o.checkpoint)).meta.options.data : undefined;
  const data = followUpData(o.data, saved, o.limit);
  if (!o.testData && !hasTestSplit(data))
    throw new Error(`finetune: the data (${data.kind} ${data.path}) has no test split: its test score would be measured on its training images; give test data (testData, --test-data PATH)`);
  const trainSet = await openDataset(data, 'train');
  const testSet = await openDataset(o.testData ?? { ...data, limit: undefined }, 'test');
  // the data of the run, kept in its checkpoint: a resumed run must read as many images
  const dataId = { images: trainSet.length, fingerprint: await datasetFingerprint(trainSet) };
  const dataProblem = resumeDataProblem(ck?.meta.data, dataId, data.path ?? `the ${data.kind} data`, changes);
  if (dataProblem) throw new Error(`finetune: ${dataProblem}`);
  const clsOpts = { numClasses: trainSet.numClasses || 10, globalPool: true, dropPathRate: dropPath, headInitStd: 2e-5, seed };
  let model: VisionTransformerClassifier;
  let loaded: string[] = [];
  let ignored: string[] = [];
  let missing: string[] = [];
  // (a resumed run's, its start's: what came from the pre-training checkpoint)
  let loadReport: FinetuneCheckpointMeta['loadReport'];
  if (ck) {
    // the run's model, as the checkpoint describes it (the pre-training checkpoint it started from is not read again)
    model = new VisionTransformerClassifier(ck.meta.config, { seed });
    try {
      model.loadStateDict(ck.weights);
    } catch (e) {
      model.dispose();
      throw new Error(`finetune: resume: ${ck.path}: ${(e as Error).message}`, { cause: e });
    }
    loadReport = ck.meta.loadReport;
  } else if (o.checkpoint) {
    ({ model, loaded, ignored, missing } = await classifierFromPretrain(o.checkpoint, { ...clsOpts, fromScratch }));
  } else {
    const mc = { ...getPreset(o.preset ?? 'mae_vit_tiny_patch4_28'), ...o.config };
    const { seed: s, ...rest } = clsOpts;
    model = new VisionTransformerClassifier(classifierConfigFrom(mc, rest), { seed: s });
    missing = [...model.stateDict().keys()];
  }
  keep(model);
  loadReport ??= { loaded: loaded.length, ignored, missing };
  const numClasses = model.config.numClasses;
  const c = model.config;
  // the test data is scored after training: refused now if the model cannot score it
  checkChannels('finetune', 'the data', trainSet.channels, c.inChans);
  checkChannels('finetune', 'the test data', testSet.channels, c.inChans);
  checkClassCount('finetune', 'the test data', testSet.numClasses, numClasses);
  model.train();

  const groups = paramGroupsLrd(model, c.depth, { weightDecay, layerDecay });
  const effectiveBatch = batchSize * accumIter;
  const lr = o.lr ?? scaledLr(o.blr ?? 1e-3, effectiveBatch);
  const opt = keep(new AdamW(groups, { lr, betas: [0.9, 0.999] }));
  const loader = new DataLoader(trainSet, { batchSize, seed, augment: true, dropLast: true, scale: o.cropScale ?? [0.08, 1], flipProb, imageSize: c.imgSize, inChans: c.inChans, workers: o.workers ?? 1 });
  const stepsPerEpoch = loader.stepsPerEpoch;
  const stepsPerEpochOpt = Math.floor(stepsPerEpoch / accumIter);
  if (stepsPerEpochOpt < 1) throw new Error(`finetune: ${stepsPerEpoch} batches per epoch are fewer than accumIter ${accumIter}`);
  const totalSteps = stepsPerEpochOpt * epochs;
  const mix = new Mixup({
    mixupAlpha: mixup,
    cutmixAlpha: cutmix,
    prob: mixupProb,
    switchProb: mixupSwitchProb,
    labelSmoothing: smoothing,
    numClasses,
  });
  const augGen = new Generator(seed + 1000);
  if (ck) {
    opt.loadStateDict({ step: ck.meta.optimizer?.step ?? 0, lr: ck.meta.optimizer?.lr ?? lr, steps: ck.meta.optimizer?.steps, tensors: ck.optimizer });
    augGen.setState(ck.meta.random.augmentation);
    model.generator.setState(ck.meta.random.dropPath);
  }
  const position = ck ? ck.meta.position : null;
  const resumeNote = changes.length ? `${changes.join('; ')}: the result will not be bit-identical to the uninterrupted run's` : undefined;
  emit({ type: 'start', parameters: model.numParameters(), ...loadReport, trainSamples: trainSet.length, totalSteps, lr, fromScratch, resumedFrom: position, ...(resumeNote ? { resumeNote } : {}) });

  // the folder is made and locked (until the run ends), and an old run in it removed, only now that the data,
  // checkpoint and options are good; checked again under the lock: a run that ended since the first check left files
  keep(lockRunFolder('finetune', outDir, (message) => emit({ type: 'warning', message })));
  if (!ck) checkRunFolder('finetune', outDir, o.overwrite, o.checkpoint);
  if (o.overwrite) removeRun(outDir);
  for (const file of removeStaleWrites(outDir)) emit({ type: 'warning', message: `removed ${file}, a write that a killed process left unfinished` });
  const logPath = join(outDir, 'log.jsonl');
  if (position) await cutLog(logPath, position);
  else writeFileSync(logPath, '');
  // the run's options with their defaults, and its settings, for a resumed run to take
  const runOptions = {
    checkpoint: o.checkpoint,
    fromScratch,
    preset: o.checkpoint ? undefined : (o.preset ?? 'mae_vit_tiny_patch4_28'),
    config: o.config,
    data,
    testData: o.testData,
    epochs,
    batchSize,
    accumIter,
    blr: o.lr === undefined ? (o.blr ?? 1e-3) : o.blr,
    lr: o.lr,
    minLr,
    warmupEpochs,
    weightDecay,
    layerDecay,
    dropPath,
    smoothing,
    mixup,
    cutmix,
    mixupProb,
    mixupSwitchProb,
    reprob,
    cropScale: o.cropScale ?? [0.08, 1],
    flipProb,
    seed,
    precision,
    workers: o.workers ?? 1,
    evalEvery: every,
    logEvery,
    checkpointEvery,
    threads: native.info().threads,
  } satisfies Record<(typeof RUN_KEYS)[number] | (typeof SETTING_KEYS)[number] | 'threads', unknown>;
  const scaleGrad = Tensor.full([1], 1 / accumIter).keep();
  const history: { epoch: number; loss: number; top1?: number }[] = ck ? ck.meta.history : [];
  const epochLosses = history.map((h) => h.loss);
  let pos: TrainPosition = position ?? { epoch: 0, iter: 0, step: 0 };
  let stopped = false;
  // the training time of the run, the part before a resume included
  const trainStart = performance.now() - (ck?.meta.trainSeconds ?? 0) * 1000;
  // the epoch under way: summed loss and steps (an epoch resumed part-way starts from the checkpoint's)
  let epochLoss = ck?.meta.epochLoss?.sum ?? 0;
  let epochSteps = ck?.meta.epochLoss?.steps ?? 0;
  // the log line under way: summed loss, steps, images and its start (a resumed run goes on with the checkpoint's)
  const lw = ck?.meta.logWindow;
  let windowStart = performance.now() - (lw?.seconds ?? 0) * 1000;
  let windowImages = lw?.images ?? 0;
  let windowLoss = lw?.loss ?? 0;
  let windowSteps = lw?.steps ?? 0;
  // the step of the checkpoint on disk (a resumed run's is its position)
  let savedStep = position ? position.step : -1;
  const save = async (p: TrainPosition) => {
    if (p.step === savedStep) return;
    await saveFinetuneCheckpoint(ckPath, model, opt, {
      position: p,
      options: runOptions,
      data: dataId,
      epochLoss: { sum: epochLoss, steps: epochSteps },
      logWindow: { loss: windowLoss, steps: windowSteps, images: windowImages, seconds: (performance.now() - windowStart) / 1000 },
      random: { augmentation: augGen.state(), dropPath: model.generator.state() },
      history,
      trainSeconds: (performance.now() - trainStart) / 1000,
      loadReport,
    });
    savedStep = p.step;
    emit({ type: 'checkpoint', step: p.step, path: ckPath });
  };
  try {
    for (let epoch = pos.epoch; epoch < epochs && !stopped; epoch++) {
      const t0 = performance.now();
      const startAt = epoch === pos.epoch ? pos.iter : 0;
      if (startAt === 0) [epochLoss, epochSteps] = [0, 0];
      // the epoch's optimizer steps end here (left-over micro-batches are dropped)
      const end = stepsPerEpochOpt * accumIter;
      let micro = 0;
      opt.zeroGrad();
      if (startAt < end) {
        for await (const batch of loader.epoch(epoch, { startAt })) {
          const it = batch.step;
          if (it >= end) break;
          if (it % accumIter === 0) opt.lr = cosineLr(epoch + it / stepsPerEpoch, { lr, minLr, warmupEpochs, epochs });
          const images = batch.images;
          if (reprob > 0) randomErasing(images, batch.shape, augGen, { probability: reprob });
          const loss = tidy(() => {
            let target: Tensor;
            let labelSmoothing = 0;
            if (mix.enabled) {
              const r = mix.apply(images, batch.shape, batch.labels, augGen);
              target = Tensor.fromArray(r.targets, [batch.size, numClasses]);
            } else {
              target = Tensor.fromArray(batch.labels, [batch.size]);
              labelSmoothing = smoothing;
            }
            const l = ops.crossEntropy(model.forward(Tensor.fromArray(images, batch.shape), { precision }), target, labelSmoothing);
            const v = l.item();
            if (Number.isFinite(v)) l.backward(scaleGrad);
            return v;
          });
          batch.release(); // copied into the forward pass: the buffer goes back to the data worker
          if (!Number.isFinite(loss)) throw new Error(`finetune: the loss became ${loss} at epoch ${epoch}, iteration ${it}; lower the lr${savedStep >= 0 ? ` (the last checkpoint, ${ckPath}, is of step ${savedStep})` : ''}`);
          micro += loss;
          windowImages += batch.size;
          if ((it + 1) % accumIter !== 0) continue;
          opt.step();
          opt.zeroGrad();
          const stepLoss = micro / accumIter;
          micro = 0;
          epochLoss += stepLoss;
          epochSteps++;
          pos = { epoch, iter: it + 1, step: pos.step + 1 };
          const step = pos.step;
          windowLoss += stepLoss;
          windowSteps++;
          const now = performance.now();
          const imgPerSec = (windowImages / (now - windowStart)) * 1000;
          emit({ type: 'step', step, totalSteps, epoch: epoch + (it + 1) / stepsPerEpoch, lr: opt.lr, loss: stepLoss, imgPerSec, etaSeconds: ((totalSteps - step) * effectiveBatch) / imgPerSec });
          if (step % logEvery === 0 || step === totalSteps) {
            appendFileSync(logPath, JSON.stringify({ step, epoch: epoch + (it + 1) / stepsPerEpoch, lr: opt.lr, loss: windowLoss / windowSteps, imgPerSec: Math.round(imgPerSec * 10) / 10, time: new Date().toISOString() }) + '\n');
            windowLoss = 0;
            windowSteps = 0;
            windowImages = 0;
            windowStart = performance.now();
          }
          // (the epoch's last step: its checkpoint and a stop come with the epoch's end, below)
          if (pos.iter === end) break;
          if (checkpointEvery > 0 && step % checkpointEvery === 0) await save(pos);
          await yieldNow();
          if (options.signal?.aborted) {
            stopped = true;
            break;
          }
        }
      }
      if (stopped) break;
      const mean = epochLoss / Math.max(1, epochSteps);
      epochLosses.push(mean);
      let top1: number | undefined;
      if (every > 0 && (epoch + 1) % every === 0 && epoch + 1 < epochs) top1 = (await evaluateClassifier(model, testSet, { workers: o.workers ?? 1 })).top1;
      history.push({ epoch: epoch + 1, loss: mean, ...(top1 !== undefined ? { top1 } : {}) });
      appendFileSync(logPath, JSON.stringify({ epochEnd: epoch + 1, loss: mean, ...(top1 !== undefined ? { top1 } : {}), seconds: (performance.now() - t0) / 1000 }) + '\n');
      emit({ type: 'epoch', epoch: epoch + 1, loss: mean, seconds: (performance.now() - t0) / 1000, ...(top1 !== undefined ? { top1 } : {}) });
      pos = { epoch: epoch + 1, iter: 0, step: pos.step };
      [epochLoss, epochSteps] = [0, 0];
      await save(pos);
      // a stop asked during the epoch's last step (or its evaluation) lands here, also at the run's end: the
      // evaluation of the finished run is then left to the resumed run
      if (options.signal?.aborted) stopped = true;
    }
    if (stopped) await save(pos);
  } finally {
    scaleGrad.dispose();
    await loader.close();
  }
  const trainSeconds = (performance.now() - trainStart) / 1000;
  if (stopped) {
    const seconds = (performance.now() - started) / 1000;
    emit({ type: 'stopped', step: pos.step, totalSteps, seconds, checkpoint: ckPath });
    return { stopped, steps: pos.step, top1: NaN, top5: NaN, metrics: null, epochLosses, history, seconds, trainSeconds, outDir };
  }
  const metrics = await evaluateClassifier(model, testSet, { workers: o.workers ?? 1 });
  await writeConfusionPng(join(outDir, 'confusion.png'), metrics.confusion, numClasses);
  const recipe = {
    checkpoint: o.checkpoint ?? null,
    fromScratch,
    data,
    testData: o.testData ?? null,
    epochs,
    batchSize,
    accumIter,
    lr,
    minLr,
    warmupEpochs,
    weightDecay,
    layerDecay,
    dropPath,
    smoothing,
    mixup: mix.mixupAlpha,
    cutmix: mix.cutmixAlpha,
    mixupProb: mix.prob,
    mixupSwitchProb: mix.switchProb,
    reprob,
    cropScale: o.cropScale ?? [0.08, 1],
    flipProb,
    seed,
    precision,
  };
  await saveClassifier(join(outDir, CLASSIFIER_FILE), model, { job: fromScratch ? 'scratch' : 'finetune', recipe, top1: metrics.top1, top5: metrics.top5 });
  const seconds = (performance.now() - started) / 1000;
  await writeFileAtomic(
    join(outDir, 'results.json'),
    JSON.stringify({ job: fromScratch ? 'from-scratch' : 'finetune', ...recipe, loadedKeys: loadReport.loaded, ignoredKeys: loadReport.ignored, trainSamples: trainSet.length, testSamples: testSet.length, top1: metrics.top1, top5: metrics.top5, history, trainSeconds, seconds, confusion: Array.from(metrics.confusion) }, null, 2) + '\n',
  );
  // the run is finished: its classifier and results are written, and the training checkpoint (weights and AdamW
  // moments, three times the classifier's size) is no longer needed
  rmSync(ckPath, { force: true });
  emit({ type: 'end', top1: metrics.top1, top5: metrics.top5, seconds });
  return { stopped, steps: pos.step, top1: metrics.top1, top5: metrics.top5, metrics, epochLosses, history, seconds, trainSeconds, outDir };
}

/**
 * The training checkpoint of the run in `outDir` to resume, with a clear Error where there is none: a finished run
 * (results.json and no checkpoint) or no run at all.
 */
async function checkpointToResume(outDir: string, ckPath: string): Promise<LoadedCheckpoint<FinetuneCheckpointMeta>> {
  if (!existsSync(ckPath)) {
    if (existsSync(join(outDir, 'results.json')))
      throw new Error(`finetune: resume: the run in ${outDir} is finished (results.json, and no ${CHECKPOINT_FILE}): there is nothing left to train; start a new run there with --overwrite, or in another folder (--out)`);
    throw new Error(`finetune: resume: ${outDir} holds no run to resume (no ${CHECKPOINT_FILE}); start a new run there without --resume, or give the folder of the run (--out)`);
  }
  try {
    return await loadFinetuneCheckpoint(ckPath);
  } catch (e) {
    throw new Error(`finetune: resume: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * The options of a resumed run: the run's (RUN_KEYS, from its checkpoint), which those given must agree with, and
 * its settings (SETTING_KEYS) unless given; the thread count as resumeThreads says. What makes the result differ from
 * the uninterrupted run's goes to `changes`.
 */
function resumedOptions(options: FinetuneOptions, ck: LoadedCheckpoint<FinetuneCheckpointMeta>, changes: string[]): FinetuneOptions {
  const saved = ck.meta.options as Partial<Record<keyof FinetuneOptions, unknown>> & { threads?: number };
  const differs = (k: string, there: unknown, here: unknown) =>
    new Error(`finetune: resume: option ${k} differs from the run's (${JSON.stringify(there) ?? 'none'} in its checkpoint, ${JSON.stringify(here)} here)`);
  for (const k of RUN_KEYS)
    if (k !== 'config' && options[k] !== undefined && JSON.stringify(options[k]) !== JSON.stringify(saved[k])) throw differs(k, saved[k], options[k]);
  // a model option agrees when it is the run's model's value (given to the run, from its preset or its checkpoint)
  if (options.config !== undefined) {
    const runConfig = ck.meta.config as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(options.config)) if (v !== undefined && v !== runConfig[k]) throw differs(`config.${k}`, runConfig[k], v);
  }
  const data = saved.data as DataSource | undefined;
  if (options.limit !== undefined && options.limit !== data?.limit) throw differs('limit', data?.limit, options.limit);
  const o: FinetuneOptions = {};
  for (const k of [...RUN_KEYS, ...SETTING_KEYS]) if (saved[k] !== undefined) Object.assign(o, { [k]: saved[k] });
  for (const k of SETTING_KEYS) if (options[k] !== undefined) Object.assign(o, { [k]: options[k] });
  const threads = resumeThreads(options.threads, saved.threads, true, changes);
  if (threads !== undefined) o.threads = threads;
  return o;
}
