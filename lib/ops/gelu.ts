/** gelu, exact erf form: y = 0.5 x (1 + erf(x / sqrt 2)), any shape. */
import { record } from '../autograd.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';

export function gelu(x: Tensor): Tensor {
  return record('gelu', [x], new Tensor(native.gelu(x.handle)), (dy) => [new Tensor(native.geluBackward(x.handle, dy.handle))]);
}
