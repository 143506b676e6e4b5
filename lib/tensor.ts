/**
 * Tensor: a handle on native storage with a shape and a dtype, plus the autograd fields (requiresGrad, grad, the
 * node that made it). Memory is explicit: `dispose()` frees it now, `tidy(fn)` frees every tensor made inside
 * `fn` except what `fn` returns; a tensor nobody disposes is freed when it is garbage-collected.
 */
import { backward as runBackward, record, type BackwardOptions, type GradNode } from './autograd.js';
import { native, type NativeTensor } from './native.js';
import { describeValue, expectArrayOf, expectInstance, expectKnownKeys, expectObject } from './check.js';

export type DType = 'float32' | 'int32';
/** What a tensor may hold: bfloat16 tensors come from `to(device, 'bfloat16')` and from ops on bfloat16 activations. */
export type TensorDType = DType | 'bfloat16';

/** The scopes opened by `tidy`, innermost last. A tensor belongs to at most one. */
const scopes: Set<Tensor>[] = [];

/** Reads of tensor data to the host so far (see hostReadCount). */
let hostReads = 0;

export class Tensor {
  private h: NativeTensor | null;
  readonly shape: readonly number[];
  readonly dtype: TensorDType;
  /** Leaf tensors with requiresGrad receive `.grad` from `backward()`. */
  requiresGrad = false;
  grad: Tensor | null = null;
  /** The autograd node that produced this tensor (null for leaves and outside recording). */
  node: GradNode | null = null;
  /** The version count, one for all the tensors that view one storage (see view). */
  private versionCount = { n: 0 };
  private scope: Set<Tensor> | null = null;

  /**
   * @internal Counts the times the values were replaced (write, moveTo, an AdamW step), so that copies derived from
   * them (bf16 weight shadows, lib/nn/shadow.ts, also those of an inference worker, lib/infer) can tell they are stale,
   * and backward that values it reads changed. Shared by the tensors that view one storage (reshape, to() without a
   * change): a write through either is a change of both.
   */
  get version(): number {
    return this.versionCount.n;
  }

  set version(v: number) {
    this.versionCount.n = v;
  }

  /** @internal A tensor on `h`, a handle that shares this tensor's storage (a reshape): it shares the version too. */
  view(h: NativeTensor): Tensor {
    const t = new Tensor(h);
    t.versionCount = this.versionCount;
    return t;
  }

  /** Wraps a native handle; the tensor joins the innermost `tidy` scope. */
  constructor(handle: NativeTensor) {
    // a NativeTensor of the addon (or withoutInit's placeholder, which has the same shape of object)
    const h = handle as Partial<NativeTensor> | null;
    if (h === null || typeof h !== 'object' || !Array.isArray(h.shape) || typeof h.dispose !== 'function')
      throw new Error(`Tensor: handle must be a native tensor handle, got ${describeValue(handle)}; make tensors with Tensor.fromArray, Tensor.zeros, Tensor.full or an op`);
    const dtype = handle.dtype;
    if (dtype === null) throw new Error('Tensor: the native handle has been disposed');
    this.h = handle;
    this.shape = Object.freeze(handle.shape.slice());
    this.dtype = dtype;
    const s = scopes[scopes.length - 1];
    if (s) {
      s.add(this);
      this.scope = s;
    }
  }

