/**
 * Linear probing (the official main_linprobe.py recipe, on cached features): the encoder is frozen, the features are
 * the cls token of the final-normed encoder output on whole (unmasked) images, computed once with the eval
 * transform (no augmentation) and kept in memory; the head is BatchNorm without affine (eps 1e-6) then a Linear
 * (trunc-normal std 0.01), trained with LARS (momentum 0.9, trust coefficient 0.001, weight decay 0 by default),
 * lr = blr * batch / 256 (blr 0.1), linear warm-up then half-cycle cosine set every iteration, cross-entropy.
 *
 * `rawPixels` runs the same head and optimizer on flattened normalised pixels: logistic regression, the baseline.
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as yieldNow } from 'node:timers/promises';
import { noGrad } from '../autograd.js';
import { classifierFromPretrain } from '../classify/checkpoint.js';
import { CLASSIFIER_FILE, saveClassifier } from '../classify/checkpoint.js';
import { ProbeHead } from '../classify/model.js';
import { writeSafetensors, type RawTensor } from '../io/safetensors.js';
import { MaskedAutoencoder } from '../mae/model.js';
import { native } from '../native.js';
import { cosineLr, scaledLr } from '../optim/schedule.js';
import { LARS } from '../optim/lars.js';
import * as ops from '../ops/index.js';
import { Generator } from '../random.js';
import { Tensor, tidy } from '../tensor.js';
import { loadCheckpoint } from './checkpoint.js';
import { openDataset, type DataSource } from './data.js';
import { MetricAccumulator, writeConfusionPng, type ClassificationMetrics } from './evaluate.js';
import { extractFeatures, pixelFeatures, type FeaturePool, type Features } from './knn.js';

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
  /** evaluation data (default: the test split of `data`) */
  testData?: DataSource;
  outDir?: string;
  epochs?: number;
  batchSize?: number;
  blr?: number;
  lr?: number;
  minLr?: number;
  warmupEpochs?: number;
  weightDecay?: number;
  seed?: number;
  threads?: number;
  workers?: number;
  /** evaluate on the test features every N epochs (default 0: only at the end) */
  evalEvery?: number;
  onEvent?: (e: LinprobeEvent) => void;
}

export type LinprobeEvent =
  | { type: 'features'; split: 'train' | 'test'; n: number; dim: number; seconds: number }
  | { type: 'start'; steps: number; lr: number; dim: number }
  | { type: 'epoch'; epoch: number; loss: number; lr: number; top1?: number; seconds: number }
  | { type: 'end'; top1: number; top5: number; seconds: number };

export interface LinprobeResult {
  top1: number;
  top5: number;
  metrics: ClassificationMetrics;
  epochLosses: number[];
  featureSeconds: number;
  trainSeconds: number;
  seconds: number;
  outDir: string;
}

