/**
 * linear: y = x W^T + b, x [..., K], weight [N, K] (PyTorch layout), bias [N] -> y [..., N].
 * weightBf16: a bfloat16 copy of the weight (lib/nn/shadow.ts) that the products read instead of converting the fp32
 * weight each time; the gradient still goes to weight, in its dtype. A bfloat16 x makes the products bf16 (fp32
 * accumulation; on the CPU through oneDNN).
 */
import { record, unsharedGrad } from '../autograd.js';
import { native } from '../native.js';
import { expectTensors, Tensor } from '../tensor.js';

export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null, weightBf16: Tensor | null = null): Tensor {
  expectTensors('linear', { x, weight }, { bias, weightBf16 });
  const wb = weightBf16 ? weightBf16.handle : null;
  const y = new Tensor(native.linear(x.handle, weight.handle, bias ? bias.handle : null, wb));
  return record('linear', [x, weight, bias], y, (dy) => {
    const [dx, dw, db] = native.linearBackward(x.handle, weight.handle, dy.handle, x.requiresGrad, bias !== null, wb);
    return [unsharedGrad(dx && new Tensor(dx)), unsharedGrad(new Tensor(dw)), unsharedGrad(db && new Tensor(db))];
  }, [], [x, weight]);
}
