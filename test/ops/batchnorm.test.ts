// Tests for lib/ops/batchnorm.ts (BatchNorm1d without affine): training (batch statistics, running statistics
// updated in place with momentum and the unbiased variance, over several steps) and evaluation (running
// statistics, left unchanged); gradients in both modes, analytic and by central differences.
import { describe, expect, it } from 'vitest';
import { BatchNormNoAffine } from '../../lib/classify/model.js';
import { batchNorm } from '../../lib/ops/index.js';
import { tidy } from '../../lib/tensor.js';
import { expectClose, expectGradClose, numericGrad } from '../helpers/gradcheck.js';
import { randn, randu, rng } from '../helpers/random.js';
import * as ref from '../helpers/reference.js';
import { gradOf, project, tensor } from '../helpers/tensors.js';

const shapes: [number, number][] = [
  [2, 1],
  [3, 7],
  [5, 13],
  [64, 10],
  [197, 3],
];

describe('batchNorm training', () => {
  for (const [B, F] of shapes)
    it(`[${B}, ${F}]: output and running statistics over three steps`, () =>
      tidy(() => {
        const g = rng(B * 100 + F);
        const momentum = 0.1;
        const eps = 1e-6;
        let rm: Float64Array = Float64Array.from(randn(g, F));
        let rv: Float64Array = Float64Array.from(randu(g, F, 0.5, 2));
        const rmt = tensor(rm, [F]);
        const rvt = tensor(rv, [F]);
        for (let step = 0; step < 3; step++) {
          const x = randn(g, B * F).map((v, i) => 2 * v + (i % F));
          const y = batchNorm(tensor(x, [B, F]), rmt, rvt, true, momentum, eps);
          const e = ref.batchNorm(x, B, F, rm, rv, true, momentum, eps);
          expectClose(y.dataSync(), e.y, { rtol: 1e-5, label: `y, step ${step}` });
          expectClose(rmt.dataSync(), e.runningMean, { rtol: 1e-5, label: `running mean, step ${step}` });
          expectClose(rvt.dataSync(), e.runningVar, { rtol: 1e-5, label: `running var, step ${step}` });
          rm = e.runningMean;
          rv = e.runningVar;
        }
      }));

  it('uses the unbiased variance for the running variance and the biased one to normalise', () =>
    tidy(() => {
      // one feature, x = [0, 2]: mean 1, biased var 1, unbiased var 2
      const rm = tensor([0], [1]);
      const rv = tensor([1], [1]);
      const y = batchNorm(tensor([0, 2], [2, 1]), rm, rv, true, 1, 0).dataSync();
      expectClose(y, [-1, 1], { rtol: 1e-6 });
      expectClose(rm.dataSync(), [1], { rtol: 1e-6 });
      expectClose(rv.dataSync(), [2], { rtol: 1e-6 });
    }));

  it('momentum 0 leaves the running statistics unchanged', () =>
    tidy(() => {
      const rm = tensor([0.5, -1], [2]);
      const rv = tensor([2, 3], [2]);
      batchNorm(tensor(randn(rng(3), 8), [4, 2]), rm, rv, true, 0, 1e-5);
      expectClose(rm.dataSync(), [0.5, -1], { rtol: 0 });
      expectClose(rv.dataSync(), [2, 3], { rtol: 0 });
    }));
});

describe('batchNorm eval', () => {
  for (const [B, F] of [...shapes, [1, 5] as [number, number]])
    it(`[${B}, ${F}] uses the running statistics and leaves them alone`, () =>
      tidy(() => {
        const g = rng(B * 10 + F + 7);
        const rm = randn(g, F);
        const rv = randu(g, F, 0.5, 2);
        const x = randn(g, B * F, 2);
        const rmt = tensor(rm, [F]);
        const rvt = tensor(rv, [F]);
        const y = batchNorm(tensor(x, [B, F]), rmt, rvt, false, 0.1, 1e-5);
        expectClose(y.dataSync(), ref.batchNorm(x, B, F, rm, rv, false, 0.1, 1e-5).y, { rtol: 1e-5 });
        expect(Array.from(rmt.dataSync())).toEqual(Array.from(rm));
        expect(Array.from(rvt.dataSync())).toEqual(Array.from(rv));
      }));
});

describe('batchNorm backward', () => {
  for (const training of [true, false])
    for (const [B, F] of shapes)
      it(`${training ? 'training' : 'eval'} [${B}, ${F}]: analytic gradient`, () =>
        tidy(() => {
          const g = rng(B + F * 3 + (training ? 1 : 0));
          const x = randn(g, B * F, 2);
          const rv = randu(g, F, 0.5, 2);
          const r = randn(g, B * F);
          const xt = tensor(x, [B, F], true);
          project(batchNorm(xt, tensor(new Float32Array(F), [F]), tensor(rv, [F]), training, 0.1, 1e-5), r).backward();
          expectClose(gradOf(xt), ref.batchNormBackward(x, r, B, F, rv, training, 1e-5), { rtol: 1e-4, atol: 1e-5 });
        }));

  for (const training of [true, false])
    it(`${training ? 'training' : 'eval'}: central differences`, () =>
      tidy(() => {
        const g = rng(training ? 61 : 62);
        const [B, F] = [5, 3];
        const x = randn(g, B * F, 2);
        const rm = randn(g, F);
        const rv = randu(g, F, 0.5, 2);
        const r = randn(g, B * F);
        const xt = tensor(x, [B, F], true);
        project(batchNorm(xt, tensor(rm, [F]), tensor(rv, [F]), training, 0.1, 1e-5), r).backward();
        const f = ([xx]: Float64Array[]): number =>
          ref.sumAll(ref.mul(ref.batchNorm(xx!, B, F, rm, rv, training, 0.1, 1e-5).y, r));
        expectGradClose(gradOf(xt), numericGrad(f, [x], 0));
      }));
});

describe('BatchNormNoAffine', () => {
  it('refuses an eps or momentum that would turn its outputs or running statistics into NaN', () => {
    expect(() => new BatchNormNoAffine(2, -1)).toThrow(/^BatchNormNoAffine: eps must be non-negative and finite, got -1/);
    expect(() => new BatchNormNoAffine(2, 1e-6, NaN)).toThrow('BatchNormNoAffine: momentum must be a number in [0, 1], got the number NaN');
    expect(() => new BatchNormNoAffine(2, 1e-6, 2)).toThrow('BatchNormNoAffine: momentum must be a number in [0, 1], got the number 2');
    new BatchNormNoAffine(2, 0, 1).dispose();
  });
});
