/**
 * Inference off the JavaScript thread: MaskedAutoencoder.embedAsync and VisionTransformerClassifier.forwardAsync.
 *
 * Each model gets one worker thread (started at its first call) that runs the same TypeScript forward pass as the
 * synchronous methods, on the same kernels, over the SAME native parameter storage: the parameters are handed to
 * the worker by reference (bindings/share.cpp: a process-wide table of reference-counted storages), never copied,
 * so the weights exist once and the results are bit for bit those of embed / forward. The images are copied once
 * (the caller may change or free its own meanwhile) and the result comes back the same way, without a copy.
 *
 * The worker reads the weights where they are, so a call in flight when any of them changes (Tensor.version: an
 * optimizer step, loadStateDict, write) rejects instead of resolving to a mix of old and new weights.
 *
 * Calls are queued: the worker takes them one at a time, in order. A failing call rejects its promise; a worker that
 * dies rejects every pending call and is started again by the next one. Every rejection, also one of a call ended by
 * dispose() or by the worker's end, is an Error of its own, named as the async call, with the stack of its caller. Nothing is left behind: an idle worker holds no
 * reference to the model, is unref'd (it never keeps the process alive), and is terminated by the model's dispose()
 * or when the model is garbage-collected; table entries of calls that never complete are dropped. A call in flight
 * holds its model (through `busy`), so a model that only the caller's pending promise stands for is not collected
 * before the call settles: the worker is stopped on collection only when nothing is pending.
 *
 * Why a worker and not Node-API async work on the libuv pool: the forward pass is orchestrated in TypeScript (the
 * ops are native, the model graph is not), so async native work would need a second, C++ copy of every model's
 * forward pass; a worker over shared storage runs the one definition there is, keeps one copy of the weights, costs
 * one thread start per model (tens of milliseconds, once) and a message round trip per call (well under a
 * millisecond), against forward passes of tens of milliseconds and more. Models on a CUDA device are not moved to a
 * worker: their kernels already run on the GPU while JavaScript only queues them, so the call runs here. Nor are
 * models of a subclass: the worker builds the library's class from the config, which would not run the subclass's code.
 */
import { expectInstance } from '../check.js';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { noGrad } from '../autograd.js';
import { native, type NativeTensor } from '../native.js';
import { checkPrecision, toFloat32, type Precision } from '../mae/precision.js';
import type { Module } from '../nn/module.js';
import { Tensor, tidy } from '../tensor.js';

/** Which model class the worker builds, and which of its methods a call runs. */
export type InferenceKind = 'mae' | 'classifier';
export type InferenceOp = 'embed' | 'forward';

/** A model the worker can rebuild: its class, its config, its parameters; the op run on this thread (CUDA). */
export interface AsyncModel extends Module {
  readonly config: object;
  embed?(imgs: Tensor, opts?: { precision?: Precision }): Tensor;
  forward(imgs: Tensor, opts?: { precision?: Precision }): unknown;
}

export interface WorkerInit {
  kind: InferenceKind;
  config: object;
  /** the parameters, by name, as ids of the shared-tensor table */
  params: { name: string; id: number }[];
  /** their Tensor.version when they were shared */
  versions: number[];
  threads: number;
  /** the envId of the caller's thread, which owns the shared results until it takes them */
  owner: number;
}

/** `versions`: each parameter's Tensor.version at the call, so that the worker's copies of changed ones are remade */
export type WorkerRequest = { id: number; op: InferenceOp; imagesId: number; precision: Precision; versions: number[] };
export type WorkerReply =
  | { type: 'ready' }
  | { type: 'fatal'; message: string }
  | { type: 'result'; id: number; resultId: number }
  | { type: 'error'; id: number; message: string };

interface Pending {
  resolve: (t: Tensor) => void;
  reject: (e: Error) => void;
  imagesId: number;
  /** the model the call runs, held until the call settles so that it is not garbage-collected meanwhile */
  model: AsyncModel;
  op: InferenceOp;
  /** its parameters' Tensor.version at the call: any other at the result means the weights changed meanwhile */
  versions: number[];
  /** made at the call: the stack an error of the call shows is the caller's */
  callSite: Error;
}

/** An Error with `message` and the stack of `callSite` (where the call was made, not the worker's message handler). */
function atCallSite(message: string, callSite: Error): Error {
  const e = new Error(message);
  e.stack = `Error: ${message}\n${(callSite.stack ?? '').split('\n').slice(1).join('\n')}`;
  return e;
}

