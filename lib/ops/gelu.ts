/**
 * gelu, exact erf form: y = 0.5 x (1 + erf(x / sqrt 2)), any shape.
 * biasGelu(x [..., N], bias [N]) = gelu(x + bias) in one pass, and one pass back for dx and dbias (the MLP's first
 * layer: the product without its bias, then this).
 */
import { record } from '../autograd.js';
import { native } from '../native.js';
import { expectTensors, Tensor } from '../tensor.js';

export function gelu(x: Tensor): Tensor {
  expectTensors('gelu', { x });
  return record('gelu', [x], new Tensor(native.gelu(x.handle)), (dy) => [new Tensor(native.geluBackward(x.handle, dy.handle))], [], [x]);
}

export function biasGelu(x: Tensor, bias: Tensor): Tensor {
  expectTensors('biasGelu', { x, bias });
  return record('biasGelu', [x, bias], new Tensor(native.biasGelu(x.handle, bias.handle)), (dy) => {
    const [dx, db] = native.biasGeluBackward(x.handle, bias.handle, dy.handle, bias.requiresGrad);
    return [new Tensor(dx), db && new Tensor(db)];
  }, [], [x, bias]);
}
