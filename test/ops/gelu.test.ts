// Tests for lib/ops/gelu.ts (exact erf GELU) and for the double-precision erf of the reference itself.
import { describe, expect, it } from 'vitest';
import { gelu } from '../../lib/ops/index.js';
import { tidy } from '../../lib/tensor.js';
import { expectClose, expectGradClose, numericGrad } from '../helpers/gradcheck.js';
import { randn, rng } from '../helpers/random.js';
import * as ref from '../helpers/reference.js';
import { gradOf, project, tensor } from '../helpers/tensors.js';

describe('reference erf', () => {
  // tabulated values of erf and erfc (C99 libm, correctly rounded to double)
  const erfTable: [number, number][] = [
    [0.1, 0.1124629160182849],
    [0.5, 0.5204998778130465],
    [1, 0.8427007929497149],
    [1.5, 0.9661051464753108],
    [2, 0.9953222650189527],
    [2.4999, 0.9995928300996666],
    [2.5, 0.999593047982555],
    [3, 0.9999779095030014],
    [3.5, 0.9999992569016276],
  ];
  const erfcTable: [number, number][] = [
    [2.5, 0.0004069520174449589],
    [3, 2.2090496998585438e-5],
    [4, 1.541725790028002e-8],
    [5, 1.5374597944280351e-12],
    [6, 2.1519736712498916e-17],
  ];
  it('matches tabulated erf to 1e-14 and is odd', () => {
    for (const [x, v] of erfTable) {
      expect(Math.abs(ref.erf(x) - v), `erf(${x})`).toBeLessThan(1e-14);
      expect(ref.erf(-x), `erf(-${x})`).toBe(-ref.erf(x));
    }
    expect(ref.erf(0)).toBe(0);
  });
  it('matches tabulated erfc in relative terms in the tail', () => {
    for (const [x, v] of erfcTable) expect(Math.abs(ref.erfc(x) - v) / v, `erfc(${x})`).toBeLessThan(1e-12);
  });
  it('is continuous where the series hands over to the continued fraction', () => {
    expect(Math.abs(ref.erf(2.5 - 1e-12) - ref.erf(2.5))).toBeLessThan(1e-13);
  });
});

describe('gelu forward', () => {
  for (const shape of [[1], [7], [3, 13], [1, 197, 7], [2, 5, 64]])
    it(`shape [${shape}]`, () =>
      tidy(() => {
        const n = shape.reduce((a, b) => a * b, 1);
        const x = randn(rng(n), n, 3);
        const y = gelu(tensor(x, shape));
        expect(y.shape).toEqual(shape);
        expectClose(y.dataSync(), ref.gelu(x), { rtol: 1e-5, atol: 1e-6 });
      }));

  it('is exact GELU, not the tanh approximation, at the points where they differ most', () =>
    tidy(() => {
      const x = Float32Array.from([-3, -2, -1.5, -0.5, 0, 0.5, 1.5, 2, 3, 6, -6]);
      expectClose(gelu(tensor(x, [x.length])).dataSync(), ref.gelu(x), { rtol: 1e-6, atol: 1e-7 });
    }));
});

describe('gelu backward', () => {
  it('matches the analytic derivative Phi(x) + x phi(x)', () =>
    tidy(() => {
      const g = rng(11);
      const x = randn(g, 3 * 13 * 7, 2.5);
      const r = randn(g, x.length);
      const xt = tensor(x, [3, 13, 7], true);
      project(gelu(xt), r).backward();
      expectClose(gradOf(xt), ref.mul(ref.geluGrad(x), r), { rtol: 1e-5, atol: 1e-6 });
    }));

  it('matches central differences of the double reference', () =>
    tidy(() => {
      const g = rng(12);
      const x = randn(g, 29, 2);
      const r = randn(g, 29);
      const xt = tensor(x, [29], true);
      project(gelu(xt), r).backward();
      const f = ([xx]: Float64Array[]): number => ref.sumAll(ref.mul(ref.gelu(xx!), r));
      expectGradClose(gradOf(xt), numericGrad(f, [x], 0));
    }));
});