  /**
   * A tensor holding a copy of `data` in the given shape (float32 unless data is an Int32Array or dtype says), on
   * `device` (default the CPU; made on the CPU, then copied).
   */
  static fromArray(
    data: ArrayLike<number> | Float32Array | Int32Array,
    shape: readonly number[],
    opts: { dtype?: DType; requiresGrad?: boolean; device?: string } = {},
  ): Tensor {
    const typedArray = ArrayBuffer.isView(data) && !(data instanceof DataView);
    if (data instanceof BigInt64Array || data instanceof BigUint64Array || !(typedArray || (typeof data === 'object' && data !== null && typeof data.length === 'number')))
      throw new Error(`Tensor.fromArray: data must be an array of numbers or a typed array of numbers, got ${describeValue(data)}`);
    if (!Array.isArray(shape)) throw new Error(`Tensor.fromArray: shape must be an array of sizes, got ${describeValue(shape)}`);
    if (!typedArray)
      for (let i = 0; i < data.length; i++)
        if (typeof data[i] !== 'number') throw new Error(`Tensor.fromArray: data must hold numbers, got ${describeValue(data[i])} at index ${i}`);
    expectObject('Tensor.fromArray', 'opts', opts);
    expectKnownKeys('Tensor.fromArray', 'opts', opts, ['dtype', 'requiresGrad', 'device']);
    const dtype = opts.dtype === undefined ? (data instanceof Int32Array ? 'int32' : 'float32') : opts.dtype;
    if (dtype !== 'float32' && dtype !== 'int32') throw new Error(`Tensor.fromArray: dtype must be 'float32' or 'int32', got ${describeValue(dtype)}`);
    if (opts.device !== undefined) expectDevice('Tensor.fromArray', opts.device);
    if (opts.requiresGrad !== undefined && typeof opts.requiresGrad !== 'boolean')
      throw new Error(`Tensor.fromArray: requiresGrad must be true or false, got ${describeValue(opts.requiresGrad)}`);
    if (dtype === 'int32' && !(data instanceof Int32Array))
      for (let i = 0; i < data.length; i++) {
        const v = data[i]!;
        if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff)
          throw new Error(`Tensor.fromArray: int32 data must hold integers in the int32 range, got ${v} at index ${i}`);
      }
    const typed =
      dtype === 'int32'
        ? data instanceof Int32Array
          ? data
          : Int32Array.from(data)
        : data instanceof Float32Array
          ? data
          : Float32Array.from(data);
    const t = new Tensor(onDevice(native.fromArray(typed, shape.slice()), opts.device));
    if (opts.requiresGrad) t.requiresGrad = true;
    return t;
  }

  /** A tensor of `shape` filled with `value`, on `device` (default the CPU). */
  static full(shape: readonly number[], value: number, dtype: DType = 'float32', device?: string): Tensor {
    if (typeof value !== 'number') throw new Error(`Tensor.full: value must be a number, got ${describeValue(value)}`);
    return filled('Tensor.full', shape, value, dtype, device);
  }

  static zeros(shape: readonly number[], dtype: DType = 'float32', device?: string): Tensor {
    return filled('Tensor.zeros', shape, 0, dtype, device);
  }

  static ones(shape: readonly number[], device?: string): Tensor {
    return filled('Tensor.ones', shape, 1, 'float32', device);
  }

  /** The native handle; throws if the tensor has been disposed. */
  get handle(): NativeTensor {
    if (!this.h || this.h.disposed) throw new Error(`Tensor ${shapeStr(this.shape)} has been disposed`);
    return this.h;
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get disposed(): boolean {
    return !this.h || this.h.disposed;
  }

  get device(): string {
    return this.handle.device ?? 'cpu';
  }

  /**
   * This tensor on `device` ('cpu', 'cuda', 'cuda:N'), optionally in another dtype (float32 <-> bfloat16; ops take
   * bfloat16 activations, CUDA ops wherever they take float32). Throws an Error that says why when CUDA is unavailable. When neither
   * device nor dtype changes, the result shares this tensor's storage. Differentiable: the gradient goes back to
   * this tensor's device and dtype.
   */
  to(device: string, dtype?: TensorDType): Tensor {
    expectDevice('Tensor.to', device);
    if (dtype !== undefined && dtype !== 'float32' && dtype !== 'bfloat16' && dtype !== 'int32')
      throw new Error(`Tensor.to: dtype must be 'float32', 'bfloat16' or 'int32', got ${describeValue(dtype)}`);
    const from = this.device;
    const fromType = this.dtype;
    const h = native.to(this.handle, device, dtype);
    // (the same device and dtype: h shares this tensor's storage)
    const y = h.device === this.handle.device && h.dtype === fromType ? this.view(h) : new Tensor(h);
    return record('to', [this], y, (dy) => [new Tensor(native.to(dy.handle, from, fromType))]);
  }

  /**
   * @internal Moves this tensor's storage to `device` in place (same object, dtype, requiresGrad; its gradient
   * moves too). For Module.to: parameters are referenced by modules and optimizers, so they keep their identity.
   * Not recorded by autograd.
   */
  moveTo(device: string): void {
    const h = this.handle;
    if ((h.device ?? 'cpu') === device) return;
    const moved = native.to(h, device);
    if (moved.device === h.device) {
      // the same device under another name ('cuda' and 'cuda:0'): the result shares the storage
      moved.dispose();
      return;
    }
    h.dispose();
    this.h = moved;
    this.version++;
    if (this.grad) this.grad.moveTo(device);
  }

  /**
   * @internal Gives this tensor the storage of `h` (same shape and dtype) and frees its own: for a model whose
   * parameters live in another thread (lib/infer). Same object, requiresGrad kept; not recorded by autograd.
   */
  adoptHandle(h: NativeTensor): void {
    if (h.shape.join(',') !== this.shape.join(',') || h.dtype !== this.dtype)
      throw new Error(`Tensor.adoptHandle: a ${h.dtype} ${shapeStr(h.shape)} tensor cannot back a ${this.dtype} ${shapeStr(this.shape)} one`);
    this.h?.dispose();
    this.h = h;
  }

  /** A copy of the elements as a Float32Array (int32 tensors are converted), read asynchronously. */
  async data(): Promise<Float32Array> {
    hostReads++;
    const d = await this.handle.readAsync();
    return d instanceof Float32Array ? d : Float32Array.from(d);
  }

  /** A copy of the elements, read now. */
  dataSync(): Float32Array {
    hostReads++;
    const d = this.handle.read();
    return d instanceof Float32Array ? d : Float32Array.from(d);
  }

  /** int32 tensors: a copy of the elements as an Int32Array. */
  intDataSync(): Int32Array {
    hostReads++;
    const d = this.handle.read();
    if (!(d instanceof Int32Array)) throw new Error(`Tensor.intDataSync: tensor ${shapeStr(this.shape)} is ${this.dtype}`);
    return d;
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new Error(`Tensor.item: tensor ${shapeStr(this.shape)} has ${this.size} elements, not 1`);
    return this.dataSync()[0]!;
  }

  /** Overwrites the elements with `data` (same length and dtype). */
  write(data: Float32Array | Int32Array): void {
    if (!(data instanceof Float32Array || data instanceof Int32Array))
      throw new Error(`Tensor.write: data must be a Float32Array or Int32Array, got ${describeValue(data)}`);
    this.handle.write(data);
    this.version++;
  }

  /** Frees the storage now (shared views keep it alive) and the gradient this tensor owns. */
  dispose(): void {
    if (this.h) {
      this.h.dispose();
      this.h = null;
    }
    this.grad?.dispose();
    this.grad = null;
    this.node = null;
    this.untrack();
  }

  /**
   * Runs backpropagation from this tensor; a non-scalar tensor needs the incoming gradient. `opts.onGradReady` hears
   * of each leaf as soon as its gradient is final (see autograd.ts).
   */
  backward(grad?: Tensor, opts?: BackwardOptions): void {
    runBackward(this, grad, opts);
  }

  /** Removes this tensor from its tidy scope so that the scope's end does not dispose it. */
  keep(): this {
    this.untrack();
    return this;
  }

  private untrack(): void {
    this.scope?.delete(this);
    this.scope = null;
  }

  /** @internal moves the tensor into a scope (tidy's result moves to the enclosing scope) */
  adopt(scope: Set<Tensor> | null): void {
    this.untrack();
    if (scope) {
      scope.add(this);
      this.scope = scope;
    }
  }

  toString(): string {
    return `Tensor(${shapeStr(this.shape)}, ${this.dtype}${this.disposed ? ', disposed' : ''})`;
  }
}

