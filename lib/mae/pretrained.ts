/**
 * Models from pre-trained weights (MaskedAutoencoder.fromPretrained, VisionTransformerClassifier.fromPretrained):
 * the architecture is read off the weights (readWeights: official .pth, Hugging Face folders, safetensors):
 *   patch size, channels, width   patch_embed.proj.weight [D, C, p, p]
 *   image size                    pos_embed [1, 1 + (img/p)^2, D]
 *   depth                         the blocks.{i}.* present; MLP ratio from blocks.0.mlp.fc1.weight [D * ratio, D]
 *   decoder                       decoder_embed.weight [Dd, D], the decoder_blocks.{i}.*
 * Head counts leave no trace in the shapes: they come from, in order, the caller's overrides, a Hugging Face
 * config.json, this library's own checkpoint metadata, the `args.model` of an official training checkpoint when
 * it names a preset, and the widths of the official models (192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16; decoder
 * 512: 16); otherwise the error asks for them. LayerNorm eps: overrides, config.json's layer_norm_eps (1e-12 in
 * Hugging Face's configs, kept), the checkpoint metadata, else 1e-6 (the official presets).
 * A config.json's sizes (hidden_size, num_hidden_layers, intermediate_size, patch_size, num_channels, image_size, the
 * decoder_* ones) must agree with the weights where both tell (else it is another model's config, whose head counts
 * would be wrong: an error naming config.json); an encoder-only folder (ViTMAEModel) takes its decoder from them.
 */
import { dirname, join } from 'node:path';
import type { NamedTensor } from '../io/names.js';
import { native } from '../native.js';
import { withoutInit } from '../nn/init.js';
import type { Module } from '../nn/module.js';
import { readWeights, type WeightsFile, type WeightsOptions } from '../io/weights.js';
import { getPreset, presetNames, type MaeConfig } from './presets.js';

/** What fromPretrained loaded. */
export interface PretrainedReport {
  /** the weights file read */
  path: string;
  format: WeightsFile['format'];
  naming: WeightsFile['naming'];
  /** parameters set from the file */
  loaded: string[];
  /** parameters left as initialised (an encoder-only checkpoint: the decoder; a pre-training one: the head) */
  missing: string[];
  /** tensors of the file this model has no place for (a fine-tuned head given to the MAE, a decoder to a classifier) */
  ignored: string[];
  /** MAE: whether the decoder came from the file (false for the released encoder-only checkpoints) */
  decoderLoaded?: boolean;
  /** classifier: whether the head came from the file */
  headLoaded?: boolean;
  /** the training run's arguments (official checkpoints' args), as plain data */
  args: Record<string, unknown> | null;
}

/** Widths of the official ViTs -> their head counts (timm / models_mae.py / models_vit.py). */
export const OFFICIAL_HEADS: Record<number, number> = { 192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16 };
/** Decoder widths -> head counts: the official 512-wide decoder, and this library's CPU presets' 128-wide one. */
const DECODER_HEADS: Record<number, number> = { 512: 16, 128: 4 };

/** The encoder's shape as the weights give it. */
export interface EncoderShape {
  imgSize: number | null;
  patchSize: number;
  inChans: number;
  embedDim: number;
  depth: number;
  mlpRatio: number;
}

export function weight(w: Map<string, NamedTensor>, name: string, rank: number, path: string): number[] {
  const t = w.get(name);
  if (!t) throw new Error(`${path}: no "${name}" among the weights (${[...w.keys()].slice(0, 6).join(', ')}${w.size > 6 ? ', ...' : ''})`);
  if (t.shape.length !== rank) throw new Error(`${path}: "${name}" has shape [${t.shape.join(', ')}], expected ${rank} dimensions`);
  return t.shape;
}

/** Number of consecutive `${prefix}.{i}.norm1.weight` from 0. */
export function countBlocks(w: Map<string, NamedTensor>, prefix: string): number {
  let n = 0;
  while (w.has(`${prefix}.${n}.norm1.weight`)) n++;
  return n;
}

