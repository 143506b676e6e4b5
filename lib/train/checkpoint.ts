/**
 * Checkpoints: one safetensors file holding the model's parameters under their official names, the optimizer's
 * moments under `optimizer.<group>.<index>.exp_avg|exp_avg_sq`, and, as JSON in the header metadata ("mae"), the
 * model config and the exact training position (epoch, data iteration, optimizer step, lr, each parameter's AdamW
 * step count; a checkpoint written before those were kept gives every parameter the optimizer step), the run's
 * options and settings, and the sums of the epoch and the log line under way. Every random draw of pre-training is
 * keyed to the sample's place in its epoch, so the position alone continues the run exactly.
 * A fine-tuning run (finetune) writes the same file with its own format and the classifier's config, plus what its
 * run also draws from: the states of its augmentation and drop path generators (FinetuneCheckpointMeta).
 * Written atomically: a crash never leaves a half-written file; metadata the reader would refuse is never written.
 *
 * Reading also takes the checkpoints of other code (anything readWeights reads: official .pth, Hugging Face
 * folders, plain safetensors), as weights with the config read off them and no training position (format
 * 'external ...', options {}); only this library's own checkpoints can be resumed.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { describeValue, expectInstance, expectKnownKeys, expectObject, expectString, jsonProblem, optionNames } from '../check.js';
import { writeFileAtomic } from '../io/atomic.js';
import { MAX_HEADER_BYTES, readOpenSafetensors, writeSafetensors, type DeferredTensor } from '../io/safetensors.js';
import { readWeights } from '../io/weights.js';
import { MaskedAutoencoder, type MaeConfig } from '../mae/index.js';
import { maeConfigFromWeights } from '../mae/pretrained.js';
import type { ClassifierConfig, VisionTransformerClassifier } from '../classify/model.js';
import type { Module } from '../nn/module.js';
import type { AdamW } from '../optim/index.js';
import type { GeneratorState } from '../random.js';
import type { Tensor } from '../tensor.js';

export const CHECKPOINT_FORMAT = 'masked-autoencoder/pretrain/1';
export const CHECKPOINT_FILE = 'checkpoint.safetensors';
/** The training checkpoint of a fine-tuning run (finetune writes it, as CHECKPOINT_FILE in its output folder). */
export const FINETUNE_CHECKPOINT_FORMAT = 'masked-autoencoder/finetune/1';

export interface TrainPosition {
  /** epoch of the next batch */
  epoch: number;
  /** data iteration (batch index) within that epoch of the next batch */
  iter: number;
  /** optimizer steps taken */
  step: number;
}

export interface CheckpointMeta {
  format: string;
  config: MaeConfig;
  position: TrainPosition;
  /** AdamW.stateDict() less the moments (steps: absent in checkpoints written before it was kept) */
  optimizer: { step: number; lr: number; steps?: Record<string, number> } | null;
  /**
   * the training options of the run, for `resume` to check and reuse; with its settings (threads, workers,
   * checkpointEvery, logEvery, visualizeEvery, bucketMb, device, precision, knn: absent in checkpoints written before
   * they were kept)
   */
  options: Record<string, unknown>;
  /**
   * the run's data: its number of images and datasetFingerprint, for `resume` to check (absent in checkpoints written
   * before they were kept)
   */
  data?: { images: number; fingerprint: string };
  /** the summed loss and the optimizer steps of the epoch under way, so that its mean counts the steps before a resume */
  epochLoss?: { sum: number; steps: number };
  /**
   * the log line under way (since the last one): summed loss, optimizer steps, images and seconds, so that a resumed
   * run writes the line of the uninterrupted run (absent in older checkpoints: the line starts again at the resume)
   */
  logWindow?: { loss: number; steps: number; images: number; seconds: number };
  createdAt: string;
}

/**
 * The metadata of a fine-tuning run's checkpoint: a pre-training checkpoint's fields with the classifier's config,
 * and what else the rest of the run depends on (its data order and crops are keyed to (seed, epoch, position), so the
 * position covers them).
 */
