/**
 * Elementwise ops and reductions.
 * add / mul (a, b): b repeats over a when its shape, without leading ones, is a suffix of a's shape (a bias [D],
 *   a position table [1, L, D]); the gradient of b sums the repeats.
 * scale(x, s) = s x;  sum(x) and mean(x) -> [1];  meanTokens(x [B, N, D]) -> [B, D];  reshape (a view).
 */
import { record } from '../autograd.js';
import { describeValue } from '../check.js';
import { native, type NativeTensor } from '../native.js';
import { expectTensors, shapeStr, Tensor } from '../tensor.js';

/** A new tensor of `shape`: dy summed over the repeats when the operand was repeated, else a view of dy. */
function reduceTo(dy: Tensor, shape: readonly number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n === dy.size) return reshapeRaw(dy, shape);
  return new Tensor(native.sumTo(dy.handle, shape.slice()));
}

function reshapeRaw(x: Tensor, shape: readonly number[]): Tensor {
  return x.view(x.handle.reshape(shape.slice()));
}

export function add(a: Tensor, b: Tensor): Tensor {
  expectTensors('add', { a, b });
  const y = new Tensor(native.add(a.handle, b.handle));
  return record('add', [a, b], y, (dy) => [
    a.requiresGrad ? reshapeRaw(dy, a.shape) : null,
    b.requiresGrad ? reduceTo(dy, b.shape) : null,
  ]);
}

export function mul(a: Tensor, b: Tensor): Tensor {
  expectTensors('mul', { a, b });
  const y = new Tensor(native.mul(a.handle, b.handle));
  return record('mul', [a, b], y, (dy) => {
    const da = a.requiresGrad ? new Tensor(native.mul(dy.handle, b.handle)) : null;
    let db: Tensor | null = null;
    if (b.requiresGrad) {
      const full = new Tensor(native.mul(dy.handle, a.handle));
      db = reduceTo(full, b.shape);
      full.dispose();
    }
    return [da, db];
  }, [], [a, b]);
}

/**
 * x's handle for scale and mean, which run native entries of other names (clone and axpby, sum): checked here as
 * those check it, so that a refusal names the op that was called.
 */
function floatInput(op: string, x: Tensor): NativeTensor {
  expectTensors(op, { x });
  const h = x.handle;
  if (x.dtype === 'int32') throw new Error(`${op}: x must be float32 or bfloat16, got int32 ${shapeStr(x.shape)}`);
  if (x.shape.length === 0) throw new Error(`${op}: x must have at least one dimension`);
  if (x.size === 0) throw new Error(`${op}: x ${shapeStr(x.shape)} is empty; zero-size tensors are not supported here`);
  return h;
}

export function scale(x: Tensor, s: number): Tensor {
  const h = floatInput('scale', x);
  if (typeof s !== 'number') throw new Error(`scale: s must be a number, got ${describeValue(s)}`);
  const y = new Tensor(native.clone(h));
  native.axpby(s, h, 0, y.handle);
  return record('scale', [x], y, (dy) => {
    const dx = new Tensor(native.clone(dy.handle));
    native.axpby(s, dy.handle, 0, dx.handle);
    return [dx];
  });
}

export function sum(x: Tensor): Tensor {
  expectTensors('sum', { x });
  return record('sum', [x], new Tensor(native.sum(x.handle, 1)), (dy) => [spread(dy, x.shape, 1)]);
}

export function mean(x: Tensor): Tensor {
  const h = floatInput('mean', x);
  const n = x.size;
  return record('mean', [x], new Tensor(native.sum(h, 1 / n)), (dy) => [spread(dy, x.shape, 1 / n)]);
}

/** a tensor of `shape` filled with dy[0] * s, on dy's device (computed there: no read of dy to the host) */
function spread(dy: Tensor, shape: readonly number[], s: number): Tensor {
  const ones = Tensor.full(shape, s, 'float32', dy.device);
  const y = new Tensor(native.mul(ones.handle, dy.handle));
  ones.dispose();
  return y;
}

export function meanTokens(x: Tensor): Tensor {
  expectTensors('meanTokens', { x });
  const n = x.shape[1]!;
  return record('meanTokens', [x], new Tensor(native.meanTokens(x.handle)), (dy) => [
    new Tensor(native.meanTokensBackward(dy.handle, n)),
  ]);
}

/** A view of x with another shape of the same size (shares storage). */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  expectTensors('reshape', { x });
  if (!Array.isArray(shape)) throw new Error(`reshape: shape must be an array of sizes, got ${describeValue(shape)}`);
  return record('reshape', [x], reshapeRaw(x, shape), (dy) => [reshapeRaw(dy, x.shape)]);
}
