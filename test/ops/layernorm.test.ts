// Tests for lib/ops/layernorm.ts: forward (biased variance, eps) against the double reference on odd shapes,
// backward for x, weight and bias against analytic double gradients and central differences.
import { describe, expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { layerNorm } from '../../lib/ops/index.js';
import { tidy } from '../../lib/tensor.js';
import { expectClose, expectGradClose, numericGrad } from '../helpers/gradcheck.js';
import { randn, rng } from '../helpers/random.js';
import * as ref from '../helpers/reference.js';
import { gradOf, project, tensor } from '../helpers/tensors.js';

const shapes = [[7], [1, 1, 13], [3, 5, 7], [1, 197, 13], [2, 3, 64], [4, 3]];

describe('layerNorm forward', () => {
  for (const shape of shapes)
    for (const eps of [1e-6, 1e-5])
      it(`x [${shape}] eps ${eps}`, () =>
        tidy(() => {
          const g = rng(shape.length * 100 + shape[shape.length - 1]!);
          const D = shape[shape.length - 1]!;
          const rows = shape.reduce((a, b) => a * b, 1) / D;
          // an offset and a spread per row, as real activations have
          const x = randn(g, rows * D).map((v, i) => 3 * v + (i % 3) - 1);
          const w = randn(g, D).map((v) => 1 + 0.3 * v);
          const b = randn(g, D, 0.5);
          const y = layerNorm(tensor(x, shape), tensor(w, [D]), tensor(b, [D]), eps);
          expect(y.shape).toEqual(shape);
          expectClose(y.dataSync(), ref.layerNorm(x, w, b, rows, D, eps).y, { rtol: 1e-5 });
        }));

  it('normalises with the biased variance: [0, 2, 4, 6] -> (x - 3) / sqrt(5 + eps)', () =>
    tidy(() => {
      const y = layerNorm(tensor([0, 2, 4, 6], [1, 4]), tensor([1, 1, 1, 1], [4]), tensor([0, 0, 0, 0], [4]), 1e-6).dataSync();
      expectClose(y, [-3, -1, 1, 3].map((v) => v / Math.sqrt(5 + 1e-6)), { rtol: 1e-6 });
    }));

  it('handles D = 2 (every row normalises to -1, +1)', () =>
    tidy(() => {
      const x = randn(rng(2), 8, 3);
      const w = Float32Array.from([1.5, -0.5]);
      const b = Float32Array.from([0.25, 2]);
      const y = layerNorm(tensor(x, [4, 2]), tensor(w, [2]), tensor(b, [2])).dataSync();
      expectClose(y, ref.layerNorm(x, w, b, 4, 2, 1e-6).y, { rtol: 1e-5 });
    }));

  it('uses eps inside the square root (visible for a nearly constant row)', () =>
    tidy(() => {
      const D = 8;
      const x = Float32Array.from({ length: D }, (_, i) => 0.5 + (i % 2 ? 1e-3 : -1e-3));
      const w = new Float32Array(D).fill(1);
      const b = new Float32Array(D);
      for (const eps of [1e-6, 1e-4]) {
        const y = layerNorm(tensor(x, [D]), tensor(w, [D]), tensor(b, [D]), eps).dataSync();
        expectClose(y, ref.layerNorm(x, w, b, 1, D, eps).y, { rtol: 1e-4 });
      }
    }));
});

describe('layerNorm backward', () => {
  for (const shape of shapes)
    it(`analytic gradients, x [${shape}]`, () =>
      tidy(() => {
        const g = rng(500 + shape.length * 10 + shape[0]!);
        const D = shape[shape.length - 1]!;
        const rows = shape.reduce((a, b) => a * b, 1) / D;
        const x = randn(g, rows * D, 2);
        const w = randn(g, D).map((v) => 1 + 0.3 * v);
        const b = randn(g, D, 0.5);
        const r = randn(g, rows * D);
        const xt = tensor(x, shape, true);
        const wt = tensor(w, [D], true);
        const bt = tensor(b, [D], true);
        project(layerNorm(xt, wt, bt, 1e-6), r).backward();
        const e = ref.layerNormBackward(x, w, r, rows, D, 1e-6);
        expectClose(gradOf(xt), e.dx, { rtol: 1e-4, label: 'dx' });
        expectClose(gradOf(wt), e.dw, { rtol: 1e-4, label: 'dw' });
        expectClose(gradOf(bt), e.db, { rtol: 1e-4, label: 'db' });
      }));

  it('reduces dw and db over per-thread partials correctly for 1 to 4 threads', () => {
    const threads = native.info().threads;
    try {
      for (const n of [1, 3, 4]) {
        native.setNumThreads(n);
        tidy(() => {
          const g = rng(40 + n);
          const [rows, D] = [37, 24];
          const x = randn(g, rows * D);
          const w = randn(g, D);
          const r = randn(g, rows * D);
          const xt = tensor(x, [rows, D], true);
          const wt = tensor(w, [D], true);
          const bt = tensor(new Float32Array(D), [D], true);
          project(layerNorm(xt, wt, bt, 1e-6), r).backward();
          const e = ref.layerNormBackward(x, w, r, rows, D, 1e-6);
          expectClose(gradOf(xt), e.dx, { rtol: 1e-4, label: `dx, ${n} threads` });
          expectClose(gradOf(wt), e.dw, { rtol: 1e-4, label: `dw, ${n} threads` });
          expectClose(gradOf(bt), e.db, { rtol: 1e-4, label: `db, ${n} threads` });
        });
      }
    } finally {
      native.setNumThreads(threads);
    }
  });

  it('matches central differences of the double reference', () =>
    tidy(() => {
      const g = rng(9);
      const [rows, D] = [5, 7];
      const x = randn(g, rows * D, 2);
      const w = randn(g, D).map((v) => 1 + 0.3 * v);
      const b = randn(g, D, 0.5);
      const r = randn(g, rows * D);
      const xt = tensor(x, [rows, D], true);
      const wt = tensor(w, [D], true);
      const bt = tensor(b, [D], true);
      project(layerNorm(xt, wt, bt, 1e-6), r).backward();
      const f = ([xx, ww, bb]: Float64Array[]): number =>
        ref.sumAll(ref.mul(ref.layerNorm(xx!, ww!, bb!, rows, D, 1e-6).y, r));
      expectGradClose(gradOf(xt), numericGrad(f, [x, w, b], 0), { label: 'dx' });
      expectGradClose(gradOf(wt), numericGrad(f, [x, w, b], 1), { label: 'dw' });
      expectGradClose(gradOf(bt), numericGrad(f, [x, w, b], 2), { label: 'db' });
    }));
});