const workerUrl = new URL('./worker.js', import.meta.url);

/** The worker of one model: the thread, its calls in flight, and the parameter handles it was given. */
class InferenceWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private next = 1;
  /** why the worker was stopped (a call's rejection says it after `embedAsync: `), null while it runs */
  private stopped: string | null = null;
  /** the model's parameter handles when they were shared; another handle now means the model changed storage */
  readonly handles: NativeTensor[];

  constructor(model: AsyncModel, kind: InferenceKind) {
    const named = model.namedParameters();
    this.handles = named.map(([, p]) => p.handle);
    const params = named.map(([name, p]) => ({ name, id: native.shareTensor(p.handle) }));
    const init: WorkerInit = { kind, config: model.config, params, versions: model.versions(), threads: native.info().threads, owner: native.envId() };
    const dropParams = () => params.forEach((p) => native.dropTensor(p.id));
    // no Node flags of the parent's: some stop a worker (--input-type), others are refused in one (--expose-gc), and
    // the compiled worker needs none
    this.worker = new Worker(workerUrl, { workerData: init, execArgv: [] });
    this.worker.on('message', (m: WorkerReply) => {
      if (m.type === 'ready') dropParams();
      else if (m.type === 'fatal') this.stop(`the inference worker could not build the model: ${m.message}`);
      else this.settle(m);
    });
    this.worker.on('error', (e) => this.stop(`the inference worker failed: ${e.message}`));
    this.worker.on('exit', (code) => {
      dropParams();
      this.stop(`the inference worker exited (code ${code}) before answering the call`);
    });
    this.worker.unref(); // after the listeners: adding a 'message' listener refs the worker's port again
  }

  get alive(): boolean {
    return this.stopped === null;
  }

  run(model: AsyncModel, op: InferenceOp, images: Tensor, precision: Precision, versions: number[]): Promise<Tensor> {
    if (this.stopped) return Promise.reject(atCallSite(`${op}Async: ${this.stopped}`, new Error()));
    const copy = native.clone(images.handle);
    const imagesId = native.shareTensor(copy);
    copy.dispose();
    const id = this.next++;
    const callSite = new Error();
    return new Promise<Tensor>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, imagesId, model, op, versions, callSite });
      busy.add(this);
      this.worker.ref();
      this.worker.postMessage({ id, op, imagesId, precision, versions } satisfies WorkerRequest);
    });
  }

  private settle(m: Extract<WorkerReply, { id: number }>): void {
    const p = this.pending.get(m.id);
    if (m.type === 'result' && !p) native.dropTensor(m.resultId);
    if (!p) return;
    this.pending.delete(m.id);
    native.dropTensor(p.imagesId);
    if (this.pending.size === 0) this.idle();
    // the worker's errors name the synchronous method (embed: ..., classifier: ...): the call was embedAsync or forwardAsync
    if (m.type === 'error') return p.reject(atCallSite(`${p.op}Async: ${m.message.replace(/^(embed|classifier): /, '')}`, p.callSite));
    const result = new Tensor(native.takeTensor(m.resultId));
    // the worker reads the weights where they are: a change while the call was queued or ran (an optimizer step,
    // loadStateDict, write) could give a result of neither the old weights nor the new ones
    const changed = p.model.changedSince(p.versions);
    if (changed === null) return p.resolve(result);
    result.dispose();
    p.reject(atCallSite(`${p.op}Async: the model's weights changed while the call was in flight (${changed} and maybe others: an optimizer step, loadStateDict or write), so its result could mix old and new weights; await the calls in flight before changing the weights, or run them on a copy of the model`, p.callSite));
  }

  /** Rejects every call in flight, each with an Error `<op>Async: <why>` at its caller's stack, and ends the thread. */
  stop(why: string): void {
    if (!this.stopped) this.stopped = why;
    for (const p of this.pending.values()) {
      native.dropTensor(p.imagesId);
      p.reject(atCallSite(`${p.op}Async: ${why}`, p.callSite));
    }
    this.pending.clear();
    this.idle();
    void this.worker.terminate();
  }

  /** No call in flight: the worker no longer keeps the process, nor (through `busy`) its model, alive. */
  private idle(): void {
    busy.delete(this);
    this.worker.unref();
  }
}

