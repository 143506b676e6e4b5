/**
 * loadWeights: the weights of a checkpoint file or folder, whatever made it, under the official MAE names, ready for
 * `model.loadStateDict`. Formats (detected from the contents, not the file name):
 *   - PyTorch .pth / .bin in the zip format (torch >= 1.6) or the legacy format (pth.ts; nothing is executed);
 *     a checkpoint dict's `model` entry is taken when present (opts.key names another), else the top level; the
 *     other entries (optimizer, epoch, scaler, args of the official training checkpoints) are skipped, and `args`
 *     is given back as plain data by readWeights;
 *   - safetensors files (this library's checkpoints, Hugging Face model.safetensors, any official-name file);
 *   - folders: a Hugging Face model folder (config.json + model.safetensors or pytorch_model.bin, or their sharded form:
 *     model.safetensors.index.json / pytorch_model.bin.index.json, whose `weight_map` names the shard of each
 *     tensor), or a run folder of this library (checkpoint.safetensors, classifier.safetensors). The shards are read
 *     one after the other into one state dict before the names are converted (a layer's query, key and value may lie
 *     in different shards).
 * Conversions: Hugging Face ViTMAE names -> official names (query/key/value fused into qkv; also the names of
 * ViTMAEModel, the encoder alone, which lack the `vit.` prefix; ViTForImageClassification's `classifier` -> `head`), a `model.` or `module.` prefix on every key removed, float16 / bfloat16 / float64 values -> float32. Tensors that are not
 * floating point (BatchNorm's num_batches_tracked) are skipped; so are Hugging Face names without an official one.
 * Names of neither naming are kept as they are (naming 'unknown'): loading them into a model lists what is missing.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { expectKnownKeys, expectObject, expectString, optionNames } from '../check.js';
import { detectNaming, fromHuggingFace, stripModelPrefix, type NamedTensor } from './names.js';
import { describeValue, PickleObject, PickleTensor, toPlain } from './pickle.js';
import { openTorchFile } from './pth.js';
import { FLOAT_DTYPES, readSafetensors } from './safetensors.js';

export type WeightsFormat = 'pth-zip' | 'pth-legacy' | 'safetensors';

export interface WeightsOptions {
  /** the entry of a checkpoint dict that holds the weights (default: `model` when present, else the top level) */
  key?: string;
}

/** What readWeights found in a checkpoint. */
export interface WeightsFile {
  /** the file the weights came from (inside a folder: model.safetensors, pytorch_model.bin, checkpoint.safetensors; the index file of sharded weights) */
  path: string;
  format: WeightsFormat;
  /** the naming the file used: Hugging Face names are converted to official ones; other names are kept as they are */
  naming: 'official' | 'huggingface' | 'unknown';
  /** the checkpoint entry the weights were taken from, null for a bare state dict */
  key: string | null;
  /** name -> float32 tensor, official names (the weights of the encoder, decoder, classifier head, ...) */
  weights: Map<string, NamedTensor>;
  /** what was not taken, each with why: other checkpoint entries, non-float tensors, names of no known model */
  skipped: string[];
  /** the training run's arguments (the official checkpoints' argparse.Namespace) as plain data, else null */
  args: Record<string, unknown> | null;
  /** the checkpoint's `epoch` entry, else null */
  epoch: number | null;
  /** a Hugging Face folder's config.json, else null */
  hfConfig: Record<string, unknown> | null;
  /** the header metadata of a safetensors file (this library's checkpoints keep their model config there) */
  metadata: Record<string, string>;
}

/** The weights of a checkpoint under the official names (see readWeights for what else it holds). */
export async function loadWeights(path: string, opts: WeightsOptions = {}): Promise<Map<string, NamedTensor>> {
  expectString('loadWeights', 'path', path, 'a file or folder path');
  expectObject('loadWeights', 'opts', opts);
  expectKnownKeys('loadWeights', 'opts', opts, optionNames<WeightsOptions>({ key: true }));
  if (opts.key !== undefined) expectString('loadWeights', 'key', opts.key, 'a string (the checkpoint entry that holds the weights)');
  return (await readWeights(path, opts)).weights;
}

