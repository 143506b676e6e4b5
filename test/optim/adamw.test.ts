// AdamW against the PyTorch update written out in double precision, and the lr rules.
import { describe, expect, it } from 'vitest';
import { AdamW } from '../../lib/optim/adamw.js';
import { cosineLr, scaledLr } from '../../lib/optim/schedule.js';
import { Generator } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';

describe('AdamW', () => {
  it('follows torch.optim.AdamW over several steps, per group lr scale and weight decay', () => {
    const g = new Generator(7);
    const n = 37;
    const p0 = g.normalArray(n);
    const q0 = g.normalArray(n);
    const p = Tensor.fromArray(p0, [n]).keep();
    const q = Tensor.fromArray(q0, [n]).keep();
    p.requiresGrad = q.requiresGrad = true;
    const opt = new AdamW([{ params: [p], weightDecay: 0.05 }, { params: [q], weightDecay: 0, lrScale: 0.5 }], { lr: 0.01, betas: [0.9, 0.95], eps: 1e-8 });
    const ref = [
      { x: Float64Array.from(p0), m: new Float64Array(n), v: new Float64Array(n), wd: 0.05, lr: 0.01 },
      { x: Float64Array.from(q0), m: new Float64Array(n), v: new Float64Array(n), wd: 0, lr: 0.005 },
    ];
    for (let t = 1; t <= 5; t++) {
      const grads = [g.normalArray(n), g.normalArray(n)];
      p.grad = Tensor.fromArray(grads[0]!, [n]).keep();
      q.grad = Tensor.fromArray(grads[1]!, [n]).keep();
      opt.step();
      opt.zeroGrad();
      expect(p.grad).toBeNull();
      ref.forEach((r, k) => {
        for (let i = 0; i < n; i++) {
          const gr = grads[k]![i]!;
          r.x[i]! *= 1 - r.lr * r.wd;
          r.m[i] = 0.9 * r.m[i]! + 0.1 * gr;
          r.v[i] = 0.95 * r.v[i]! + 0.05 * gr * gr;
          const mh = r.m[i]! / (1 - 0.9 ** t);
          const vh = r.v[i]! / (1 - 0.95 ** t);
          r.x[i]! -= (r.lr * mh) / (Math.sqrt(vh) + 1e-8);
        }
      });
    }
    const got = [p.dataSync(), q.dataSync()];
    ref.forEach((r, k) => r.x.forEach((v, i) => expect(got[k]![i]!).toBeCloseTo(v, 5)));
    // state round trip
    const sd = opt.stateDict();
    expect(sd.step).toBe(5);
    expect(sd.tensors.get('0.0.exp_avg')!.shape).toEqual([n]);
    const opt2 = new AdamW([{ params: [p], weightDecay: 0.05 }, { params: [q], weightDecay: 0, lrScale: 0.5 }], { lr: 0.01, betas: [0.9, 0.95] });
    opt2.loadStateDict(sd);
    expect(opt2.stepCount).toBe(5);
    expect(Array.from(opt2.stateDict().tensors.get('1.0.exp_avg_sq')!.dataSync())).toEqual(Array.from(sd.tensors.get('1.0.exp_avg_sq')!.dataSync()));
  });

  it('rejects bad settings', () => {
    expect(() => new AdamW([], { lr: -1 })).toThrow(/lr must be non-negative/);
    expect(() => new AdamW([], { lr: 1, betas: [1, 0.9] })).toThrow(/betas must be in \[0, 1\)/);
    expect(() => new AdamW([], { lr: 1, eps: NaN })).toThrow(/AdamW: eps must be non-negative and finite, got NaN/);
    expect(() => new AdamW([], { lr: 1, eps: -1e-8 })).toThrow(/eps must be non-negative/);
  });
});

describe('lr schedule', () => {
  it('scales the base lr by the effective batch over 256', () => {
    expect(scaledLr(1.5e-4, 4096)).toBeCloseTo(2.4e-3, 12);
    expect(scaledLr(1.5e-4, 64 * 4)).toBeCloseTo(1.5e-4, 12);
  });
  it('warms up linearly, then follows a half cosine to minLr', () => {
    const s = { lr: 1, minLr: 0.1, warmupEpochs: 40, epochs: 800 };
    expect(cosineLr(0, s)).toBe(0);
    expect(cosineLr(20, s)).toBeCloseTo(0.5, 12);
    expect(cosineLr(40, s)).toBeCloseTo(1, 12);
    expect(cosineLr(420, s)).toBeCloseTo(0.1 + 0.9 * 0.5, 12);
    expect(cosineLr(800, s)).toBeCloseTo(0.1, 12);
    expect(cosineLr(40 + 760 / 3, s)).toBeCloseTo(0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI / 3)), 12);
  });
});
