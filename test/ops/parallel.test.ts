// The multi-threaded paths of the CPU kernels. Loops under kParallelGrain (32768 elements, native/cpu/cpu.h) run on
// the calling thread, so the other op tests, with their small shapes, check the single-threaded loops against the
// double-precision references; here every op that splits its work over threads runs on inputs above the grain at
// 1, 2 and 3 threads, and must give the 1-thread result: exactly where each element (or row, or column block) is
// computed by one thread in a fixed order, within 1e-5 where per-thread float partial sums are added (LayerNorm dw,
// db) or where a thread's block of a product has other edges (linear: each thread calls the single-threaded BLAS on
// its own block of the output).
import { afterAll, describe, expect, it } from 'vitest';
import { native, type NativeTensor } from '../../lib/native.js';
import { expectClose } from '../helpers/gradcheck.js';
import { randn, rng } from '../helpers/random.js';

const threads = native.info().threads;
afterAll(() => native.setNumThreads(threads));

let made: NativeTensor[] = [];
function keep<T extends NativeTensor | null | void>(t: T): T {
  if (t && !made.includes(t)) made.push(t);
  return t;
}
const F = (data: Float32Array, shape: number[]): NativeTensor => keep(native.fromArray(data, shape));
const I = (data: Int32Array, shape: number[]): NativeTensor => keep(native.fromArray(data, shape));

/** Runs `op` on fresh copies of the inputs at `n` threads; returns every output (and in-place input) read back. */
function at(n: number, inputs: () => NativeTensor[], op: (t: NativeTensor[]) => (NativeTensor | null)[]): Float32Array[] {
  native.setNumThreads(n);
  try {
    const t = inputs();
    const outs = op(t).map(keep);
    return outs.map((o) => (o ? Float32Array.from(o.read()) : new Float32Array(0)));
  } finally {
    for (const x of made) x.dispose();
    made = [];
  }
}

interface Case {
  name: string;
  inputs: () => NativeTensor[];
  op: (t: NativeTensor[]) => (NativeTensor | null)[];
  /** 0: bitwise equal */
  rtol?: number;
}

const g = rng(2026);
const B = 64, N = 50, D = 128; // 409,600 elements: the tiny decoder's activations
const x = randn(g, B * N * D), y = randn(g, B * N * D), row = randn(g, D), table = randn(g, N * D);
const perm = Int32Array.from({ length: B * 13 }, (_, i) => (i * 7 + 3) % N);
const imgs = randn(g, 64 * 3 * 32 * 32);

