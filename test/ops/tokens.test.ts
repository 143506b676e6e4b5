// Tests for lib/ops/tokens.ts: gatherRows (with repeated indices, fewer and more rows than the input), catTokens
// (equal batches and a broadcast batch of 1 on either side) and sliceTokens, forward against the double reference
// and backward against the analytic reference and central differences through the op itself (the ops are linear).
import { describe, expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { catTokens, gatherRows, sliceTokens } from '../../lib/ops/index.js';
import { Tensor, tidy } from '../../lib/tensor.js';
import { expectClose, expectGradClose, numericGradOp } from '../helpers/gradcheck.js';
import { randint, randn, rng } from '../helpers/random.js';
import * as ref from '../helpers/reference.js';
import { gradOf, intTensor, project, tensor } from '../helpers/tensors.js';

describe('gatherRows', () => {
  // [B, N, D, K]
  const cases: [number, number, number, number][] = [
    [1, 1, 1, 1],
    [3, 5, 7, 2],
    [2, 13, 4, 13],
    [1, 197, 13, 49],
    [2, 4, 3, 9], // K > N: rows repeat
  ];
  for (const [B, N, D, K] of cases)
    it(`x [${B}, ${N}, ${D}], K ${K}: forward and backward`, () =>
      tidy(() => {
        const g = rng(B * 1000 + N * 10 + D + K);
        const x = randn(g, B * N * D);
        const idx = randint(g, B * K, N);
        const r = randn(g, B * K * D);
        const xt = tensor(x, [B, N, D], true);
        const y = gatherRows(xt, intTensor(idx, [B, K]));
        expect(y.shape).toEqual([B, K, D]);
        expect(Array.from(y.dataSync())).toEqual(Array.from(ref.gatherRows(x, idx, B, N, D, K)));
        project(y, r).backward();
        expectClose(gradOf(xt), ref.scatterAddRows(r, idx, B, K, D, N), { rtol: 1e-6 });
      }));

  it('a permutation and its inverse round-trip (mask and unshuffle)', () =>
    tidy(() => {
      const g = rng(5);
      const [B, N, D] = [3, 11, 4];
      const x = randn(g, B * N * D);
      const perm = new Int32Array(B * N);
      const inv = new Int32Array(B * N);
      for (let b = 0; b < B; b++) {
        const p = g.permutation(N);
        p.forEach((v, i) => {
          perm[b * N + i] = v;
          inv[b * N + v] = i;
        });
      }
      const shuffled = gatherRows(tensor(x, [B, N, D]), intTensor(perm, [B, N]));
      const back = gatherRows(shuffled, intTensor(inv, [B, N]));
      expect(Array.from(back.dataSync())).toEqual(Array.from(x));
    }));

  it('scatterAddRows (the backward) adds repeated rows and zeroes the rest', () =>
    tidy(() => {
      const dy = tensor([1, 2, 3, 4, 5, 6], [1, 3, 2]);
      const dx = new Tensor(native.scatterAddRows(dy.handle, intTensor([2, 0, 2], [1, 3]).handle, 4));
      expect(dx.shape).toEqual([1, 4, 2]);
      expect(Array.from(dx.dataSync())).toEqual([3, 4, 0, 0, 1 + 5, 2 + 6, 0, 0]);
    }));

  it('central differences through the op', () =>
    tidy(() => {
      const g = rng(6);
      const [B, N, D, K] = [2, 5, 3, 7];
      const x = randn(g, B * N * D);
      const idx = randint(g, B * K, N);
      const r = randn(g, B * K * D);
      const xt = tensor(x, [B, N, D], true);
      project(gatherRows(xt, intTensor(idx, [B, K])), r).backward();
      const op = ([xx]: Float32Array[]): Float32Array =>
        tidy(() => gatherRows(tensor(xx!, [B, N, D]), intTensor(idx, [B, K])).dataSync());
      expectGradClose(gradOf(xt), numericGradOp(op, [x], 0, r));
    }));
});

describe('catTokens', () => {
  // [Ba, Na, Bb, Nb, D]
  const cases: [number, number, number, number, number][] = [
    [1, 1, 1, 1, 1],
    [3, 1, 3, 5, 7],
    [1, 1, 3, 196, 13], // the cls token broadcast before the patches
    [2, 49, 1, 147, 4], // mask tokens broadcast after the kept tokens
    [3, 2, 3, 2, 16],
  ];
  for (const [Ba, Na, Bb, Nb, D] of cases)
    it(`a [${Ba}, ${Na}, ${D}] + b [${Bb}, ${Nb}, ${D}]: forward and backward`, () =>
      tidy(() => {
        const g = rng(Ba * 7 + Na * 11 + Bb * 13 + Nb + D);
        const B = Math.max(Ba, Bb);
        const a = randn(g, Ba * Na * D);
        const b = randn(g, Bb * Nb * D);
        const r = randn(g, B * (Na + Nb) * D);
        const at = tensor(a, [Ba, Na, D], true);
        const bt = tensor(b, [Bb, Nb, D], true);
        const y = catTokens(at, bt);
        expect(y.shape).toEqual([B, Na + Nb, D]);
        expect(Array.from(y.dataSync())).toEqual(Array.from(ref.catTokens(a, Ba, Na, b, Bb, Nb, D)));
        project(y, r).backward();
        // the gradient of each operand is its part of r, summed over the batch when it was broadcast
        const da = new Float64Array(a.length);
        const db = new Float64Array(b.length);
        for (let i = 0; i < B; i++)
          for (let n = 0; n < Na + Nb; n++)
            for (let d = 0; d < D; d++) {
              const v = r[(i * (Na + Nb) + n) * D + d]!;
              if (n < Na) {
                const o = ((Ba === 1 ? 0 : i) * Na + n) * D + d;
                da[o] = da[o]! + v;
              } else {
                const o = ((Bb === 1 ? 0 : i) * Nb + n - Na) * D + d;
                db[o] = db[o]! + v;
              }
            }
        expectClose(gradOf(at), da, { rtol: 1e-6, label: 'da' });
        expectClose(gradOf(bt), db, { rtol: 1e-6, label: 'db' });
      }));

  it('central differences through the op (broadcast a)', () =>
    tidy(() => {
      const g = rng(7);
      const [Ba, Na, Bb, Nb, D] = [1, 2, 3, 3, 2];
      const a = randn(g, Ba * Na * D);
      const b = randn(g, Bb * Nb * D);
      const r = randn(g, Bb * (Na + Nb) * D);
      const at = tensor(a, [Ba, Na, D], true);
      const bt = tensor(b, [Bb, Nb, D], true);
      project(catTokens(at, bt), r).backward();
      const op = ([aa, bb]: Float32Array[]): Float32Array =>
        tidy(() => catTokens(tensor(aa!, [Ba, Na, D]), tensor(bb!, [Bb, Nb, D])).dataSync());
      expectGradClose(gradOf(at), numericGradOp(op, [a, b], 0, r), { label: 'da' });
      expectGradClose(gradOf(bt), numericGradOp(op, [a, b], 1, r), { label: 'db' });
    }));
});

describe('sliceTokens', () => {
  // [B, N, D, start, length]
  const cases: [number, number, number, number, number][] = [
    [1, 1, 1, 0, 1],
    [3, 5, 7, 1, 4], // drop the cls token
    [2, 197, 13, 0, 1], // keep only the cls token
    [3, 13, 4, 5, 3],
    [1, 6, 2, 5, 1],
  ];
  for (const [B, N, D, start, len] of cases)
    it(`x [${B}, ${N}, ${D}] tokens ${start} .. ${start + len}: forward and backward`, () =>
      tidy(() => {
        const g = rng(B + N + D + start * 17 + len);
        const x = randn(g, B * N * D);
        const r = randn(g, B * len * D);
        const xt = tensor(x, [B, N, D], true);
        const y = sliceTokens(xt, start, len);
        expect(y.shape).toEqual([B, len, D]);
        expect(Array.from(y.dataSync())).toEqual(Array.from(ref.sliceTokens(x, B, N, D, start, len)));
        project(y, r).backward();
        const dx = new Float64Array(B * N * D);
        for (let b = 0; b < B; b++)
          for (let n = 0; n < len; n++)
            for (let d = 0; d < D; d++) dx[(b * N + start + n) * D + d] = r[(b * len + n) * D + d]!;
        expectClose(gradOf(xt), dx, { rtol: 1e-6 });
      }));

  it('central differences through the op', () =>
    tidy(() => {
      const g = rng(8);
      const [B, N, D, start, len] = [2, 5, 3, 1, 3];
      const x = randn(g, B * N * D);
      const r = randn(g, B * len * D);
      const xt = tensor(x, [B, N, D], true);
      project(sliceTokens(xt, start, len), r).backward();
      const op = ([xx]: Float32Array[]): Float32Array => tidy(() => sliceTokens(tensor(xx!, [B, N, D]), start, len).dataSync());
      expectGradClose(gradOf(xt), numericGradOp(op, [x], 0, r));
    }));
});