export async function linprobe(options: LinprobeOptions): Promise<LinprobeResult> {
  const started = performance.now();
  const emit = options.onEvent ?? (() => {});
  const epochs = options.epochs ?? 90;
  const batchSize = options.batchSize ?? 256;
  const warmupEpochs = options.warmupEpochs ?? Math.min(10, epochs / 9);
  const seed = options.seed ?? 0;
  const outDir = options.outDir ?? (options.rawPixels ? 'runs/linprobe-pixels' : 'runs/linprobe');
  mkdirSync(outDir, { recursive: true });
  if (options.threads !== undefined) native.setNumThreads(options.threads);
  if (!options.rawPixels && !options.checkpoint) throw new Error('linprobe: pass a pre-training checkpoint (or rawPixels for the pixel baseline)');

  let mae: MaskedAutoencoder | null = null;
  let data = options.data;
  let pretrainOptions: Record<string, unknown> = {};
  if (options.checkpoint) {
    const ck = await loadCheckpoint(options.checkpoint);
    pretrainOptions = ck.meta.options;
    if (!options.rawPixels) {
      mae = new MaskedAutoencoder(ck.meta.config);
      mae.loadStateDict(ck.weights);
      mae.eval();
    }
    if (!data && ck.meta.options.data) data = { ...(ck.meta.options.data as DataSource), limit: undefined };
  }
  data ??= { kind: 'fashion-mnist' };
  const trainSet = await openDataset(data, 'train');
  const testSet = await openDataset(options.testData ?? { ...data, limit: undefined }, data.kind === 'folder' && !options.testData ? 'train' : 'test');
  const numClasses = trainSet.numClasses || 10;

  const feats = async (split: 'train' | 'test'): Promise<Features> => {
    const t = performance.now();
    const ds = split === 'train' ? trainSet : testSet;
    const f = mae
      ? await extractFeatures(mae, ds, { pool: options.pool ?? 'cls', batchSize: 256, workers: options.workers ?? 1 })
      : await pixelFeatures(ds, { workers: options.workers ?? 1 });
    emit({ type: 'features', split, n: f.n, dim: f.dim, seconds: (performance.now() - t) / 1000 });
    return f;
  };
  const train = await feats('train');
  const test = await feats('test');
  const featureSeconds = (performance.now() - started) / 1000;

  const D = train.dim;
  const gen = new Generator(seed);
  const head = new ProbeHead(D, numClasses, 0.01, gen);
  const lr = options.lr ?? scaledLr(options.blr ?? 0.1, batchSize);
  const opt = new LARS(head.parameters(), { lr, weightDecay: options.weightDecay ?? 0 });
  const stepsPerEpoch = Math.floor(train.n / batchSize);
  if (stepsPerEpoch < 1) throw new Error(`linprobe: ${train.n} training samples are fewer than a batch of ${batchSize}`);
  emit({ type: 'start', steps: stepsPerEpoch * epochs, lr, dim: D });
  const logPath = join(outDir, 'log.jsonl');
  writeFileSync(logPath, '');

  const evaluate = (): ClassificationMetrics => {
    head.eval();
    const acc = new MetricAccumulator(numClasses);
    for (let s = 0; s < test.n; s += 1024) {
      const m = Math.min(1024, test.n - s);
      const logits = noGrad(() => tidy(() => head.forward(Tensor.fromArray(test.features.subarray(s * D, (s + m) * D), [m, D])).dataSync()));
      acc.add(logits, test.labels.subarray(s, s + m));
    }
    head.train();
    return acc.result();
  };

  const trainStart = performance.now();
  const epochLosses: number[] = [];
  const xb = new Float32Array(batchSize * D);
  const yb = new Int32Array(batchSize);
  for (let epoch = 0; epoch < epochs; epoch++) {
    const t0 = performance.now();
    const perm = gen.permutation(train.n);
    let sum = 0;
    for (let it = 0; it < stepsPerEpoch; it++) {
      opt.lr = cosineLr(epoch + it / stepsPerEpoch, { lr, minLr: options.minLr ?? 0, warmupEpochs, epochs });
      for (let b = 0; b < batchSize; b++) {
        const i = perm[it * batchSize + b]!;
        xb.set(train.features.subarray(i * D, (i + 1) * D), b * D);
        yb[b] = train.labels[i]!;
      }
      const loss = tidy(() => {
        const l = ops.crossEntropy(head.forward(Tensor.fromArray(xb, [batchSize, D])), Tensor.fromArray(yb, [batchSize]));
        l.backward();
        return l.item();
      });
      if (!Number.isFinite(loss)) throw new Error(`linprobe: the loss became ${loss} at epoch ${epoch}, step ${it}; lower the lr`);
      opt.step();
      opt.zeroGrad();
      sum += loss;
    }
    const mean = sum / stepsPerEpoch;
    epochLosses.push(mean);
    const every = options.evalEvery ?? 0;
    const top1 = every > 0 && (epoch + 1) % every === 0 && epoch + 1 < epochs ? evaluate().top1 : undefined;
    const seconds = (performance.now() - t0) / 1000;
    appendFileSync(logPath, JSON.stringify({ epoch: epoch + 1, loss: mean, lr: opt.lr, ...(top1 !== undefined ? { top1 } : {}), seconds }) + '\n');
    emit({ type: 'epoch', epoch: epoch + 1, loss: mean, lr: opt.lr, ...(top1 !== undefined ? { top1 } : {}), seconds });
    await yieldNow();
  }
  const trainSeconds = (performance.now() - trainStart) / 1000;
  const metrics = evaluate();
  await writeConfusionPng(join(outDir, 'confusion.png'), metrics.confusion, numClasses);

  // the probe: the whole classifier (encoder + head.0 BatchNorm + head.1) or, for pixels, the head alone
  if (options.checkpoint && !options.rawPixels && (options.pool ?? 'cls') === 'cls') {
    const { model } = await classifierFromPretrain(options.checkpoint, { globalPool: false, headBatchNorm: true, headInitStd: 0.01, numClasses });
    const own = model.stateDict();
    for (const [n, p] of head.namedParameters()) own.get(`head.${n}`)!.write(p.dataSync());
    await saveClassifier(join(outDir, CLASSIFIER_FILE), model, { job: 'linprobe', top1: metrics.top1, top5: metrics.top5 });
    model.dispose();
  } else {
    const tensors = new Map<string, RawTensor>();
    for (const [n, p] of head.namedParameters()) tensors.set(`head.${n}`, { shape: [...p.shape], data: p.dataSync() });
    await writeSafetensors(join(outDir, 'head.safetensors'), tensors, { 'mae-linprobe': JSON.stringify({ rawPixels: true, dim: D, numClasses }) });
  }
  const seconds = (performance.now() - started) / 1000;
  const summary = {
    job: options.rawPixels ? 'linprobe-raw-pixels' : 'linprobe',
    checkpoint: options.checkpoint ?? null,
    pretrainData: pretrainOptions.data ?? null,
    data,
    trainSamples: train.n,
    testSamples: test.n,
    featureDim: D,
    pool: options.rawPixels ? 'pixels' : (options.pool ?? 'cls'),
    epochs,
    batchSize,
    lr,
    warmupEpochs,
    weightDecay: options.weightDecay ?? 0,
    seed,
    top1: metrics.top1,
    top5: metrics.top5,
    finalTrainLoss: epochLosses[epochLosses.length - 1],
    featureSeconds,
    trainSeconds,
    seconds,
    confusion: Array.from(metrics.confusion),
  };
  writeFileSync(join(outDir, 'results.json'), JSON.stringify(summary, null, 2) + '\n');
  emit({ type: 'end', top1: metrics.top1, top5: metrics.top5, seconds });
  mae?.dispose();
  head.dispose();
  return { top1: metrics.top1, top5: metrics.top5, metrics, epochLosses, featureSeconds, trainSeconds, seconds, outDir };
}