/** The files a folder's weights are read from, the first found: Hugging Face's (whole, then sharded), then a run folder's. */
export const FOLDER_WEIGHT_FILES = [
  'model.safetensors',
  'model.safetensors.index.json',
  'pytorch_model.bin',
  'pytorch_model.bin.index.json',
  'checkpoint.safetensors',
  'classifier.safetensors',
] as const;
const HF_WEIGHT_FILES: readonly string[] = FOLDER_WEIGHT_FILES.slice(0, 4);

/** Reads a checkpoint file or folder: its weights under the official names, and what else it says. */
export async function readWeights(path: string, opts: WeightsOptions = {}): Promise<WeightsFile> {
  expectString('readWeights', 'path', path, 'a file or folder path');
  expectObject('readWeights', 'opts', opts);
  expectKnownKeys('readWeights', 'opts', opts, optionNames<WeightsOptions>({ key: true }));
  if (opts.key !== undefined) expectString('readWeights', 'key', opts.key, 'a string (the checkpoint entry that holds the weights)');
  if (!existsSync(path)) throw new Error(`${path}: no such file or folder`);
  let file = path;
  let hfConfig: Record<string, unknown> | null = null;
  if (statSync(path).isDirectory()) {
    const found = FOLDER_WEIGHT_FILES.find((f) => existsSync(join(path, f)));
    if (!found)
      throw new Error(
        `${path}: a folder without weights: expected a Hugging Face model folder (config.json + model.safetensors or ` +
          `pytorch_model.bin, or sharded: model.safetensors.index.json or pytorch_model.bin.index.json) or a run folder ` +
          `(checkpoint.safetensors or classifier.safetensors)`,
      );
    file = join(path, found);
    if (HF_WEIGHT_FILES.includes(found)) hfConfig = readHfConfig(join(path, 'config.json'));
  }
  const raw = file.endsWith('.index.json') ? await readShards(file, opts) : await readRaw(file, opts);
  const { floats, names: _names, ...rest } = raw;
  return { ...rest, ...officialNames(floats, raw.path, raw.skipped), hfConfig };
}

/** A weights file's tensors under the names it uses, before any conversion. */
interface RawWeights extends Omit<WeightsFile, 'hfConfig' | 'naming' | 'weights'> {
  floats: Map<string, NamedTensor>;
  /** every name of the state dict, those skipped too */
  names: Set<string>;
}

/** One weights file, its format told from its first bytes. */
async function readRaw(file: string, opts: WeightsOptions): Promise<RawWeights> {
  const head = await firstBytes(file, 9);
  // safetensors first: its header (a JSON object) starts at byte 8, and the 8-byte length before it may begin with any
  // byte (a header of 1920 bytes, 0x780, begins with 0x80, as a pickle does); a zip's byte 8 is its compression
  // method (0 or 8), a PyTorch pickle's part of its magic number
  const isSafetensors = head.length >= 9 && head[8] === 0x7b;
  const isZip = head[0] === 0x50 && head[1] === 0x4b;
  const isPickle = head[0] === 0x80;
  return !isSafetensors && (isZip || isPickle) ? await readTorch(file, opts) : await readSafetensorsWeights(file, head, opts);
}

/**
 * Sharded weights: the index (Hugging Face's model.safetensors.index.json or pytorch_model.bin.index.json) maps each
 * tensor name to the file in the same folder that holds it. Every shard is read, in the order of first mention, into
 * one state dict; a shard that is missing, a tensor the index places in a shard that lacks it, and a tensor found in
 * two shards are errors naming the index and the shard.
 */
