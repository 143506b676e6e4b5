import { describe, expect, it } from 'vitest';
import { LARS } from '../../lib/optim/lars.js';
import { Tensor } from '../../lib/tensor.js';

function param(data: number[], shape: number[]): Tensor {
  const t = Tensor.fromArray(Float32Array.from(data), shape).keep();
  t.requiresGrad = true;
  return t;
}

function setGrad(p: Tensor, g: number[]): void {
  p.grad?.dispose();
  p.grad = Tensor.fromArray(Float32Array.from(g), p.shape).keep();
}

describe('LARS (official util/lars.py)', () => {
  it('scales 2-D updates by the trust ratio after weight decay, leaves 1-D parameters plain, uses momentum', () => {
    const w = param([3, 4], [1, 2]);
    const b = param([1], [1]);
    const opt = new LARS([w, b], { lr: 0.5, weightDecay: 0.1 });
    setGrad(w, [0.6, 0.8]);
    setGrad(b, [0.5]);
    opt.step();
    // dp = g + 0.1 w = [0.9, 1.2]; |w| = 5, |dp| = 1.5; q = 0.001 * 5 / 1.5; mu = dp q = [0.003, 0.004]
    // w = [3, 4] - 0.5 mu = [2.9985, 3.998]
    const w1 = w.dataSync();
    expect(w1[0]).toBeCloseTo(2.9985, 6);
    expect(w1[1]).toBeCloseTo(3.998, 6);
    // bias: no decay, no trust ratio: mu = 0.5, b = 1 - 0.25
    expect(b.dataSync()[0]).toBeCloseTo(0.75, 6);

    setGrad(w, [0.6, 0.8]);
    setGrad(b, [0.5]);
    opt.step();
    // by hand: dp = [0.6 + 0.29985, 0.8 + 0.3998] = [0.89985, 1.1998]
    const dp = [0.89985, 1.1998];
    const pn = Math.hypot(2.9985, 3.998);
    const un = Math.hypot(dp[0]!, dp[1]!);
    const q = (0.001 * pn) / un;
    const mu = [0.9 * 0.003 + dp[0]! * q, 0.9 * 0.004 + dp[1]! * q];
    const w2 = w.dataSync();
    expect(w2[0]).toBeCloseTo(2.9985 - 0.5 * mu[0]!, 6);
    expect(w2[1]).toBeCloseTo(3.998 - 0.5 * mu[1]!, 6);
    // bias: mu = 0.9 * 0.5 + 0.5 = 0.95; b = 0.75 - 0.475
    expect(b.dataSync()[0]).toBeCloseTo(0.275, 6);
    w.dispose();
    b.dispose();
  });

  it('uses a trust ratio of 1 for zero parameters and skips parameters without a gradient', () => {
    const w = param([0, 0], [2, 1]);
    const v = param([1, 1], [2, 1]);
    const opt = new LARS([w, v], { lr: 0.1 });
    setGrad(w, [1, -2]);
    opt.step();
    expect(Array.from(w.dataSync())).toEqual([expect.closeTo(-0.1, 6), expect.closeTo(0.2, 6)]);
    expect(Array.from(v.dataSync())).toEqual([1, 1]);
    opt.zeroGrad();
    expect(w.grad).toBeNull();
    w.dispose();
    v.dispose();
  });

  it('applies the group lr scale', () => {
    const b = param([0], [1]);
    const opt = new LARS([{ params: [b], weightDecay: 0, lrScale: 0.5 }], { lr: 1 });
    setGrad(b, [2]);
    opt.step();
    expect(b.dataSync()[0]).toBeCloseTo(-1, 6);
    b.dispose();
  });

  it('gives a group without weightDecay the default', () => {
    const w = param([3, 4], [1, 2]);
    const opt = new LARS([{ params: [w] }], { lr: 0.5, weightDecay: 0.1 });
    expect(opt.groups[0]!.weightDecay).toBe(0.1);
    setGrad(w, [0.6, 0.8]);
    opt.step();
    // as the first test: dp = g + 0.1 w
    expect(Array.from(w.dataSync())).toEqual([expect.closeTo(2.9985, 6), expect.closeTo(3.998, 6)]);
    expect(new LARS([{ params: [w] }], { lr: 0.5 }).groups[0]!.weightDecay).toBe(0);
    w.dispose();
  });

  it('refuses bad options, naming them', () => {
    const w = param([1, 2], [2]);
    const cases: [Record<string, unknown>, string][] = [
      [{ momentum: NaN }, 'LARS: momentum must be a number in [0, 1), got the number NaN'],
      [{ momentum: -5 }, 'LARS: momentum must be a number in [0, 1), got the number -5'],
      [{ momentum: 1 }, 'LARS: momentum must be a number in [0, 1), got the number 1'],
      [{ trustCoefficient: NaN }, 'LARS: trustCoefficient must be a positive finite number, got the number NaN'],
      [{ trustCoefficient: 0 }, 'LARS: trustCoefficient must be a positive finite number, got the number 0'],
      [{ weightDecay: NaN }, 'LARS: weightDecay must be a finite number >= 0, got the number NaN'],
      [{ weightDecay: -1 }, 'LARS: weightDecay must be a finite number >= 0, got the number -1'],
      [{ lr: Infinity }, 'LARS: lr must be a finite number >= 0, got the number Infinity'],
      [{ lr: -1 }, 'LARS: lr must be a finite number >= 0, got the number -1'],
    ];
    for (const [o, message] of cases) expect(() => new LARS([w], { lr: 0.1, ...o })).toThrow(new Error(message));
    expect(() => new LARS([{ params: [w], weightDecay: NaN }], { lr: 0.1 })).toThrow(new Error('LARS: params[0].weightDecay must be a finite number >= 0, got the number NaN'));
    const opt = new LARS([w], { lr: 0.1, momentum: 0, trustCoefficient: 1 });
    expect(() => (opt.lr = NaN)).toThrow(new Error('LARS: lr must be a finite number >= 0, got the number NaN'));
    expect(opt.lr).toBe(0.1);
    w.dispose();
  });

  it('refuses a gradient whose shape differs from its parameter, changing nothing', () => {
    const b = param([1, 2], [2]);
    const w = param([1, 2, 3, 4], [2, 2]);
    const opt = new LARS([b, w], { lr: 0.1 });
    setGrad(b, [1, 1]);
    w.grad = Tensor.fromArray(new Float32Array(4), [4]).keep();
    expect(() => opt.step()).toThrow(new Error('LARS: the gradient of groups[0].params[1] is [4], the parameter is [2, 2]'));
    expect(Array.from(b.dataSync())).toEqual([1, 2]);
    expect(opt.momentumOf(b)).toBeUndefined();
    expect(opt.stepCount).toBe(0);
    b.dispose();
    w.dispose();
  });

  it('refuses a parameter that is not float32 before updating any, naming it', () => {
    const b = param([1, 2], [2]);
    const f = Tensor.fromArray(new Float32Array([1, 2]), [2]);
    const bf = f.to('cpu', 'bfloat16').keep();
    f.dispose();
    const n = Tensor.fromArray(new Int32Array([1, 2]), [2]).keep();
    for (const bad of [bf, n]) {
      const opt = new LARS([b, bad], { lr: 0.1 });
      setGrad(b, [1, 1]);
      setGrad(bad, [1, 1]);
      expect(() => opt.step()).toThrow(new Error(`LARS: groups[0].params[1] is a ${bad.dtype} [2] tensor; LARS updates float32 parameters`));
      expect(Array.from(b.dataSync())).toEqual([1, 2]);
      expect(opt.momentumOf(b)).toBeUndefined();
      expect(opt.stepCount).toBe(0);
    }
    for (const t of [b, bf, n]) t.dispose();
  });
});
