// Central finite differences and closeness checks.
//   numericGrad: the gradient of a scalar function evaluated in DOUBLE precision (normally built from the references
//     in reference.ts) at float32 inputs; with a double function the truncation error is O(h^2) and round-off is
//     negligible, so it is a trustworthy stand-in for the exact gradient.
//   numericGradOp: the gradient of sum(op(inputs) * r) where op is our float32 op; the projection is accumulated in
//     double, the step is divided by the actual float32 perturbation. Only accurate for (near-)linear ops.
//   expectClose / expectGradClose: elementwise and norm-relative comparisons with readable failure messages.
import { expect } from 'vitest';
import type { Arr } from './reference.js';

/** Central differences of f at xs with respect to xs[which] (every element, or those in `indices`). */
export function numericGrad(
  f: (xs: Float64Array[]) => number,
  xs: readonly ArrayLike<number>[],
  which: number,
  h = 1e-3,
  indices?: readonly number[],
): Float64Array {
  const work = xs.map((x) => Float64Array.from(x));
  const x = work[which]!;
  const g = new Float64Array(x.length).fill(NaN);
  const idx = indices ?? Array.from({ length: x.length }, (_, i) => i);
  for (const i of idx) {
    const x0 = x[i]!;
    x[i] = x0 + h;
    const fp = f(work);
    x[i] = x0 - h;
    const fm = f(work);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

/** Central differences of sum(op(inputs) * r) with respect to inputs[which], stepping the float32 values. */
export function numericGradOp(
  op: (inputs: Float32Array[]) => ArrayLike<number>,
  inputs: readonly Float32Array[],
  which: number,
  r: Arr,
  h = 1e-2,
): Float64Array {
  const work = inputs.map((x) => Float32Array.from(x));
  const x = work[which]!;
  const g = new Float64Array(x.length);
  const proj = (): number => {
    const y = op(work);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i]! * r[i]!;
    return s;
  };
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i]!;
    x[i] = x0 + h;
    const xp = x[i]!;
    const fp = proj();
    x[i] = x0 - h;
    const xm = x[i]!;
    const fm = proj();
    x[i] = x0;
    g[i] = (fp - fm) / (xp - xm);
  }
  return g;
}

export function norm(a: Arr): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return Math.sqrt(s);
}

export function maxAbs(a: Arr): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** ||a - e|| / ||e|| (the absolute norm when e is zero). */
export function relErr(a: Arr, e: Arr): number {
  let d = 0;
  for (let i = 0; i < e.length; i++) d += (a[i]! - e[i]!) ** 2;
  const n = norm(e);
  return n > 0 ? Math.sqrt(d) / n : Math.sqrt(d);
}

/**
 * Elementwise |a - e| <= atol + rtol |e| for every element (atol defaults to rtol times the largest |e|, the
 * scale of float32 rounding in sums), same length, no NaN where e has none.
 */
export function expectClose(
  actual: Arr,
  expected: Arr,
  opts: { rtol?: number; atol?: number; label?: string } = {},
): void {
  const rtol = opts.rtol ?? 1e-5;
  const atol = opts.atol ?? rtol * maxAbs(expected);
  const label = opts.label ?? 'values';
  expect(actual.length, `${label}: length`).toBe(expected.length);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const err = Math.abs(a - e);
    const tol = atol + rtol * Math.abs(e);
    const bad = Number.isNaN(a) !== Number.isNaN(e) || (!Number.isNaN(e) && !(err <= tol));
    if (bad && (worst < 0 || !(err / tol <= worstExcess))) {
      worst = i;
      worstExcess = err / tol;
    }
  }
  if (worst >= 0)
    expect.fail(
      `${label}: element ${worst} is ${actual[worst]} but should be ${expected[worst]} ` +
        `(|diff| ${Math.abs(actual[worst]! - expected[worst]!)} > atol ${atol} + rtol ${rtol} * |expected|; ` +
        `relative norm error ${relErr(actual, expected)})`,
    );
}

/**
 * A gradient against a reference gradient: the relative norm error within normTol, and each element within
 * elemTol of its own size plus 1% of the largest entry (where single entries are ill-conditioned).
 */
export function expectGradClose(
  actual: Arr,
  expected: Arr,
  opts: { normTol?: number; elemTol?: number; label?: string } = {},
): void {
  const normTol = opts.normTol ?? 1e-3;
  const elemTol = opts.elemTol ?? 1e-2;
  const label = opts.label ?? 'gradient';
  expect(actual.length, `${label}: length`).toBe(expected.length);
  expect(norm(expected), `${label}: the reference gradient is zero, the check would be vacuous`).toBeGreaterThan(0);
  const e = relErr(actual, expected);
  expect(e, `${label}: relative norm error`).toBeLessThanOrEqual(normTol);
  expectClose(actual, expected, { rtol: elemTol, atol: elemTol * 1e-2 * maxAbs(expected), label });
}