export interface FinetuneCheckpointMeta extends Omit<CheckpointMeta, 'config'> {
  config: ClassifierConfig;
  /** the generators' states: the batch augmentations' (mixup / cutmix, random erasing) and drop path's */
  random: { augmentation: GeneratorState; dropPath: GeneratorState };
  /** the epochs done: mean loss, and top-1 where evalEvery scored one */
  history: { epoch: number; loss: number; top1?: number }[];
  /** seconds of training before the checkpoint (the runs before a resume) */
  trainSeconds: number;
  /** what the run's start took from its pre-training checkpoint: tensors loaded, keys ignored, parameters initialised */
  loadReport: { loaded: number; ignored: string[]; missing: string[] };
}

export async function saveCheckpoint(
  path: string,
  model: MaskedAutoencoder,
  optimizer: AdamW | null,
  meta: Omit<CheckpointMeta, 'format' | 'config' | 'optimizer' | 'createdAt'>,
): Promise<void> {
  const where = 'saveCheckpoint';
  expectString(where, 'path', path, 'a file path');
  expectInstance(where, 'model', model, MaskedAutoencoder, 'a MaskedAutoencoder');
  if (optimizer !== null && typeof optimizer?.stateDict !== 'function')
    throw new Error(`${where}: optimizer must be an optimizer (an AdamW: an object with stateDict()) or null, got ${describeValue(optimizer)}`);
  expectObject(where, 'meta', meta, false, 'e.g. { position: { epoch, iter, step }, options: {} }');
  // (a key of its own would be written as given, and a format, config, optimizer or createdAt would replace the real one)
  expectKnownKeys(where, 'meta', meta, optionNames<typeof meta>({ position: true, options: true, data: true, epochLoss: true, logWindow: true }));
  await writeTrainingCheckpoint(path, CHECKPOINT_FORMAT, model, optimizer, meta);
}

/**
 * Writes a training checkpoint of `format` (pre-training's or fine-tuning's): the model's parameters, the optimizer's
 * moments and the metadata, as saveCheckpoint describes.
 */
async function writeTrainingCheckpoint(path: string, format: string, model: Module & { config: object }, optimizer: AdamW | null, meta: object): Promise<void> {
  // each tensor is copied out of native memory only when its turn to be written comes (one at a time, not the
  // weights and both AdamW moments at once: 3x the model's size); so the weights (and with them the optimizer's
  // moments) must not change until the save resolves: a change (Tensor.version) fails the save, target unchanged
  const versions = model.versions();
  const unchanged = () => {
    const moved = model.changedSince(versions);
    if (moved !== null)
      throw new Error(`the weights changed while the checkpoint was written (${moved}: an optimizer step or a load before the save was awaited); await saveCheckpoint before changing them`);
  };
  const tensors = new Map<string, DeferredTensor>();
  const deferred = (t: Tensor): DeferredTensor => ({
    shape: [...t.shape],
    dtype: 'F32',
    read: () => {
      unchanged();
      return t.dataSync();
    },
  });
  for (const [name, p] of model.namedParameters()) tensors.set(name, deferred(p));
  let opt: CheckpointMeta['optimizer'] = null;
  if (optimizer) {
    const sd = optimizer.stateDict();
    for (const [k, t] of sd.tensors) tensors.set(`optimizer.${k}`, deferred(t));
    opt = { step: sd.step, lr: sd.lr, steps: sd.steps };
  }
  const full = { format, config: model.config, optimizer: opt, createdAt: new Date().toISOString(), ...meta };
  const unstorable = jsonProblem(full, 'meta');
  if (unstorable) throw new Error(`saveCheckpoint: ${path} not written, JSON cannot store its metadata: ${unstorable}`);
  // the loader's checks, on what it will read (JSON turns NaN into null, drops undefined)
  const json = JSON.stringify(full);
  const problem = metaProblem(JSON.parse(json) as Record<string, unknown>);
  if (problem) throw new Error(`saveCheckpoint: ${path} not written, loading would refuse its metadata: ${problem}`);
  await writeSafetensors(path, tensors, { mae: json });
}

/**
 * Writes the training checkpoint of a fine-tuning run (finetune): as a pre-training checkpoint (weights, AdamW
 * moments, position, options, data, sums of the epoch and the log line under way) with the fine-tuning run's format,
 * the classifier's config, the state of the generators the rest of the run draws from, the epochs' history and the
 * seconds trained.
 */
export async function saveFinetuneCheckpoint(
  path: string,
  model: VisionTransformerClassifier,
  optimizer: AdamW,
  meta: Omit<FinetuneCheckpointMeta, 'format' | 'config' | 'optimizer' | 'createdAt'>,
): Promise<void> {
  await writeTrainingCheckpoint(path, FINETUNE_CHECKPOINT_FORMAT, model, optimizer, meta);
}

