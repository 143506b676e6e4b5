// Tests for the fused multi-tensor AdamW step (native adamwStep, native/cpu/adamw.cpp): several steps against
// PyTorch's AdamW formula in double precision, with and without weight decay, many tensors with their own lr and
// weight decay in one call, and the closed form of the first step.
import { describe, expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { tidy } from '../../lib/tensor.js';
import { expectClose } from '../helpers/gradcheck.js';
import { randn, rng } from '../helpers/random.js';
import * as ref from '../helpers/reference.js';
import { tensor } from '../helpers/tensors.js';

describe('adamwStep', () => {
  const settings = [
    { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, wd: 0.05, shape: [3, 7] }, // the MAE pre-training betas
    { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.05, shape: [13] }, // fine-tuning
    { lr: 1e-1, beta1: 0.5, beta2: 0.9, eps: 1e-3, wd: 0, shape: [2, 5, 3] }, // plain Adam, a large eps
    { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, wd: 1, shape: [1] },
  ];
  for (const s of settings)
    it(`lr ${s.lr} betas (${s.beta1}, ${s.beta2}) eps ${s.eps} wd ${s.wd} on [${s.shape}]: six steps`, () =>
      tidy(() => {
        const g = rng(Math.round(s.lr * 1e4) + s.shape.length);
        const n = s.shape.reduce((a, b) => a * b, 1);
        const p0 = randn(g, n);
        const state: ref.AdamWState = { param: Float64Array.from(p0), m: new Float64Array(n), v: new Float64Array(n) };
        const p = tensor(p0, s.shape);
        const m = tensor(new Float32Array(n), s.shape);
        const v = tensor(new Float32Array(n), s.shape);
        for (let t = 1; t <= 6; t++) {
          // gradients of varying scale, one of them zero
          const grad = randn(g, n, t % 2 ? 1 : 1e-3);
          grad[0] = t === 3 ? 0 : grad[0]!;
          native.adamwStep([p.handle], [tensor(grad, s.shape).handle], [m.handle], [v.handle], [s.lr], [s.wd], s.beta1, s.beta2, s.eps, t);
          ref.adamwStep(state, grad, s.lr, s.beta1, s.beta2, s.eps, s.wd, t);
          expectClose(p.dataSync(), state.param, { rtol: 1e-5, label: `param after step ${t}` });
          expectClose(m.dataSync(), state.m, { rtol: 1e-5, label: `m after step ${t}` });
          expectClose(v.dataSync(), state.v, { rtol: 1e-5, label: `v after step ${t}` });
        }
      }));

  it('first step from zero moments: p (1 - lr wd) - lr g / (|g| + eps)', () =>
    tidy(() => {
      const g = rng(7);
      const [lr, wd, eps] = [0.01, 0.1, 1e-8];
      const p0 = randn(g, 9);
      const grad = randn(g, 9);
      const p = tensor(p0, [9]);
      native.adamwStep([p.handle], [tensor(grad, [9]).handle], [tensor(new Float32Array(9), [9]).handle], [tensor(new Float32Array(9), [9]).handle], [lr], [wd], 0.9, 0.95, eps, 1);
      const want = Array.from(p0, (x, i) => x * (1 - lr * wd) - (lr * grad[i]!) / (Math.abs(grad[i]!) + eps));
      expectClose(p.dataSync(), want, { rtol: 1e-6 });
    }));

  it('weight decay is decoupled: with a zero gradient only the decay acts', () =>
    tidy(() => {
      const p0 = Float32Array.from([1, -2, 3]);
      const p = tensor(p0, [3]);
      const m = tensor([0, 0, 0], [3]);
      const v = tensor([0, 0, 0], [3]);
      native.adamwStep([p.handle], [tensor([0, 0, 0], [3]).handle], [m.handle], [v.handle], [0.1], [0.5], 0.9, 0.999, 1e-8, 1);
      expectClose(p.dataSync(), [0.95, -1.9, 2.85], { rtol: 1e-6 });
      expect(Array.from(m.dataSync())).toEqual([0, 0, 0]);
    }));

  it('many tensors in one call, each with its own lr and weight decay, equal the reference per tensor', () =>
    tidy(() => {
      const g = rng(11);
      // sizes around the split of the concatenated elements over the threads, and single elements
      const sizes = [1, 1000, 7, 4096, 1, 333, 2];
      const lrs = sizes.map((_, k) => 1e-3 * (k + 1));
      const wds = sizes.map((_, k) => (k % 3 === 0 ? 0 : 0.05 * k));
      const params = sizes.map((n) => tensor(randn(g, n), [n]));
      const ms = sizes.map((n) => tensor(new Float32Array(n), [n]));
      const vs = sizes.map((n) => tensor(new Float32Array(n), [n]));
      const states: ref.AdamWState[] = params.map((p) => ({
        param: Float64Array.from(p.dataSync()),
        m: new Float64Array(p.size),
        v: new Float64Array(p.size),
      }));
      for (let t = 1; t <= 3; t++) {
        const grads = sizes.map((n) => randn(g, n));
        native.adamwStep(
          params.map((p) => p.handle),
          grads.map((x, k) => tensor(x, [sizes[k]!]).handle),
          ms.map((m) => m.handle),
          vs.map((v) => v.handle),
          lrs,
          wds,
          0.9,
          0.95,
          1e-8,
          t,
        );
        sizes.forEach((_, k) => {
          ref.adamwStep(states[k]!, grads[k]!, lrs[k]!, 0.9, 0.95, 1e-8, wds[k]!, t);
          expectClose(params[k]!.dataSync(), states[k]!.param, { rtol: 1e-5, label: `param ${k} after step ${t}` });
          expectClose(vs[k]!.dataSync(), states[k]!.v, { rtol: 1e-5, label: `v ${k} after step ${t}` });
        });
      }
    }));
});
