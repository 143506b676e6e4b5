// Tests for lib/ops/elementwise.ts: add and mul with the repeat rule (same shape, a bias [D], a table [1, L, D],
// a single value, the same tensor twice), scale, sum, mean, meanTokens, reshape, and the native helpers they and
// autograd rely on (sumTo, axpby, sum with a scale, fill), forward against the double reference and backward
// against analytic gradients and central differences.
import { describe, expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { add, mean, meanTokens, mul, reshape, scale, sum } from '../../lib/ops/index.js';
import { Tensor, tidy } from '../../lib/tensor.js';
import { expectClose, expectGradClose, numericGradOp } from '../helpers/gradcheck.js';
import { randn, rng } from '../helpers/random.js';
import * as ref from '../helpers/reference.js';
import { gradOf, project, tensor } from '../helpers/tensors.js';

// [shape of a, shape of b]
const repeatCases: [number[], number[]][] = [
  [[7], [7]],
  [[3, 5, 7], [3, 5, 7]],
  [[3, 5, 7], [7]],
  [[2, 197, 13], [1, 197, 13]],
  [[2, 197, 13], [197, 13]],
  [[4, 6], [1]],
  [[5, 1, 3], [1, 3]],
  [[1, 1], [1, 1]],
];

const size = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

for (const [name, op, refOp] of [
  ['add', add, ref.add],
  ['mul', mul, ref.mul],
] as const)
  describe(name, () => {
    for (const [sa, sb] of repeatCases)
      it(`a [${sa}] ${name} b [${sb}]: forward and backward`, () =>
        tidy(() => {
          const g = rng(size(sa) * 31 + size(sb) + name.length);
          const a = randn(g, size(sa));
          const b = randn(g, size(sb));
          const r = randn(g, size(sa));
          const at = tensor(a, sa, true);
          const bt = tensor(b, sb, true);
          const y = op(at, bt);
          expect(y.shape).toEqual(sa);
          expectClose(y.dataSync(), refOp(a, b), { rtol: 1e-6 });
          project(y, r).backward();
          // d/da = r (* b repeated); d/db = the repeats of r (* a) summed
          const da = name === 'add' ? Float64Array.from(r) : ref.mul(r, b);
          const db = ref.sumTo(name === 'add' ? r : ref.mul(r, a), b.length);
          expect(at.grad!.shape).toEqual(sa);
          expect(bt.grad!.shape).toEqual(sb);
          expectClose(gradOf(at), da, { rtol: 1e-6, label: 'da' });
          expectClose(gradOf(bt), db, { rtol: 1e-5, label: 'db' });
        }));

    it(`${name}(x, x) gives x both gradients`, () =>
      tidy(() => {
        const g = rng(name.length);
        const x = randn(g, 12);
        const r = randn(g, 12);
        const xt = tensor(x, [3, 4], true);
        project(op(xt, xt), r).backward();
        expectClose(gradOf(xt), name === 'add' ? ref.mul(r, [2]) : ref.mul(ref.mul(r, x), [2]), { rtol: 1e-6 });
      }));

    it(`${name}: central differences through the op with a repeated operand`, () =>
      tidy(() => {
        const g = rng(70 + name.length);
        const a = randn(g, 2 * 3 * 4);
        const b = randn(g, 3 * 4);
        const r = randn(g, 2 * 3 * 4);
        const at = tensor(a, [2, 3, 4], true);
        const bt = tensor(b, [1, 3, 4], true);
        project(op(at, bt), r).backward();
        const f = ([aa, bb]: Float32Array[]): Float32Array => tidy(() => op(tensor(aa!, [2, 3, 4]), tensor(bb!, [1, 3, 4])).dataSync());
        expectGradClose(gradOf(at), numericGradOp(f, [a, b], 0, r), { label: 'da' });
        expectGradClose(gradOf(bt), numericGradOp(f, [a, b], 1, r), { label: 'db' });
      }));
  });

describe('scale, sum, mean', () => {
  it('scale(x, s) = s x with gradient s', () =>
    tidy(() => {
      const g = rng(1);
      const x = randn(g, 35);
      const r = randn(g, 35);
      const xt = tensor(x, [5, 7], true);
      const y = scale(xt, -2.5);
      expectClose(y.dataSync(), ref.mul(x, [-2.5]), { rtol: 1e-7 });
      project(y, r).backward();
      expectClose(gradOf(xt), ref.mul(r, [-2.5]), { rtol: 1e-7 });
    }));

  it('sum and mean reduce to [1] and spread the gradient', () =>
    tidy(() => {
      const g = rng(2);
      const x = randn(g, 3 * 197 * 13);
      const a = tensor(x, [3, 197, 13], true);
      const b = tensor(x, [3, 197, 13], true);
      const s = sum(a);
      const m = mean(b);
      expect(s.shape).toEqual([1]);
      expect(Math.abs(s.item() - ref.sumAll(x))).toBeLessThan(1e-4);
      expect(Math.abs(m.item() - ref.sumAll(x) / x.length)).toBeLessThan(1e-7);
      s.backward();
      m.backward();
      expect(gradOf(a).every((v) => v === 1)).toBe(true);
      expectClose(gradOf(b), new Float64Array(x.length).fill(1 / x.length), { rtol: 1e-6 });
    }));
});

describe('meanTokens', () => {
  for (const [B, N, D] of [
    [1, 1, 1],
    [3, 5, 7],
    [2, 197, 13],
    [1, 13, 64],
  ] as [number, number, number][])
    it(`x [${B}, ${N}, ${D}]: forward and backward`, () =>
      tidy(() => {
        const g = rng(B * N * D);
        const x = randn(g, B * N * D);
        const r = randn(g, B * D);
        const xt = tensor(x, [B, N, D], true);
        const y = meanTokens(xt);
        expect(y.shape).toEqual([B, D]);
        expectClose(y.dataSync(), ref.meanTokens(x, B, N, D), { rtol: 1e-5, atol: 1e-6 });
        project(y, r).backward();
        const dx = new Float64Array(B * N * D);
        for (let b = 0; b < B; b++) for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) dx[(b * N + n) * D + d] = r[b * D + d]! / N;
        expectClose(gradOf(xt), dx, { rtol: 1e-6 });
      }));
});

