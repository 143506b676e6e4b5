/**
 * The one seeded random generator behind initialisation, masking noise, shuffling and augmentation.
 *
 * xoshiro128** (32-bit state words, period 2^128 - 1) seeded through splitmix32. Everything it draws is a pure
 * function of the seed and the number of draws, so a run is reproducible, and `state()` / `setState()` let a
 * checkpoint continue the exact same stream.
 */
import { describeValue, expectArrayOf, expectFinite, expectInteger, expectNumber, expectObject } from './check.js';
export class Generator {
  private s = new Uint32Array(4);
  private spareNormal: number | null = null;

  constructor(seed = 0) {
    expectFinite('Generator', 'seed', seed, Number.isSafeInteger, 'a safe integer');
    this.seed(seed);
  }

  /** Resets the stream to the one defined by `seed` (any safe integer). */
  seed(seed: number): void {
    if (!Number.isSafeInteger(seed)) throw new Error(`Generator.seed: seed must be a safe integer, got ${seed}`);
    let x = (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
    for (let i = 0; i < 4; i++) {
      // splitmix32
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if (this.s[0] === 0 && this.s[1] === 0 && this.s[2] === 0 && this.s[3] === 0) this.s[0] = 1;
    this.spareNormal = null;
  }

  /** Next raw 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in [0, 1), exactly representable in float32 (24 random bits). */
  uniform(): number {
    return (this.nextUint32() >>> 8) / 16777216;
  }

  /** Integer uniform in [0, n). */
  int(n: number): number {
    if (!(Number.isInteger(n) && n > 0 && n <= 2 ** 32)) throw new Error(`Generator.int: n must be an integer in [1, 2^32], got ${n}`);
    // Lemire's rejection-free-in-practice method via 2^32 range with rejection for exactness.
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const r = this.nextUint32();
      if (r < limit) return r % n;
    }
  }

  /** Standard normal (Box-Muller, the second value cached). */
  normal(): number {
    if (this.spareNormal !== null) {
      const v = this.spareNormal;
      this.spareNormal = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Fills a new Float32Array of n uniforms in [lo, hi). */
  uniformArray(n: number, lo = 0, hi = 1): Float32Array {
    expectInteger('Generator.uniformArray', 'n', n, 0);
    expectNumber('Generator.uniformArray', 'lo', lo);
    expectNumber('Generator.uniformArray', 'hi', hi);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.uniform();
    return out;
  }

  /** Fills a new Float32Array of n normals with the given mean and std. */
  normalArray(n: number, mean = 0, std = 1): Float32Array {
    expectInteger('Generator.normalArray', 'n', n, 0);
    expectNumber('Generator.normalArray', 'mean', mean);
    expectNumber('Generator.normalArray', 'std', std);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = mean + std * this.normal();
    return out;
  }

  /** A uniformly random permutation of 0 .. n-1 (Fisher-Yates). */
  permutation(n: number): Int32Array {
    expectInteger('Generator.permutation', 'n', n, 0);
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i]!;
      p[i] = p[j]!;
      p[j] = t;
    }
    return p;
  }

  /** The full state, for checkpoints. */
  state(): GeneratorState {
    return { s: Array.from(this.s), spareNormal: this.spareNormal };
  }

  /**
   * Continues the stream of `state()`. Checked in full before anything changes: 4 words, each an integer in
   * [0, 2^32), not all 0 (xoshiro would draw 0 forever from there, and normal() would never return), and spareNormal
   * null or a finite number.
   */
  setState(state: GeneratorState): void {
    const where = 'Generator.setState';
    expectObject(where, 'state', state, false, 'e.g. what state() returned');
    expectArrayOf(where, 'state.s', state.s, (w) => Number.isInteger(w) && (w as number) >= 0 && (w as number) < 2 ** 32, 'an integer in [0, 2^32)');
    if (state.s.length !== 4) throw new Error(`${where}: state.s must hold 4 state words, got ${state.s.length}`);
    if (state.s.every((w) => w === 0)) throw new Error(`${where}: state.s is all zeros, a state the generator never reaches (it would draw 0 forever)`);
    if (state.spareNormal !== null && !(typeof state.spareNormal === 'number' && Number.isFinite(state.spareNormal)))
      throw new Error(`${where}: state.spareNormal must be null or a finite number, got ${describeValue(state.spareNormal)}`);
    this.s.set(state.s);
    this.spareNormal = state.spareNormal;
  }
}

export interface GeneratorState {
  s: number[];
  spareNormal: number | null;
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** The process-wide default generator; `manualSeed` resets it. */
export const defaultGenerator = new Generator(0);

export function manualSeed(seed: number): void {
  expectFinite('manualSeed', 'seed', seed, Number.isSafeInteger, 'a safe integer');
  defaultGenerator.seed(seed);
}
