/**
 * Parameter name maps between the official MAE state dict (facebookresearch/mae `models_mae.py`) and the Hugging Face
 * `ViTMAEForPreTraining` state dict (e.g. facebook/vit-mae-base).
 *
 * The two differ in names only, except for attention: the official model holds one fused `attn.qkv` linear
 * ([3D, D] weight, rows q then k then v), Hugging Face three separate `query`, `key`, `value` linears ([D, D] each).
 * Tensors whose names map one to one are passed through without copying; fused and split tensors are new arrays.
 *
 * Names that match no rule are not dropped silently: the conversions return them in `unexpected`.
 * `encoder_mask_token` (the mask-token encoder's token, MaeConfig.maskTokenEncoder) is this library's own name: it
 * passes as an official-side name, and Hugging Face ViTMAE has no place for it (toHuggingFace lists it unexpected).
 */
import { describeValue, expectInstance, expectString } from '../check.js';

/** A float tensor as plain data (row-major). */
export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}

export type TensorMap = Map<string, NamedTensor>;

export type Naming = 'official' | 'huggingface' | 'unknown';

/** The result of a conversion: the converted tensors and the input names that no rule covers. */
export interface Converted {
  tensors: TensorMap;
  unexpected: string[];
}

/** Names outside the blocks, official -> Hugging Face. */
const TOP_LEVEL: readonly [string, string][] = [
  ['cls_token', 'vit.embeddings.cls_token'],
  ['pos_embed', 'vit.embeddings.position_embeddings'],
  ['patch_embed.proj.weight', 'vit.embeddings.patch_embeddings.projection.weight'],
  ['patch_embed.proj.bias', 'vit.embeddings.patch_embeddings.projection.bias'],
  ['norm.weight', 'vit.layernorm.weight'],
  ['norm.bias', 'vit.layernorm.bias'],
  ['decoder_embed.weight', 'decoder.decoder_embed.weight'],
  ['decoder_embed.bias', 'decoder.decoder_embed.bias'],
  ['mask_token', 'decoder.mask_token'],
  ['decoder_pos_embed', 'decoder.decoder_pos_embed'],
  ['decoder_norm.weight', 'decoder.decoder_norm.weight'],
  ['decoder_norm.bias', 'decoder.decoder_norm.bias'],
  ['decoder_pred.weight', 'decoder.decoder_pred.weight'],
  ['decoder_pred.bias', 'decoder.decoder_pred.bias'],
];

/** Modules inside a block (encoder and decoder alike), official -> Hugging Face; each has a weight and a bias. */
const BLOCK_MODULES: readonly [string, string][] = [
  ['norm1', 'layernorm_before'],
  ['attn.proj', 'attention.output.dense'],
  ['norm2', 'layernorm_after'],
  ['mlp.fc1', 'intermediate.dense'],
  ['mlp.fc2', 'output.dense'],
];

/** Block prefixes, official -> Hugging Face, as regular expressions capturing the block index and the inner name. */
const BLOCK_PREFIXES: readonly { official: string; hf: string; officialRe: RegExp; hfRe: RegExp }[] = [
  {
    official: 'blocks',
    hf: 'vit.encoder.layer',
    officialRe: /^blocks\.(\d+)\.(.+)$/,
    hfRe: /^vit\.encoder\.layer\.(\d+)\.(.+)$/,
  },
  {
    official: 'decoder_blocks',
    hf: 'decoder.decoder_layers',
    officialRe: /^decoder_blocks\.(\d+)\.(.+)$/,
    hfRe: /^decoder\.decoder_layers\.(\d+)\.(.+)$/,
  },
];

const QKV_PARTS = ['query', 'key', 'value'] as const;
/** The fused qkv parameters inside an official block, and the split ones inside a Hugging Face layer. */
const QKV_OFFICIAL_RE = /^attn\.qkv\.(weight|bias)$/;
const QKV_HF_RE = /^attention\.attention\.(query|key|value)\.(weight|bias)$/;
const PARAMS = ['weight', 'bias'] as const;

/** Parameters of this library's models that neither the official code nor Hugging Face has. */
const OWN_NAMES = new Set(['encoder_mask_token']);

