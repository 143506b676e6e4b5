/**
 * Images in, features or labels out: the work of `mae embed` and `mae classify`, as functions.
 *
 * Both read a checkpoint in any format readWeights reads (official .pth, Hugging Face folders, this library's runs),
 * list the images of a folder (class sub-folders or flat, as ImageFolder) or take one image file, and run batches
 * through the official evaluation transform (loadImages) and the model off the JavaScript thread (embedAsync /
 * forwardAsync), decoding the next batch while the current one is computed.
 */
import { accessSync, constants, existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describeValue, expectArrayOf, expectInteger, expectObject, expectOptions, expectString, type OptionType } from '../check.js';
import { VisionTransformerClassifier, type ClassifierConfig } from '../classify/model.js';
import { scanImageFolder, type OnBadFile } from '../data/folder.js';
import { loadImages } from '../data/images.js';
import { makeDirs } from '../io/atomic.js';
import { FOLDER_WEIGHT_FILES, readWeights } from '../io/weights.js';
import { writeSafetensors } from '../io/safetensors.js';
import { MaskedAutoencoder } from '../mae/model.js';
import { checkPrecision, type Precision } from '../mae/precision.js';
import type { MaeConfig } from '../mae/presets.js';
import * as ops from '../ops/index.js';
import { Tensor, tidy } from '../tensor.js';

export interface ImageRunOptions {
  /** weights: a .pth / .bin / .safetensors file or a Hugging Face / run folder */
  checkpoint: string;
  /** a folder of images (class sub-folders or flat) or one image file */
  data: string;
  /** images per batch (default 32) */
  batchSize?: number;
  /** side of the evaluation transform's crop (default the model's image size) */
  size?: number;
  /** normalisation statistics (default ImageNet's for RGB) */
  mean?: number[];
  std?: number[];
  /** called after each batch with the images done and the total */
  onProgress?: (done: number, total: number) => void;
  /** an image that cannot be read: 'skip' (default) leaves it out and lists it in the result; 'stop' ends the run */
  onBadFile?: OnBadFile;
  /** stops the run between batches: it rejects with the signal's reason (an AbortError), having written nothing */
  signal?: AbortSignal;
}

/** An image left out because it could not be read, and why. */
export interface SkippedImage {
  file: string;
  error: string;
}

export interface EmbedImagesOptions extends ImageRunOptions {
  /** the safetensors file to write */
  out: string;
  /** 'cls' (default): the cls token of the encoder's output; 'mean': the mean of its patch tokens */
  pool?: 'cls' | 'mean';
  /** the encoder's precision: 'fp32' (default) or 'bf16' (bfloat16 activations; the features written are float32) */
  precision?: Precision;
  /** set what the checkpoint cannot tell (head counts of unofficial widths) */
  overrides?: Partial<MaeConfig>;
}

export interface ClassifyImagesOptions extends ImageRunOptions {
  /** a text file with one class name per line, in class-index order */
  labels?: string;
  /** how many of the best classes to report per image (default 5) */
  topk?: number;
  overrides?: Partial<ClassifierConfig>;
  /** called for each image with its best classes, best first */
  onResult?: (file: string, top: { index: number; label: string; probability: number }[]) => void;
}

/** The type of each option of the image commands (the Records make the compiler list every key of their options). */
const IMAGE_RUN_OPTIONS = {
  checkpoint: 'string', data: 'string', batchSize: 'number', size: 'number', mean: 'number[]', std: 'number[]', onProgress: 'function', onBadFile: 'string', signal: 'AbortSignal',
} as const satisfies Record<keyof ImageRunOptions, OptionType>;
const EMBED_OPTIONS = { ...IMAGE_RUN_OPTIONS, out: 'string', pool: 'string', precision: 'string', overrides: 'object' } as const satisfies Record<keyof EmbedImagesOptions, OptionType>;
const CLASSIFY_OPTIONS = { ...IMAGE_RUN_OPTIONS, labels: 'string', topk: 'number', overrides: 'object', onResult: 'function' } as const satisfies Record<keyof ClassifyImagesOptions, OptionType>;