export function encoderShape(w: Map<string, NamedTensor>, path: string): EncoderShape {
  const [D, C, p, q] = weight(w, 'patch_embed.proj.weight', 4, path) as [number, number, number, number];
  if (p !== q) throw new Error(`${path}: patch_embed.proj.weight [${D}, ${C}, ${p}, ${q}] has non-square patches`);
  let imgSize: number | null = null;
  if (w.has('pos_embed')) {
    const [, n, d] = weight(w, 'pos_embed', 3, path) as [number, number, number];
    const grid = Math.round(Math.sqrt(n - 1));
    if (d !== D || grid * grid !== n - 1)
      throw new Error(`${path}: pos_embed [1, ${n}, ${d}] is not [1, 1 + g*g, ${D}] (a square grid of patches after the cls token)`);
    imgSize = grid * p;
  }
  const depth = countBlocks(w, 'blocks');
  if (depth === 0) throw new Error(`${path}: no encoder blocks (blocks.0.norm1.weight)`);
  const [hidden] = weight(w, 'blocks.0.mlp.fc1.weight', 2, path) as [number];
  return { imgSize, patchSize: p, inChans: C, embedDim: D, depth, mlpRatio: hidden / D };
}

/** A Hugging Face ViTMAE / ViT config.json as the MaeConfig fields it sets (checked where this library differs). */
export function configFromHuggingFace(hf: Record<string, unknown>, path: string): Partial<MaeConfig> {
  const act = hf.hidden_act ?? 'gelu';
  if (act !== 'gelu') throw new Error(`${path}: hidden_act '${String(act)}' is not supported (the exact-erf 'gelu' only)`);
  if (hf.qkv_bias === false) throw new Error(`${path}: qkv_bias false is not supported (the official MAE has qkv biases)`);
  const c: Partial<MaeConfig> = {};
  const set = <K extends keyof MaeConfig>(key: K, v: unknown) => {
    if (v !== undefined && v !== null) c[key] = v as MaeConfig[K];
  };
  set('numHeads', hf.num_attention_heads);
  set('decoderNumHeads', hf.decoder_num_attention_heads);
  set('eps', hf.layer_norm_eps);
  set('normPixLoss', hf.norm_pix_loss);
  set('imgSize', hf.image_size);
  set('decoderEmbedDim', hf.decoder_hidden_size);
  set('decoderDepth', hf.decoder_num_hidden_layers);
  return c;
}

/**
 * Throws when a Hugging Face config.json gives a size the weights contradict (`w` under official names); `path` is
 * the config.json. Sizes the weights do not hold (an encoder-only folder's decoder) are not checked.
 */
export function checkConfigAgainstWeights(hf: Record<string, unknown>, w: Map<string, NamedTensor>, path: string): void {
  const check = (key: string, actual: number | undefined, where: string) => {
    const said = hf[key];
    if (actual === undefined || typeof said !== 'number' || said === actual) return;
    throw new Error(`${path}: says ${key} ${said}, but the weights have ${actual} (${where}); is it the config of another model?`);
  };
  const shape = (name: string) => w.get(name)?.shape;
  const show = (name: string) => `${name} [${shape(name)!.join(', ')}]`;
  const patch = shape('patch_embed.proj.weight');
  if (patch?.length === 4) {
    const where = show('patch_embed.proj.weight');
    check('hidden_size', patch[0], where);
    check('num_channels', patch[1], where);
    check('patch_size', patch[2], where);
    const pos = shape('pos_embed');
    if (pos?.length === 3) check('image_size', Math.round(Math.sqrt(pos[1]! - 1)) * patch[2]!, `${show('pos_embed')}, patches of ${patch[2]}`);
  }
  const depth = countBlocks(w, 'blocks');
  if (depth > 0) check('num_hidden_layers', depth, `blocks.0 to blocks.${depth - 1}`);
  if (shape('blocks.0.mlp.fc1.weight')) check('intermediate_size', shape('blocks.0.mlp.fc1.weight')![0], show('blocks.0.mlp.fc1.weight'));
  if (shape('decoder_embed.weight')) check('decoder_hidden_size', shape('decoder_embed.weight')![0], show('decoder_embed.weight'));
  const decoderDepth = countBlocks(w, 'decoder_blocks');
  if (decoderDepth > 0) check('decoder_num_hidden_layers', decoderDepth, `decoder_blocks.0 to decoder_blocks.${decoderDepth - 1}`);
  if (shape('decoder_blocks.0.mlp.fc1.weight'))
    check('decoder_intermediate_size', shape('decoder_blocks.0.mlp.fc1.weight')![0], show('decoder_blocks.0.mlp.fc1.weight'));
}