/** The workers with calls in flight; each pending call holds its model, so these models are not collected. */
const busy = new Set<InferenceWorker>();

const workers = new WeakMap<Module, InferenceWorker>();
/** Ends the worker of a model that was garbage-collected without dispose(); that happens only with no call in flight (`busy`). */
const collected = new FinalizationRegistry<InferenceWorker>((w) => w.stop('the model was garbage-collected'));

/**
 * Why the worker, which builds the library's own class from the config, would not run `model`'s code: the model is
 * of a subclass of `base` (its constructor and methods run only here), or a method of `base` was replaced on the
 * object itself. null when it would.
 */
function ownCodeOf(model: AsyncModel, base: { prototype: object; name: string }): string | null {
  const proto = Object.getPrototypeOf(model) as object;
  if (proto !== base.prototype) return `its class ${proto.constructor.name || '(anonymous)'} is a subclass of ${base.name}`;
  const replaced = Object.keys(model).filter((k) => typeof Object.getOwnPropertyDescriptor(base.prototype, k)?.value === 'function');
  return replaced.length ? `its ${replaced.join(', ')} ${replaced.length === 1 ? 'was' : 'were'} replaced on the object` : null;
}

/** the classes (or replaced-method models) already warned about running on the calling thread */
const warnedOwnCode = new Set<string>();

/**
 * Runs `op` ('embed' or 'forward', in eval mode without gradient) of `model` on `images` in the model's worker
 * thread; resolves to the result, a tensor of this thread, equal to what the synchronous method returns. `base` is
 * the library class the worker builds: a model of a subclass of it (or with a method replaced) runs on this thread
 * instead, with a warning once per reason, so that its own code is what runs. So does a model on a CUDA device.
 */
export async function runAsync(model: AsyncModel, kind: InferenceKind, op: InferenceOp, images: Tensor, precision: Precision, base: { prototype: object; name: string }): Promise<Tensor> {
  expectInstance(`${op}Async`, 'images', images, Tensor, 'a Tensor [B, C, H, W]', 'Tensor.fromArray(data, shape) makes one');
  checkPrecision(precision, `${op}Async`);
  // (else the first parameter read says "Tensor [1, 1, D] has been disposed", naming neither the call nor the model)
  if (model.parameters().some((p) => p.disposed)) throw new Error(`${op}Async: the model was disposed (dispose() frees its parameters); make a new one`);
  const ownCode = ownCodeOf(model, base);
  if (ownCode && !warnedOwnCode.has(ownCode)) {
    warnedOwnCode.add(ownCode);
    process.emitWarning(
      `${op}Async: ${ownCode}; its worker thread would build ${base.name} itself and not run that code, so ${op}Async runs ${op}() on the calling thread (it blocks the event loop while it runs)`,
      { code: 'MAE_ASYNC_ON_CALLING_THREAD' },
    );
  }
  if (model.device !== 'cpu' || ownCode) {
    // as in the worker: eval mode (no drop path, BatchNorm statistics frozen), the model's mode restored after
    const wasTraining = model.training;
    model.eval();
    try {
      return noGrad(() => tidy(() => (op === 'embed' ? model.embed!(images, { precision }) : toFloat32(model.forward(images, { precision }) as Tensor))));
    } finally {
      model.train(wasTraining);
    }
  }
  if (!existsSync(fileURLToPath(workerUrl)))
    throw new Error(`${op}Async: ${fileURLToPath(workerUrl)} is missing; worker threads need the compiled package (npm run build)`);
  let w = workers.get(model);
  const params = model.namedParameters();
  if (w && (!w.alive || w.handles.length !== params.length || params.some(([, p], i) => p.handle !== w!.handles[i]))) {
    // the worker died, or the model's parameters were given other storage (moved, replaced): start again
    w.stop("the model's parameters were given other storage (moved to another device, or replaced) while the call was in flight");
    collected.unregister(w);
    w = undefined;
  }
  if (!w) {
    w = new InferenceWorker(model, kind);
    workers.set(model, w);
    collected.register(model, w, w);
  }
  return w.run(model, op, images, precision, model.versions());
}

/** Ends the worker of `model`, if it has one; calls in flight reject. */
export function closeAsync(model: Module): void {
  const w = workers.get(model);
  if (!w) return;
  workers.delete(model);
  collected.unregister(w);
  w.stop('the model was disposed (dispose()) while the call was in flight');
}
