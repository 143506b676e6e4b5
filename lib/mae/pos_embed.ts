/** Position tables: the fixed 2-D sin-cos table, and any table resampled for another image size. */
import { expectFinite, expectInstance, expectInteger } from '../check.js';
import { bicubicWeights } from '../data/transforms.js';
import { Tensor } from '../tensor.js';

/**
 * Fixed 2-D sin-cos position tables (official util/pos_embed.py get_2d_sincos_pos_embed with cls_token=True):
 * [1 + g*g, D], the cls row zeros; for the patch at (row i, col j), index 1 + i*g + j, the first D/2 values encode
 * the column j and the second D/2 the row i, each as D/4 sines then D/4 cosines of pos * omega_k,
 * omega_k = 1 / 10000^(k / (D/4)). Computed in double precision, stored as float32.
 */
export function get2dSincosPosEmbed(embedDim: number, gridSize: number): Float32Array {
  expectFinite('get2dSincosPosEmbed', 'embedDim', embedDim, (x) => Number.isInteger(x) && x > 0 && x % 4 === 0, 'a positive multiple of 4');
  expectInteger('get2dSincosPosEmbed', 'gridSize', gridSize, 1);
  const quarter = embedDim / 4;
  const out = new Float32Array((1 + gridSize * gridSize) * embedDim);
  for (let i = 0; i < gridSize; i++) {
    for (let j = 0; j < gridSize; j++) {
      const row = out.subarray((1 + i * gridSize + j) * embedDim);
      for (let k = 0; k < quarter; k++) {
        const omega = 1 / 10000 ** (k / quarter);
        row[k] = Math.sin(j * omega);
        row[quarter + k] = Math.cos(j * omega);
        row[2 * quarter + k] = Math.sin(i * omega);
        row[3 * quarter + k] = Math.cos(i * omega);
      }
    }
  }
  return out;
}

/**
 * A position table for another grid, as the official util/pos_embed.py interpolate_pos_embed and Hugging Face's
 * interpolate_pos_encoding compute it: the first `numExtra` rows (the cls token) are kept, the grid rows
 * [gridH * gridW, D] are resampled to [newH * newW, D] by bicubic convolution (a = -0.75) with
 * align_corners=False, as F.interpolate(mode='bicubic', size=(newH, newW)): output row y samples input row
 * (y + 0.5) * gridH / newH - 0.5, neighbours clamped at the border, no antialiasing. Separable, in float64.
 * table: [numExtra + gridH * gridW, D] -> [numExtra + newH * newW, D].
 */
export function interpolatePosEmbed(
  table: Float32Array, embedDim: number, gridH: number, gridW: number, newH: number, newW: number, numExtra = 1,
): Float32Array {
  const D = embedDim;
  expectInstance('interpolatePosEmbed', 'table', table, Float32Array, 'a Float32Array [numExtra + gridH * gridW, embedDim]');
  for (const [name, v, min] of [['embedDim', D, 1], ['gridH', gridH, 1], ['gridW', gridW, 1], ['newH', newH, 1], ['newW', newW, 1], ['numExtra', numExtra, 0]] as const)
    if (!(Number.isInteger(v) && v >= min)) throw new Error(`interpolatePosEmbed: ${name} must be an integer >= ${min}, got ${v}`);
  if (table.length !== (numExtra + gridH * gridW) * D)
    throw new Error(`interpolatePosEmbed: the table has ${table.length} values, not (${numExtra} + ${gridH} x ${gridW}) x ${D}`);
  const taps = (inSize: number, outSize: number) => {
    const index = new Int32Array(4 * outSize);
    const weight = new Float64Array(4 * outSize);
    for (let o = 0; o < outSize; o++) {
      const real = ((o + 0.5) * inSize) / outSize - 0.5;
      const i0 = Math.floor(real);
      const w = bicubicWeights(real - i0);
      for (let k = 0; k < 4; k++) {
        index[4 * o + k] = Math.min(Math.max(i0 - 1 + k, 0), inSize - 1);
        weight[4 * o + k] = w[k]!;
      }
    }
    return { index, weight };
  };
  const tx = taps(gridW, newW);
  const ty = taps(gridH, newH);
  const grid = table.subarray(numExtra * D);
  // along the columns: [gridH, newW, D]
  const tmp = new Float64Array(gridH * newW * D);
  for (let r = 0; r < gridH; r++)
    for (let x = 0; x < newW; x++) {
      const dst = (r * newW + x) * D;
      for (let k = 0; k < 4; k++) {
        const w = tx.weight[4 * x + k]!;
        const src = (r * gridW + tx.index[4 * x + k]!) * D;
        for (let d = 0; d < D; d++) tmp[dst + d]! += w * grid[src + d]!;
      }
    }
  // along the rows: [newH, newW, D]
  const out = new Float32Array((numExtra + newH * newW) * D);
  out.set(table.subarray(0, numExtra * D));
  const acc = new Float64Array(D);
  for (let y = 0; y < newH; y++)
    for (let x = 0; x < newW; x++) {
      acc.fill(0);
      for (let k = 0; k < 4; k++) {
        const w = ty.weight[4 * y + k]!;
        const src = (ty.index[4 * y + k]! * newW + x) * D;
        for (let d = 0; d < D; d++) acc[d]! += w * tmp[src + d]!;
      }
      out.set(acc, (numExtra + y * newW + x) * D);
    }
  return out;
}

/**
 * The position table [1, 1 + (h/p)(w/p), D] for images of h x w pixels: `posEmbed` itself for the grid it was made
 * for (gridSize x gridSize), otherwise a new tensor interpolated from it (interpolatePosEmbed), on its device.
 */
export function posEmbedFor(posEmbed: Tensor, gridSize: number, patchSize: number, h: number, w: number): Tensor {
  const gh = h / patchSize;
  const gw = w / patchSize;
  if (gh === gridSize && gw === gridSize) return posEmbed;
  const D = posEmbed.shape[2]!;
  const table = interpolatePosEmbed(posEmbed.dataSync(), D, gridSize, gridSize, gh, gw);
  return Tensor.fromArray(table, [1, 1 + gh * gw, D], { device: posEmbed.device });
}
