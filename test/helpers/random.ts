// Seeded random test data from the library's own Generator (lib/random.ts), so every test is reproducible.
import { Generator } from '../../lib/random.js';

export { Generator };

/** A generator for one test; the seed names the test's data. */
export function rng(seed: number): Generator {
  return new Generator(seed);
}

/** n normals (mean 0, the given std) as float32. */
export function randn(g: Generator, n: number, std = 1): Float32Array {
  return g.normalArray(n, 0, std);
}

/** n uniforms in [lo, hi) as float32. */
export function randu(g: Generator, n: number, lo = -1, hi = 1): Float32Array {
  return g.uniformArray(n, lo, hi);
}

/** n integers in [0, k). */
export function randint(g: Generator, n: number, k: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = g.int(k);
  return out;
}

/** A 0/1 mask of n entries, each 1 with probability p. */
export function randMask(g: Generator, n: number, p = 0.5): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = g.uniform() < p ? 1 : 0;
  return out;
}

/** Rows of softmax-normalised random probabilities (soft targets), [rows, C]. */
export function randSimplex(g: Generator, rows: number, C: number): Float32Array {
  const out = new Float32Array(rows * C);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < C; c++) s += out[r * C + c] = Math.exp(g.normal());
    for (let c = 0; c < C; c++) out[r * C + c]! /= s;
  }
  return out;
}

/** A Float64Array copy (exactly the float32 values) for the double references. */
export function f64(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(a as ArrayLike<number>);
}
