/**
 * attention: fused multi-head self-attention on the packed qkv projection [B, N, 3D] (q, k, v blocks, heads
 * contiguous inside each, as the official code's reshape) -> [B, N, D], heads merged, scale head_dim^-0.5.
 * Only the per-row log-sum-exp [B, H, N] is kept for backward.
 */
import { record } from '../autograd.js';
import { native } from '../native.js';
import { expectTensors, Tensor } from '../tensor.js';

export function attention(qkv: Tensor, numHeads: number): Tensor {
  expectTensors('attention', { qkv });
  const [outh, lseh] = native.attention(qkv.handle, numHeads);
  const out = new Tensor(outh);
  const lse = new Tensor(lseh);
  return record(
    'attention',
    [qkv],
    out,
    (dout) => [new Tensor(native.attentionBackward(qkv.handle, out.handle, dout.handle, lse.handle, numHeads))],
    [lse],
    [qkv, out],
  );
}
