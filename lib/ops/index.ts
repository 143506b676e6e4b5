export { linear } from './gemm.js';
export { layerNorm } from './layernorm.js';
export { gelu } from './gelu.js';
export { attention } from './attention.js';
export { maskedMse, crossEntropy } from './loss.js';
export { batchNorm } from './batchnorm.js';
export { gatherRows, catTokens, sliceTokens } from './tokens.js';
export { add, mul, scale, sum, mean, meanTokens, reshape } from './elementwise.js';
export { patchify, unpatchify, type PatchOrder } from './patch.js';