const TOP_OFFICIAL_TO_HF = new Map(TOP_LEVEL);
const TOP_HF_TO_OFFICIAL = new Map(TOP_LEVEL.map(([o, h]) => [h, o]));
const INNER_OFFICIAL_TO_HF = new Map(
  BLOCK_MODULES.flatMap(([o, h]) => PARAMS.map((p): [string, string] => [`${o}.${p}`, `${h}.${p}`])),
);
const INNER_HF_TO_OFFICIAL = new Map([...INNER_OFFICIAL_TO_HF].map(([o, h]) => [h, o]));

/** Removes a leading `model.` from every key, but only if every key has it (checkpoints saved as {model: ...}). */
export function stripModelPrefix<T>(map: ReadonlyMap<string, T>): Map<string, T> {
  const entries = [...map];
  const keys = withoutModelPrefix(entries.map(([k]) => k));
  return new Map(entries.map(([, v], i) => [keys[i]!, v]));
}

/** Which naming a set of keys follows, judged by how many keys each scheme recognises (after stripping `model.`). */
export function detectNaming(keys: Iterable<string>): Naming {
  if (typeof (keys as Partial<Iterable<string>> | null)?.[Symbol.iterator] !== 'function') throw new Error(`detectNaming: keys must be an iterable of parameter names, got ${describeValue(keys)}`);
  const stripped = withoutModelPrefix([...keys]);
  const official = stripped.filter(isOfficialName).length;
  const hf = stripped.filter(isHuggingFaceName).length;
  if (official > hf) return 'official';
  if (hf > official) return 'huggingface';
  return 'unknown';
}

/** Converts a Hugging Face `ViTMAEForPreTraining` state dict to official names, fusing query/key/value into qkv. */
export function fromHuggingFace(map: ReadonlyMap<string, NamedTensor>): Converted {
  expectInstance('fromHuggingFace', 'map', map, Map, 'a Map of name -> tensor');
  const tensors: TensorMap = new Map();
  const unexpected: string[] = [];
  for (const [name, tensor] of map) {
    const top = TOP_HF_TO_OFFICIAL.get(name);
    if (top !== undefined) {
      tensors.set(top, tensor);
      continue;
    }
    const block = matchBlock(name, 'hf');
    if (block === null) {
      unexpected.push(name);
      continue;
    }
    const { index, inner, prefix } = block;
    const official = `${prefix.official}.${index}.`;
    const mapped = INNER_HF_TO_OFFICIAL.get(inner);
    if (mapped !== undefined) {
      tensors.set(official + mapped, tensor);
      continue;
    }
    const qkv = QKV_HF_RE.exec(inner);
    if (qkv === null) {
      unexpected.push(name);
      continue;
    }
    // Fuse once, when meeting the query tensor; key and value are consumed there.
    if (qkv[1] !== 'query') {
      const queryName = `${prefix.hf}.${index}.attention.attention.query.${qkv[2]}`;
      if (!map.has(queryName)) throw new Error(`fromHuggingFace: "${name}" has no matching "${queryName}"`);
      continue;
    }
    const parts = QKV_PARTS.map((part) => {
      const partName = `${prefix.hf}.${index}.attention.attention.${part}.${qkv[2]}`;
      const t = map.get(partName);
      if (t === undefined) throw new Error(`fromHuggingFace: "${name}" has no matching "${partName}"`);
      return { name: partName, tensor: t };
    });
    tensors.set(`${official}attn.qkv.${qkv[2]}`, concatRows(parts));
  }
  return { tensors, unexpected };
}

/** Converts an official MAE state dict to Hugging Face `ViTMAEForPreTraining` names, splitting qkv. */
export function toHuggingFace(map: ReadonlyMap<string, NamedTensor>): Converted {
  expectInstance('toHuggingFace', 'map', map, Map, 'a Map of name -> tensor');
  const tensors: TensorMap = new Map();
  const unexpected: string[] = [];
  for (const [name, tensor] of map) {
    const top = TOP_OFFICIAL_TO_HF.get(name);
    if (top !== undefined) {
      tensors.set(top, tensor);
      continue;
    }
    const block = matchBlock(name, 'official');
    if (block === null) {
      unexpected.push(name);
      continue;
    }
    const { index, inner, prefix } = block;
    const hf = `${prefix.hf}.${index}.`;
    const mapped = INNER_OFFICIAL_TO_HF.get(inner);
    if (mapped !== undefined) {
      tensors.set(hf + mapped, tensor);
      continue;
    }
    const qkv = QKV_OFFICIAL_RE.exec(inner);
    if (qkv === null) {
      unexpected.push(name);
      continue;
    }
    const parts = splitRows(name, tensor);
    QKV_PARTS.forEach((part, i) => tensors.set(`${hf}attention.attention.${part}.${qkv[1]}`, parts[i]!));
  }
  return { tensors, unexpected };
}