/**
 * The options of `where` (embedImages, classifyImages) whose types `types` gives, and the ranges of those both take,
 * checked before any work: a bad batch size or statistics are not found after the model is loaded.
 */
function checkImageRun(where: string, o: ImageRunOptions, types: Readonly<Record<string, OptionType>>): void {
  expectOptions(where, o, types);
  for (const k of ['checkpoint', 'data'] as const) expectString(where, k, o[k], 'a path');
  for (const k of ['batchSize', 'size'] as const) if (o[k] !== undefined) expectInteger(where, k, o[k], 1);
  if (o.mean !== undefined) expectArrayOf(where, 'mean', o.mean, (m) => Number.isFinite(m), 'a finite number');
  if (o.std !== undefined) expectArrayOf(where, 'std', o.std, (v) => Number.isFinite(v) && (v as number) > 0, 'a finite number > 0');
  if (o.onBadFile !== undefined && o.onBadFile !== 'skip' && o.onBadFile !== 'stop') throw new Error(`${where}: onBadFile must be 'skip' or 'stop', got ${describeValue(o.onBadFile)}`);
}

/**
 * Checks, before any work, that a file can be written at `path` (`flag` names the option in the messages): not empty,
 * not a folder, device, pipe or socket, not the weights file of the checkpoint `reads` (a file, or a folder whose
 * FOLDER_WEIGHT_FILES are), its folder existing or created now (makeDirs) and writable. Throws an Error naming the
 * flag and path.
 */
export function checkOutputFile(path: string, flag: string, reads?: string): void {
  if (typeof path !== 'string' || path === '') throw new Error(`${flag}: the output file path is empty`);
  if (path.endsWith('/') || path.endsWith(sep)) throw new Error(`${flag} ${path}: ends in '${sep}', a folder; give the path of the file to write`);
  const existing = existsSync(path) ? statSync(path) : null;
  if (existing?.isDirectory()) throw new Error(`${flag} ${path}: is a folder; give the path of the file to write`);
  if (existing && !existing.isFile()) throw new Error(`${flag} ${path}: is not a regular file (a device, pipe or socket); give the path of the file to write`);
  if (existing && reads !== undefined && existsSync(reads)) {
    const target = realpathSync(path);
    const weights = statSync(reads).isDirectory() ? FOLDER_WEIGHT_FILES.map((f) => join(reads, f)) : [reads];
    if (weights.some((f) => existsSync(f) && realpathSync(f) === target))
      throw new Error(`${flag} ${path}: is the checkpoint's weights file (--checkpoint ${reads}), which writing would replace; give another path`);
  }
  const dir = dirname(resolve(path));
  try {
    makeDirs(dir);
  } catch (e) {
    throw new Error(`${flag} ${path}: ${(e as Error).message}`);
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new Error(`${flag} ${path}: its folder ${dir} is not writable`);
  }
}

/** The images to run: a folder's (sorted, with class labels in class mode) or a single file. */
async function listImages(data: string): Promise<{ files: string[]; labels: Int32Array | null; classes: string[]; root: string }> {
  if (!existsSync(data)) throw new Error(`${data}: no such file or folder`);
  if (!statSync(data).isDirectory()) return { files: [data], labels: null, classes: [], root: '.' };
  const index = await scanImageFolder(data);
  return { files: index.files, labels: index.classes.length ? index.labels : null, classes: index.classes, root: data };
}

/**
 * Runs `step` over batches of images, each with the indices in `files` of its images; the next batch is decoded while
 * `step` works on the current one. With onBadFile 'skip', a batch that fails is decoded again image by image: those
 * that cannot be read are left out (a batch of none is not run) and returned with why.
 */