const cases: Case[] = [
  { name: 'add, same shape', inputs: () => [F(x, [B, N, D]), F(y, [B, N, D])], op: ([a, b]) => [native.add(a!, b!)] },
  { name: 'add, a bias row', inputs: () => [F(x, [B, N, D]), F(row, [D])], op: ([a, b]) => [native.add(a!, b!)] },
  { name: 'mul, a [1, N, D] table', inputs: () => [F(x, [B, N, D]), F(table, [1, N, D])], op: ([a, b]) => [native.mul(a!, b!)] },
  { name: 'sumTo [D]', inputs: () => [F(x, [B, N, D])], op: ([a]) => [native.sumTo(a!, [D])] },
  {
    name: 'axpby, both forms',
    inputs: () => [F(x, [B, N, D]), F(y, [B, N, D]), F(y, [B, N, D])],
    op: ([a, b, c]) => {
      native.axpby(0.5, a!, -2, b!);
      native.axpby(3, a!, 0, c!);
      return [b!, c!];
    },
  },
  { name: 'sum', inputs: () => [F(x, [B, N, D])], op: ([a]) => [native.sum(a!, 1 / x.length)] },
  {
    name: 'meanTokens and its backward',
    inputs: () => [F(x, [B, N, D]), F(y.subarray(0, B * D), [B, D])],
    op: ([a, dy]) => [native.meanTokens(a!), native.meanTokensBackward(dy!, N)],
  },
  {
    name: 'fill',
    inputs: () => [F(x, [B, N, D])],
    op: ([a]) => {
      native.fill(a!, 0.25);
      return [a!];
    },
  },
  { name: 'gelu and its backward', inputs: () => [F(x, [B, N, D]), F(y, [B, N, D])], op: ([a, dy]) => [native.gelu(a!), native.geluBackward(a!, dy!)] },
  {
    name: 'gatherRows and scatterAddRows',
    inputs: () => [F(x, [B, N, D]), I(perm, [B, 13]), F(y.subarray(0, B * 13 * D), [B, 13, D])],
    op: ([a, idx, dy]) => [native.gatherRows(a!, idx!), native.scatterAddRows(dy!, idx!, N)],
  },
  {
    name: 'catTokens and sliceTokens',
    inputs: () => [F(row, [1, 1, D]), F(x, [B, N, D])],
    op: ([cls, a]) => [native.catTokens(cls!, a!), native.sliceTokens(a!, 1, N - 1)],
  },
  {
    name: 'patchify and unpatchify, both orders',
    inputs: () => [F(imgs, [64, 3, 32, 32])],
    op: ([im]) => {
      const p = keep(native.patchify(im!, 4, true));
      return [p, native.unpatchify(p, 4, true, [3, 32, 32]), native.patchify(im!, 4, false)];
    },
  },
  {
    name: 'linear and its backward, the output split by rows',
    inputs: () => [F(x.subarray(0, 803 * D), [803, D]), F(y.subarray(0, 97 * D), [97, D]), F(row.subarray(0, 97), [97]), F(y.subarray(0, 803 * 97), [803, 97])],
    op: ([a, w, b, dy]) => [native.linear(a!, w!, b!), ...native.linearBackward(a!, w!, dy!, true, true)],
    rtol: 1e-5, // the BLAS kernel for a block's edge rows or columns may sum in another order
  },
  {
    name: 'linear and its backward, the output split by columns',
    inputs: () => [F(x.subarray(0, 45 * D), [45, D]), F(y.subarray(0, 301 * D), [301, D]), F(y.subarray(0, 301), [301]), F(x.subarray(0, 45 * 301), [45, 301])],
    op: ([a, w, b, dy]) => [native.linear(a!, w!, b!), ...native.linearBackward(a!, w!, dy!, true, true)],
    rtol: 1e-5, // the BLAS kernel for a block's edge rows or columns may sum in another order
  },
  {
    name: 'layerNorm and its backward',
    inputs: () => [F(x, [B * N, D]), F(row, [D]), F(row.map((v) => v / 2), [D]), F(y, [B * N, D])],
    op: ([a, w, b, dy]) => {
      const [out, mean, rstd] = native.layerNorm(a!, w!, b!, 1e-6).map(keep);
      return [out!, mean!, rstd!, ...native.layerNormBackward(dy!, a!, w!, mean!, rstd!)];
    },
    rtol: 1e-5,
  },
  {
    name: 'batchNorm (training) and its backward',
    inputs: () => [F(x.subarray(0, 512 * 96), [512, 96]), F(new Float32Array(96), [96]), F(new Float32Array(96).fill(1), [96]), F(y.subarray(0, 512 * 96), [512, 96])],
    op: ([a, rm, rv, dy]) => {
      const [out, rstd] = native.batchNorm(a!, rm!, rv!, true, 0.1, 1e-6).map(keep);
      return [out!, rstd!, rm!, rv!, native.batchNormBackward(dy!, out!, rstd!, true)];
    },
  },
];

describe('CPU kernels above the parallel grain: 2 and 3 threads give the 1-thread result', () => {
  for (const c of cases)
    it(c.name, () => {
      const one = at(1, c.inputs, c.op);
      expect(one.every((o) => o.length > 0)).toBe(true);
      for (const n of [2, 3]) {
        const many = at(n, c.inputs, c.op);
        one.forEach((o, k) => {
          if (c.rtol) expectClose(many[k]!, o, { rtol: c.rtol, label: `output ${k}, ${n} threads` });
          else expect(Buffer.from(many[k]!.buffer).equals(Buffer.from(o.buffer)), `output ${k}, ${n} threads`).toBe(true);
        });
      }
    });
});