/** h on `device` (h itself when device is absent or h's own; otherwise a copy, and h is freed). */
function onDevice(h: NativeTensor, device: string | undefined): NativeTensor {
  if (device === undefined || device === (h.device ?? 'cpu')) return h;
  try {
    return native.to(h, device);
  } finally {
    h.dispose();
  }
}

/** A device name of `where`: 'cpu', 'cuda' or 'cuda:N', N < 100 as the addon reads it (whether it can be used is its to say). */
function expectDevice(where: string, device: unknown): void {
  if (typeof device !== 'string' || !/^(cpu|cuda|cuda:\d{1,2})$/.test(device))
    throw new Error(`${where}: device must be 'cpu', 'cuda' or 'cuda:N' (N < 100), got ${describeValue(device)}`);
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Whether two shapes are the same dimensions. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * An op's Tensor arguments, checked by name before any is used: anything but a live Tensor (null, a number, a
 * NativeTensor, a disposed Tensor) is an Error that names the op and the argument. `optional` ones may be null.
 */
export function expectTensors(op: string, tensors: Record<string, unknown>, optional: Record<string, unknown> = {}): void {
  const check = (name: string, v: unknown, what: string) => {
    if (!(v instanceof Tensor)) throw new Error(`${op}: ${name} must be ${what}, got ${describeValue(v)}`);
    if (v.disposed) throw new Error(`${op}: ${name} ${shapeStr(v.shape)} has been disposed`);
  };
  for (const [name, v] of Object.entries(tensors)) check(name, v, 'a Tensor');
  for (const [name, v] of Object.entries(optional)) if (v !== null) check(name, v, 'a Tensor or null');
}