async function forBatches(
  files: string[],
  o: ImageRunOptions,
  load: { size: number; channels: 1 | 3 },
  step: (images: Tensor, kept: number[]) => Promise<void>,
): Promise<SkippedImage[]> {
  const batch = o.batchSize ?? 32; // (checked by checkImageRun)
  const opts = { ...load, mean: o.mean, std: o.std };
  const skipped: SkippedImage[] = [];
  const decode = async (start: number): Promise<{ images: Tensor | null; kept: number[] }> => {
    const all = Array.from({ length: Math.min(batch, files.length - start) }, (_, i) => start + i);
    try {
      return { images: await loadImages(all.map((i) => files[i]!), opts), kept: all };
    } catch (e) {
      if (o.onBadFile === 'stop') throw e;
      const kept: number[] = [];
      for (const i of all) {
        try {
          (await loadImages([files[i]!], opts)).dispose();
          kept.push(i);
        } catch (err) {
          skipped.push({ file: files[i]!, error: (err as Error).message });
        }
      }
      return { images: kept.length ? await loadImages(kept.map((i) => files[i]!), opts) : null, kept };
    }
  };
  o.signal?.throwIfAborted();
  let next: ReturnType<typeof decode> | null = decode(0);
  for (let start = 0; next; start += batch) {
    const { images, kept } = await next;
    if (o.signal?.aborted) {
      images?.dispose();
      o.signal.throwIfAborted();
    }
    next = start + batch < files.length ? decode(start + batch) : null;
    next?.catch(() => undefined); // awaited next round; not an unhandled rejection meanwhile
    if (images) {
      try {
        await step(images, kept);
      } finally {
        images.dispose();
      }
    }
    o.onProgress?.(Math.min(start + batch, files.length), files.length);
  }
  return skipped;
}

/** The Error of a run whose images could none be read (onBadFile 'skip'): the image's, or naming the first and why. */
function noneRead(where: string, data: string, skipped: SkippedImage[]): Error {
  if (skipped.length === 1) return new Error(skipped[0]!.error);
  return new Error(`${where}: none of the ${skipped.length} images of ${data} could be read; the first: ${skipped[0]!.error}`);
}

/**
 * Embeds every image with the encoder of `checkpoint` and writes one safetensors file (atomically): `features`
 * [N, D] float32, `labels` [N] int32 when the folder has class sub-folders, and as metadata the file names
 * (`files`, JSON, relative to the data folder), `classes`, `pool`, `size` and `checkpoint`. The N rows are the images
 * read, in order: with onBadFile 'skip', those that could not be read are not among them (the result lists them).
 */
export async function embedImages(o: EmbedImagesOptions): Promise<{ count: number; dim: number; out: string; skipped: SkippedImage[] }> {
  expectObject('embedImages', 'options', o, false, 'e.g. { checkpoint, data, out }');
  checkImageRun('embedImages', o, EMBED_OPTIONS);
  expectString('embedImages', 'out', o.out, 'a file path');
  const pool = o.pool ?? 'cls';
  if (pool !== 'cls' && pool !== 'mean') throw new Error(`embedImages: pool must be 'cls' or 'mean', got ${describeValue(pool)}`);
  checkPrecision(o.precision, 'embedImages');
  checkOutputFile(o.out, 'out', o.checkpoint);
  const { files, labels, classes, root } = await listImages(o.data);
  const mae = await MaskedAutoencoder.fromPretrained(o.checkpoint, o.overrides).catch(async (e: Error) => {
    // a fine-tuned classifier pools its patch tokens through fc_norm: the final norm the features are taken after is not there
    const file = await readWeights(o.checkpoint).catch(() => null);
    if (file?.weights.has('fc_norm.weight') && !file.weights.has('norm.weight'))
      throw new Error(`${file.path}: a fine-tuned classifier (global pooling and fc_norm; the encoder's final norm is not kept): embed takes a pre-training checkpoint or a linear probe's classifier; mae classify runs a fine-tuned one`, { cause: e });
    throw e;
  });
  try {
    const c = mae.config;
    const size = o.size ?? c.imgSize;
    const D = c.embedDim;
    const features = new Float32Array(files.length * D);
    const read: number[] = [];
    const skipped = await forBatches(files, o, { size, channels: c.inChans === 1 ? 1 : 3 }, async (images, kept) => {
      const tokens = await mae.embedAsync(images, { precision: o.precision });
      const f = tidy(() => {
        const L = tokens.shape[1]! - 1;
        const B = tokens.shape[0]!;
        return (pool === 'cls' ? ops.reshape(ops.sliceTokens(tokens, 0, 1), [B, D]) : ops.meanTokens(ops.sliceTokens(tokens, 1, L))).dataSync();
      });
      tokens.dispose();
      features.set(f, read.length * D);
      read.push(...kept);
    });
    if (read.length === 0) throw noneRead('embedImages', o.data, skipped);
    const N = read.length;
    const tensors = new Map<string, { shape: number[]; data: Float32Array | Int32Array }>([['features', { shape: [N, D], data: features.subarray(0, N * D) }]]);
    if (labels) tensors.set('labels', { shape: [N], data: Int32Array.from(read, (i) => labels[i]!) });
    await writeSafetensors(o.out, tensors, {
      files: JSON.stringify(read.map((i) => relative(root, files[i]!))),
      classes: JSON.stringify(classes),
      pool,
      size: String(size),
      checkpoint: o.checkpoint,
    });
    return { count: N, dim: D, out: o.out, skipped };
  } finally {
    mae.dispose();
  }
}

