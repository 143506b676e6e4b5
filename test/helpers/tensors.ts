// Small conveniences for building tensors and projected losses in op tests.
import { mul, sum } from '../../lib/ops/index.js';
import { Tensor } from '../../lib/tensor.js';

/** A float32 tensor (a leaf that requires grad when asked). */
export function tensor(data: ArrayLike<number>, shape: readonly number[], requiresGrad = false): Tensor {
  return Tensor.fromArray(Float32Array.from(data), shape, { requiresGrad });
}

/** An int32 tensor. */
export function intTensor(data: ArrayLike<number>, shape: readonly number[]): Tensor {
  return Tensor.fromArray(Int32Array.from(data), shape);
}

/** The scalar sum(y * r) for a fixed random r of y's shape: backward gives the vector-Jacobian product with r. */
export function project(y: Tensor, r: ArrayLike<number>): Tensor {
  return sum(mul(y, tensor(r, y.shape)));
}

/** The leaf's gradient as a Float32Array (fails loudly when there is none). */
export function gradOf(t: Tensor): Float32Array {
  if (!t.grad) throw new Error(`no gradient on ${t.toString()}`);
  return t.grad.dataSync();
}
