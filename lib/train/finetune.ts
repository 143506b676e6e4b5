/**
 * End-to-end fine-tuning (the official main_finetune.py / engine_finetune.py recipe) of the ViT classifier on the
 * MAE encoder, or of the same classifier from random initialisation (`fromScratch`, the baseline: same recipe):
 *   global average pooling of the patch tokens + fc_norm + head (trunc-normal std 2e-5), drop path;
 *   AdamW (0.9, 0.999), weight decay 0.05 except 1-D parameters, pos_embed and cls_token; layer-wise lr decay
 *   (util/lr_decay.py); lr = blr * batch * accumIter / 256 with linear warm-up then cosine to minLr, set every
 *   iteration from the fractional epoch; RandomResizedCrop + flip, random erasing (p 0.25, pixel mode, on
 *   normalised images), mixup 0.8 / cutmix 1.0 (switch prob 0.5) with label smoothing 0.1 in the soft targets
 *   (plain label-smoothed cross-entropy when mixup and cutmix are off). No masking.
 */
import { expectInteger, expectKnownKeys, expectOptions, isFloat32Finite, type OptionType } from '../check.js';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as yieldNow } from 'node:timers/promises';
import { CLASSIFIER_FILE, checkRunFolder, classifierFromPretrain, lockRunFolder, removeRun, removeStaleWrites, saveClassifier } from '../classify/checkpoint.js';
import { VisionTransformerClassifier, classifierConfigFrom } from '../classify/model.js';
import { DataLoader } from '../data/index.js';
import { range } from '../data/loader.js';
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
import { loadCheckpoint } from './checkpoint.js';
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
   * output folder: classifier.safetensors, results.json, log.jsonl, confusion.png (default runs/finetune); locked
   * (.lock, as pretrain's outDir) from when the run starts writing there until it ends: another run into it is refused
   */
  outDir?: string;
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
   * stops the training at the next optimizer step: the run then returns with stopped: true, its log.jsonl holding the
   * steps taken, and writes no classifier, confusion matrix or results.json
   */
  signal?: AbortSignal;
  onEvent?: (e: FinetuneEvent) => void;
}

