/**
 * Model FLOPs of an MAE per image, counted from its config: the one count that `mae bench`, the training log and
 * benchmarks/ use. Multiply-accumulates (MACs) of every matrix product, T tokens of width D, mlp hidden H:
 *
 *   patch_embed        L * (p*p*C) * D            on all L patches (the code embeds the whole image, then masks)
 *   encoder blocks     depth * (T_e * (3D^2 + D^2 + 2 D H) + 2 T_e^2 D)   qkv, proj, fc1, fc2; q.k^T and P.v
 *   decoder_embed      T_e * D * Dd
 *   decoder blocks     decoderDepth * (the same on T_d = 1 + L tokens of width Dd)
 *   decoder_pred       T_d * Dd * (p*p*C)
 *
 * T_e = 1 + kept patches for MAE, 1 + L for the mask-token encoder (MaeConfig.maskTokenEncoder). Forward FLOPs =
 * 2 x MACs; training FLOPs = 3 x forward (the backward computes two products for each one of the forward).
 * Softmax, norms, GELU, the loss and the optimizer are not counted.
 */
import { expectFinite, expectObject } from '../check.js';
import { keptCount } from './masking.js';
import { checkConfig, type MaeConfig } from './presets.js';

export interface FlopCount {
  /** forward FLOPs per image */
  forward: number;
  /** training FLOPs per image (3 x forward) */
  training: number;
  /** forward FLOPs per image of each part: patch_embed, encoder_linear, encoder_attention, decoder_embed, ... */
  parts: Record<string, number>;
}

/** Forward MACs of one block on T tokens of width D: its linear layers and attention's two products. */
function blockMacs(T: number, D: number, mlpRatio: number): { linear: number; attention: number } {
  const H = Math.floor(D * mlpRatio);
  return { linear: T * (3 * D * D + D * D + 2 * D * H), attention: 2 * T * T * D };
}

/** FLOPs per image of a training step of the MAE `c` at `maskRatio` (default 0.75). */
export function maeFlops(c: MaeConfig, maskRatio = 0.75): FlopCount {
  expectObject('maeFlops', 'config', c);
  checkConfig(c, 'maeFlops');
  expectFinite('maeFlops', 'maskRatio', maskRatio, (x) => x >= 0 && x < 1, 'in [0, 1)');
  const L = (c.imgSize / c.patchSize) ** 2;
  if (!c.maskTokenEncoder && keptCount(L, maskRatio) < 1) throw new Error(`maeFlops: maskRatio ${maskRatio} keeps no patch of ${L}`);
  const P = c.patchSize ** 2 * c.inChans;
  const Te = 1 + (c.maskTokenEncoder ? L : keptCount(L, maskRatio));
  const Td = 1 + L;
  const enc = blockMacs(Te, c.embedDim, c.mlpRatio);
  const dec = blockMacs(Td, c.decoderEmbedDim, c.mlpRatio);
  const macs: Record<string, number> = {
    patch_embed: L * P * c.embedDim,
    encoder_linear: c.depth * enc.linear,
    encoder_attention: c.depth * enc.attention,
    decoder_embed: Te * c.embedDim * c.decoderEmbedDim,
    decoder_linear: c.decoderDepth * dec.linear,
    decoder_attention: c.decoderDepth * dec.attention,
    decoder_pred: Td * c.decoderEmbedDim * P,
  };
  const parts: Record<string, number> = {};
  let forward = 0;
  for (const [k, v] of Object.entries(macs)) {
    parts[k] = 2 * v;
    forward += 2 * v;
  }
  return { forward, training: 3 * forward, parts };
}
