/** linear: y = x W^T + b, x [..., K], weight [N, K] (PyTorch layout), bias [N] -> y [..., N]. */
import { record, unsharedGrad } from '../autograd.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';

export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  const y = new Tensor(native.linear(x.handle, weight.handle, bias ? bias.handle : null));
  return record('linear', [x, weight, bias], y, (dy) => {
    const [dx, dw, db] = native.linearBackward(x.handle, weight.handle, dy.handle, x.requiresGrad, bias !== null);
    return [unsharedGrad(dx && new Tensor(dx)), unsharedGrad(new Tensor(dw)), unsharedGrad(db && new Tensor(db))];
  });
}
