/**
 * AdamW (PyTorch torch.optim.AdamW semantics), fused and in place in the native kernel, fp32 state. A parameter
 * with a bf16 shadow (lib/nn/shadow.ts: bf16 products) gets it rewritten by the same kernel.
 * Parameter groups carry their weight decay and an lr scale (layer-wise decay); `lr` is set by the schedule
 * before each step. The state (first and second moments, step count) round-trips through stateDict for
 * checkpoints.
 */
import type { ParamGroup } from '../mae/model.js';
import { native, type NativeTensor } from '../native.js';
import { shadowToUpdate, shadowUpdated } from '../nn/shadow.js';
import { Tensor, shapeStr } from '../tensor.js';
import { toParamGroups } from './groups.js';

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  /** default weight decay of groups that do not set one; default 0.01 as PyTorch */
  weightDecay?: number;
}

interface Moments {
  m: Tensor;
  v: Tensor;
}

export class AdamW {
  readonly groups: ParamGroup[];
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  /** steps taken so far (the bias correction uses stepCount after the increment) */
  stepCount = 0;
  private readonly state = new Map<Tensor, Moments>();

  constructor(params: ParamGroup[] | Tensor[], opts: AdamWOptions) {
    this.groups = toParamGroups('AdamW', params, opts, opts?.weightDecay ?? 0.01);
    if (!(opts.lr >= 0)) throw new Error(`AdamW: lr must be non-negative, got ${opts.lr}`);
    this.lr = opts.lr;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    if (!(this.eps >= 0 && Number.isFinite(this.eps))) throw new Error(`AdamW: eps must be non-negative and finite, got ${this.eps}`);
    const [b1, b2] = this.betas;
    if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw new Error(`AdamW: betas must be in [0, 1), got [${b1}, ${b2}]`);
  }

  /** Updates every parameter that has a gradient, all of them in one native call. */
  step(): void {
    this.stepCount++;
    const [b1, b2] = this.betas;
    const params: NativeTensor[] = [], grads: NativeTensor[] = [], m: NativeTensor[] = [], v: NativeTensor[] = [];
    const lrs: number[] = [], wds: number[] = [];
    const shadows: (NativeTensor | null)[] = [];
    const shadowed: Tensor[] = [];
    const updated: Tensor[] = [];
    for (const g of this.groups) {
      const lr = this.lr * (g.lrScale ?? 1);
      for (const p of g.params) {
        if (!p.grad) continue;
        const s = this.moments(p);
        updated.push(p);
        params.push(p.handle);
        grads.push(p.grad.handle);
        m.push(s.m.handle);
        v.push(s.v.handle);
        lrs.push(lr);
        wds.push(g.weightDecay);
        const sh = shadowToUpdate(p);
        shadows.push(sh ? sh.handle : null);
        if (sh) shadowed.push(p);
      }
    }
    if (params.length === 0) return;
    native.adamwStep(params, grads, m, v, lrs, wds, b1, b2, this.eps, this.stepCount, shadowed.length ? shadows : undefined);
    // new values (what copies made elsewhere go by: an inference worker's shadows); the shadows written here hold them
    for (const p of updated) p.version++;
    for (const p of shadowed) shadowUpdated(p);
  }

  /** Drops every gradient of the optimised parameters. */
  zeroGrad(): void {
    for (const g of this.groups)
      for (const p of g.params) {
        p.grad?.dispose();
        p.grad = null;
      }
  }

  /** Moments by parameter position ('g.i'), plus the step count and lr: everything a checkpoint needs. */
  stateDict(): { step: number; lr: number; tensors: Map<string, Tensor> } {
    const tensors = new Map<string, Tensor>();
    this.groups.forEach((g, gi) =>
      g.params.forEach((p, pi) => {
        const s = this.state.get(p);
        if (s) {
          tensors.set(`${gi}.${pi}.exp_avg`, s.m);
          tensors.set(`${gi}.${pi}.exp_avg_sq`, s.v);
        }
      }),
    );
    return { step: this.stepCount, lr: this.lr, tensors };
  }

  loadStateDict(sd: { step: number; lr: number; tensors: Map<string, { shape: readonly number[]; data: Float32Array } | Tensor> }): void {
    this.groups.forEach((g, gi) =>
      g.params.forEach((p, pi) => {
        const m = sd.tensors.get(`${gi}.${pi}.exp_avg`);
        const v = sd.tensors.get(`${gi}.${pi}.exp_avg_sq`);
        if (!m || !v) return;
        for (const [k, t] of [['exp_avg', m], ['exp_avg_sq', v]] as const)
          if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i]))
            throw new Error(`AdamW.loadStateDict: ${gi}.${pi}.${k} is ${shapeStr(t.shape)}, the parameter is ${shapeStr(p.shape)}`);
        const s = this.moments(p);
        s.m.write(m instanceof Tensor ? m.dataSync() : m.data);
        s.v.write(v instanceof Tensor ? v.dataSync() : v.data);
      }),
    );
    this.stepCount = sd.step;
    this.lr = sd.lr;
  }

  dispose(): void {
    for (const s of this.state.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.state.clear();
  }

  private moments(p: Tensor): Moments {
    let s = this.state.get(p);
    if (!s) {
      // fp32 moments on the parameter's device
      s = { m: Tensor.zeros(p.shape, 'float32', p.device).keep(), v: Tensor.zeros(p.shape, 'float32', p.device).keep() };
      this.state.set(p, s);
    }
    return s;
  }
}
