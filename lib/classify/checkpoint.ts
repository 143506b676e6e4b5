/**
 * Classifier files: one safetensors file with the classifier's parameters under their official names and, as JSON
 * in the header metadata ("mae-classifier"), its config and whatever the training run wants to record. And the
 * encoder of a pre-training checkpoint turned into a classifier (weights by name, decoder ignored).
 */
import { existsSync, linkSync, readFileSync, readdirSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { threadId } from 'node:worker_threads';
import { expectInstance, expectObject, expectString, jsonProblem } from '../check.js';
import { checkWritableFolder, madeByEndedProcess, makeDirs, removeStaleTemps } from '../io/atomic.js';
import { readSafetensors, writeSafetensors, type RawTensor } from '../io/safetensors.js';
import { CHECKPOINT_FILE, FINETUNE_CHECKPOINT_FORMAT, loadCheckpoint, trainingCheckpointFormat } from '../train/checkpoint.js';
import { native } from '../native.js';
import { withoutInit } from '../nn/init.js';
import { VisionTransformerClassifier, classifierConfigFrom, type ClassifierConfig } from './model.js';

export const CLASSIFIER_FORMAT = 'masked-autoencoder/classifier/1';
export const CLASSIFIER_FILE = 'classifier.safetensors';

/**
 * The files that make a folder a run's (finetune, linprobe, pretrain): a folder holding any of them is not written
 * into by a new run unless it is asked to overwrite it.
 */
export const RUN_FILES = ['checkpoint.safetensors', CLASSIFIER_FILE, 'results.json', 'log.jsonl', 'head.safetensors'] as const;

/**
 * Refuses an output folder that holds a run (any of RUN_FILES), naming the folder and the file, unless `overwrite`;
 * with `overwrite`, one that holds the checkpoint the job starts from, which overwriting would remove. Reads only.
 */
export function checkRunFolder(job: string, outDir: string, overwrite: boolean | undefined, checkpoint?: string): void {
  checkWritableFolder(job, outDir);
  const held = RUN_FILES.find((f) => existsSync(join(outDir, f)));
  if (held === undefined) return;
  if (!overwrite)
    throw new Error(`${job}: ${outDir} holds a run already (${held}): choose another folder (--out), or start again there with --overwrite (overwrite), which removes that run's files`);
  const from = checkpoint === undefined ? null : resolve(checkpoint);
  if (from !== null && (from === resolve(outDir) || RUN_FILES.some((f) => from === resolve(outDir, f))))
    throw new Error(`${job}: ${outDir} holds the checkpoint this run starts from (${checkpoint}), which --overwrite would remove: choose another folder (--out)`);
}

/**
 * Removes the run in `outDir`: its RUN_FILES (results first, so that none is left beside the files of another run),
 * its confusion matrix and a pre-training run's reconstruction figures.
 */
export function removeRun(outDir: string): void {
  for (const f of ['results.json', CLASSIFIER_FILE, 'head.safetensors', 'checkpoint.safetensors', 'log.jsonl', 'confusion.png']) rmSync(join(outDir, f), { force: true });
  const figures = join(outDir, 'reconstructions');
  if (!existsSync(figures)) return;
  for (const f of readdirSync(figures, { withFileTypes: true }))
    if (f.isFile() && /^(epoch-\d{3,}|step-\d{6,})\.png$/.test(f.name)) rmSync(join(figures, f.name), { force: true });
}

/**
 * Removes the temporary files that writes of a run's files (RUN_FILES, the confusion matrix) left in `outDir` when
 * their process was killed (removeStaleTemps); returns their paths.
 */
export function removeStaleWrites(outDir: string): string[] {
  return [...RUN_FILES, 'confusion.png'].flatMap((f) => removeStaleTemps(join(outDir, f)));
}

/** The lock file of a run folder, naming the process (pid, host) and thread of the run that writes there. */
export const LOCK_FILE = '.lock';

interface LockHolder {
  pid: number;
  host: string;
  thread: number;
}

/**
 * Takes the output folder `outDir` for a run of `job` (pretrain, finetune, linprobe; in a data-parallel run, rank 0,
 * the one that writes), before the run writes or removes anything there: makes the folder, and in it LOCK_FILE, created
 * only where none exists, naming this process and thread. A folder whose lock names a process that runs (or one on
 * another host, which cannot be checked) is refused, naming the folder and that process. A lock whose process has
 * ended without removing it (this host, and its pid no longer runs or is this process's, in a lock older than this
 * process) is taken over, and `warn` says so. The lock is removed by the returned object's dispose(), which the run
 * calls however it ends, or else when the process exits (process.exit: a second Ctrl-C), and with it the folder if
 * the lock made it and the run left it empty; releaseRunFolder removes that of a worker thread stopped by
 * Worker.terminate().
 */
export function lockRunFolder(job: string, outDir: string, warn: (message: string) => void): { dispose(): void } {
  checkWritableFolder(job, outDir);
  const made = !existsSync(outDir);
  makeDirs(outDir);
  const path = join(outDir, LOCK_FILE);
  let tookOver: LockHolder | null = null;
  for (;;) {
    if (createLock(path)) break;
    const found = readLock(path);
    if (found === null) continue; // removed since: try again
    const { holder, mtimeMs } = found;
    const ended = holder !== null && holder.host === hostname() && madeByEndedProcess(holder.pid, mtimeMs);
    if (!ended)
      throw new Error(
        `${job}: ${outDir} is in use by another run (${holder ? `process ${holder.pid} on ${holder.host}` : `${path} names no process`}): wait for it to end or choose another folder (--out); if no run writes there, remove ${path}`,
      );
    // moved aside in one step, then removed only if it is still the lock judged dead: a run that took it over first
    // (and wrote its own lock since) would otherwise lose its lock to this one; such a lock is put back
    const aside = `${path}.${process.pid}.${threadId}.stale`;
    try {
      renameSync(path, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed since: try again
      throw e;
    }
    const moved = readLock(aside);
    if (moved !== null && moved.mtimeMs === mtimeMs && JSON.stringify(moved.holder) === JSON.stringify(holder)) tookOver = holder;
    else {
      try {
        linkSync(aside, path);
      } catch (e) {
        // EEXIST: a third run's lock is there already, and holds the folder; else a file system without links
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') renameSync(aside, path);
      }
    }
    rmSync(aside, { force: true });
  }
  const release = () => {
    releaseRunFolder(outDir);
    // a folder this lock made and the run left empty (it failed before writing) is not left behind
    if (made) {
      try {
        rmdirSync(outDir);
      } catch {
        // not empty: the run wrote there
      }
    }
  };
  process.on('exit', release);
  const lock = {
    dispose: () => {
      process.off('exit', release);
      release();
    },
  };
  if (tookOver) {
    try {
      warn(`took over ${path}, the lock of a run that ended without removing it (process ${tookOver.pid}, no longer running)`);
    } catch (e) {
      lock.dispose();
      throw e;
    }
  }
  return lock;
}

/**
 * Removes the lock of `outDir` if it names this process and its thread `thread` (default: the calling thread): the end
 * of lockRunFolder's lock, and the lock of a worker thread stopped before its run could remove it. Returns whether it
 * removed one. Never throws (it runs in exit handlers).
 */
export function releaseRunFolder(outDir: string, thread = threadId): boolean {
  try {
    const path = join(outDir, LOCK_FILE);
    const holder = readLock(path)?.holder;
    if (!(holder && holder.pid === process.pid && holder.host === hostname() && holder.thread === thread)) return false;
    rmSync(path, { force: true });
    return true;
  } catch {
    // a lock that cannot be read (a path through a file, no permission, an outDir of the wrong type) is none this
    // thread made; one that cannot be removed stays, and the next run into the folder takes it over once this process
    // has ended
    return false;
  }
}

/**
 * Creates the lock file at `path` naming this process and thread, only where none exists (false: one does). The file
 * appears whole: written under another name first, then linked to `path` (a file system without hard links: created
 * and written in place, where another run could for an instant find it empty and be refused with a lock that names no
 * process).
 */
function createLock(path: string): boolean {
  const text = JSON.stringify({ pid: process.pid, host: hostname(), thread: threadId } satisfies LockHolder) + '\n';
  const temp = `${path}.${process.pid}.${threadId}.new`;
  writeFileSync(temp, text);
  try {
    linkSync(temp, path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
  } finally {
    rmSync(temp, { force: true });
  }
  try {
    writeFileSync(path, text, { flag: 'wx' });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

/** The holder a lock file names (null: a damaged file) and its time, or null where there is no lock file. */
function readLock(path: string): { holder: LockHolder | null; mtimeMs: number } | null {
  let text: string;
  let mtimeMs: number;
  try {
    mtimeMs = statSync(path).mtimeMs;
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  let h: Partial<LockHolder>;
  try {
    h = JSON.parse(text) as Partial<LockHolder>;
  } catch {
    return { holder: null, mtimeMs };
  }
  const ok = h !== null && Number.isSafeInteger(h.pid) && h.pid! > 0 && typeof h.host === 'string' && Number.isSafeInteger(h.thread);
  return { holder: ok ? (h as LockHolder) : null, mtimeMs };
}

export interface ClassifierMeta {
  format: string;
  config: ClassifierConfig;
  createdAt: string;
  [k: string]: unknown;
}

export async function saveClassifier(path: string, model: VisionTransformerClassifier, extra: Record<string, unknown> = {}): Promise<void> {
  expectString('saveClassifier', 'path', path, 'a file path');
  expectInstance('saveClassifier', 'model', model, VisionTransformerClassifier, 'a VisionTransformerClassifier');
  expectObject('saveClassifier', 'extra', extra);
  for (const k of ['format', 'config'])
    if (Object.hasOwn(extra, k)) throw new Error(`saveClassifier: ${path} not written: extra may not set '${k}' (the file's own, which loadClassifier reads)`);
  const unstorable = jsonProblem(extra, 'extra');
  if (unstorable) throw new Error(`saveClassifier: ${path} not written, JSON cannot store its metadata: ${unstorable}`);
  const tensors = new Map<string, RawTensor>();
  for (const [name, p] of model.namedParameters()) tensors.set(name, { shape: [...p.shape], data: p.dataSync() });
  const meta: ClassifierMeta = { format: CLASSIFIER_FORMAT, config: model.config, createdAt: new Date().toISOString(), ...extra };
  await writeSafetensors(path, tensors, { 'mae-classifier': JSON.stringify(meta) });
}

export async function loadClassifier(pathOrDir: string): Promise<{ model: VisionTransformerClassifier; meta: ClassifierMeta }> {
  expectString('loadClassifier', 'pathOrDir', pathOrDir, 'a file or folder path');
  const folder = existsSync(pathOrDir) && statSync(pathOrDir).isDirectory();
  const path = folder ? join(pathOrDir, CLASSIFIER_FILE) : pathOrDir;
  if (!existsSync(path)) {
    const training = folder ? await trainingCheckpointFormat(join(pathOrDir, CHECKPOINT_FILE)) : null;
    throw new Error(
      `classifier not found: ${path}` +
        (training === FINETUNE_CHECKPOINT_FORMAT
          ? ` (${pathOrDir} holds an unfinished fine-tuning run, which writes its classifier when it ends: mae finetune --resume --out ${pathOrDir} continues it)`
          : folder && existsSync(join(pathOrDir, CHECKPOINT_FILE))
            ? ` (${pathOrDir} holds a pre-training run, which mae eval scores with --knn: a classifier comes from mae finetune or linprobe, or classifierFromPretrain)`
            : ''),
    );
  }
  try {
    return await readClassifier(path);
  } catch (e) {
    const message = (e as Error).message;
    throw new Error(message.startsWith(path) ? message : `${path}: ${message}`, { cause: e });
  }
}

async function readClassifier(path: string): Promise<{ model: VisionTransformerClassifier; meta: ClassifierMeta }> {
  const { tensors, metadata } = await readSafetensors(path);
  const raw = metadata['mae-classifier'];
  if (!raw) throw new Error(`not a classifier file (no "mae-classifier" metadata${metadata.mae ? '; it is a pre-training checkpoint: loadModel / loadCheckpoint read it' : ''})`);
  let meta: ClassifierMeta;
  try {
    meta = JSON.parse(raw) as ClassifierMeta;
  } catch (e) {
    throw new Error(`its "mae-classifier" metadata is not JSON: ${(e as Error).message}`);
  }
  if (meta === null || typeof meta !== 'object') throw new Error(`its "mae-classifier" metadata is not an object: ${raw.slice(0, 80)}`);
  if (meta.format !== CLASSIFIER_FORMAT) throw new Error(`format '${meta.format}' is not '${CLASSIFIER_FORMAT}'`);
  // the config against the stored tensors before the model is made (a config read from a file may ask for any
  // size): first what sizes it (tokens, width, depth), then every parameter's shape with no weight memory made
  const c = meta.config as Partial<ClassifierConfig> | undefined;
  const pos = tensors.get('pos_embed')?.shape;
  const depth = new Set([...tensors.keys()].flatMap((k) => (k.startsWith('blocks.') ? [k.split('.')[1]] : []))).size;
  if (c !== null && typeof c === 'object' && typeof c.imgSize === 'number' && typeof c.patchSize === 'number' && pos) {
    const sized: [string, unknown, unknown][] = [
      ['(imgSize / patchSize)^2 + 1 tokens', (c.imgSize / c.patchSize) ** 2 + 1, pos[1]],
      ['embedDim', c.embedDim, pos[2]],
      ['depth', c.depth, depth],
    ];
    const wrong = sized.filter(([, want, stored]) => want !== stored);
    if (wrong.length)
      throw new Error(`its tensors do not fit the config in its metadata: ${wrong.map(([k, want, stored]) => `${k} ${want} in the config, ${stored} in the tensors`).join('; ')}`);
  }
  const bare = withoutInit(() => new VisionTransformerClassifier(meta.config));
  const own = bare.namedParameters();
  const misfit = own.flatMap(([k, p]) => {
    const t = tensors.get(k);
    if (!t) return [`${k} is missing`];
    if (t.shape.join(',') !== p.shape.join(',')) return [`${k} is [${t.shape.join(', ')}], the config's model has [${p.shape.join(', ')}]`];
    if (!(t.data instanceof Float32Array)) return [`${k} is not float32`];
    return [];
  });
  const names = new Set(own.map(([k]) => k));
  const extra = [...tensors.keys()].filter((k) => !names.has(k));
  if (misfit.length || extra.length) {
    bare.dispose();
    throw new Error(`its tensors do not fit the config in its metadata: ${[...misfit, ...extra.map((k) => `${k} is not a parameter of that model`)].slice(0, 6).join('; ')}`);
  }
  for (const [k, p] of own) p.adoptHandle(native.fromArray(tensors.get(k)!.data as Float32Array, [...p.shape]));
  bare.eval();
  return { model: bare, meta };
}

export interface FromPretrainResult {
  model: VisionTransformerClassifier;
  loaded: string[];
  /** keys of the checkpoint not used (decoder, mask_token, the final norm with global pooling) */
  ignored: string[];
  /** parameters left as initialised (head, fc_norm) */
  missing: string[];
  /** the pre-training run's options (data, seed, ...) */
  pretrainOptions: Record<string, unknown>;
}

/**
 * A classifier on the encoder of a pre-training checkpoint (file or run folder). With `fromScratch` only the
 * architecture is taken and the weights stay randomly initialised (the baseline).
 */
export async function classifierFromPretrain(
  pathOrDir: string,
  opts: Partial<ClassifierConfig> & { seed?: number; fromScratch?: boolean } = {},
): Promise<FromPretrainResult> {
  expectString('classifierFromPretrain', 'pathOrDir', pathOrDir, 'a file or folder path');
  expectObject('classifierFromPretrain', 'opts', opts, false, 'e.g. { numClasses: 10 }');
  const ck = await loadCheckpoint(pathOrDir);
  const { seed, fromScratch, ...cfg } = opts;
  const model = new VisionTransformerClassifier(classifierConfigFrom(ck.meta.config, cfg), { seed: seed ?? 0 });
  if (fromScratch) return { model, loaded: [], ignored: [...ck.weights.keys()], missing: [...model.stateDict().keys()], pretrainOptions: ck.meta.options };
  try {
    return { model, ...model.loadEncoder(ck.weights), pretrainOptions: ck.meta.options };
  } catch (e) {
    model.dispose();
    throw new Error(`${ck.path}: ${(e as Error).message}`);
  }
}
