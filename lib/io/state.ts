/**
 * State dicts to and from safetensors files, the shape the model API takes:
 *   mae.loadStateDict(await loadSafetensors(path));   await saveSafetensors(path, mae.stateDict());
 * Loading accepts official names, a `model.` prefix, and Hugging Face ViTMAE names (converted, q/k/v fused).
 */
import { expectInstance, expectObject, expectString } from '../check.js';
import { Tensor } from '../tensor.js';
import { toOfficialNames, type NamedTensor } from './names.js';
import { readSafetensors, requireFloat32, writeSafetensors, type RawTensor } from './safetensors.js';

/** name -> { shape, data } under the official MAE names. */
export async function loadSafetensors(path: string): Promise<Map<string, NamedTensor>> {
  expectString('loadSafetensors', 'path', path, 'a file path');
  const { tensors } = await readSafetensors(path);
  const floats = requireFloat32(tensors, path);
  const { tensors: official, unexpected } = toOfficialNames(floats, path);
  if (unexpected.length) throw new Error(`${path}: tensors with names this library does not know: ${unexpected.join(', ')}`);
  return official;
}

/** Writes tensors (a model's stateDict()) atomically. */
export async function saveSafetensors(path: string, state: Map<string, Tensor>, metadata?: Record<string, string>): Promise<void> {
  expectString('saveSafetensors', 'path', path, 'a file path');
  expectInstance('saveSafetensors', 'state', state, Map, 'a Map of name -> Tensor', 'e.g. model.stateDict()');
  expectObject('saveSafetensors', 'metadata', metadata, true);
  const out = new Map<string, RawTensor>();
  for (const [k, t] of state) out.set(k, { shape: [...t.shape], data: t.dtype === 'int32' ? t.intDataSync() : t.dataSync() });
  await writeSafetensors(path, out, metadata);
}