/** A fine-tuning run's training checkpoint (a file, or the checkpoint.safetensors of a run folder). */
export async function loadFinetuneCheckpoint(pathOrDir: string): Promise<LoadedCheckpoint<FinetuneCheckpointMeta>> {
  const ck = await readOwn<FinetuneCheckpointMeta>(pathOrDir, FINETUNE_CHECKPOINT_FORMAT);
  if (ck === null) throw new Error(`${pathOrDir}: not a checkpoint of a fine-tuning run (no "mae" metadata)`);
  return ck;
}

export interface LoadedCheckpoint<M = CheckpointMeta> {
  /** the file read */
  path: string;
  meta: M;
  weights: Map<string, { shape: number[]; data: Float32Array }>;
  optimizer: Map<string, { shape: number[]; data: Float32Array }>;
}

/**
 * The checkpoint of ours at a path (a run folder's checkpoint.safetensors), or null when it is not one of ours: the
 * file is opened once, and its header and tensors are read through that one handle (a file put in its place
 * meanwhile is not read).
 */
async function readOwn<M = CheckpointMeta>(pathOrDir: string, format = CHECKPOINT_FORMAT): Promise<LoadedCheckpoint<M> | null> {
  if (!existsSync(pathOrDir)) throw new Error(`checkpoint not found: ${pathOrDir}`);
  const path = statSync(pathOrDir).isDirectory() ? join(pathOrDir, CHECKPOINT_FILE) : pathOrDir;
  if (!existsSync(path)) return null;
  const h = await fsp.open(path, 'r');
  try {
    if ((await headerMeta(h))?.mae === undefined) return null;
    const { tensors, metadata } = await readOpenSafetensors(h, path);
    if (!metadata.mae) throw new Error(`${path}: not a masked-autoencoder checkpoint (no "mae" metadata); load plain weights with loadSafetensors`);
    let meta: unknown;
    try {
      meta = JSON.parse(metadata.mae);
    } catch (e) {
      throw new Error(`${path}: the checkpoint metadata is not valid JSON (${(e as Error).message})`);
    }
    checkMeta(meta, path, format);
    const weights = new Map<string, { shape: number[]; data: Float32Array }>();
    const optimizer = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [k, t] of tensors) {
      if (!(t.data instanceof Float32Array)) throw new Error(`${path}: tensor ${k} is not floating point`);
      const rec = { shape: t.shape, data: t.data };
      if (k.startsWith('optimizer.')) optimizer.set(k.slice('optimizer.'.length), rec);
      else weights.set(k, rec);
    }
    return { path, meta: meta as M, weights, optimizer };
  } finally {
    await h.close();
  }
}

/**
 * Runs `load` on a path that is not a checkpoint of ours (other code's weights; a classifier of ours, whose encoder
 * serves the kNN monitor and probes): an error for a classifier of ours says what the file is.
 */
async function asWeights<T>(pathOrDir: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    const file = existsSync(pathOrDir) && statSync(pathOrDir).isDirectory() ? join(pathOrDir, 'classifier.safetensors') : pathOrDir;
    if ((await fileMeta(file))?.['mae-classifier'] === undefined) throw e;
    throw new Error(`${(e as Error).message} (${file} is a classifier of mae finetune or linprobe, not a pre-training checkpoint: loadClassifier reads it)`, { cause: e });
  }
}

/**
 * The format of the training checkpoint at `path` (CHECKPOINT_FORMAT, FINETUNE_CHECKPOINT_FORMAT, ...; its header
 * alone is read), or null for any other file.
 */
export async function trainingCheckpointFormat(path: string): Promise<string | null> {
  const mae = (await fileMeta(path))?.mae;
  if (typeof mae !== 'string') return null;
  try {
    const format = (JSON.parse(mae) as { format?: unknown }).format;
    return typeof format === 'string' ? format : null;
  } catch {
    return null;
  }
}

/** The "__metadata__" of the safetensors file at `path` (its header alone is read), or null for any other file. */
async function fileMeta(path: string): Promise<Record<string, unknown> | null> {
  if (!existsSync(path)) return null;
  const h = await fsp.open(path, 'r');
  try {
    return await headerMeta(h);
  } finally {
    await h.close();
  }
}