async function readShards(index: string, opts: WeightsOptions): Promise<RawWeights> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(index, 'utf8'));
  } catch (e) {
    throw new Error(`${index}: not valid JSON (${(e as Error).message})`);
  }
  const map = typeof json === 'object' && json !== null && !Array.isArray(json) ? (json as Record<string, unknown>).weight_map : undefined;
  if (typeof map !== 'object' || map === null || Array.isArray(map) || Object.keys(map).length === 0)
    throw new Error(`${index}: no "weight_map" object of tensor name -> shard file (a sharded weights index has one)`);
  const shards = new Map<string, Set<string>>();
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || shard === '' || shard === '.' || shard === '..' || /[\\/]/.test(shard))
      throw new Error(`${index}: the shard of "${name}" is ${JSON.stringify(shard)}, not a file name in the index's folder`);
    if (!shards.has(shard)) shards.set(shard, new Set());
    shards.get(shard)!.add(name);
  }
  const folder = dirname(index);
  const floats = new Map<string, NamedTensor>();
  const skipped: string[] = [];
  const from = new Map<string, string>();
  const all = new Set<string>();
  let format: WeightsFormat | null = null;
  for (const [shard, names] of shards) {
    const file = join(folder, shard);
    if (!existsSync(file)) throw new Error(`${index}: the shard ${shard} is missing (it holds ${names.size} tensor(s), "${[...names][0]}" among them)`);
    const part = await readRaw(file, opts);
    if (format !== null && part.format !== format) throw new Error(`${index}: the shard ${shard} is ${part.format}, the shards before it ${format}`);
    format = part.format;
    const absent = [...names].filter((n) => !part.names.has(n));
    if (absent.length)
      throw new Error(`${index}: the index places ${absent.length} tensor(s) in ${shard}, which lacks them: ${absent.slice(0, 4).join(', ')}${absent.length > 4 ? ', ...' : ''}`);
    for (const [k, t] of part.floats) {
      const before = from.get(k);
      if (before !== undefined) throw new Error(`${index}: tensor "${k}" is in two shards, ${before} and ${shard}`);
      from.set(k, shard);
      floats.set(k, t);
    }
    for (const k of part.names) all.add(k);
    skipped.push(...part.skipped.map((s) => `${s} in ${shard}`));
  }
  return { path: index, format: format!, key: null, floats, names: all, skipped, args: null, epoch: null, metadata: {} };
}