/** The class names of a labels file, one a line (a final newline ends the last line); a blank name is refused. */
function readLabels(path: string): string[] {
  if (!existsSync(path)) throw new Error(`${path}: no such labels file`);
  if (statSync(path).isDirectory()) throw new Error(`${path}: is a folder, not a labels file (a text file of class names, one a line, in class-index order)`);
  const lines = readFileSync(path, 'utf8').split(/\r?\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  const names = lines.map((l) => l.trim());
  const blank = names.indexOf('');
  if (blank >= 0) throw new Error(`${path}: line ${blank + 1} is blank; the labels file needs one class name a line, in class-index order`);
  return names;
}

/**
 * The model's class of each class folder of the data (by folder index), and how it was found; or why it is not known,
 * and then nothing is scored. With a labels file whose names the folders use, the name of each folder that holds
 * images must be exactly one of its class names; without a labels file, or with one that names none of the folders
 * (synset folders n01440764, ... beside readable names), the folders in sorted order are the model's classes when
 * there are as many.
 */
function matchFolders(classes: string[], used: Set<number>, K: number, labels: { path: string; names: string[] } | null): { classOf: number[]; how: string } | { classOf: null; why: string } {
  if (labels === null || classes.every((c) => !labels.names.includes(c))) {
    if (classes.length === K)
      return { classOf: classes.map((_, i) => i), how: `labels from the folder layout: the ${K} class folders in sorted order are the model's classes${labels ? ` (no folder is named as a class of ${labels.path})` : ''}` };
    if (labels) return { classOf: null, why: `no class folder is named as a class of ${labels.path}, and the data has ${classes.length} class folders for the model's ${K} classes` };
    return { classOf: null, why: `the data has ${classes.length} class folders and the model ${K} classes; --labels FILE (the model's class names) would match the folders to them by name` };
  }
  const classOf = classes.map(() => -1);
  const missing: string[] = [];
  for (const f of [...used].sort((a, b) => a - b)) {
    const at = labels.names.indexOf(classes[f]!);
    const again = labels.names.indexOf(classes[f]!, at + 1);
    if (at < 0) missing.push(`'${classes[f]}'`);
    else if (again >= 0) return { classOf: null, why: `class folder '${classes[f]}' is the name of classes ${at} and ${again} of ${labels.path}` };
    else classOf[f] = at;
  }
  if (missing.length > 0)
    return { classOf: null, why: `class folder${missing.length > 1 ? 's' : ''} ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` and ${missing.length - 3} more` : ''} ${missing.length > 1 ? 'are' : 'is'} not among the class names of ${labels.path}` };
  return { classOf, how: `labels matched by name: each class folder is the class of that name in ${labels.path}` };
}

/**
 * Classifies every image with the classifier of `checkpoint` (an official fine-tuned checkpoint or this library's
 * classifier), reporting the `topk` most probable classes of each through onResult. Class names come from the labels
 * file, else from the data folder's class sub-folders when there are as many as the model's classes, else they are
 * the class indices. With class sub-folders whose classes are known (matchFolders: by name with a labels file, by
 * position without), returns the top-1 / top-k accuracy and `scoredBy`, how the folders were matched; with class
 * sub-folders that cannot be matched, no accuracy and `notScored`, why. `count` and the accuracy are of the images read:
 * with onBadFile 'skip', those that could not be read are left out (`skipped` lists them).
 */
export async function classifyImages(
  o: ClassifyImagesOptions,
): Promise<{ count: number; top1: number | null; topk: number | null; names: string[]; scoredBy: string | null; notScored: string | null; skipped: SkippedImage[] }> {
  expectObject('classifyImages', 'options', o, false, 'e.g. { checkpoint, data }');
  checkImageRun('classifyImages', o, CLASSIFY_OPTIONS);
  if (o.topk !== undefined) expectInteger('classifyImages', 'topk', o.topk, 1);
  const topk = o.topk ?? 5;
  const fileNames = o.labels !== undefined ? readLabels(o.labels) : null;
  const { files, labels, classes } = await listImages(o.data);
  const vit = await VisionTransformerClassifier.fromPretrained(o.checkpoint, o.overrides).catch((e: Error) => {
    // fromPretrained's advice (numClasses, a new head) is for training one: a random head classifies nothing
    const file = /^(.*): no classifier head \(head\.weight\)/.exec(e.message)?.[1];
    if (file === undefined) throw e;
    throw new Error(`${file}: no classifier head among the weights: a pre-training checkpoint (its encoder's features are what mae embed writes); classify takes a fine-tuned one (mae finetune or linprobe, mae_finetuned_vit_*.pth)`, { cause: e });
  });
  try {
    const K = vit.config.numClasses;
    const k = Math.min(topk, K);
    if (fileNames !== null && fileNames.length !== K) throw new Error(`${o.labels}: ${fileNames.length} class names, but the model has ${K} classes`);
    const names = fileNames ?? (classes.length === K ? classes : Array.from({ length: K }, (_, i) => String(i)));
    const match = labels === null ? null : matchFolders(classes, new Set(labels), K, fileNames === null ? null : { path: o.labels!, names: fileNames });
    const classOf = match?.classOf ?? null;
    let hits1 = 0;
    let hitsK = 0;
    let count = 0;
    const skipped = await forBatches(files, o, { size: o.size ?? vit.config.imgSize, channels: vit.config.inChans === 1 ? 1 : 3 }, async (images, kept) => {
      const logits = await vit.forwardAsync(images);
      const z = logits.dataSync();
      logits.dispose();
      for (let b = 0; b < images.shape[0]!; b++) {
        const row = z.subarray(b * K, (b + 1) * K);
        const max = Math.max(...row);
        const e = Array.from(row, (v) => Math.exp(v - max));
        const sum = e.reduce((s, v) => s + v, 0);
        const order = e.map((v, i) => [v / sum, i] as const).sort((x, y) => y[0] - x[0] || x[1] - y[1]).slice(0, k);
        o.onResult?.(files[kept[b]!]!, order.map(([probability, index]) => ({ index, label: names[index]!, probability })));
        if (classOf !== null) {
          const truth = classOf[labels![kept[b]!]!]!;
          if (order[0]![1] === truth) hits1++;
          if (order.some(([, i]) => i === truth)) hitsK++;
        }
      }
      count += kept.length;
    });
    if (count === 0) throw noneRead('classifyImages', o.data, skipped);
    const scored = classOf !== null;
    return {
      count,
      top1: scored ? hits1 / count : null,
      topk: scored ? hitsK / count : null,
      names,
      scoredBy: match !== null && 'how' in match ? match.how : null,
      notScored: match !== null && 'why' in match ? match.why : null,
      skipped,
    };
  } finally {
    vit.dispose();
  }
}
