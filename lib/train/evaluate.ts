/**
 * Classification metrics and the `mae eval` job: top-k accuracy, the confusion matrix, and the confusion matrix as
 * a PNG heat map (rows: true class, columns: predicted class, white -> dark blue by the row-normalised count).
 */
import { noGrad } from '../autograd.js';
import { VisionTransformerClassifier } from '../classify/model.js';
import { DataLoader, type Dataset } from '../data/index.js';
import { Tensor, tidy } from '../tensor.js';
import { writePng, type Image8 } from '../viz/png.js';
import { expectArrayLike, expectDataset, expectInstance, expectInteger, expectKnownKeys, expectObject, expectString } from '../check.js';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CLASSIFIER_FILE, type ClassifierMeta } from '../classify/checkpoint.js';
import { readSafetensors } from '../io/safetensors.js';
import { checkLoaderOptions, stopIfAsked } from './knn.js';

export interface ClassificationMetrics {
  n: number;
  top1: number;
  top5: number;
  /** [numClasses * numClasses], row = true class, column = predicted */
  confusion: Int32Array;
  numClasses: number;
}

/** Accumulates logits batch by batch. */
export class MetricAccumulator {
  n = 0;
  private hits1 = 0;
  private hits5 = 0;
  readonly confusion: Int32Array;
  constructor(readonly numClasses: number) {
    expectInteger('MetricAccumulator', 'numClasses', numClasses, 1);
    this.confusion = new Int32Array(numClasses * numClasses);
  }
  /** logits [B, C], labels [B] */
  add(logits: Float32Array, labels: ArrayLike<number>): void {
    expectInstance('MetricAccumulator.add', 'logits', logits, Float32Array, 'a Float32Array [B, numClasses]');
    expectArrayLike('MetricAccumulator.add', 'labels', labels, 'an array of class indices');
    const C = this.numClasses;
    const B = labels.length;
    if (logits.length !== B * C) throw new Error(`metrics: ${logits.length} logits do not match ${B} labels x ${C} classes`);
    for (let i = 0; i < B; i++)
      if (!(Number.isInteger(labels[i]) && labels[i]! >= 0 && labels[i]! < C))
        throw new Error(`metrics: labels[${i}] is ${labels[i]}, not a class of [0, ${C})`);
    for (let i = 0; i < B; i++) {
      const y = labels[i]!;
      const row = logits.subarray(i * C, (i + 1) * C);
      let best = 0;
      for (let c = 1; c < C; c++) if (row[c]! > row[best]!) best = c;
      // rank of the true class: the number of classes scored higher (ties count against it)
      let higher = 0;
      for (let c = 0; c < C; c++) if (c !== y && (row[c]! > row[y]! || (row[c]! === row[y]! && c < y))) higher++;
      if (best === y) this.hits1++;
      if (higher < 5) this.hits5++;
      this.confusion[y * C + best]!++;
      this.n++;
    }
  }
  result(): ClassificationMetrics {
    return { n: this.n, top1: this.n ? this.hits1 / this.n : NaN, top5: this.n ? this.hits5 / this.n : NaN, confusion: this.confusion, numClasses: this.numClasses };
  }
}

export function topkAccuracy(logits: Float32Array, labels: ArrayLike<number>, numClasses: number): { top1: number; top5: number } {
  expectInstance('topkAccuracy', 'logits', logits, Float32Array, 'a Float32Array [count, numClasses]');
  expectArrayLike('topkAccuracy', 'labels', labels, 'an array of class indices');
  expectInteger('topkAccuracy', 'numClasses', numClasses, 1);
  const m = new MetricAccumulator(numClasses);
  m.add(logits, labels);
  const r = m.result();
  return { top1: r.top1, top5: r.top5 };
}

/** The confusion matrix as an RGB heat map: `cell` px per entry, 1 px grid lines, diagonal outlined in red. */
export function confusionImage(confusion: Int32Array, numClasses: number, opts: { cell?: number } = {}): Image8 {
  checkConfusion('confusionImage', confusion, numClasses);
  expectObject('confusionImage', 'opts', opts);
  expectKnownKeys('confusionImage', 'opts', opts, ['cell']);
  const C = numClasses;
  const cell = opts.cell === undefined ? 24 : opts.cell;
  expectInteger('confusionImage', 'cell', cell, 1);
  const size = C * cell + C + 1;
  const pixels = new Uint8Array(size * size * 3).fill(160);
  for (let r = 0; r < C; r++) {
    let rowSum = 0;
    for (let c = 0; c < C; c++) rowSum += confusion[r * C + c]!;
    for (let c = 0; c < C; c++) {
      const v = rowSum ? confusion[r * C + c]! / rowSum : 0;
      // white (0) -> dark blue (1)
      const rgb = [Math.round(255 * (1 - v) + 8 * v), Math.round(255 * (1 - v) + 48 * v), Math.round(255 * (1 - v) + 107 * v)];
      const y0 = 1 + r * (cell + 1);
      const x0 = 1 + c * (cell + 1);
      for (let y = 0; y < cell; y++)
        for (let x = 0; x < cell; x++) {
          const border = r === c && (y === 0 || x === 0 || y === cell - 1 || x === cell - 1);
          const o = ((y0 + y) * size + x0 + x) * 3;
          pixels[o] = border ? 220 : rgb[0]!;
          pixels[o + 1] = border ? 30 : rgb[1]!;
          pixels[o + 2] = border ? 30 : rgb[2]!;
        }
    }
  }
  return { width: size, height: size, channels: 3, pixels };
}

