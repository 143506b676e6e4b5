// Tests for lib/ops/loss.ts.
// maskedMse: the MAE loss against the double reference with norm_pix on and off, random masks, an all-zero mask
//   (the mean over all patches) and an all-one mask; gradients analytic and by central differences.
// crossEntropy: int labels and soft targets, smoothing 0 and 0.1, large logits; gradients likewise.
import { describe, expect, it } from 'vitest';
import { crossEntropy, maskedMse } from '../../lib/ops/index.js';
import { tidy } from '../../lib/tensor.js';
import { expectClose, expectGradClose, numericGrad } from '../helpers/gradcheck.js';
import { randint, randMask, randn, randSimplex, rng } from '../helpers/random.js';
import * as ref from '../helpers/reference.js';
import { gradOf, intTensor, tensor } from '../helpers/tensors.js';

function close(actual: number, expected: number, rtol: number, label = 'loss'): void {
  expect(Math.abs(actual - expected), `${label}: ${actual} vs ${expected}`).toBeLessThanOrEqual(rtol * Math.abs(expected) + 1e-7);
}

describe('maskedMse', () => {
  const shapes: [number, number, number][] = [
    [1, 1, 2],
    [3, 5, 7],
    [2, 16, 48],
    [1, 196, 13],
  ];
  for (const [B, L, P] of shapes)
    for (const normPix of [false, true])
      for (const maskKind of ['random', 'zeros', 'ones'] as const)
        it(`[${B}, ${L}, ${P}] normPix ${normPix}, ${maskKind} mask: loss and gradient`, () =>
          tidy(() => {
            const g = rng(B * 100 + L + P + (normPix ? 5000 : 0) + maskKind.length);
            // targets with a per-patch offset and scale, as pixel patches have
            const target = randn(g, B * L * P).map((v, i) => 0.5 * v + Math.floor(i / P) * 0.1);
            const pred = randn(g, B * L * P);
            let mask = maskKind === 'random' ? randMask(g, B * L, 0.75) : new Float32Array(B * L).fill(maskKind === 'ones' ? 1 : 0);
            if (maskKind === 'random' && mask.every((m) => m === 0)) mask = mask.fill(1, 0, 1);
            const pt = tensor(pred, [B, L, P], true);
            const loss = maskedMse(pt, tensor(target, [B, L, P]), tensor(mask, [B, L]), normPix);
            expect(loss.shape).toEqual([1]);
            const e = ref.maskedMse(pred, target, mask, B, L, P, normPix);
            close(loss.item(), e.loss, 1e-5);
            loss.backward();
            expectClose(gradOf(pt), e.dpred, { rtol: 1e-5, label: 'dpred' });
          }));

  it('with an all-zero mask equals the loss with an all-one mask (the mean over all patches)', () =>
    tidy(() => {
      const g = rng(21);
      const [B, L, P] = [2, 9, 12];
      const pred = tensor(randn(g, B * L * P), [B, L, P]);
      const target = tensor(randn(g, B * L * P), [B, L, P]);
      for (const normPix of [false, true]) {
        const z = maskedMse(pred, target, tensor(new Float32Array(B * L), [B, L]), normPix).item();
        const o = maskedMse(pred, target, tensor(new Float32Array(B * L).fill(1), [B, L]), normPix).item();
        expect(Number.isFinite(z)).toBe(true);
        close(z, o, 1e-6, `normPix ${normPix}`);
      }
    }));

  it('ignores unmasked patches entirely', () =>
    tidy(() => {
      const g = rng(22);
      const [B, L, P] = [2, 6, 5];
      const pred = randn(g, B * L * P);
      const target = randn(g, B * L * P);
      const mask = Float32Array.from({ length: B * L }, (_, i) => (i % 3 === 0 ? 0 : 1));
      const changed = pred.slice();
      for (let i = 0; i < B * L; i++) if (mask[i] === 0) for (let k = 0; k < P; k++) changed[i * P + k] = 100;
      const a = maskedMse(tensor(pred, [B, L, P]), tensor(target, [B, L, P]), tensor(mask, [B, L]), true).item();
      const b = maskedMse(tensor(changed, [B, L, P]), tensor(target, [B, L, P]), tensor(mask, [B, L]), true).item();
      expect(b).toBe(a);
    }));

  it('normPix uses the unbiased variance (differs from the biased one at small P)', () =>
    tidy(() => {
      const [B, L, P] = [1, 1, 3];
      const target = Float32Array.from([0, 1, 5]);
      const pred = new Float32Array(P);
      const loss = maskedMse(tensor(pred, [B, L, P]), tensor(target, [B, L, P]), tensor([1], [B, L]), true).item();
      // with pred = 0 the loss is mean(t_norm^2) = sum (t - mean)^2 / (P (var + 1e-6)); mean 2, var unbiased
      const ss = 4 + 1 + 9;
      close(loss, ss / (P * (ss / (P - 1) + 1e-6)), 1e-6);
      close(ref.maskedMse(pred, target, [1], B, L, P, true).loss, (P - 1) / P, 1e-6, 'reference');
    }));

  for (const normPix of [false, true])
    it(`central differences, normPix ${normPix}`, () =>
      tidy(() => {
        const g = rng(normPix ? 31 : 32);
        const [B, L, P] = [2, 4, 6];
        const pred = randn(g, B * L * P);
        const target = randn(g, B * L * P);
        const mask = Float32Array.from([1, 0, 1, 1, 0, 0, 1, 0]);
        const pt = tensor(pred, [B, L, P], true);
        maskedMse(pt, tensor(target, [B, L, P]), tensor(mask, [B, L]), normPix).backward();
        const f = ([p]: Float64Array[]): number => ref.maskedMse(p!, target, mask, B, L, P, normPix).loss;
        expectGradClose(gradOf(pt), numericGrad(f, [pred], 0));
      }));
});