function readHfConfig(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new Error(`${path}: missing (a Hugging Face model folder needs its config.json)`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${path}: not a JSON object`);
  return json as Record<string, unknown>;
}

async function firstBytes(path: string, n: number): Promise<Uint8Array> {
  const h = await fsp.open(path, 'r');
  try {
    const b = new Uint8Array(n);
    const { bytesRead } = await h.read(b, 0, n, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await h.close();
  }
}

async function readTorch(path: string, opts: WeightsOptions): Promise<RawWeights> {
  const f = await openTorchFile(path);
  try {
    const root = f.root;
    if (root instanceof PickleTensor) throw new Error(`${path}: holds a single tensor, not a state dict`);
    if (!(root instanceof Map)) throw new Error(`${path}: holds ${describe(root)}, not a state dict or a checkpoint dict`);
    let state: Map<unknown, unknown>;
    let key: string | null = null;
    const skipped: string[] = [];
    const keys = [...root.keys()].map((k) => (typeof k === 'string' ? k : describeValue(k)));
    const entries = () => (keys.length > 20 ? `${keys.slice(0, 20).join(', ')}, ... (${keys.length} in all)` : keys.join(', '));
    if (opts.key !== undefined || root.get('model') instanceof Map) {
      key = opts.key ?? 'model';
      const v = root.get(key);
      if (v === undefined) throw new Error(`${path}: no entry '${key}' (entries: ${entries()})`);
      if (!(v instanceof Map)) throw new Error(`${path}: entry '${key}' is ${describe(v)}, not a state dict`);
      state = v;
      for (const [i, k] of [...root.keys()].entries()) if (k !== key) skipped.push(`${keys[i]} (checkpoint entry)`);
    } else if ([...root.values()].some((v) => v instanceof PickleTensor)) {
      state = root;
    } else throw new Error(`${path}: no weights: neither a 'model' entry nor tensors at the top level (entries: ${entries()}); pass opts.key`);

    const refs = new Map<string, PickleTensor>();
    for (const [k, v] of state) {
      if (typeof k !== 'string') throw new Error(`${path}: a state dict key is not a string (${describeValue(k)})`);
      if (v instanceof PickleTensor) refs.set(k, v);
      else skipped.push(`${k} (not a tensor)`);
    }
    const floats = new Map<string, NamedTensor>();
    for (const [k, t] of await f.readTensors(refs)) {
      if (t.data) floats.set(k, { shape: t.shape, data: t.data });
      else skipped.push(`${k} (${t.dtype})`);
    }
    const args = root.get('args');
    const epoch = key !== null ? root.get('epoch') : undefined;
    return {
      path,
      format: f.format,
      key,
      floats,
      names: new Set([...state.keys()].map(String)),
      skipped,
      args: key !== null && (args instanceof PickleObject || args instanceof Map) ? (toPlain(args) as Record<string, unknown>) : null,
      epoch: typeof epoch === 'number' ? epoch : null,
      metadata: {},
    };
  } finally {
    await f.close();
  }
}

async function readSafetensorsWeights(path: string, head: Uint8Array, opts: WeightsOptions): Promise<RawWeights> {
  if (head.length < 9 || head[8] !== 0x7b)
    throw new Error(`${path}: not a weights file: neither a PyTorch checkpoint (zip or pickle) nor safetensors (first bytes ${Array.from(head.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ') || 'none: empty file'})`);
  if (opts.key !== undefined) throw new Error(`${path}: a safetensors file has no entries to choose with opts.key ('${opts.key}')`);
  const skipped: string[] = [];
  const names = new Set<string>();
  // what is skipped is not read: a checkpoint's optimizer state, integer tensors
  const { tensors, metadata } = await readSafetensors(path, {
    select: (k, dtype, meta) => {
      names.add(k);
      if (meta.mae !== undefined && k.startsWith('optimizer.')) skipped.push(`${k} (optimizer state)`);
      else if (!FLOAT_DTYPES.has(dtype)) skipped.push(`${k} (${dtype})`);
      else return true;
      return false;
    },
  });
  const floats = new Map<string, NamedTensor>();
  for (const [k, t] of tensors) floats.set(k, { shape: t.shape, data: t.data as Float32Array });
  return { path, format: 'safetensors', key: null, floats, names, skipped, args: null, epoch: null, metadata };
}

/** Official names for a state dict (prefixes removed, Hugging Face names converted; those without a rule skipped). */
function officialNames(map: Map<string, NamedTensor>, path: string, skipped: string[]) {
  if (map.size === 0) throw new Error(`${path}: holds no floating point tensors`);
  const unprefixed = [...map.keys()].every((k) => k.startsWith('module.')) ? new Map([...map].map(([k, v]) => [k.slice('module.'.length), v])) : map;
  let naming = detectNaming(unprefixed.keys());
  let stripped = stripModelPrefix(unprefixed);
  // Hugging Face ViTMAEModel (the encoder alone) saves its names without the `vit.` of ViTMAEForPreTraining
  const bare = /^(embeddings|encoder|layernorm)\./;
  if (naming === 'unknown' && [...stripped.keys()].some((k) => bare.test(k))) {
    const prefixed = new Map([...stripped].map(([k, v]) => [bare.test(k) ? `vit.${k}` : k, v]));
    if (detectNaming(prefixed.keys()) === 'huggingface') [naming, stripped] = ['huggingface', prefixed];
  }
  if (naming !== 'huggingface') return { naming, weights: stripped, skipped };
  const { tensors, unexpected } = fromHuggingFace(stripped);
  // ViTForImageClassification's linear classifier on the cls token (after vit.layernorm) is the official `head`
  const rest: string[] = [];
  for (const k of unexpected) {
    const m = /^classifier\.(weight|bias)$/.exec(k);
    if (m) tensors.set(`head.${m[1]}`, stripped.get(k)!);
    else rest.push(k);
  }
  return { naming, weights: tensors, skipped: [...skipped, ...rest.map((k) => `${k} (no official name)`)] };
}

function describe(v: unknown): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (v instanceof PickleObject) return `a ${v.className}`;
  return `a ${typeof v}`;
}