/** This library's config stored with its checkpoints (safetensors metadata "mae" or "mae-classifier"), if any. */
function metadataConfig(file: WeightsFile): Record<string, unknown> {
  for (const key of ['mae', 'mae-classifier']) {
    const raw = file.metadata[key];
    if (raw === undefined) continue;
    try {
      return (JSON.parse(raw) as { config?: Record<string, unknown> }).config ?? {};
    } catch {
      throw new Error(`${file.path}: the "${key}" metadata is not valid JSON`);
    }
  }
  return {};
}

/** What the file says besides the shapes: config.json, this library's metadata, or the official args' preset. */
export function declaredConfig(file: WeightsFile): Partial<MaeConfig> {
  const fromArgs: Partial<MaeConfig> = {};
  const args = file.args ?? {};
  if (typeof args.model === 'string' && (presetNames() as string[]).includes(args.model)) Object.assign(fromArgs, getPreset(args.model));
  if (typeof args.input_size === 'number') fromArgs.imgSize = args.input_size;
  if (typeof args.norm_pix_loss === 'boolean') fromArgs.normPixLoss = args.norm_pix_loss;
  if (file.hfConfig) checkConfigAgainstWeights(file.hfConfig, file.weights, join(dirname(file.path), 'config.json'));
  const hf = file.hfConfig ? configFromHuggingFace(file.hfConfig, file.path) : {};
  return { ...fromArgs, ...(metadataConfig(file) as Partial<MaeConfig>), ...hf };
}

/**
 * The declared config with the caller's overrides on top. Head counts are for when the file cannot tell: an override
 * of a head count the file declares must equal it.
 */
export function declaredWithOverrides<T extends { numHeads?: number; decoderNumHeads?: number }>(file: WeightsFile, overrides: T): Partial<MaeConfig> & T {
  const declared = declaredConfig(file);
  for (const k of ['numHeads', 'decoderNumHeads'] as const) {
    const given = overrides[k];
    if (given !== undefined && declared[k] !== undefined && given !== declared[k])
      throw new Error(`${file.path}: the checkpoint declares ${k} ${declared[k]}, but ${given} was given; pass a head count only when the checkpoint cannot tell`);
  }
  return { ...declared, ...overrides };
}

/** The head count of a width: overrides and declared config first, then the official table. */
export function heads(width: number, given: number | undefined, table: Record<number, number>, what: string, path: string): number {
  const h = given ?? table[width];
  if (h === undefined)
    throw new Error(
      `${path}: the number of ${what} heads cannot be read from the weights (width ${width} is none of the official models'); ` +
        `pass it: { ${what === 'decoder' ? 'decoderNumHeads' : 'numHeads'}: N } (mae embed and classify: --${what === 'decoder' ? 'decoder-' : ''}num-heads N)`,
    );
  return h;
}

