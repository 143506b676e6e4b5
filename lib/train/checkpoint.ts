/**
 * Checkpoints: one safetensors file holding the model's parameters under their official names, the optimizer's
 * moments under `optimizer.<group>.<index>.exp_avg|exp_avg_sq`, and, as JSON in the header metadata ("mae"), the
 * model config and the exact training position (epoch, data iteration, optimizer step, lr, generator state).
 * Written atomically: a crash never leaves a half-written file.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors, type RawTensor } from '../io/safetensors.js';
import { MaskedAutoencoder, type MaeConfig } from '../mae/index.js';
import type { AdamW } from '../optim/index.js';
import type { GeneratorState } from '../random.js';

export const CHECKPOINT_FORMAT = 'masked-autoencoder/pretrain/1';
export const CHECKPOINT_FILE = 'checkpoint.safetensors';

export interface TrainPosition {
  /** epoch of the next batch */
  epoch: number;
  /** data iteration (batch index) within that epoch of the next batch */
  iter: number;
  /** optimizer steps taken */
  step: number;
  /** the masking-noise generator */
  generator: GeneratorState;
}

export interface CheckpointMeta {
  format: string;
  config: MaeConfig;
  position: TrainPosition;
  optimizer: { step: number; lr: number } | null;
  /** the training options of the run, for `resume` to check and reuse */
  options: Record<string, unknown>;
  createdAt: string;
}

export async function saveCheckpoint(
  path: string,
  model: MaskedAutoencoder,
  optimizer: AdamW | null,
  meta: Omit<CheckpointMeta, 'format' | 'config' | 'optimizer' | 'createdAt'>,
): Promise<void> {
  const tensors = new Map<string, RawTensor>();
  for (const [name, p] of model.namedParameters()) tensors.set(name, { shape: [...p.shape], data: p.dataSync() });
  let opt: CheckpointMeta['optimizer'] = null;
  if (optimizer) {
    const sd = optimizer.stateDict();
    for (const [k, t] of sd.tensors) tensors.set(`optimizer.${k}`, { shape: [...t.shape], data: t.dataSync() });
    opt = { step: sd.step, lr: sd.lr };
  }
  const full: CheckpointMeta = { format: CHECKPOINT_FORMAT, config: model.config, optimizer: opt, createdAt: new Date().toISOString(), ...meta };
  await writeSafetensors(path, tensors, { mae: JSON.stringify(full) });
}

export interface LoadedCheckpoint {
  /** the file read */
  path: string;
  meta: CheckpointMeta;
  weights: Map<string, { shape: number[]; data: Float32Array }>;
  optimizer: Map<string, { shape: number[]; data: Float32Array }>;
}

/** Reads a checkpoint file (or the checkpoint in a run folder). */
export async function loadCheckpoint(pathOrDir: string): Promise<LoadedCheckpoint> {
  const path = existsSync(pathOrDir) && statSync(pathOrDir).isDirectory() ? join(pathOrDir, CHECKPOINT_FILE) : pathOrDir;
  if (!existsSync(path)) throw new Error(`checkpoint not found: ${path}`);
  const { tensors, metadata } = await readSafetensors(path);
  if (!metadata.mae) throw new Error(`${path}: not a masked-autoencoder checkpoint (no "mae" metadata); load plain weights with loadSafetensors`);
  let meta: unknown;
  try {
    meta = JSON.parse(metadata.mae);
  } catch (e) {
    throw new Error(`${path}: the checkpoint metadata is not valid JSON (${(e as Error).message})`);
  }
  checkMeta(meta, path);
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  const optimizer = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, t] of tensors) {
    if (!(t.data instanceof Float32Array)) throw new Error(`${path}: tensor ${k} is not floating point`);
    const rec = { shape: t.shape, data: t.data };
    if (k.startsWith('optimizer.')) optimizer.set(k.slice('optimizer.'.length), rec);
    else weights.set(k, rec);
  }
  return { path, meta, weights, optimizer };
}

/** The metadata's structure: what resume and loadModel read from it must be there, with the right types. */
function checkMeta(meta: unknown, path: string): asserts meta is CheckpointMeta {
  const bad = (what: string) => new Error(`${path}: the checkpoint metadata is damaged: ${what}`);
  const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  const count = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (!isObject(meta)) throw bad('not an object');
  if (meta.format !== CHECKPOINT_FORMAT) throw new Error(`${path}: checkpoint format '${String(meta.format)}' is not '${CHECKPOINT_FORMAT}'`);
  if (!isObject(meta.config)) throw bad('config is not an object');
  if (!isObject(meta.options)) throw bad('options is not an object');
  const p = meta.position;
  if (!isObject(p) || !count(p.epoch) || !count(p.iter) || !count(p.step)) throw bad('position must hold integer epoch, iter and step');
  const g = p.generator;
  if (!isObject(g) || !Array.isArray(g.s) || g.s.length !== 4 || !g.s.every((w) => count(w) && (w as number) < 2 ** 32))
    throw bad('position.generator must hold 4 unsigned 32-bit state words');
  if (!(g.spareNormal === null || g.spareNormal === undefined || typeof g.spareNormal === 'number')) throw bad('position.generator.spareNormal must be a number or null');
  const o = meta.optimizer;
  if (!(o === null || (isObject(o) && count(o.step) && typeof o.lr === 'number' && Number.isFinite(o.lr))))
    throw bad('optimizer must be null or hold an integer step and a finite lr');
}

/** The model saved in a checkpoint, ready to use. */
export async function loadModel(pathOrDir: string): Promise<{ model: MaskedAutoencoder; meta: CheckpointMeta }> {
  const ck = await loadCheckpoint(pathOrDir);
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
    ['decoderEmbedDim', c.decoderEmbedDim, shape('mask_token')?.[2]],
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
