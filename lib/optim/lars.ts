/**
 * LARS (layer-wise adaptive rate scaling), as the official MAE util/lars.py used for linear probing:
 * for every parameter with more than one dimension the gradient gets the weight decay added and is then scaled by
 * the trust ratio `trustCoefficient * ||p|| / ||dp||` (1 when either norm is 0); biases and other 1-D parameters
 * take the plain gradient (no decay, no trust ratio). Then heavy-ball momentum: mu = momentum * mu + dp,
 * p -= lr * mu. The lr of a group is `lr * lrScale`; `lr` is set by the schedule before each step.
 * The update runs in JavaScript on a copy of each parameter: LARS is meant for the small linear heads of probing.
 */
import type { ParamGroup } from '../mae/model.js';
import { Tensor, shapeStr } from '../tensor.js';
import { checkGradShapes, toParamGroups, type ParamGroupInput } from './groups.js';
import { expectFinite, expectInstance, expectKnownKeys, expectNonNegative, optionNames } from '../check.js';

export interface LarsOptions {
  lr: number;
  /** default weight decay of groups that do not set one (default 0) */
  weightDecay?: number;
  momentum?: number;
  trustCoefficient?: number;
}

export class LARS {
  readonly groups: ParamGroup[];
  readonly momentum: number;
  readonly trustCoefficient: number;
  stepCount = 0;
  private lrValue = 0;
  private readonly mu = new Map<Tensor, Float32Array>();

  constructor(params: ParamGroupInput[] | Tensor[], opts: LarsOptions) {
    // (an option left out or undefined takes its default; null is refused as any other value of the wrong type)
    this.groups = toParamGroups('LARS', params, opts, opts?.weightDecay === undefined ? 0 : opts.weightDecay);
    expectKnownKeys('LARS', 'options', opts, optionNames<LarsOptions>({ lr: true, weightDecay: true, momentum: true, trustCoefficient: true }));
    this.lr = opts.lr;
    this.momentum = opts.momentum === undefined ? 0.9 : opts.momentum;
    this.trustCoefficient = opts.trustCoefficient === undefined ? 0.001 : opts.trustCoefficient;
    expectFinite('LARS', 'momentum', this.momentum, (x) => x >= 0 && x < 1, 'a number in [0, 1)');
    expectFinite('LARS', 'trustCoefficient', this.trustCoefficient, (x) => x > 0, 'a positive finite number');
  }

  /** The base lr (each group's is lr * lrScale); a finite number >= 0, set by the schedule before each step. */
  get lr(): number {
    return this.lrValue;
  }

  set lr(v: number) {
    expectNonNegative('LARS', 'lr', v);
    this.lrValue = v;
  }

  step(): void {
    checkGradShapes('LARS', this.groups);
    // (before any update: a parameter it cannot write, found half-way, would leave the others stepped)
    this.groups.forEach((g, gi) =>
      g.params.forEach((p, pi) => {
        if (p.grad && p.dtype !== 'float32')
          throw new Error(`LARS: groups[${gi}].params[${pi}] is a ${p.dtype} ${shapeStr(p.shape)} tensor; LARS updates float32 parameters`);
      }),
    );
    this.stepCount++;
    for (const g of this.groups) {
      const lr = this.lr * (g.lrScale ?? 1);
      for (const p of g.params) {
        if (!p.grad) continue;
        const w = p.dataSync();
        const dp = p.grad.dataSync();
        if (p.shape.length > 1) {
          const wdk = g.weightDecay;
          if (wdk !== 0) for (let i = 0; i < dp.length; i++) dp[i] = dp[i]! + wdk * w[i]!;
          const pn = norm(w);
          const un = norm(dp);
          const q = pn > 0 && un > 0 ? (this.trustCoefficient * pn) / un : 1;
          if (q !== 1) for (let i = 0; i < dp.length; i++) dp[i] = dp[i]! * q;
        }
        let mu = this.mu.get(p);
        if (!mu) {
          mu = new Float32Array(w.length);
          this.mu.set(p, mu);
        }
        const m = this.momentum;
        for (let i = 0; i < w.length; i++) {
          mu[i] = m * mu[i]! + dp[i]!;
          w[i] = w[i]! - lr * mu[i]!;
        }
        p.write(w);
      }
    }
  }

  zeroGrad(): void {
    for (const g of this.groups)
      for (const p of g.params) {
        p.grad?.dispose();
        p.grad = null;
      }
  }

  /** The momentum buffer of a parameter (for tests and checkpoints). */
  momentumOf(p: Tensor): Float32Array | undefined {
    expectInstance('LARS.momentumOf', 'p', p, Tensor, 'a Tensor (a parameter of this optimizer)');
    return this.mu.get(p);
  }
}

function norm(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s);
}
