/**
 * Model configurations. The three paper presets match the official mae_vit_*_patch* functions; the small ones are
 * for CPU work (28 px Fashion-MNIST / MNIST, 32 px CIFAR-10).
 */
import { totalmem } from 'node:os';
import { describeValue } from '../check.js';

export interface MaeConfig {
  imgSize: number;
  patchSize: number;
  inChans: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  decoderEmbedDim: number;
  decoderDepth: number;
  decoderNumHeads: number;
  mlpRatio: number;
  normPixLoss: boolean;
  /** LayerNorm eps; the official presets use 1e-6 */
  eps: number;
  /**
   * The paper's "encoder w/ [M]" baseline (Tables 1c and 2) instead of MAE: the encoder sees all L patches, the
   * removed ones replaced by a learned `encoder_mask_token`, and the decoder takes its 1 + L outputs (no decoder
   * mask token). Default false (MAE: the encoder sees only the kept patches).
   */
  maskTokenEncoder: boolean;
}

const paper = { mlpRatio: 4, normPixLoss: false, eps: 1e-6, maskTokenEncoder: false, inChans: 3, imgSize: 224, decoderEmbedDim: 512, decoderDepth: 8, decoderNumHeads: 16 };

/** the CPU presets: ViT-Tiny width (192, 3 heads), 6 blocks, a 2-block decoder of width 128, patches of 4 px */
const tiny = { ...paper, patchSize: 4, embedDim: 192, depth: 6, numHeads: 3, decoderEmbedDim: 128, decoderDepth: 2, decoderNumHeads: 4 };

export const presets = {
  mae_vit_base_patch16: { ...paper, patchSize: 16, embedDim: 768, depth: 12, numHeads: 12 },
  mae_vit_large_patch16: { ...paper, patchSize: 16, embedDim: 1024, depth: 24, numHeads: 16 },
  mae_vit_huge_patch14: { ...paper, patchSize: 14, embedDim: 1280, depth: 32, numHeads: 16 },
  /** ViT-Tiny width on 28x28 greyscale (Fashion-MNIST), 7x7 patches of 4 px; 12 of 49 visible at ratio 0.75 */
  mae_vit_tiny_patch4_28: { ...tiny, imgSize: 28, inChans: 1 },
  /** the same on 32x32 RGB (CIFAR-10), 8x8 patches of 4 px */
  mae_vit_tiny_patch4_32: { ...tiny, imgSize: 32, inChans: 3 },
} satisfies Record<string, MaeConfig>;

export type PresetName = keyof typeof presets;

export function presetNames(): PresetName[] {
  return Object.keys(presets) as PresetName[];
}

/** Refuses a config the model cannot be built from (`where` names the caller in the message). */
export function checkConfig(c: MaeConfig, where: string): void {
  const positive = ['imgSize', 'patchSize', 'inChans', 'embedDim', 'depth', 'numHeads', 'decoderEmbedDim', 'decoderDepth', 'decoderNumHeads'] as const;
  for (const k of positive)
    if (!Number.isInteger(c[k]) || c[k] < 1) throw new Error(`${where}: ${k} must be a positive integer, got ${c[k]}`);
  if (c.imgSize % c.patchSize !== 0) throw new Error(`${where}: imgSize ${c.imgSize} is not divisible by patchSize ${c.patchSize}`);
  if (c.embedDim % c.numHeads !== 0) throw new Error(`${where}: embedDim ${c.embedDim} is not divisible by numHeads ${c.numHeads}`);
  if (c.decoderEmbedDim % c.decoderNumHeads !== 0)
    throw new Error(`${where}: decoderEmbedDim ${c.decoderEmbedDim} is not divisible by decoderNumHeads ${c.decoderNumHeads}`);
  if (c.embedDim % 4 !== 0 || c.decoderEmbedDim % 4 !== 0)
    throw new Error(`${where}: embedDim and decoderEmbedDim must be divisible by 4 (2-D sin-cos position tables)`);
  if (!(c.mlpRatio > 0 && Number.isFinite(c.mlpRatio))) throw new Error(`${where}: mlpRatio must be a positive finite number, got ${c.mlpRatio}`);
  if (!(typeof c.eps === 'number' && c.eps > 0 && Number.isFinite(c.eps))) throw new Error(`${where}: eps must be a positive finite number, got ${describeValue(c.eps)}`);
  for (const k of ['maskTokenEncoder', 'normPixLoss'] as const)
    if (typeof c[k] !== 'boolean') throw new Error(`${where}: ${k} must be true or false, got ${String(c[k])}`);
}

/** How many values a model's weights hold, and how many its largest weight holds. */
export interface WeightSizes {
  count: number;
  largest: number;
}

