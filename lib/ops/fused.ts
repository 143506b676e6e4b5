/**
 * The switch between the fused ops and the unfused sequences they replace: bias + GELU in one op (biasGelu), the
 * residual add fused into the LayerNorm after it (addLayerNorm), the LayerNorm backward adding the residual stream's
 * gradient in its own pass, and bf16 weight shadows for bf16 products. On unless MAE_FUSED=0, which the
 * native CUDA library also reads (its fused matrix-product epilogues). Read at every call, so that one program can
 * run both paths and compare them.
 */
export function fusedOps(): boolean {
  return process.env.MAE_FUSED !== '0';
}