/** The "__metadata__" of the header of the safetensors file open at `h`, or null for any other file. */
async function headerMeta(h: FileHandle): Promise<Record<string, unknown> | null> {
  try {
    const size = (await h.stat()).size;
    const prefix = new Uint8Array(8);
    if ((await h.read(prefix, 0, 8, 0)).bytesRead < 8) return null;
    const n = Number(new DataView(prefix.buffer).getBigUint64(0, true));
    if (!(n > 1 && n <= MAX_HEADER_BYTES && n <= size - 8)) return null;
    const header = new Uint8Array(n);
    await h.read(header, 0, n, 8);
    if (header[0] !== 0x7b) return null;
    const meta = (JSON.parse(new TextDecoder().decode(header)) as { __metadata__?: unknown }).__metadata__;
    return isObject(meta) ? meta : null;
  } catch {
    return null;
  }
}

/** The meta of a checkpoint of other code: its config, no training position, no options. */
function externalMeta(config: MaeConfig, format: string): CheckpointMeta {
  return { format: `external ${format}`, config, position: { epoch: 0, iter: 0, step: 0 }, optimizer: null, options: {}, createdAt: '' };
}

/** Reads a checkpoint file (or the checkpoint in a run folder); other code's checkpoints as weights (see above). */
export async function loadCheckpoint(pathOrDir: string): Promise<LoadedCheckpoint> {
  expectString('loadCheckpoint', 'pathOrDir', pathOrDir, 'a file or folder path');
  return (
    (await readOwn(pathOrDir)) ??
    asWeights(pathOrDir, async () => {
      const file = await readWeights(pathOrDir);
      return { path: file.path ?? pathOrDir, meta: externalMeta(maeConfigFromWeights(file).config, file.format), weights: file.weights, optimizer: new Map() };
    })
  );
}

