// AdamW against the PyTorch update written out in double precision: per-parameter step counts, state round trips, checks.
import { describe, expect, it } from 'vitest';
import { AdamW, type AdamWState } from '../../lib/optim/adamw.js';
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
    expect(() => new AdamW([], { lr: -1 })).toThrow(/^AdamW: lr must be a finite number >= 0, got the number -1$/);
    expect(() => new AdamW([], { lr: Infinity })).toThrow(/^AdamW: lr must be a finite number >= 0, got the number Infinity$/);
    expect(() => new AdamW([], { lr: 1, weightDecay: -1 })).toThrow(/^AdamW: weightDecay must be a finite number >= 0, got the number -1$/);
    expect(() => new AdamW([], { lr: 1, weightDecay: NaN })).toThrow(/^AdamW: weightDecay must be a finite number >= 0, got the number NaN$/);
    expect(() => new AdamW([], { lr: 1, betas: [1, 0.9] })).toThrow(/betas must be in \[0, 1\)/);
    // (checked when made, not at the first step: a string beta, a number for the pair, a third beta)
    const betas: [unknown, string][] = [
      [0.9, 'the number 0.9'],
      [['0.9', 0.99], "['0.9', 0.99]"],
      [[0.9], '[0.9]'],
      [[0.9, 0.99, 0.5], '[0.9, 0.99, 0.5]'],
      [[NaN, 0.99], '[NaN, 0.99]'],
      // below 1, but 1 in float32, where the step runs: every parameter would be NaN
      [[0.9, 0.99999999], '[0.9, 0.99999999]'],
    ];
    for (const [b, got] of betas)
      expect(() => new AdamW([], { lr: 1, betas: b as [number, number] })).toThrow(new Error(`AdamW: betas must be in [0, 1) in float32 (at most 0.99999994; an array [beta1, beta2]), got ${got}`));
    expect(() => new AdamW([], { lr: 1, betas: [0.99999994, 0] })).not.toThrow();
    expect(() => new AdamW([], { lr: 1, eps: NaN })).toThrow(/AdamW: eps must be non-negative and finite, got NaN/);
    expect(() => new AdamW([], { lr: 1, eps: -1e-8 })).toThrow(/eps must be non-negative/);
  });

  it('gives a group without weightDecay the default (opts.weightDecay, else 0.01), and checks each group', () => {
    const p = param([1, 2]);
    const q = param([1, 2]);
    p.grad = Tensor.fromArray(new Float32Array([0, 0]), [2]).keep();
    const opt = new AdamW([{ params: [p] }, { params: [q], weightDecay: 0 }], { lr: 0.1, weightDecay: 0.5 });
    expect(opt.groups.map((g) => g.weightDecay)).toEqual([0.5, 0]);
    expect(new AdamW([{ params: [q] }], { lr: 0.1 }).groups[0]!.weightDecay).toBe(0.01);
    // a zero gradient: only the decay moves p, by lr * wd
    opt.step();
    expect(Array.from(p.dataSync())).toEqual([Math.fround(1 * (1 - 0.05)), Math.fround(2 * (1 - 0.05))]);
    expect(() => new AdamW([{ params: [p] }, { params: [q], weightDecay: -0.1 }], { lr: 0.1 })).toThrow(
      /^AdamW: params\[1\]\.weightDecay must be a finite number >= 0, got the number -0\.1$/,
    );
    expect(() => new AdamW([{ params: [p], weightDecay: 0, lrScale: NaN }], { lr: 0.1 })).toThrow(/^AdamW: params\[0\]\.lrScale must be a finite number >= 0, got the number NaN$/);
    p.dispose();
    q.dispose();
  });

  it('refuses a non-finite lr set later (by a schedule), and a gradient of the wrong shape, changing nothing', () => {
    const p = param([1, 2]);
    const opt = new AdamW([p], { lr: 0.1 });
    expect(() => (opt.lr = Infinity)).toThrow(/^AdamW: lr must be a finite number >= 0, got the number Infinity$/);
    expect(() => (opt.lr = NaN)).toThrow(/^AdamW: lr must be a finite number >= 0, got the number NaN$/);
    expect(opt.lr).toBe(0.1);
    p.grad = Tensor.fromArray(new Float32Array([1]), [1]).keep();
    expect(() => opt.step()).toThrow(/^AdamW: the gradient of groups\[0\]\.params\[0\] is \[1\], the parameter is \[2\]$/);
    expect(Array.from(p.dataSync())).toEqual([1, 2]);
    expect(opt.stepCount).toBe(0);
    expect(opt.stateDict().tensors.size).toBe(0);
    p.dispose();
  });

  // PyTorch keeps state['step'] per parameter, made at its first gradient: a first update is lr * g / (|g| + eps)
  it('keeps a step count per parameter, advanced only by the steps that update it (torch.optim.AdamW)', () => {
    const a = param([1, 2]);
    const optA = new AdamW([a], { lr: 0.1, weightDecay: 0 });
    optA.step();
    optA.step();
    optA.step();
    expect(optA.stepCount).toBe(0);
    a.grad = ones(2);
    optA.step();
    expect(Array.from(a.dataSync())).toEqual([Math.fround(0.9), Math.fround(1.9)]);
    expect(optA.stepCount).toBe(1);

    // b gets its first gradient at the fourth step of the optimizer
    const other = param([1, 2]);
    const b = param([1, 2]);
    const optB = new AdamW([other, b], { lr: 0.1, weightDecay: 0 });
    for (let i = 0; i < 3; i++) {
      other.grad?.dispose();
      other.grad = ones(2);
      optB.step();
    }
    b.grad = ones(2);
    optB.step();
    expect(Array.from(b.dataSync())).toEqual([Math.fround(0.9), Math.fround(1.9)]);
    const sd = optB.stateDict();
    expect(sd.step).toBe(4);
    expect(sd.steps).toEqual({ '0.0': 4, '0.1': 1 });
    for (const t of [a, other, b]) t.dispose();
  });

  it('round-trips the per-parameter step counts: a restored optimizer continues bit for bit', () => {
    const g = new Generator(3);
    const make = () => [param(g.normalArray(5)), param(g.normalArray(5))];
    const [p, q] = make();
    const opt = new AdamW([p!, q!], { lr: 0.01, betas: [0.9, 0.95] });
    // p steps 3 times, q twice: two step counts at the fourth step
    for (let t = 0; t < 3; t++) {
      setGrad(p!, g.normalArray(5));
      if (t > 0) setGrad(q!, g.normalArray(5));
      opt.step();
      opt.zeroGrad();
    }
    const sd = opt.stateDict();
    expect(sd).toMatchObject({ step: 3, lr: 0.01, steps: { '0.0': 3, '0.1': 2 } });
    const [p2, q2] = [param(p!.dataSync()), param(q!.dataSync())];
    const opt2 = new AdamW([p2!, q2!], { lr: 1, betas: [0.9, 0.95] });
    opt2.loadStateDict({ ...sd, steps: { ...sd.steps } });
    expect(opt2.stateDict().steps).toEqual({ '0.0': 3, '0.1': 2 });
    for (let t = 0; t < 2; t++) {
      const gp = g.normalArray(5);
      const gq = g.normalArray(5);
      for (const [x, y, o] of [[p!, q!, opt], [p2!, q2!, opt2]] as const) {
        setGrad(x, gp);
        setGrad(y, gq);
        o.step();
        o.zeroGrad();
      }
    }
    expect(Array.from(p2!.dataSync())).toEqual(Array.from(p!.dataSync()));
    expect(Array.from(q2!.dataSync())).toEqual(Array.from(q!.dataSync()));
    expect(opt2.stateDict().steps).toEqual({ '0.0': 5, '0.1': 4 });
    for (const t of [p, q, p2, q2]) t!.dispose();
  });

  it('gives every parameter with moments the global step when the state has no per-parameter counts (older checkpoints)', () => {
    const g = new Generator(4);
    const p = param(g.normalArray(6));
    const opt = new AdamW([{ params: [p], weightDecay: 0.05 }], { lr: 0.01 });
    for (let t = 0; t < 4; t++) {
      setGrad(p, g.normalArray(6));
      opt.step();
    }
    const { steps, ...old } = opt.stateDict();
    expect(steps).toEqual({ '0.0': 4 });
    const p2 = param(p.dataSync());
    const opt2 = new AdamW([{ params: [p2], weightDecay: 0.05 }], { lr: 0.01 });
    opt2.loadStateDict(old);
    expect(opt2.stateDict().steps).toEqual({ '0.0': 4 });
    const grad = g.normalArray(6);
    setGrad(p, grad);
    setGrad(p2, grad);
    opt.step();
    opt2.step();
    expect(Array.from(p2.dataSync())).toEqual(Array.from(p.dataSync()));
    p.dispose();
    p2.dispose();
  });

  it('loadStateDict refuses a bad step or lr, and missing or unexpected state, naming it and changing nothing', () => {
    const p = param([1, 2]);
    const q = param([3, 4]);
    const opt = new AdamW([p, q], { lr: 0.1 });
    p.grad = ones(2);
    q.grad = ones(2);
    opt.step();
    const sd = opt.stateDict();
    const m = (k: string) => sd.tensors.get(k)!;
    type Moment = AdamWState['tensors'] extends Map<string, infer V> ? V : never;
    const only = (...keys: string[]): AdamWState['tensors'] => new Map(keys.map((k) => [k, m(k)]));
    const all = ['0.0.exp_avg', '0.0.exp_avg_sq', '0.1.exp_avg', '0.1.exp_avg_sq'];
    const fresh = new AdamW([param([1, 2]), param([3, 4])], { lr: 0.1 });
    const disposed = ones(2);
    disposed.dispose();
    const ints = Tensor.fromArray(new Int32Array(2), [2]).keep();
    const cases: [Parameters<AdamW['loadStateDict']>[0], RegExp][] = [
      [{ step: NaN, lr: -5, tensors: new Map() }, /^AdamW\.loadStateDict: step must be an integer >= 0, got the number NaN$/],
      [{ step: 2.5, lr: 0.1, tensors: new Map() }, /^AdamW\.loadStateDict: step must be an integer >= 0, got the number 2\.5$/],
      [{ step: 1, lr: -5, tensors: new Map() }, /^AdamW\.loadStateDict: lr must be a finite number >= 0, got the number -5$/],
      [{ step: 1, lr: Infinity, tensors: new Map() }, /^AdamW\.loadStateDict: lr must be a finite number >= 0, got the number Infinity$/],
      [{ step: 1, lr: 0.1, tensors: only(...all, '0.2.exp_avg', 'momentum') }, /^AdamW\.loadStateDict: keys that name no parameter of this optimizer \(2 parameters\): 0\.2\.exp_avg, momentum$/],
      [{ step: 1, lr: 0.1, steps: { '0.0': 1, '1.0': 1 }, tensors: only(...all) }, /^AdamW\.loadStateDict: keys that name no parameter of this optimizer \(2 parameters\): steps\.1\.0$/],
      // steps taken, but no moments (a checkpoint whose optimizer tensors were lost)
      [{ step: 3, lr: 0.1, tensors: new Map() }, /^AdamW\.loadStateDict: the state has no moments, though 3 steps were taken$/],
      [{ step: 3, lr: 0.1, steps: {}, tensors: new Map() }, /^AdamW\.loadStateDict: the state has no moments, though 3 steps were taken$/],
      // an older state: moments of some parameters but not of others
      [{ step: 1, lr: 0.1, tensors: only('0.0.exp_avg', '0.0.exp_avg_sq', '0.1.exp_avg') }, /^AdamW\.loadStateDict: the state has no 0\.1\.exp_avg_sq, though it has the other moment of that parameter$/],
      [{ step: 1, lr: 0.1, steps: { '0.0': 1, '0.1': 1 }, tensors: only('0.0.exp_avg', '0.0.exp_avg_sq') }, /^AdamW\.loadStateDict: the state has no 0\.1\.exp_avg, 0\.1\.exp_avg_sq, though its steps list them$/],
      [{ step: 1, lr: 0.1, steps: { '0.0': 1 }, tensors: only(...all) }, /^AdamW\.loadStateDict: moments without a step count in steps: 0\.1$/],
      [{ step: 1, lr: 0.1, steps: { '0.0': 1, '0.1': 2 }, tensors: only(...all) }, /^AdamW\.loadStateDict: steps\.0\.1 must be an integer in \[1, step = 1\], got the number 2$/],
      [{ step: 1, lr: 0.1, steps: { '0.0': 1, '0.1': 0 }, tensors: only(...all) }, /^AdamW\.loadStateDict: steps\.0\.1 must be an integer in \[1, step = 1\], got the number 0$/],
      [{ step: 0, lr: 0.1, tensors: only(...all) }, /^AdamW\.loadStateDict: step \(that of 0\.0, which has moments\) must be an integer in \[1, step = 0\], got the number 0$/],
      [{ step: 1, lr: 0.1, tensors: new Map<string, Moment>([...only(...all), ['0.1.exp_avg', { shape: [3], data: new Float32Array(3) }]]) }, /^AdamW\.loadStateDict: 0\.1\.exp_avg is \[3\], the parameter is \[2\]$/],
      // values that cannot be written, found before 0.0's moments are (a write failing half-way left the state part new)
      [{ step: 1, lr: 0.1, tensors: new Map<string, Moment>([...only(...all), ['0.1.exp_avg', { shape: [2], data: new Float32Array(1) }]]) }, /^AdamW\.loadStateDict: 0\.1\.exp_avg: shape \[2\] holds 2 values, its data has 1$/],
      [{ step: 1, lr: 0.1, tensors: new Map<string, Moment>([...only(...all), ['0.1.exp_avg_sq', { shape: [2], data: [1, 2] as unknown as Float32Array }]]) }, /^AdamW\.loadStateDict: 0\.1\.exp_avg_sq: data must be a Float32Array, got an array of 2$/],
      [{ step: 1, lr: 0.1, tensors: new Map<string, Moment>([...only(...all), ['0.1.exp_avg', disposed]]) }, /^AdamW\.loadStateDict: 0\.1\.exp_avg has been disposed$/],
      [{ step: 1, lr: 0.1, tensors: new Map<string, Moment>([...only(...all), ['0.1.exp_avg', ints]]) }, /^AdamW\.loadStateDict: 0\.1\.exp_avg must be float32, got int32$/],
    ];
    for (const [bad, message] of cases) {
      expect(() => fresh.loadStateDict(bad), message.source).toThrow(message);
      expect(fresh.stateDict()).toEqual({ step: 0, lr: 0.1, steps: {}, tensors: new Map() });
    }
    // a fresh optimizer's state (no moments at all) and a full one load
    fresh.loadStateDict({ step: 0, lr: 0.2, tensors: new Map() });
    expect(fresh.lr).toBe(0.2);
    fresh.loadStateDict(sd);
    expect(fresh.stateDict().steps).toEqual({ '0.0': 1, '0.1': 1 });
    // an older state (no steps) in which a parameter never had a gradient (mask_token at mask ratio 0): it has no
    // moments, the others get the global step
    fresh.loadStateDict({ step: 1, lr: 0.1, tensors: only('0.0.exp_avg', '0.0.exp_avg_sq') });
    expect(fresh.stateDict().steps).toEqual({ '0.0': 1 });
    for (const t of [p, q, ints, ...fresh.groups[0]!.params]) t.dispose();
    fresh.dispose();
  });
});

function param(data: ArrayLike<number>): Tensor {
  const t = Tensor.fromArray(Float32Array.from(data), [data.length]).keep();
  t.requiresGrad = true;
  return t;
}

function ones(n: number): Tensor {
  return Tensor.fromArray(new Float32Array(n).fill(1), [n]).keep();
}

function setGrad(p: Tensor, g: ArrayLike<number>): void {
  p.grad?.dispose();
  p.grad = Tensor.fromArray(Float32Array.from(g), p.shape).keep();
}
