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
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(metadata.mae) as CheckpointMeta;
  } catch (e) {
    throw new Error(`${path}: the checkpoint metadata is not valid JSON (${(e as Error).message})`);
  }
  if (meta.format !== CHECKPOINT_FORMAT) throw new Error(`${path}: checkpoint format '${meta.format}' is not '${CHECKPOINT_FORMAT}'`);
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  const optimizer = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, t] of tensors) {
    if (!(t.data instanceof Float32Array)) throw new Error(`${path}: tensor ${k} is not floating point`);
    const rec = { shape: t.shape, data: t.data };
    if (k.startsWith('optimizer.')) optimizer.set(k.slice('optimizer.'.length), rec);
    else weights.set(k, rec);
  }
  return { meta, weights, optimizer };
}

/** The model saved in a checkpoint, ready to use. */
export async function loadModel(pathOrDir: string): Promise<{ model: MaskedAutoencoder; meta: CheckpointMeta }> {
  const ck = await loadCheckpoint(pathOrDir);
  const model = new MaskedAutoencoder(ck.meta.config);
  model.loadStateDict(ck.weights);
  return { model, meta: ck.meta };
}