describe('crossEntropy', () => {
  const shapes: [number, number][] = [
    [1, 2],
    [3, 7],
    [5, 13],
    [17, 100],
    [4, 1],
  ];
  for (const [B, C] of shapes)
    for (const smoothing of [0, 0.1])
      for (const kind of ['labels', 'soft'] as const)
        it(`[${B}, ${C}] ${kind}, smoothing ${smoothing}: loss and gradient`, () =>
          tidy(() => {
            const g = rng(B * 1000 + C + (smoothing ? 1 : 0) + kind.length * 7);
            const logits = randn(g, B * C, 3);
            const target = kind === 'labels' ? randint(g, B, C) : randSimplex(g, B, C);
            const lt = tensor(logits, [B, C], true);
            const tt = kind === 'labels' ? intTensor(target, [B]) : tensor(target, [B, C]);
            const loss = crossEntropy(lt, tt, smoothing);
            expect(loss.shape).toEqual([1]);
            const e = ref.crossEntropy(logits, target, B, C, smoothing);
            close(loss.item(), e.loss, 1e-5);
            loss.backward();
            expectClose(gradOf(lt), e.dlogits, { rtol: 1e-5, atol: 1e-7 });
          }));

  it('one-hot soft targets give the same loss and gradient as labels', () =>
    tidy(() => {
      const g = rng(40);
      const [B, C] = [6, 9];
      const logits = randn(g, B * C);
      const labels = randint(g, B, C);
      const onehot = new Float32Array(B * C);
      labels.forEach((y, b) => (onehot[b * C + y] = 1));
      for (const s of [0, 0.1]) {
        const a = tensor(logits, [B, C], true);
        const b = tensor(logits, [B, C], true);
        const la = crossEntropy(a, intTensor(labels, [B]), s);
        const lb = crossEntropy(b, tensor(onehot, [B, C]), s);
        close(la.item(), lb.item(), 1e-6);
        la.backward();
        lb.backward();
        expectClose(gradOf(a), gradOf(b), { rtol: 1e-6 });
      }
    }));

  it('smoothing changes the loss as (1 - s) CE + s mean_c(-log p_c)', () =>
    tidy(() => {
      const g = rng(41);
      const [B, C] = [3, 5];
      const logits = randn(g, B * C);
      const labels = randint(g, B, C);
      const uniform = new Float32Array(B * C).fill(1 / C);
      const l0 = crossEntropy(tensor(logits, [B, C]), intTensor(labels, [B]), 0).item();
      const lu = crossEntropy(tensor(logits, [B, C]), tensor(uniform, [B, C]), 0).item();
      const ls = crossEntropy(tensor(logits, [B, C]), intTensor(labels, [B]), 0.1).item();
      close(ls, 0.9 * l0 + 0.1 * lu, 1e-5);
    }));

  it('is finite and exact for large logits', () =>
    tidy(() => {
      const g = rng(42);
      const [B, C] = [4, 6];
      const logits = randn(g, B * C, 300);
      const labels = randint(g, B, C);
      const lt = tensor(logits, [B, C], true);
      const loss = crossEntropy(lt, intTensor(labels, [B]), 0.1);
      const e = ref.crossEntropy(logits, labels, B, C, 0.1);
      close(loss.item(), e.loss, 1e-5);
      loss.backward();
      // float32 rounding of logits ~ 300 moves exp(z - lse) by ~ 300 * 6e-8 relative: the conditioning, not a bug
      expectClose(gradOf(lt), e.dlogits, { rtol: 1e-4, atol: 1e-6 });
    }));

  for (const kind of ['labels', 'soft'] as const)
    it(`central differences, ${kind}, smoothing 0.1`, () =>
      tidy(() => {
        const g = rng(kind === 'labels' ? 43 : 44);
        const [B, C] = [3, 5];
        const logits = randn(g, B * C, 2);
        const target = kind === 'labels' ? randint(g, B, C) : randSimplex(g, B, C);
        const lt = tensor(logits, [B, C], true);
        crossEntropy(lt, kind === 'labels' ? intTensor(target, [B]) : tensor(target, [B, C]), 0.1).backward();
        const f = ([z]: Float64Array[]): number => ref.crossEntropy(z!, target, B, C, 0.1).loss;
        expectGradClose(gradOf(lt), numericGrad(f, [logits], 0));
      }));
});
