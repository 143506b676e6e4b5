/**
 * AdamW (PyTorch torch.optim.AdamW semantics), fused and in place in the native kernel, fp32 state. A parameter
 * with a bf16 shadow (lib/nn/shadow.ts: bf16 products) gets it rewritten by the same kernel.
 * Parameter groups carry their weight decay and an lr scale (layer-wise decay); `lr` is set by the schedule
 * before each step. As in PyTorch, each parameter has its own step count (state['step']), made with its moments at
 * its first gradient and advanced only by the steps that update it; the bias correction uses it. The state (first
 * and second moments, step counts) round-trips through stateDict for checkpoints.
 */
import type { ParamGroup } from '../mae/model.js';
import { native, type NativeTensor } from '../native.js';
import { shadowToUpdate, shadowUpdated } from '../nn/shadow.js';
import { Tensor, sameShape, shapeStr } from '../tensor.js';
import { checkGradShapes, toParamGroups, type ParamGroupInput } from './groups.js';
import { describeItems, describeValue, expectFinite, expectInteger, expectKnownKeys, expectNonNegative, expectObject, optionNames } from '../check.js';

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
  /** the steps that updated this parameter (PyTorch's state['step']) */
  step: number;
}

/** What stateDict gives and loadStateDict takes; keys of `steps` and `tensors` are parameter positions 'group.index'. */
export interface AdamWState {
  /** AdamW.stepCount */
  step: number;
  lr: number;
  /**
   * the step count of each parameter that has moments; when absent (a state saved before these were kept), every
   * parameter with moments gets `step`
   */
  steps?: Record<string, number>;
  /** '<g>.<i>.exp_avg' and '<g>.<i>.exp_avg_sq' */
  tensors: Map<string, { shape: readonly number[]; data: Float32Array } | Tensor>;
}

/** One native call: the parameters of one step count. */
interface Batch {
  params: NativeTensor[];
  grads: NativeTensor[];
  m: NativeTensor[];
  v: NativeTensor[];
  lrs: number[];
  wds: number[];
  shadows: (NativeTensor | null)[];
  updated: Moments[];
}

export class AdamW {
  readonly groups: ParamGroup[];
  readonly betas: [number, number];
  readonly eps: number;
  /**
   * the step() calls that updated at least one parameter (a call with no gradient at all does not count); the
   * bias correction uses each parameter's own count, which equals this one while every parameter gets a gradient
   * at every step
   */
  stepCount = 0;
  private lrValue = 0;
  private readonly state = new Map<Tensor, Moments>();