/** Tensor.full and its zeros and ones: `shape` checked once, in the name of the one called (`where`). */
function filled(where: string, shape: readonly number[], value: number, dtype: DType, device: string | undefined): Tensor {
  expectArrayOf(where, 'shape', shape, (n) => typeof n === 'number', 'a number');
  if (dtype !== 'float32' && dtype !== 'int32') throw new Error(`${where}: dtype must be 'float32' or 'int32', got ${describeValue(dtype)}`);
  if (device !== undefined) expectDevice(where, device);
  return new Tensor(onDevice(native.full(shape.slice(), value, dtype), device));
}

/** Keeps `t` past the end of the enclosing `tidy`. */
export function keep<T extends Tensor>(t: T): T {
  expectInstance('keep', 'tensor', t, Tensor, 'a Tensor');
  return t.keep();
}

/**
 * Runs `fn` and disposes every tensor created inside it, except the tensors it returns (a tensor, or an array or
 * plain object of them), which move to the enclosing scope. `fn` must be synchronous.
 */
export function tidy<R>(fn: () => R): R {
  if (typeof fn !== 'function') throw new Error(`tidy: fn must be a function, got ${describeValue(fn)}`);
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: R;
  try {
    result = fn();
  } catch (e) {
    for (const t of [...scope]) t.dispose();
    throw e;
  } finally {
    scopes.pop();
  }
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new Error('tidy: the function must be synchronous (it returned a Promise)');
  }
  const parent = scopes[scopes.length - 1] ?? null;
  const kept = new Set<Tensor>();
  collect(result, kept);
  // only this scope's tensors move up; a returned tensor from an outer scope (or from none) stays where it is
  for (const t of kept) if (scope.has(t)) t.adopt(parent);
  for (const t of [...scope]) if (!kept.has(t)) t.dispose();
  return result;
}

/** Something held until its dispose(): native memory (a Tensor, a Module, an optimizer), a run folder's lock. */
export interface Disposable {
  dispose(): void;
}

/** Hands x to the enclosing `owning` job, which disposes it when the job ends; returns x. */
export type Keep = <D extends Disposable>(x: D) => D;

/**
 * Runs the asynchronous job `fn` and disposes, in reverse order, everything it passed to `keep`, however it ends
 * (returned or thrown): for long jobs (a training run) whose models and optimizer state must not outlive them.
 */
export async function owning<R>(fn: (keep: Keep) => Promise<R>): Promise<R> {
  const owned: Disposable[] = [];
  try {
    return await fn((x) => {
      owned.push(x);
      return x;
    });
  } finally {
    for (const x of owned.reverse()) x.dispose();
  }
}

function collect(v: unknown, out: Set<Tensor>): void {
  if (v instanceof Tensor) out.add(v);
  else if (Array.isArray(v)) for (const x of v) collect(x, out);
  else if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype)
    for (const x of Object.values(v)) collect(x, out);
}

/**
 * How many times tensor data has been read to the host in this process (dataSync, intDataSync, item, data). On a GPU
 * each read waits for the device, so a training step reads one value, its loss, after the optimizer step.
 */
export function hostReadCount(): number {
  return hostReads;
}

/** Number of native tensor handles alive in this process (for leak tests). */
export function liveTensors(): number {
  return native.liveTensors();
}