describe('reshape', () => {
  it('is a view with the same elements, and its gradient has the input shape', () =>
    tidy(() => {
      const g = rng(3);
      const x = randn(g, 24);
      const r = randn(g, 24);
      const xt = tensor(x, [2, 3, 4], true);
      const y = reshape(xt, [6, 4]);
      expect(y.shape).toEqual([6, 4]);
      expect(Array.from(y.dataSync())).toEqual(Array.from(x));
      project(y, r).backward();
      expect(xt.grad!.shape).toEqual([2, 3, 4]);
      expectClose(gradOf(xt), r, { rtol: 0 });
    }));
});

describe('native helpers', () => {
  it('sumTo sums the repeats of a suffix shape', () =>
    tidy(() => {
      const g = rng(4);
      for (const [sx, sy] of [
        [[3, 5, 7], [7]],
        [[2, 197, 13], [1, 197, 13]],
        [[4, 100], [1]],
        [[3, 130], [130]], // more than one block of 64 columns
      ]) {
        const x = randn(g, size(sx!));
        const y = new Tensor(native.sumTo(tensor(x, sx!).handle, sy!));
        expect(y.shape).toEqual(sy);
        expectClose(y.dataSync(), ref.sumTo(x, size(sy!)), { rtol: 1e-5 });
      }
    }));

  it('axpby computes alpha x + beta y in place, and beta = 0 overwrites NaN', () =>
    tidy(() => {
      const g = rng(5);
      const x = randn(g, 100);
      const y0 = randn(g, 100);
      const y = tensor(y0, [10, 10]);
      native.axpby(0.5, tensor(x, [100]).handle, -2, y.handle);
      expectClose(y.dataSync(), ref.add(ref.mul(x, [0.5]), ref.mul(y0, [-2])), { rtol: 1e-6 });
      const z = Tensor.full([100], NaN);
      native.axpby(3, tensor(x, [100]).handle, 0, z.handle);
      expectClose(z.dataSync(), ref.mul(x, [3]), { rtol: 1e-7 });
    }));

  it('sum scales, and fill sets every element', () =>
    tidy(() => {
      const x = randn(rng(6), 1000);
      const s = new Tensor(native.sum(tensor(x, [1000]).handle, 0.25));
      expect(Math.abs(s.item() - ref.sumAll(x) * 0.25)).toBeLessThan(1e-5);
      const t = tensor(x, [10, 100]);
      native.fill(t.handle, 1.5);
      expect(t.dataSync().every((v) => v === 1.5)).toBe(true);
    }));
});