  constructor(params: ParamGroupInput[] | Tensor[], opts: AdamWOptions) {
    // (an option left out or undefined takes its default; null is refused as any other value of the wrong type)
    this.groups = toParamGroups('AdamW', params, opts, opts?.weightDecay === undefined ? 0.01 : opts.weightDecay);
    expectKnownKeys('AdamW', 'options', opts, optionNames<AdamWOptions>({ lr: true, betas: true, eps: true, weightDecay: true }));
    this.lr = opts.lr;
    const betas: unknown = opts.betas === undefined ? [0.9, 0.999] : opts.betas;
    // below 1 in float32, where the step runs (a beta that rounds to 1 there makes every parameter NaN)
    if (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => typeof b === 'number' && b >= 0 && Math.fround(b) < 1))
      throw new Error(`AdamW: betas must be in [0, 1) in float32 (at most 0.99999994; an array [beta1, beta2]), got ${describeItems(betas)}`);
    this.betas = [betas[0], betas[1]];
    this.eps = opts.eps === undefined ? 1e-8 : opts.eps;
    if (!(typeof this.eps === 'number' && this.eps >= 0 && Number.isFinite(this.eps))) throw new Error(`AdamW: eps must be non-negative and finite, got ${this.eps}`);
  }

  /** The base lr (each group's is lr * lrScale); a finite number >= 0, set by the schedule before each step. */
  get lr(): number {
    return this.lrValue;
  }

  set lr(v: number) {
    expectNonNegative('AdamW', 'lr', v);
    this.lrValue = v;
  }

  /**
   * Updates every parameter that has a gradient, in one native call per distinct step count among them (one call
   * when they all have the same, as in training where every parameter gets a gradient at every step).
   */
  step(): void {
    checkGradShapes('AdamW', this.groups);
    const [b1, b2] = this.betas;
    const batches = new Map<number, Batch>();
    const updated: Tensor[] = [];
    const shadowed: Tensor[] = [];
    for (const g of this.groups) {
      const lr = this.lr * (g.lrScale ?? 1);
      for (const p of g.params) {
        if (!p.grad) continue;
        const s = this.moments(p);
        let b = batches.get(s.step + 1);
        if (!b) {
          b = { params: [], grads: [], m: [], v: [], lrs: [], wds: [], shadows: [], updated: [] };
          batches.set(s.step + 1, b);
        }
        b.params.push(p.handle);
        b.grads.push(p.grad.handle);
        b.m.push(s.m.handle);
        b.v.push(s.v.handle);
        b.lrs.push(lr);
        b.wds.push(g.weightDecay);
        b.updated.push(s);
        const sh = shadowToUpdate(p);
        b.shadows.push(sh ? sh.handle : null);
        if (sh) shadowed.push(p);
        updated.push(p);
      }
    }
    if (updated.length === 0) return;
    for (const [step, b] of batches) {
      const anyShadow = b.shadows.some((sh) => sh !== null);
      native.adamwStep(b.params, b.grads, b.m, b.v, b.lrs, b.wds, b1, b2, this.eps, step, anyShadow ? b.shadows : undefined);
      for (const s of b.updated) s.step = step;
    }
    this.stepCount++;
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

  /** Moments and step count by parameter position ('g.i'), plus stepCount and lr: everything a checkpoint needs. */
  stateDict(): { step: number; lr: number; steps: Record<string, number>; tensors: Map<string, Tensor> } {
    const tensors = new Map<string, Tensor>();
    const steps: Record<string, number> = {};
    this.groups.forEach((g, gi) =>
      g.params.forEach((p, pi) => {
        const s = this.state.get(p);
        // (moments made by a step() that then failed have step 0: no state, as before that step)
        if (s && s.step > 0) {
          tensors.set(`${gi}.${pi}.exp_avg`, s.m);
          tensors.set(`${gi}.${pi}.exp_avg_sq`, s.v);
          steps[`${gi}.${pi}`] = s.step;
        }
      }),
    );
    return { step: this.stepCount, lr: this.lr, steps, tensors };
  }

  /**
   * Takes a stateDict (this optimizer's parameters, in the same groups and order). Every key must name a parameter;
   * with `steps`, exactly the parameters it lists must have both moments; without it (an older state), a parameter
   * has both or neither (one that never had a gradient has none), and each with moments gets the global `step`.
   * Checked in full before anything is changed.
   */
  loadStateDict(sd: AdamWState): void {
    const where = 'AdamW.loadStateDict';
    expectObject(where, 'state', sd);
    expectInteger(where, 'step', sd.step, 0);
    expectNonNegative(where, 'lr', sd.lr);
    if (!(sd.tensors instanceof Map)) throw new Error(`${where}: tensors must be a Map of the moments ('<group>.<index>.exp_avg|exp_avg_sq')`);
    expectObject(where, 'steps', sd.steps, true, "step counts by parameter ('<group>.<index>')");
    const positions = new Map<string, Tensor>();
    this.groups.forEach((g, gi) => g.params.forEach((p, pi) => positions.set(`${gi}.${pi}`, p)));
    const unexpected = [...sd.tensors.keys()].filter((k) => {
      const m = /^(\d+\.\d+)\.(exp_avg|exp_avg_sq)$/.exec(k);
      return !m || !positions.has(m[1]!);
    });
    if (sd.steps) unexpected.push(...Object.keys(sd.steps).filter((k) => !positions.has(k)).map((k) => `steps.${k}`));
    if (unexpected.length) throw new Error(`${where}: keys that name no parameter of this optimizer (${positions.size} parameters): ${listed(unexpected)}`);
    const withMoments = [...positions.keys()].filter((k) => sd.tensors.has(`${k}.exp_avg`) || sd.tensors.has(`${k}.exp_avg_sq`));
    // the parameters that must have both moments: those with a step count, or (an older state) those with either
    const expected = sd.steps ? Object.keys(sd.steps) : withMoments;
    if (sd.step > 0 && expected.length === 0) throw new Error(`${where}: the state has no moments, though ${sd.step} steps were taken`);
    const missing = expected.flatMap((k) => [`${k}.exp_avg`, `${k}.exp_avg_sq`].filter((t) => !sd.tensors.has(t)));
    if (missing.length) throw new Error(`${where}: the state has no ${listed(missing)}${sd.steps ? ', though its steps list them' : ', though it has the other moment of that parameter'}`);
    const extra = withMoments.filter((k) => !expected.includes(k));
    if (extra.length) throw new Error(`${where}: moments without a step count in steps: ${listed(extra)}`);
    const stepOf = (k: string) => (sd.steps ? sd.steps[k] : sd.step);
    for (const k of expected) {
      const p = positions.get(k)!;
      expectFinite(where, sd.steps ? `steps.${k}` : `step (that of ${k}, which has moments)`, stepOf(k), (x) => Number.isInteger(x) && x >= 1 && x <= sd.step, `an integer in [1, step = ${sd.step}]`);
      for (const name of ['exp_avg', 'exp_avg_sq']) {
        const t = sd.tensors.get(`${k}.${name}`)!;
        if (!Array.isArray(t.shape) || !sameShape(t.shape, p.shape))
          throw new Error(`${where}: ${k}.${name} is ${Array.isArray(t.shape) ? shapeStr(t.shape) : describeValue(t.shape)}, the parameter is ${shapeStr(p.shape)}`);
        // (the values too: a write that failed half-way through would leave the state part old, part new)
        if (t instanceof Tensor) {
          if (t.disposed) throw new Error(`${where}: ${k}.${name} has been disposed`);
          if (t.dtype === 'int32') throw new Error(`${where}: ${k}.${name} must be float32, got int32`);
        } else if (!(t.data instanceof Float32Array)) {
          throw new Error(`${where}: ${k}.${name}: data must be a Float32Array, got ${describeValue(t.data)}`);
        } else if (t.data.length !== p.size) {
          throw new Error(`${where}: ${k}.${name}: shape ${shapeStr(t.shape)} holds ${p.size} values, its data has ${t.data.length}`);
        }
      }
    }
    for (const [k, p] of positions) {
      if (!expected.includes(k)) {
        this.forget(p);
        continue;
      }
      const m = sd.tensors.get(`${k}.exp_avg`)!;
      const v = sd.tensors.get(`${k}.exp_avg_sq`)!;
      const s = this.moments(p);
      s.m.write(m instanceof Tensor ? m.dataSync() : m.data);
      s.v.write(v instanceof Tensor ? v.dataSync() : v.data);
      s.step = stepOf(k)!;
    }
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
      s = { m: Tensor.zeros(p.shape, 'float32', p.device).keep(), v: Tensor.zeros(p.shape, 'float32', p.device).keep(), step: 0 };
      this.state.set(p, s);
    }
    return s;
  }

  private forget(p: Tensor): void {
    const s = this.state.get(p);
    if (!s) return;
    s.m.dispose();
    s.v.dispose();
    this.state.delete(p);
  }
}

/** 'a, b and 3 more' */
function listed(keys: string[]): string {
  return keys.length > 4 ? `${keys.slice(0, 4).join(', ')} and ${keys.length - 4} more` : keys.join(', ');
}