/**
 * Brings a state dict in either naming to official names: strips a `model.` prefix, converts Hugging Face names.
 * Throws when the naming cannot be recognised; `source` names the checkpoint in that error.
 */
export function toOfficialNames(
  map: ReadonlyMap<string, NamedTensor>,
  source = '<state dict>',
): Converted & { naming: Naming } {
  expectInstance('toOfficialNames', 'map', map, Map, 'a Map of name -> tensor');
  expectString('toOfficialNames', 'source', source, 'a name for messages');
  const naming = detectNaming(map.keys());
  const stripped = stripModelPrefix(map);
  if (naming === 'official') {
    const unexpected = [...stripped.keys()].filter((k) => !isOfficialName(k));
    return { naming, tensors: new Map([...stripped].filter(([k]) => isOfficialName(k))), unexpected };
  }
  if (naming === 'huggingface') return { naming, ...fromHuggingFace(stripped) };
  throw new Error(`${source}: parameter names follow neither the official MAE nor the Hugging Face ViTMAE naming`);
}

// ---------------------------------------------------------------------------------------------------------------

function withoutModelPrefix(keys: readonly string[]): string[] {
  const prefix = 'model.';
  const all = keys.length > 0 && keys.every((k) => k.startsWith(prefix));
  return all ? keys.map((k) => k.slice(prefix.length)) : [...keys];
}

function isOfficialName(name: string): boolean {
  if (TOP_OFFICIAL_TO_HF.has(name) || OWN_NAMES.has(name)) return true;
  const block = matchBlock(name, 'official');
  return block !== null && (INNER_OFFICIAL_TO_HF.has(block.inner) || QKV_OFFICIAL_RE.test(block.inner));
}

function isHuggingFaceName(name: string): boolean {
  if (TOP_HF_TO_OFFICIAL.has(name)) return true;
  const block = matchBlock(name, 'hf');
  return block !== null && (INNER_HF_TO_OFFICIAL.has(block.inner) || QKV_HF_RE.test(block.inner));
}

function matchBlock(
  name: string,
  naming: 'official' | 'hf',
): { index: string; inner: string; prefix: (typeof BLOCK_PREFIXES)[number] } | null {
  for (const prefix of BLOCK_PREFIXES) {
    const m = (naming === 'official' ? prefix.officialRe : prefix.hfRe).exec(name);
    if (m !== null) return { index: m[1]!, inner: m[2]!, prefix };
  }
  return null;
}

/** Concatenates tensors of one shape along dim 0. */
function concatRows(parts: readonly { name: string; tensor: NamedTensor }[]): NamedTensor {
  const first = parts[0]!;
  for (const { name, tensor } of parts) {
    if (tensor.shape.length === 0 || tensor.shape.join(',') !== first.tensor.shape.join(',')) {
      throw new Error(
        `fromHuggingFace: "${name}" has shape [${tensor.shape.join(', ')}], ` +
          `expected the shape of "${first.name}" [${first.tensor.shape.join(', ')}] (at least one dimension)`,
      );
    }
  }
  const size = first.tensor.data.length;
  const data = new Float32Array(size * parts.length);
  parts.forEach(({ tensor }, i) => data.set(tensor.data, i * size));
  return { shape: [first.tensor.shape[0]! * parts.length, ...first.tensor.shape.slice(1)], data };
}

/** Splits a fused qkv tensor into three equal parts along dim 0. */
function splitRows(name: string, tensor: NamedTensor): NamedTensor[] {
  const rows = tensor.shape[0];
  if (rows === undefined || rows % 3 !== 0) {
    throw new Error(`toHuggingFace: "${name}" has shape [${tensor.shape.join(', ')}]; dim 0 must be a multiple of 3`);
  }
  const size = tensor.data.length / 3;
  const shape = [rows / 3, ...tensor.shape.slice(1)];
  return [0, 1, 2].map((i) => ({ shape: [...shape], data: tensor.data.slice(i * size, (i + 1) * size) }));
}