/** The MaeConfig of a weights file (overrides win), and whether the file holds a decoder. */
export function maeConfigFromWeights(file: WeightsFile, overrides: Partial<MaeConfig> = {}): { config: MaeConfig; hasDecoder: boolean } {
  const w = file.weights;
  const path = file.path;
  const e = encoderShape(w, path);
  const declared = declaredWithOverrides(file, overrides);
  const numHeads = heads(e.embedDim, declared.numHeads, OFFICIAL_HEADS, 'encoder', path);
  const hasDecoder = w.has('decoder_embed.weight');
  const official = getPreset('mae_vit_base_patch16');
  let decoder: Pick<MaeConfig, 'decoderEmbedDim' | 'decoderDepth' | 'decoderNumHeads'>;
  if (hasDecoder) {
    const [Dd] = weight(w, 'decoder_embed.weight', 2, path) as [number];
    const decoderDepth = countBlocks(w, 'decoder_blocks');
    if (decoderDepth === 0) throw new Error(`${path}: decoder_embed without decoder blocks (decoder_blocks.0.norm1.weight)`);
    const [hidden] = weight(w, 'decoder_blocks.0.mlp.fc1.weight', 2, path) as [number];
    if (hidden !== Math.floor(Dd * e.mlpRatio))
      throw new Error(`${path}: the decoder's MLP ratio (${hidden / Dd}) differs from the encoder's (${e.mlpRatio}); one ratio is supported`);
    decoder = { decoderEmbedDim: Dd, decoderDepth, decoderNumHeads: heads(Dd, declared.decoderNumHeads, DECODER_HEADS, 'decoder', path) };
  } else {
    // an encoder-only checkpoint: the decoder the file's run would have had, else the official one (not loaded)
    decoder = {
      decoderEmbedDim: declared.decoderEmbedDim ?? official.decoderEmbedDim,
      decoderDepth: declared.decoderDepth ?? official.decoderDepth,
      decoderNumHeads: declared.decoderNumHeads ?? official.decoderNumHeads,
    };
  }
  const imgSize = e.imgSize ?? declared.imgSize;
  if (imgSize === undefined) throw new Error(`${path}: no pos_embed, so the image size is unknown; pass { imgSize }`);
  const config: MaeConfig = {
    imgSize,
    patchSize: e.patchSize,
    inChans: e.inChans,
    embedDim: e.embedDim,
    depth: e.depth,
    numHeads,
    ...decoder,
    mlpRatio: e.mlpRatio,
    normPixLoss: declared.normPixLoss ?? false,
    eps: declared.eps ?? 1e-6,
    // the paper's mask-token baseline (mae pretrain --mask-token-encoder) stores its encoder_mask_token
    maskTokenEncoder: w.has('encoder_mask_token'),
  };
  // what the caller fixed wins over the shapes; a disagreement is then reported by loadStateDict
  return { config: { ...config, ...overrides }, hasDecoder };
}

/**
 * Copies the file's weights into `model` by name. Every parameter for which `required(name)` holds must be in the
 * file (the error lists those that are not); the others may be missing (left as initialised). Mis-shaped tensors
 * are an error (loadStateDict's). Returns the report fields.
 */
export function loadInto(model: Module, file: WeightsFile, required: (name: string) => boolean): Pick<PretrainedReport, 'loaded' | 'missing' | 'ignored'> {
  const own = model.stateDict();
  const take = new Map<string, NamedTensor>();
  const ignored: string[] = [];
  for (const [k, v] of file.weights) (own.has(k) ? take.set(k, v) : ignored.push(k));
  const missing = [...own.keys()].filter((k) => !take.has(k));
  const absent = missing.filter(required);
  if (absent.length)
    throw new Error(
      `${file.path}: the weights lack ${absent.length} tensor(s) of this model: ${absent.slice(0, 8).join(', ')}${absent.length > 8 ? ', ...' : ''}` +
        ` (the file has ${file.weights.size}: ${[...file.weights.keys()].slice(0, 6).join(', ')}${file.weights.size > 6 ? ', ...' : ''})`,
    );
  model.loadStateDict(take, { strict: false });
  return { loaded: [...take.keys()], missing, ignored };
}

/**
 * The model `make` builds, with its parameters from the file. When the file holds every parameter in its shape (a
 * full checkpoint), the model is built without initialising (withoutInit) and each parameter takes the file's
 * values, so nothing is drawn or allocated twice (its generator has then drawn nothing yet); otherwise the model is
 * initialised and loadInto copies what the file has.
 */
export function buildFromWeights<M extends Module>(
  make: () => M,
  file: WeightsFile,
  required: (name: string) => boolean,
): { model: M; report: Pick<PretrainedReport, 'loaded' | 'missing' | 'ignored'> } {
  const bare = withoutInit(make);
  const own = bare.namedParameters();
  const fits = (k: string, shape: readonly number[]) => {
    const t = file.weights.get(k);
    return t !== undefined && t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
  };
  if (own.every(([k, p]) => fits(k, p.shape))) {
    for (const [k, p] of own) p.adoptHandle(native.fromArray(file.weights.get(k)!.data, [...p.shape]));
    const names = new Set(own.map(([k]) => k));
    return { model: bare, report: { loaded: [...names], missing: [], ignored: [...file.weights.keys()].filter((k) => !names.has(k)) } };
  }
  bare.dispose();
  const model = make();
  return { model, report: loadInto(model, file, required) };
}

export { readWeights, type WeightsOptions };