/** The metadata's structure: what resume and loadModel read from it must be there, with the right types. */
function checkMeta(meta: unknown, path: string, format: string): asserts meta is CheckpointMeta {
  if (!isObject(meta)) throw new Error(`${path}: the checkpoint metadata is damaged: not an object`);
  // (the two kinds of training checkpoint both sit in a run folder's checkpoint.safetensors: said by name)
  if (meta.format === FINETUNE_CHECKPOINT_FORMAT && format === CHECKPOINT_FORMAT)
    throw new Error(`${path} is the training checkpoint of a fine-tuning run (mae finetune --resume continues it), not a pre-training checkpoint`);
  if (meta.format === CHECKPOINT_FORMAT && format === FINETUNE_CHECKPOINT_FORMAT)
    throw new Error(`${path} is a pre-training checkpoint (mae pretrain --resume continues it), not the checkpoint of a fine-tuning run`);
  if (meta.format !== format) throw new Error(`${path}: checkpoint format '${String(meta.format)}' is not '${format}'`);
  const problem = metaProblem(meta);
  if (problem) throw new Error(`${path}: the checkpoint metadata is damaged: ${problem}`);
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** What is wrong with the metadata's fields (all but the format), or null: checked on loading and before saving. */
function metaProblem(meta: Record<string, unknown>): string | null {
  const count = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (!isObject(meta.config)) return 'config is not an object';
  if (!isObject(meta.options)) return 'options is not an object';
  for (const [k, min] of [['threads', 1], ['workers', 0], ['checkpointEvery', 0], ['logEvery', 1], ['visualizeEvery', 0]] as const) {
    const v = meta.options[k];
    if (v !== undefined && !(count(v) && (v as number) >= min)) return `options.${k} must be an integer >= ${min}`;
  }
  const p = meta.position;
  if (!isObject(p) || !count(p.epoch) || !count(p.iter) || !count(p.step)) return 'position must hold integer epoch, iter and step';
  const o = meta.optimizer;
  if (!(o === null || (isObject(o) && count(o.step) && typeof o.lr === 'number' && Number.isFinite(o.lr) && o.lr >= 0)))
    return 'optimizer must be null or hold an integer step and a finite lr >= 0';
  if (o !== null && o.steps !== undefined && !(isObject(o.steps) && Object.values(o.steps).every(count)))
    return "optimizer.steps must be an object of integer step counts by parameter ('<group>.<index>')";
  const d = meta.data;
  if (d !== undefined && !(isObject(d) && count(d.images) && typeof d.fingerprint === 'string')) return 'data must hold an integer count of images and a fingerprint string';
  const e = meta.epochLoss;
  if (e !== undefined && !(isObject(e) && typeof e.sum === 'number' && Number.isFinite(e.sum) && count(e.steps)))
    return 'epochLoss must hold a finite sum and an integer count of steps';
  const { device, precision, bucketMb, knn } = meta.options;
  if (device !== undefined && typeof device !== 'string') return 'options.device must be a string';
  if (precision !== undefined && precision !== 'fp32' && precision !== 'bf16') return "options.precision must be 'fp32' or 'bf16'";
  if (bucketMb !== undefined && !(typeof bucketMb === 'number' && bucketMb > 0 && Number.isFinite(bucketMb))) return 'options.bucketMb must be a positive number';
  if (knn !== undefined && knn !== null && !(isObject(knn) && count(knn.every))) return 'options.knn must be null or hold an integer every';
  const w = meta.logWindow;
  if (w !== undefined && !(isObject(w) && typeof w.loss === 'number' && Number.isFinite(w.loss) && count(w.steps) && count(w.images) && typeof w.seconds === 'number' && w.seconds >= 0 && Number.isFinite(w.seconds)))
    return 'logWindow must hold a finite loss, integer counts of steps and images and finite seconds >= 0';
  if (meta.format === FINETUNE_CHECKPOINT_FORMAT) {
    const r = meta.random;
    const state = (g: unknown) => isObject(g) && Array.isArray(g.s) && g.s.length === 4 && (g.spareNormal === null || typeof g.spareNormal === 'number');
    if (!(isObject(r) && state(r.augmentation) && state(r.dropPath))) return 'random must hold the generator states augmentation and dropPath';
    const h = meta.history;
    if (!(Array.isArray(h) && h.every((e) => isObject(e) && count(e.epoch) && typeof e.loss === 'number'))) return 'history must be an array of { epoch, loss }';
    if (!(typeof meta.trainSeconds === 'number' && Number.isFinite(meta.trainSeconds) && meta.trainSeconds >= 0)) return 'trainSeconds must be a finite number >= 0';
    const l = meta.loadReport;
    const names = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string');
    if (!(isObject(l) && count(l.loaded) && names(l.ignored) && names(l.missing))) return 'loadReport must hold a count loaded and the names ignored and missing';
  }
  return null;
}

/**
 * The model saved in a checkpoint, ready to use; other code's checkpoints through MaskedAutoencoder.fromPretrained
 * (an encoder-only one has loadReport.decoderLoaded false).
 */
export async function loadModel(pathOrDir: string): Promise<{ model: MaskedAutoencoder; meta: CheckpointMeta }> {
  expectString('loadModel', 'pathOrDir', pathOrDir, 'a file or folder path');
  const ck = await readOwn(pathOrDir);
  if (ck === null)
    return asWeights(pathOrDir, async () => {
      const model = await MaskedAutoencoder.fromPretrained(pathOrDir);
      return { model, meta: externalMeta(model.config, model.loadReport!.format) };
    });
  const path = ck.path;
  checkConfigFits(ck.meta.config, ck.weights, path);
  let model: MaskedAutoencoder | undefined;
  try {
    model = new MaskedAutoencoder(ck.meta.config);
    model.loadStateDict(ck.weights);
  } catch (e) {
    model?.dispose();
    throw new Error(`${path}: the checkpoint's model cannot be built from it: ${(e as Error).message}`);
  }
  return { model, meta: ck.meta };
}

/**
 * The sizes in the config must be those of the stored weights (widths, depths, patch, sequence length, MLP width),
 * checked before the model is built: a damaged config could otherwise ask for a model of any size.
 */
function checkConfigFits(config: Partial<MaeConfig>, weights: Map<string, { shape: number[] }>, path: string): void {
  const shape = (name: string) => weights.get(name)?.shape;
  const depth = (prefix: string) => new Set([...weights.keys()].flatMap((k) => (k.startsWith(prefix) ? [k.slice(prefix.length).split('.')[0]] : []))).size;
  const c = { ...config };
  const checks: [string, unknown, unknown][] = [
    ['embedDim', c.embedDim, shape('cls_token')?.[2]],
    ['decoderEmbedDim', c.decoderEmbedDim, shape('decoder_embed.weight')?.[0]],
    ['inChans', c.inChans, shape('patch_embed.proj.weight')?.[1]],
    ['patchSize', c.patchSize, shape('patch_embed.proj.weight')?.[2]],
    ['(imgSize / patchSize)^2 + 1', typeof c.imgSize === 'number' && typeof c.patchSize === 'number' ? (c.imgSize / c.patchSize) ** 2 + 1 : c.imgSize, shape('pos_embed')?.[1]],
    ['depth', c.depth, depth('blocks.')],
    ['decoderDepth', c.decoderDepth, depth('decoder_blocks.')],
  ];
  const hidden = shape('blocks.0.mlp.fc1.weight')?.[0];
  if (hidden !== undefined && typeof c.embedDim === 'number' && typeof c.mlpRatio === 'number')
    checks.push(['floor(embedDim * mlpRatio)', Math.floor(c.embedDim * c.mlpRatio), hidden]);
  const wrong = checks.filter(([, want, stored]) => want !== stored);
  if (wrong.length)
    throw new Error(`${path}: the checkpoint's config does not match its weights: ${wrong.map(([k, want, stored]) => `${k} ${JSON.stringify(want)} in the config, ${JSON.stringify(stored)} in the weights`).join('; ')}`);
}

/**
 * Cuts the log back to a checkpoint's position before a resumed run appends to it: the lines of steps after
 * `pos.step`, a partial line (written at maxSteps between two of the run's lines, whose sums the checkpoint carries
 * on), and kNN lines (pretrain) and epoch-end lines (finetune) of epochs not finished at `pos`, came from the
 * interrupted run and are written again by this one; a torn last line (a kill during an append) goes too. The file is
 * replaced atomically.
 */
export async function cutLog(path: string, pos: TrainPosition): Promise<void> {
  if (!existsSync(path)) return;
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  if (!text.endsWith('\n')) lines.pop();  // no newline after it: a partial line
  const kept = lines.filter((line) => {
    if (line.trim() === '') return false;
    let entry: { step?: unknown; knnEpoch?: unknown; epochEnd?: unknown; partial?: unknown };
    try {
      entry = JSON.parse(line);
    } catch {
      return false;
    }
    if (typeof entry.step === 'number') return entry.step <= pos.step && entry.partial !== true;
    if (typeof entry.knnEpoch === 'number') return entry.knnEpoch <= pos.epoch;
    if (typeof entry.epochEnd === 'number') return entry.epochEnd <= pos.epoch;
    return true;
  });
  const cut = kept.map((l) => l + '\n').join('');
  if (cut !== text) await writeFileAtomic(path, cut);
}

/**
 * The thread count of a resumed run: the one given (OMP_NUM_THREADS set counts as given), else the run's (`saved`),
 * where it runs on as many processes as the run did (`sameProcesses`; else each takes its default). Another count
 * than the run's is noted in `changes`: the result is then not bit-identical to the uninterrupted run's.
 */
export function resumeThreads(given: number | undefined, saved: number | undefined, sameProcesses: boolean, changes: string[]): number | undefined {
  if (saved === undefined) return given;
  let threads = given;
  const env = Number(process.env.OMP_NUM_THREADS);
  if (threads === undefined && Number.isInteger(env) && env > 0) threads = env;
  if (threads === undefined && sameProcesses) threads = saved;
  else if (threads !== undefined && threads !== saved) changes.push(`${threads} threads, not the run's ${saved}`);
  return threads;
}

/**
 * A resumed run's data against the run's (`saved`, its checkpoint's; absent in checkpoints written before it was
 * kept: unchecked): another number of images would change every epoch's order and the schedule, which the returned
 * message says (null: the same number); changed images (the fingerprint: 16 of them hashed) only make the result
 * differ, which goes to `changes`. `name` names the data.
 */
export function resumeDataProblem(saved: CheckpointMeta['data'], now: { images: number; fingerprint: string }, name: string, changes: string[]): string | null {
  if (!saved) return null;
  if (saved.images !== now.images)
    return `resume: the data is not the run's: ${name} has ${now.images} images now, ${saved.images} when the run began; resume on the run's own data, or start a new run on this data (--overwrite, or another --out)`;
  if (saved.fingerprint !== now.fingerprint) changes.push(`the data's images differ from the run's (fingerprint ${now.fingerprint}, not ${saved.fingerprint})`);
  return null;
}