/** The most values one weight of a model may hold. */
const MAX_WEIGHT_VALUES = 2 ** 31 - 1;

/**
 * The weights of `sizes` (a model's, from its config) can be allocated here: checked before anything is allocated, so
 * that absurd sizes are an error that says so, not a RangeError from a typed array or an allocation failing part way
 * through the model. `sizesFrom` names the config fields that set them.
 */
export function checkWeightsFit(sizes: WeightSizes, where: string, sizesFrom: string): void {
  const { count, largest } = sizes;
  if (largest > MAX_WEIGHT_VALUES)
    throw new Error(`${where}: one of the model's weights would hold ${largest} values, more than ${MAX_WEIGHT_VALUES} (2^31 - 1); check ${sizesFrom}`);
  if (4 * count > totalmem())
    throw new Error(
      `${where}: the model's ${count} parameters would take ${(4 * count / 2 ** 30).toFixed(1)} GiB in float32, more than this machine's memory (${(totalmem() / 2 ** 30).toFixed(1)} GiB); check ${sizesFrom}`,
    );
}

/** A transformer Block of width d: two LayerNorms, qkv, proj, fc1 and fc2 with their biases. */
function blockSizes(d: number, mlpRatio: number): WeightSizes {
  const h = Math.floor(d * mlpRatio);
  return { count: 4 * d + 3 * d * d + 3 * d + d * d + d + d * h + h + h * d + d, largest: Math.max(3 * d * d, d * h) };
}

/**
 * A ViT encoder of width d: patch embedding, cls token, position table, `depth` Blocks and the final LayerNorm (the
 * classifier's fc_norm in its place).
 */
export function encoderSizes(imgSize: number, patchSize: number, inChans: number, d: number, depth: number, mlpRatio: number): WeightSizes {
  const L = (imgSize / patchSize) ** 2;
  const pixels = patchSize ** 2 * inChans;
  const block = blockSizes(d, mlpRatio);
  return { count: d * pixels + d + d + (L + 1) * d + depth * block.count + 2 * d, largest: Math.max(d * pixels, (L + 1) * d, block.largest) };
}

/**
 * The values of a MaskedAutoencoder of config `c` (its parameters, the fixed position tables included), from the
 * sizes alone.
 */
export function maeParameterSizes(c: MaeConfig): WeightSizes {
  const L = (c.imgSize / c.patchSize) ** 2;
  const pixels = c.patchSize ** 2 * c.inChans;
  const enc = encoderSizes(c.imgSize, c.patchSize, c.inChans, c.embedDim, c.depth, c.mlpRatio);
  const dec = blockSizes(c.decoderEmbedDim, c.mlpRatio);
  const Dd = c.decoderEmbedDim;
  const count =
    enc.count + c.embedDim * Dd + Dd + (c.maskTokenEncoder ? c.embedDim : Dd) + (L + 1) * Dd + c.decoderDepth * dec.count + 2 * Dd + Dd * pixels + pixels;
  return { count, largest: Math.max(enc.largest, (L + 1) * Dd, dec.largest, c.embedDim * Dd, Dd * pixels) };
}

export function getPreset(name: string): MaeConfig {
  expectPresetName('getPreset', 'name', name);
  return { ...presets[name] };
}

/** A preset's name (`where` names the caller and `name` the argument in the message). */
export function expectPresetName(where: string, name: string, v: unknown): asserts v is PresetName {
  if (typeof v !== 'string' || !Object.hasOwn(presets, v)) throw new Error(`${where}: ${name} must be one of ${presetNames().join(', ')}, got ${describeValue(v)}`);
}

/** The official MaskedAutoencoderViT argument names (img_size, patch_size, ..., norm_pix_loss) as a MaeConfig. */
export function configFromOfficial(args: Record<string, unknown>): Partial<MaeConfig> {
  const names: [string, keyof MaeConfig][] = [
    ['img_size', 'imgSize'],
    ['patch_size', 'patchSize'],
    ['in_chans', 'inChans'],
    ['embed_dim', 'embedDim'],
    ['depth', 'depth'],
    ['num_heads', 'numHeads'],
    ['decoder_embed_dim', 'decoderEmbedDim'],
    ['decoder_depth', 'decoderDepth'],
    ['decoder_num_heads', 'decoderNumHeads'],
    ['mlp_ratio', 'mlpRatio'],
    ['norm_pix_loss', 'normPixLoss'],
  ];
  const c: Record<string, unknown> = {};
  for (const [from, to] of names) if (args[from] !== undefined) c[to] = args[from];
  return c as Partial<MaeConfig>;
}