export type FinetuneEvent =
  | { type: 'start'; parameters: number; loaded: number; ignored: string[]; missing: string[]; trainSamples: number; totalSteps: number; lr: number; fromScratch: boolean }
  | { type: 'step'; step: number; totalSteps: number; epoch: number; lr: number; loss: number; imgPerSec: number; etaSeconds: number }
  | { type: 'epoch'; epoch: number; loss: number; seconds: number; top1?: number }
  /** the run was stopped (`signal`) after `step` optimizer steps; nothing but the log was written */
  | { type: 'stopped'; step: number; totalSteps: number; seconds: number }
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
  testData: 'object', outDir: 'string', overwrite: 'boolean', epochs: 'number', batchSize: 'number', accumIter: 'number',
  blr: 'number', lr: 'number', minLr: 'number', warmupEpochs: 'number', weightDecay: 'number', layerDecay: 'number',
  dropPath: 'number', smoothing: 'number', mixup: 'number', cutmix: 'number', mixupProb: 'number', mixupSwitchProb: 'number',
  reprob: 'number', cropScale: 'number[]', flipProb: 'number', seed: 'number', threads: 'number', workers: 'number',
  evalEvery: 'number', logEvery: 'number', precision: 'string', signal: 'AbortSignal', onEvent: 'function',
} as const satisfies Record<keyof FinetuneOptions, OptionType | readonly OptionType[]>;

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
  const epochs = options.epochs ?? 100;
  const batchSize = options.batchSize ?? 64;
  const accumIter = options.accumIter ?? 1;
  const warmupEpochs = options.warmupEpochs ?? Math.min(5, epochs / 10);
  const seed = options.seed ?? 0;
  const fromScratch = options.fromScratch ?? false;
  const minLr = options.minLr ?? 1e-6;
  const weightDecay = options.weightDecay ?? 0.05;
  const layerDecay = options.layerDecay ?? 0.75;
  const dropPath = options.dropPath ?? 0.1;
  const smoothing = options.smoothing ?? 0.1;
  const mixup = options.mixup ?? 0.8;
  const cutmix = options.cutmix ?? 1.0;
  const mixupProb = options.mixupProb ?? 1;
  const mixupSwitchProb = options.mixupSwitchProb ?? 0.5;
  const reprob = options.reprob ?? 0.25;
  const flipProb = options.flipProb ?? 0.5;
  const every = options.evalEvery ?? 0;
  const logEvery = options.logEvery ?? 20;
  for (const [k, v] of [['epochs', epochs], ['batchSize', batchSize], ['accumIter', accumIter], ['logEvery', logEvery]] as const)
    if (!(Number.isSafeInteger(v) && v > 0)) throw new Error(`finetune: ${k} must be a positive integer, got ${v}`);
  if (!(Number.isSafeInteger(every) && every >= 0)) throw new Error(`finetune: evalEvery must be a non-negative integer, got ${every}`);
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
  for (const [k, v] of [['blr', options.blr], ['lr', options.lr]] as const)
    if (v !== undefined && !(isFloat32Finite(v) && v > 0)) throw new Error(`finetune: ${k} must be a positive finite number (in float32: at most 3.4e38), got ${v}`);
  // checked here, in finetune's name, not by what they reach after the data is loaded (DataLoader, setNumThreads)
  if (options.limit !== undefined) expectInteger('finetune', 'limit', options.limit, 1);
  if (options.limit !== undefined && options.data !== undefined) throw new Error('finetune: limit is for the default data (the checkpoint\'s, else Fashion-MNIST): give data.limit with data');
  if (options.cropScale !== undefined) range('finetune', 'cropScale', options.cropScale, 1);
  checkLoaderOptions('finetune', { workers: options.workers });
  checkThreads('finetune', options.threads);
  if (options.preset !== undefined) expectPresetName('finetune', 'preset', options.preset);
  const precision = checkPrecision(options.precision, 'finetune');
  for (const [k, v] of [['preset', options.preset], ['config', options.config]] as const)
    if (options.checkpoint && v !== undefined)
      throw new Error(`finetune: the model comes from the checkpoint ${options.checkpoint}, so ${k} ${JSON.stringify(v)} would not be used; preset and config apply only with fromScratch and no checkpoint`);
  // (a misspelt model option was ignored: the preset's value trained)
  if (options.config !== undefined) expectKnownKeys('finetune', 'config', options.config, Object.keys(getPreset('mae_vit_tiny_patch4_28')));
  const outDir = options.outDir ?? (fromScratch ? 'runs/scratch' : 'runs/finetune');
  checkRunFolder('finetune', outDir, options.overwrite, options.checkpoint);
  if (options.threads !== undefined) native.setNumThreads(options.threads);
  if (!options.checkpoint && !fromScratch) throw new Error('finetune: pass a pre-training checkpoint, or fromScratch for the baseline');

  // the data first (default: the checkpoint's, without its limit), so that the head gets its number of classes
  const saved = !options.data && options.checkpoint ? (await loadCheckpoint(options.checkpoint)).meta.options.data : undefined;
  const data = followUpData(options.data, saved, options.limit);
  if (!options.testData && !hasTestSplit(data))
    throw new Error(`finetune: the data (${data.kind} ${data.path}) has no test split: its test score would be measured on its training images; give test data (testData, --test-data PATH)`);
  const trainSet = await openDataset(data, 'train');
  const testSet = await openDataset(options.testData ?? { ...data, limit: undefined }, 'test');
  const clsOpts = { numClasses: trainSet.numClasses || 10, globalPool: true, dropPathRate: dropPath, headInitStd: 2e-5, seed };
  let model: VisionTransformerClassifier;
  let loaded: string[] = [];
  let ignored: string[] = [];
  let missing: string[] = [];
  if (options.checkpoint) {
    ({ model, loaded, ignored, missing } = await classifierFromPretrain(options.checkpoint, { ...clsOpts, fromScratch }));
  } else {
    const mc = { ...getPreset(options.preset ?? 'mae_vit_tiny_patch4_28'), ...options.config };
    const { seed: s, ...rest } = clsOpts;
    model = new VisionTransformerClassifier(classifierConfigFrom(mc, rest), { seed: s });
    missing = [...model.stateDict().keys()];
  }
  keep(model);
  const numClasses = model.config.numClasses;
  const c = model.config;
  // the test data is scored after training: refused now if the model cannot score it
  checkChannels('finetune', 'the data', trainSet.channels, c.inChans);
  checkChannels('finetune', 'the test data', testSet.channels, c.inChans);
  checkClassCount('finetune', 'the test data', testSet.numClasses, numClasses);
  model.train();

  const groups = paramGroupsLrd(model, c.depth, { weightDecay, layerDecay });
  const effectiveBatch = batchSize * accumIter;
  const lr = options.lr ?? scaledLr(options.blr ?? 1e-3, effectiveBatch);
  const opt = keep(new AdamW(groups, { lr, betas: [0.9, 0.999] }));
  const loader = new DataLoader(trainSet, { batchSize, seed, augment: true, dropLast: true, scale: options.cropScale ?? [0.08, 1], flipProb, imageSize: c.imgSize, inChans: c.inChans, workers: options.workers ?? 1 });
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
  emit({ type: 'start', parameters: model.numParameters(), loaded: loaded.length, ignored, missing, trainSamples: trainSet.length, totalSteps, lr, fromScratch });

  // the folder is made and locked (until the run ends), and an old run in it removed, only now that the data,
  // checkpoint and options are good; checked again under the lock: a run that ended since the first check left files
  keep(lockRunFolder('finetune', outDir, (message) => emit({ type: 'warning', message })));
  checkRunFolder('finetune', outDir, options.overwrite, options.checkpoint);
  if (options.overwrite) removeRun(outDir);
  for (const file of removeStaleWrites(outDir)) emit({ type: 'warning', message: `removed ${file}, a write that a killed process left unfinished` });
  const logPath = join(outDir, 'log.jsonl');
  writeFileSync(logPath, '');
  const scaleGrad = Tensor.full([1], 1 / accumIter).keep();
  const epochLosses: number[] = [];
  const history: { epoch: number; loss: number; top1?: number }[] = [];
  let step = 0;
  let stopped = false;
  const trainStart = performance.now();
  let windowStart = performance.now();
  let windowImages = 0;
  let windowLoss = 0;
  let windowSteps = 0;
  try {
    for (let epoch = 0; epoch < epochs && !stopped; epoch++) {
      const t0 = performance.now();
      let sum = 0;
      let n = 0;
      let micro = 0;
      opt.zeroGrad();
      for await (const batch of loader.epoch(epoch)) {
        const it = batch.step;
        if (it >= stepsPerEpochOpt * accumIter) break;
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
        if (!Number.isFinite(loss)) throw new Error(`finetune: the loss became ${loss} at epoch ${epoch}, iteration ${it}; lower the lr`);
        micro += loss;
        windowImages += batch.size;
        if ((it + 1) % accumIter !== 0) continue;
        opt.step();
        opt.zeroGrad();
        const stepLoss = micro / accumIter;
        micro = 0;
        sum += stepLoss;
        n++;
        step++;
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
        await yieldNow();
        if (options.signal?.aborted) {
          stopped = true;
          break;
        }
      }
      if (stopped) break;
      const mean = sum / Math.max(1, n);
      epochLosses.push(mean);
      let top1: number | undefined;
      if (every > 0 && (epoch + 1) % every === 0 && epoch + 1 < epochs) top1 = (await evaluateClassifier(model, testSet, { workers: options.workers ?? 1 })).top1;
      history.push({ epoch: epoch + 1, loss: mean, ...(top1 !== undefined ? { top1 } : {}) });
      appendFileSync(logPath, JSON.stringify({ epochEnd: epoch + 1, loss: mean, ...(top1 !== undefined ? { top1 } : {}), seconds: (performance.now() - t0) / 1000 }) + '\n');
      emit({ type: 'epoch', epoch: epoch + 1, loss: mean, seconds: (performance.now() - t0) / 1000, ...(top1 !== undefined ? { top1 } : {}) });
    }
  } finally {
    scaleGrad.dispose();
    await loader.close();
  }
  const trainSeconds = (performance.now() - trainStart) / 1000;
  if (stopped) {
    const seconds = (performance.now() - started) / 1000;
    emit({ type: 'stopped', step, totalSteps, seconds });
    return { stopped, steps: step, top1: NaN, top5: NaN, metrics: null, epochLosses, history, seconds, trainSeconds, outDir };
  }
  const metrics = await evaluateClassifier(model, testSet, { workers: options.workers ?? 1 });
  await writeConfusionPng(join(outDir, 'confusion.png'), metrics.confusion, numClasses);
  const recipe = {
    checkpoint: options.checkpoint ?? null,
    fromScratch,
    data,
    testData: options.testData ?? null,
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
    cropScale: options.cropScale ?? [0.08, 1],
    flipProb,
    seed,
    precision,
  };
  await saveClassifier(join(outDir, CLASSIFIER_FILE), model, { job: fromScratch ? 'scratch' : 'finetune', recipe, top1: metrics.top1, top5: metrics.top5 });
  const seconds = (performance.now() - started) / 1000;
  await writeFileAtomic(
    join(outDir, 'results.json'),
    JSON.stringify({ job: fromScratch ? 'from-scratch' : 'finetune', ...recipe, loadedKeys: loaded.length, ignoredKeys: ignored, trainSamples: trainSet.length, testSamples: testSet.length, top1: metrics.top1, top5: metrics.top5, history, trainSeconds, seconds, confusion: Array.from(metrics.confusion) }, null, 2) + '\n',
  );
  emit({ type: 'end', top1: metrics.top1, top5: metrics.top5, seconds });
  return { stopped, steps: step, top1: metrics.top1, top5: metrics.top5, metrics, epochLosses, history, seconds, trainSeconds, outDir };
}
