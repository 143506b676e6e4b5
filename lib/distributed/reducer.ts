/**
 * Gradient averaging for data-parallel training, overlapped with backward (as PyTorch's DistributedDataParallel):
 *
 *   const reducer = new GradReducer(comm, model.parameters());
 *   loss.backward(undefined, { onGradReady: reducer.onGradReady });  // buckets start as their gradients are final
 *   const stats = reducer.finish();                                  // every .grad is now the mean over the ranks
 *   optimizer.step();
 *
 * The parameters are cut into buckets in reverse registration order (about the order backward finishes their
 * gradients): a small first bucket (1 MiB), so that communication starts early, then buckets of about 25 MiB (a
 * tensor larger than that gets one of its own). autograd tells `onGradReady` when a parameter's gradient is final
 * (its last use in the graph has been walked); a bucket starts when all of its parameters are ready, and buckets start
 * strictly in order, so every rank issues the same collectives in the same order. `finish` starts what is left (a
 * parameter that received no gradient is left out of its bucket, the same on every rank, since every rank runs the
 * same graph) and waits for all of them.
 *
 * `finish` also says how much of the communication was hidden behind backward: the communication thread's busy time
 * (the union of its buckets' [start, end]) against the time this thread then had to wait for it.
 */
import { expectArrayOf, expectNumber, expectObject, expectOptions } from '../check.js';
import { Tensor } from '../tensor.js';
import { expectCommunicator, type Communicator } from './comm.js';

export interface GradReducerOptions {
  /** bytes of gradients per bucket (default 25 MiB) */
  bucketBytes?: number;
  /** bytes of the first bucket (default 1 MiB) */
  firstBucketBytes?: number;
  /** average CUDA gradients in bfloat16 (half the bytes); CPU gradients are always float32 */
  bf16?: boolean;
  /** named in error messages, e.g. 'step 12' */
  label?: () => string;
}

export interface ReduceStats {
  buckets: number;
  /** gradient bytes this rank sent into the all-reduces (float32: 4 per element, bf16: 2) */
  bytes: number;
  /** milliseconds the communication thread worked on this step's buckets (union of their intervals) */
  commMs: number;
  /** milliseconds this thread waited in finish() for them after backward */
  exposedMs: number;
  /** (commMs - exposedMs) / commMs: the share of communication hidden behind backward (0 when there was none) */
  hiddenShare: number;
}

export class GradReducer {
  /** the parameters of each bucket, in the order the buckets are reduced */
  readonly buckets: Tensor[][];
  private readonly comm: Communicator;
  private readonly bucketOf = new Map<Tensor, number>();
  private readonly bf16: boolean;
  private readonly label: () => string;
  private ready: number[] = [];
  private next = 0;
  private tickets: number[] = [];

  constructor(comm: Communicator, params: Tensor[], opts: GradReducerOptions = {}) {
    expectCommunicator('GradReducer', 'comm', comm);
    expectArrayOf('GradReducer', 'params', params, (p) => p instanceof Tensor, 'a Tensor');
    expectObject('GradReducer', 'opts', opts);
    expectOptions('GradReducer', opts, { bucketBytes: 'number', firstBucketBytes: 'number', bf16: 'boolean', label: 'function' });
    this.comm = comm;
    this.bf16 = opts.bf16 ?? false;
    this.label = opts.label ?? (() => 'a step');
    const cap = opts.bucketBytes ?? 25 * 2 ** 20;
    const first = opts.firstBucketBytes ?? 2 ** 20;
    expectNumber('GradReducer', 'bucketBytes', cap, true);
    expectNumber('GradReducer', 'firstBucketBytes', first, true);
    const elementBytes = this.bf16 ? 2 : 4;
    this.buckets = [];
    let bucket: Tensor[] = [];
    let bytes = 0;
    for (const p of [...params].reverse()) {
      if (!p.requiresGrad) continue;
      const b = p.size * elementBytes;
      const limit = this.buckets.length === 0 ? first : cap;
      if (bucket.length > 0 && bytes + b > limit) {
        this.buckets.push(bucket);
        bucket = [];
        bytes = 0;
      }
      bucket.push(p);
      bytes += b;
    }
    if (bucket.length > 0) this.buckets.push(bucket);
    this.buckets.forEach((ps, i) => ps.forEach((p) => this.bucketOf.set(p, i)));
    this.reset();
  }

  /** For backward's onGradReady: `t`'s gradient is final; starts every bucket, in order, whose gradients all are. */
  readonly onGradReady = (t: Tensor): void => {
    const i = this.bucketOf.get(t);
    if (i === undefined) return;
    this.ready[i]!--;
    while (this.next < this.buckets.length && this.ready[this.next] === 0) this.launch(this.next++);
  };

  /** Starts the buckets not started yet, waits for every bucket: each parameter's .grad is then the mean over the ranks. */
  finish(): ReduceStats {
    while (this.next < this.buckets.length) this.launch(this.next++);
    const t0 = performance.now();
    const spans: [number, number][] = [];
    let bytes = 0;
    try {
      for (const t of this.tickets) spans.push(this.comm.wait(t));
    } finally {
      this.reset();
    }
    const exposedMs = performance.now() - t0;
    for (const ps of this.buckets) for (const p of ps) if (p.grad) bytes += p.size * (this.bf16 ? 2 : 4);
    const commMs = unionMs(spans);
    return { buckets: spans.length, bytes, commMs, exposedMs, hiddenShare: commMs > 0 ? Math.max(0, (commMs - exposedMs) / commMs) : 0 };
  }

  private launch(i: number): void {
    const grads = this.buckets[i]!.flatMap((p) => (p.grad ? [p.grad] : []));
    if (grads.length === 0) return;
    const what = `the all-reduce of gradient bucket ${i + 1} of ${this.buckets.length} (${this.label()})`;
    this.tickets.push(this.comm.allreduceGrads(grads, { bf16: this.bf16, what }));
  }

  private reset(): void {
    this.ready = this.buckets.map((ps) => ps.length);
    this.next = 0;
    this.tickets = [];
  }
}

/** The total length of the union of intervals. */
function unionMs(spans: [number, number][]): number {
  const s = [...spans].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = -Infinity;
  for (const [a, b] of s) {
    if (b <= end) continue;
    total += b - Math.max(a, end);
    end = b;
  }
  return total;
}
