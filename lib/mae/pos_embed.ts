/**
 * Fixed 2-D sin-cos position tables (official util/pos_embed.py get_2d_sincos_pos_embed with cls_token=True):
 * [1 + g*g, D], the cls row zeros; for the patch at (row i, col j), index 1 + i*g + j, the first D/2 values encode
 * the column j and the second D/2 the row i, each as D/4 sines then D/4 cosines of pos * omega_k,
 * omega_k = 1 / 10000^(k / (D/4)). Computed in double precision, stored as float32.
 */
export function get2dSincosPosEmbed(embedDim: number, gridSize: number): Float32Array {
  if (embedDim % 4 !== 0) throw new Error(`get2dSincosPosEmbed: embed dim ${embedDim} must be divisible by 4`);
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
