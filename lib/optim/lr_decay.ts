/**
 * Layer-wise lr decay for fine-tuning ViTs, as the official MAE util/lr_decay.py (param_groups_lrd, from BEiT):
 * with numLayers = depth + 1, cls_token, pos_embed and patch_embed.* are layer 0, blocks.{i}.* layer i + 1 and
 * everything else (norm, fc_norm, head) layer numLayers; a parameter of layer l gets lr scale
 * decay ** (numLayers - l), so block i gets decay ** (depth + 1 - (i + 1)), the embeddings decay ** (depth + 1)
 * and the head 1. 1-D parameters (biases, norms) and names in noWeightDecay get no weight decay.
 */
import { describeValue, expectArrayOf, expectFinite, expectInteger, expectKnownKeys, expectNonNegative, expectObject, expectString, optionNames } from '../check.js';
import type { ParamGroup } from '../mae/model.js';
import type { Tensor } from '../tensor.js';

export function layerIdForVit(name: string, numLayers: number): number {
  expectString('layerIdForVit', 'name', name, 'a parameter name');
  expectInteger('layerIdForVit', 'numLayers', numLayers, 0);
  if (name === 'cls_token' || name === 'pos_embed') return 0;
  if (name.startsWith('patch_embed')) return 0;
  if (name.startsWith('blocks.')) return Number(name.split('.')[1]) + 1;
  return numLayers;
}

export interface LrdOptions {
  weightDecay?: number;
  /** default ['pos_embed', 'cls_token'] (the official model.no_weight_decay()) */
  noWeightDecay?: readonly string[];
  layerDecay?: number;
}

/**
 * Groups by (layer, decay / no decay), in order of first appearance, each with its lrScale. `depth` must be the
 * model's number of blocks (the official code takes len(model.blocks)): those its parameters name, blocks.0 ...
 */
export function paramGroupsLrd(
  model: { namedParameters(): [string, Tensor][] },
  depth: number,
  opts: LrdOptions = {},
): ParamGroup[] {
  const where = 'paramGroupsLrd';
  if (typeof model?.namedParameters !== 'function') throw new Error(`${where}: model must be a model (an object with namedParameters()), got ${describeValue(model)}`);
  expectObject(where, 'opts', opts);
  expectKnownKeys(where, 'opts', opts, optionNames<LrdOptions>({ weightDecay: true, noWeightDecay: true, layerDecay: true }));
  // (an option left out or undefined takes its default; null is refused as any other value of the wrong type)
  const wd = opts.weightDecay === undefined ? 0.05 : opts.weightDecay;
  const noWdNames = opts.noWeightDecay === undefined ? ['pos_embed', 'cls_token'] : opts.noWeightDecay;
  const decay = opts.layerDecay === undefined ? 0.75 : opts.layerDecay;
  expectArrayOf(where, 'noWeightDecay', noWdNames, (x) => typeof x === 'string', 'a parameter name');
  const noWd = new Set(noWdNames);
  expectNonNegative(where, 'weightDecay', wd);
  expectFinite(where, 'layerDecay', decay, (x) => x > 0 && x <= 1, 'in (0, 1]');
  const named = model.namedParameters();
  const blocks = named.reduce((n, [name]) => (/^blocks\.\d+\./.test(name) ? Math.max(n, layerIdForVit(name, 0)) : n), 0);
  expectInteger(where, 'depth', depth, 0);
  if (depth !== blocks) throw new Error(`${where}: depth must be the model's number of blocks, ${blocks}${blocks ? ` (blocks.0 to blocks.${blocks - 1})` : ''}, got ${depth}`);
  const numLayers = depth + 1;
  const groups = new Map<string, ParamGroup & { names: string[] }>();
  for (const [name, p] of named) {
    if (!p.requiresGrad) continue;
    const noDecay = p.shape.length === 1 || noWd.has(name);
    const layer = layerIdForVit(name, numLayers);
    const key = `layer_${layer}_${noDecay ? 'no_decay' : 'decay'}`;
    let g = groups.get(key);
    if (!g) {
      g = { names: [], params: [], weightDecay: noDecay ? 0 : wd, lrScale: decay ** (numLayers - layer) };
      groups.set(key, g);
    }
    g.names.push(name);
    g.params.push(p);
  }
  return [...groups.values()];
}
