/**
 * Token plumbing on [B, N, D] sequences.
 * gatherRows(x [B, N, D], index int32 [B, K]) -> [B, K, D]: y[b, k] = x[b, index[b, k]] (keep / unshuffle).
 * catTokens(a [Ba, Na, D], b [Bb, Nb, D]) -> [B, Na + Nb, D]; a batch of 1 broadcasts (the cls and mask tokens).
 * sliceTokens(x [B, N, D], start, length) -> [B, length, D].
 */
import { record } from '../autograd.js';
import { native } from '../native.js';
import { expectTensors, Tensor } from '../tensor.js';

export function gatherRows(x: Tensor, index: Tensor): Tensor {
  expectTensors('gatherRows', { x, index });
  const n = x.shape[1]!;
  return record('gatherRows', [x, null], new Tensor(native.gatherRows(x.handle, index.handle)), (dy) => [
    new Tensor(native.scatterAddRows(dy.handle, index.handle, n)),
    null,
  ], [], [index]);
}

export function catTokens(a: Tensor, b: Tensor): Tensor {
  expectTensors('catTokens', { a, b });
  const na = a.shape[1]!;
  const nb = b.shape[1]!;
  const y = new Tensor(native.catTokens(a.handle, b.handle));
  return record('catTokens', [a, b], y, (dy) => [part(dy, 0, na, a.shape), part(dy, na, nb, b.shape)]);
}

/** The gradient of one operand of catTokens: its slice of dy, summed over the batch when it was broadcast. */
function part(dy: Tensor, start: number, len: number, shape: readonly number[]): Tensor {
  const s = new Tensor(native.sliceTokens(dy.handle, start, len));
  if (shape[0] === dy.shape[0]) return s;
  const r = new Tensor(native.sumTo(s.handle, shape.slice()));
  s.dispose();
  return r;
}

export function sliceTokens(x: Tensor, start: number, length: number): Tensor {
  expectTensors('sliceTokens', { x });
  const [B, N] = x.shape as [number, number, number];
  const y = new Tensor(native.sliceTokens(x.handle, start, length));
  return record('sliceTokens', [x], y, (dy) => {
    // place dy at tokens start .. start+length of a zero gradient
    const idx = new Int32Array(B * length);
    for (let b = 0; b < B; b++) for (let k = 0; k < length; k++) idx[b * length + k] = start + k;
    const index = Tensor.fromArray(idx, [B, length], { device: dy.device });
    const dx = new Tensor(native.scatterAddRows(dy.handle, index.handle, N));
    index.dispose();
    return [dx];
  });
}
