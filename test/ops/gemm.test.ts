// Tests for lib/ops/gemm.ts (linear): forward against the double reference on odd and prime shapes, with and
// without bias and for 1-D to 3-D inputs; backward against the analytic double gradients and central differences.
import { describe, expect, it } from 'vitest';
import { linear } from '../../lib/ops/index.js';
import { Tensor, tidy } from '../../lib/tensor.js';
import { expectClose, expectGradClose, numericGrad } from '../helpers/gradcheck.js';
import { randn, rng } from '../helpers/random.js';
import * as ref from '../helpers/reference.js';
import { gradOf, project, tensor } from '../helpers/tensors.js';

// [leading dims of x, K, N]: fixed odd and prime shapes, then seeded random ones
const shapes: [number[], number, number][] = [
  [[1], 1, 1],
  [[3, 5], 7, 13],
  [[1, 197], 13, 7],
  [[3, 1], 16, 3],
  [[2, 3, 5], 4, 6],
  [[], 13, 5], // x is 1-D
  [[11], 64, 96],
  // above gemm.cpp's grain (2^20 multiply-adds), so the threads each compute a block of the output: split by rows
  // (M >= N) and by columns (N > M; dx also by columns as K > M), sizes not multiples of the 16-wide blocks
  [[7, 29], 97, 131],
  [[37], 111, 301],
];
{
  const g = rng(2024);
  for (let i = 0; i < 4; i++) shapes.push([[1 + g.int(3), 1 + g.int(40)], 1 + g.int(50), 1 + g.int(50)]);
}

describe('linear forward', () => {
  for (const [lead, K, N] of shapes)
    for (const withBias of [true, false])
      it(`x [${[...lead, K]}] w [${N}, ${K}] ${withBias ? 'with' : 'without'} bias`, () =>
        tidy(() => {
          const g = rng(lead.length * 1000 + K * 10 + N + (withBias ? 7 : 0));
          const rows = lead.reduce((a, b) => a * b, 1);
          const x = randn(g, rows * K);
          const w = randn(g, N * K, 0.5);
          const b = randn(g, N);
          const y = linear(tensor(x, [...lead, K]), tensor(w, [N, K]), withBias ? tensor(b, [N]) : null);
          expect(y.shape).toEqual([...lead, N]);
          expectClose(y.dataSync(), ref.linear(x, w, withBias ? b : null, rows, K, N), { rtol: 1e-5 });
        }));

  it('overwrites recycled memory without a bias (no garbage or NaN leaks into y)', () =>
    tidy(() => {
      const g = rng(5);
      // leave NaN-filled blocks of the output's size in the allocator cache, then compute into a fresh output
      for (let i = 0; i < 4; i++) Tensor.full([6, 10], NaN).dispose();
      const x = randn(g, 6 * 3);
      const w = randn(g, 10 * 3);
      const y = linear(tensor(x, [6, 3]), tensor(w, [10, 3]));
      expectClose(y.dataSync(), ref.linear(x, w, null, 6, 3, 10), { rtol: 1e-5 });
    }));
});

describe('linear backward', () => {
  for (const [lead, K, N] of shapes)
    it(`analytic gradients, x [${[...lead, K]}] w [${N}, ${K}]`, () =>
      tidy(() => {
        const g = rng(77 + K * N);
        const rows = lead.reduce((a, b) => a * b, 1);
        const x = randn(g, rows * K);
        const w = randn(g, N * K, 0.5);
        const b = randn(g, N);
        const r = randn(g, rows * N);
        const xt = tensor(x, [...lead, K], true);
        const wt = tensor(w, [N, K], true);
        const bt = tensor(b, [N], true);
        project(linear(xt, wt, bt), r).backward();
        const e = ref.linearBackward(x, w, r, rows, K, N);
        expectClose(gradOf(xt), e.dx, { rtol: 1e-5, label: 'dx' });
        expectClose(gradOf(wt), e.dw, { rtol: 1e-5, label: 'dw' });
        expectClose(gradOf(bt), e.db, { rtol: 1e-5, label: 'db' });
      }));

  it('matches central differences of the double reference', () =>
    tidy(() => {
      const g = rng(3);
      const [rows, K, N] = [5, 7, 3];
      const x = randn(g, rows * K);
      const w = randn(g, N * K);
      const b = randn(g, N);
      const r = randn(g, rows * N);
      const xt = tensor(x, [rows, K], true);
      const wt = tensor(w, [N, K], true);
      const bt = tensor(b, [N], true);
      project(linear(xt, wt, bt), r).backward();
      const f = ([xx, ww, bb]: Float64Array[]): number => ref.sumAll(ref.mul(ref.linear(xx!, ww!, bb!, rows, K, N), r));
      expectGradClose(gradOf(xt), numericGrad(f, [x, w, b], 0), { label: 'dx' });
      expectGradClose(gradOf(wt), numericGrad(f, [x, w, b], 1), { label: 'dw' });
      expectGradClose(gradOf(bt), numericGrad(f, [x, w, b], 2), { label: 'db' });
    }));

  it('gives no gradient to an input that does not require one', () =>
    tidy(() => {
      const g = rng(4);
      const xt = tensor(randn(g, 12), [4, 3]);
      const wt = tensor(randn(g, 6), [2, 3], true);
      project(linear(xt, wt), randn(g, 8)).backward();
      expect(xt.grad).toBeNull();
      expect(wt.grad).not.toBeNull();
    }));
});