export async function writeConfusionPng(path: string, confusion: Int32Array, numClasses: number): Promise<void> {
  expectString('writeConfusionPng', 'path', path, 'a file path');
  checkConfusion('writeConfusionPng', confusion, numClasses);
  await writePng(path, confusionImage(confusion, numClasses));
}

/** A confusion matrix: an Int32Array [numClasses, numClasses]. */
function checkConfusion(where: string, confusion: Int32Array, numClasses: number): void {
  expectInstance(where, 'confusion', confusion, Int32Array, 'an Int32Array [numClasses, numClasses]');
  expectInteger(where, 'numClasses', numClasses, 1);
}

/**
 * Refuses to score a classifier of `modelClasses` classes on data (`name`, in `where`'s message) of `dataClasses`:
 * more classes than the model's, or none (unlabelled). Fewer are fine: class i of the data is the model's class i.
 */
export function checkClassCount(where: string, name: string, dataClasses: number, modelClasses: number): void {
  if (dataClasses === 0) throw new Error(`${where}: ${name} has no labels (no class sub-folders): a classifier is scored on labelled images`);
  if (dataClasses > modelClasses)
    throw new Error(`${where}: ${name} has ${dataClasses} classes and the classifier ${modelClasses}: score it on data of at most ${modelClasses} classes (class i of the data is the classifier's class i)`);
}

/**
 * The "mae-classifier" metadata of a classifier file, or of a folder's classifier.safetensors (the header alone is
 * read); null when there is no such file or it is not a classifier's.
 */
export async function classifierFileMeta(pathOrDir: string): Promise<ClassifierMeta | null> {
  const path = existsSync(pathOrDir) && statSync(pathOrDir).isDirectory() ? join(pathOrDir, CLASSIFIER_FILE) : pathOrDir;
  if (!existsSync(path) || statSync(path).isDirectory()) return null;
  const raw = (await readSafetensors(path, { select: () => false })).metadata['mae-classifier'];
  return raw ? (JSON.parse(raw) as ClassifierMeta) : null;
}

/**
 * Top-1 / top-5 and the confusion matrix of a classifier on a dataset (eval transform, no augmentation). An aborted
 * `signal` ends the pass after its current batch with the signal's reason.
 */
export async function evaluateClassifier(
  model: VisionTransformerClassifier,
  dataset: Dataset,
  opts: { batchSize?: number; workers?: number; signal?: AbortSignal } = {},
): Promise<ClassificationMetrics> {
  expectInstance('evaluateClassifier', 'model', model, VisionTransformerClassifier, 'a VisionTransformerClassifier');
  expectDataset('evaluateClassifier', 'dataset', dataset);
  expectObject('evaluateClassifier', 'opts', opts);
  expectKnownKeys('evaluateClassifier', 'opts', opts, ['batchSize', 'workers', 'signal']);
  checkLoaderOptions('evaluateClassifier', opts);
  if (opts.signal !== undefined) expectInstance('evaluateClassifier', 'signal', opts.signal, AbortSignal, 'an AbortSignal');
  const c = model.config;
  checkClassCount('evaluateClassifier', 'the data', dataset.numClasses, c.numClasses);
  const wasTraining = model.training;
  model.eval();
  const loader = new DataLoader(dataset, { batchSize: opts.batchSize ?? 256, shuffle: false, augment: false, imageSize: c.imgSize, inChans: c.inChans, workers: opts.workers ?? 1 });
  const acc = new MetricAccumulator(c.numClasses);
  try {
    for await (const batch of loader.epoch(0)) {
      await stopIfAsked(opts.signal);
      const logits = noGrad(() => tidy(() => model.forward(Tensor.fromArray(batch.images, batch.shape)).dataSync()));
      batch.release(); // copied: the buffer goes back to the data worker
      acc.add(logits, batch.labels);
    }
  } finally {
    await loader.close();
    model.train(wasTraining);
  }
  return acc.result();
}
