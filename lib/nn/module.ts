/**
 * Module: a tree of named parameters, as torch.nn.Module. Names join with '.', so a model's names are the official
 * state_dict names. Parameters are tensors that live outside any tidy scope (they are kept); a parameter with
 * requiresGrad false (the fixed position tables) is stored in the state dict but never optimised.
 */
import { Tensor, sameShape, shapeStr } from '../tensor.js';
import { describeValue, expectArrayOf, expectKnownKeys, expectObject, expectString } from '../check.js';
import { disposeShadow } from './shadow.js';

/** The state dict argument of `where` (loadStateDict, loadEncoder): a Map from parameter names to values. */
export function expectStateMap(where: string, state: unknown): void {
  if (!(state instanceof Map)) throw new Error(`${where}: state must be a Map from parameter names to Tensors or { shape, data } records, got ${describeValue(state)}`);
}

export abstract class Module {
  private readonly params = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();
  training = true;

  /** Registers a parameter under `name`; trainable unless `requiresGrad` is false. */
  protected param(name: string, t: Tensor, requiresGrad = true): Tensor {
    t.keep();
    t.requiresGrad = requiresGrad;
    this.params.set(name, t);
    return t;
  }

  protected module<M extends Module>(name: string, m: M): M {
    this.children.set(name, m);
    return m;
  }

  /** Every parameter with its full name, in registration order (fixed tables included, with requiresGrad false). */
  namedParameters(prefix = ''): [string, Tensor][] {
    expectString('namedParameters', 'prefix', prefix);
    const out: [string, Tensor][] = [];
    for (const [n, p] of this.params) out.push([prefix + n, p]);
    // one push per entry: a child's list spread into push() overflows the stack past ~120,000 entries
    for (const [n, m] of this.children) for (const entry of m.namedParameters(`${prefix}${n}.`)) out.push(entry);
    return out;
  }

  /** Trainable parameters. */
  parameters(): Tensor[] {
    return this.namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([, p]) => p);
  }

  /** Each parameter's Tensor.version, in namedParameters' order: a mark for changedSince. */
  versions(): number[] {
    return this.namedParameters().map(([, p]) => p.version);
  }

  /** The name of a parameter whose values changed (Tensor.version) since `versions` (from versions()), or null. */
  changedSince(versions: readonly number[]): string | null {
    expectArrayOf('changedSince', 'versions', versions, (v) => typeof v === 'number', 'a number (from versions())');
    return this.namedParameters().find(([, p], i) => p.version !== versions[i])?.[0] ?? null;
  }

  /** name -> tensor for every parameter (the tensors themselves, not copies). */
  stateDict(): Map<string, Tensor> {
    return new Map(this.namedParameters());
  }

  /**
   * Copies values into the parameters by name. Values are tensors or { shape, data } records (as read from a
   * safetensors file). Strict (the default) requires every parameter and no extra name; every problem is listed in
   * one error: missing, unexpected and mis-shaped keys.
   */
  loadStateDict(
    state: Map<string, Tensor | { shape: readonly number[]; data: Float32Array }>,
    opts: { strict?: boolean } = {},
  ): { missing: string[]; unexpected: string[] } {
    expectStateMap('loadStateDict', state);
    expectObject('loadStateDict', 'opts', opts);
    expectKnownKeys('loadStateDict', 'opts', opts, ['strict']);
    const strict = opts.strict === undefined ? true : opts.strict;
    if (typeof strict !== 'boolean') throw new Error(`loadStateDict: strict must be true or false, got ${describeValue(strict)}`);
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !state.has(k));
    const unexpected = [...state.keys()].filter((k) => !own.has(k));
    const misshaped: string[] = [];
    const unreadable: string[] = [];
    for (const [k, v] of state) {
      const p = own.get(k);
      if (!p) continue;
      if (!(v instanceof Tensor) && (v === null || typeof v !== 'object' || !Array.isArray(v.shape)))
        unreadable.push(`${k}: must be a Tensor or a { shape, data } record, got ${describeValue(v)}`);
      else if (!sameShape(p.shape, v.shape)) misshaped.push(`${k}: expected ${shapeStr(p.shape)}, got ${shapeStr(v.shape)}`);
      else if (v instanceof Tensor) {
        if (v.disposed) unreadable.push(`${k}: the tensor has been disposed`);
      } else if (!(v.data instanceof Float32Array)) unreadable.push(`${k}: data must be a Float32Array, got ${describeValue(v.data)}`);
      else if (v.data.length !== p.size) unreadable.push(`${k}: shape ${shapeStr(v.shape)} holds ${p.size} values, its data has ${v.data.length}`);
    }
    // all checked before the first write, so that a state dict that does not fit leaves the model as it was
    const problems: string[] = [];
    if (misshaped.length) problems.push(`mis-shaped keys:\n  ${misshaped.join('\n  ')}`);
    if (unreadable.length) problems.push(`unreadable values:\n  ${unreadable.join('\n  ')}`);
    if (strict && missing.length) problems.push(`missing keys:\n  ${missing.join('\n  ')}`);
    if (strict && unexpected.length) problems.push(`unexpected keys:\n  ${unexpected.join('\n  ')}`);
    if (problems.length) throw new Error(`loadStateDict: the state dict does not fit this model\n${problems.join('\n')}`);
    for (const [k, v] of state) {
      const p = own.get(k);
      if (!p) continue;
      p.write(v instanceof Tensor ? v.dataSync() : v.data);
    }
    return { missing, unexpected };
  }

  /**
   * Moves every parameter (and its gradient) to `device` ('cpu', 'cuda', 'cuda:N') in place: the parameters keep
   * their names, identity, dtype and requiresGrad, so optimizers made before still hold them (their state tensors
   * are not moved). Throws why when CUDA is unavailable. A no-op for parameters already there.
   */
  to(device: string): this {
    for (const [, p] of this.namedParameters()) {
      disposeShadow(p);
      p.moveTo(device);
    }
    return this;
  }

  /** The device of the first parameter ('cpu' for a module without parameters). */
  get device(): string {
    const first = this.namedParameters()[0];
    return first ? first[1].device : 'cpu';
  }

  /** Drops every parameter's gradient. */
  zeroGrad(): void {
    for (const [, p] of this.namedParameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  train(on = true): this {
    if (typeof on !== 'boolean') throw new Error(`train: on must be true or false, got ${describeValue(on)}`);
    this.training = on;
    for (const m of this.children.values()) m.train(on);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Frees every parameter (and gradient, and bf16 shadow). */
  dispose(): void {
    for (const [, p] of this.namedParameters()) {
      disposeShadow(p);
      p.dispose();
    }
  }

  numParameters(trainableOnly = true): number {
    if (typeof trainableOnly !== 'boolean') throw new Error(`numParameters: trainableOnly must be true or false, got ${describeValue(trainableOnly)}`);
    return this.namedParameters()
      .filter(([, p]) => !trainableOnly || p.requiresGrad)
      .reduce((s, [, p]) => s + p.size, 0);
  }
}

/** An indexed list of modules, named '0', '1', ... as torch.nn.ModuleList. */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    expectArrayOf('ModuleList', 'items', items, (m) => m instanceof Module, 'a Module');
    this.items = items;
    items.forEach((m, i) => this.module(String(i), m));
  }
}
