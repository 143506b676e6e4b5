/**
 * The random-masking sampler (official random_masking): per sample, noise [L] in [0, 1) is sorted ascending;
 * the first lenKeep = floor(L * (1 - maskRatio)) patches of that order are kept (and enter the encoder in that
 * shuffled order), ids_restore is the inverse permutation, and mask is 1 for removed patches, 0 for kept ones,
 * in the original patch order.
 */
import { describeValue, expectFinite, expectInstance, expectInteger } from '../check.js';
import { Generator } from '../random.js';

export interface Masking {
  lenKeep: number;
  /** [B, lenKeep] indices of the kept patches, in shuffled order */
  idsKeep: Int32Array;
  /** [B, L] position of each patch in the shuffled order (argsort of ids_shuffle) */
  idsRestore: Int32Array;
  /** [B, L] 1 = removed, 0 = kept */
  mask: Float32Array;
}

export function keptCount(L: number, maskRatio: number): number {
  if (!(typeof maskRatio === 'number' && maskRatio >= 0 && maskRatio < 1)) throw new Error(`maskRatio must be in [0, 1), got ${typeof maskRatio === 'number' ? maskRatio : describeValue(maskRatio)}`);
  // as Python's int(L * (1 - mask_ratio)), computed in double precision
  return Math.floor(L * (1 - maskRatio));
}

/** Masking of B samples of L patches from noise [B * L] (drawn from gen when not given). */
export function randomMasking(B: number, L: number, maskRatio: number, noise?: Float32Array, gen?: Generator): Masking {
  expectInteger('randomMasking', 'B', B, 0);
  expectInteger('randomMasking', 'L', L, 1);
  expectFinite('randomMasking', 'maskRatio', maskRatio, (x) => x >= 0 && x < 1, 'in [0, 1)');
  if (noise !== undefined) expectInstance('randomMasking', 'noise', noise, Float32Array, 'a Float32Array or undefined');
  if (gen !== undefined) expectInstance('randomMasking', 'gen', gen, Generator, 'a Generator or undefined');
  const lenKeep = keptCount(L, maskRatio);
  if (lenKeep < 1) throw new Error(`maskRatio ${maskRatio} keeps no patch of ${L}`);
  if (noise && noise.length !== B * L) throw new Error(`randomMasking: noise has ${noise.length} values, expected B * L = ${B * L}`);
  if (!noise && !gen) throw new Error('randomMasking: pass noise or gen (a Generator)');
  const n = noise ?? gen!.uniformArray(B * L);
  const idsKeep = new Int32Array(B * lenKeep);
  const idsRestore = new Int32Array(B * L);
  const mask = new Float32Array(B * L);
  const order = new Array<number>(L);
  for (let b = 0; b < B; b++) {
    const nb = n.subarray(b * L, (b + 1) * L);
    for (let l = 0; l < L; l++) order[l] = l;
    // ascending by noise; equal noise keeps the lower index first (a stable sort)
    order.sort((x, y) => nb[x]! - nb[y]! || x - y);
    for (let k = 0; k < L; k++) {
      const l = order[k]!;
      idsRestore[b * L + l] = k;
      mask[b * L + l] = k < lenKeep ? 0 : 1;
      if (k < lenKeep) idsKeep[b * lenKeep + k] = l;
    }
  }
  return { lenKeep, idsKeep, idsRestore, mask };
}
