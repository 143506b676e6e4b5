/**
 * Data-parallel runs over MPI: which process of the run this is, and the collectives a training loop needs.
 *
 * A run is distributed when an MPI launcher started the process (`mpirun -np N ...`, `srun --mpi=pmix ...`: detected
 * from the variables they set, see `launcher`) or when it asks for it ({ distributed: 'mpi' }). The addon then opens
 * Open MPI at run time (libmpi.so.40, or the library named by `mpiLibrary` / $MAE_MPI_LIB) and starts it on its own
 * communication thread (bindings/comm.cpp); rank, world size and local rank (the rank among the processes of one
 * machine) come from MPI. Otherwise the run is one process: `Communicator.single()`, whose collectives return their
 * input, so the training loop is the same code either way.
 *
 * Failures are loud, never a hang: every collective gives up after `timeoutSeconds` (default 600) with an Error that
 * says what did not complete; `fail(error)` tells every other rank why this one stops, and their next call throws
 * "rank R failed: <why>" (each also prints it at once on stderr). After a failure every call throws the same error.
 * MPI is started once per process and ended (after a bounded barrier) when the process exits normally.
 */
import { availableParallelism, cpus } from 'node:os';
import { native, type NativeLibraryInfo, type NativeTensor } from '../native.js';
import { describeValue, expectArrayLike, expectFinite, expectInstance, expectKnownKeys, expectObject, expectString, optionNames } from '../check.js';
import type { Tensor } from '../tensor.js';

/** How to run: 'mpi' (a rank of an MPI job), 'none' (one process), or 'auto' (default: 'mpi' under a launcher). */
export type DistributedMode = 'auto' | 'mpi' | 'none';

export interface DistributedOptions {
  distributed?: DistributedMode;
  /**
   * libmpi.so.40 of Open MPI, or the folder holding it (default $MAE_MPI_LIB, then the loader's search path); given to
   * a process that runs on its own, it is unused and says so (a warning MAE_MPI_UNUSED: mpirun may have been forgotten)
   */
  mpiLibrary?: string;
  /** seconds a collective may take before the run fails with a timeout (default 600) */
  timeoutSeconds?: number;
}

export interface Launcher {
  /** e.g. 'Open MPI mpirun' */
  name: string;
  rank: number;
  /** the number of processes the launcher started, when it says */
  size: number | null;
}

const LAUNCHERS: { name: string; rank: string; size: string[] }[] = [
  { name: 'Open MPI mpirun', rank: 'OMPI_COMM_WORLD_RANK', size: ['OMPI_COMM_WORLD_SIZE'] },
  { name: 'PMIx (srun --mpi=pmix, prterun)', rank: 'PMIX_RANK', size: ['SLURM_STEP_NUM_TASKS', 'SLURM_NTASKS'] },
  { name: 'PMI (srun --mpi=pmi2, MPICH hydra)', rank: 'PMI_RANK', size: ['PMI_SIZE'] },
];

/** A Communicator as `where`'s argument `name` (its constructor is private, so expectInstance cannot take the class). */
export function expectCommunicator(where: string, name: string, v: unknown): void {
  if (!(v instanceof Communicator)) throw new Error(`${where}: ${name} must be a Communicator, got ${describeValue(v)}; Communicator.open() or Communicator.single() makes one`);
}

/**
 * Communicator.open's distributed and timeout options with their defaults, checked in the name of `where`, the timeout
 * named `timeoutName`: pretrain and linprobe check theirs first, so that their messages name their own options
 * (distTimeout, which the CLI names --dist-timeout).
 */
export function distributedSettings(where: string, distributed: unknown, timeoutName: string, timeoutSeconds: unknown): { mode: DistributedMode; timeout: number } {
  const mode = distributed === undefined ? 'auto' : distributed;
  if (mode !== 'auto' && mode !== 'mpi' && mode !== 'none') throw new Error(`${where}: distributed must be 'auto', 'mpi' or 'none', got ${describeValue(mode)}`);
  const timeout = timeoutSeconds === undefined ? 600 : timeoutSeconds;
  expectFinite(where, timeoutName, timeout, (t) => t > 0 && t <= 1e9, 'a positive number of seconds, at most 1e9 (about 31 years)');
  return { mode, timeout: timeout as number };
}

/** The MPI launcher that started this process, from the variables it sets; null when none did. */
export function launcher(env: NodeJS.ProcessEnv = process.env): Launcher | null {
  expectObject('launcher', 'env', env, false, 'e.g. process.env');
  for (const l of LAUNCHERS) {
    const rank = env[l.rank];
    if (rank === undefined || !/^\d+$/.test(rank)) continue;
    const sizeVar = l.size.map((k) => env[k]).find((v) => v !== undefined && /^\d+$/.test(v));
    return { name: l.name, rank: Number(rank), size: sizeVar === undefined ? null : Number(sizeVar) };
  }
  return null;
}

/** Whether Open MPI can be opened (MPI is not started), and if not why. */
export function mpiStatus(mpiLibrary?: string): NativeLibraryInfo {
  if (mpiLibrary !== undefined) expectString('mpiStatus', 'mpiLibrary', mpiLibrary, 'a library path or undefined');
  return native.mpiInfo(mpiLibrary ?? null);
}

/** Whether NCCL can be opened through the CUDA library (nothing is started), and if not why. */
export function ncclStatus(ncclLibrary?: string): NativeLibraryInfo {
  if (ncclLibrary !== undefined) expectString('ncclStatus', 'ncclLibrary', ncclLibrary, 'a library path or undefined');
  return native.ncclInfo(ncclLibrary ?? null);
}

/** Native errors start with their entry's name ("commWait: rank 1 failed: ..."); the reason alone reads better. */
function call<R>(fn: () => R): R {
  try {
    return fn();
  } catch (e) {
    const m = (e as Error).message;
    throw new Error(m.replace(/^comm[A-Za-z]+: /, ''));
  }
}

let started: Communicator | null = null;

/** The MPI communicator this process started, if any (for a command that must end the whole job on an error). */
export function activeCommunicator(): Communicator | null {
  return started;
}

/** The `what` of a collective (its name in messages), checked in the name of Communicator.`method`. */
function expectWhat(method: string, what: unknown): void {
  expectString(`Communicator.${method}`, 'what', what, 'a description for messages');
}

/** The root rank of a broadcast in a job of `size` ranks, checked in the name of Communicator.`method`. */
function expectRoot(method: string, root: unknown, size: number): void {
  expectFinite(`Communicator.${method}`, 'root', root, (r) => Number.isInteger(r) && r >= 0 && r < size, `a rank in [0, ${size})`);
}

/** One process of a data-parallel run (or the only one). */
export class Communicator {
  /** 'mpi' for a rank of an MPI job (also a job of one rank), 'none' for a process on its own */
  readonly kind: 'mpi' | 'none';
  readonly rank: number;
  readonly size: number;
  readonly localRank: number;
  readonly localSize: number;
  /** the MPI library and its version ('' for a process on its own) */
  readonly library: string;
  readonly version: string;
  readonly timeoutSeconds: number;

  private constructor(kind: 'mpi' | 'none', w: { rank: number; size: number; localRank: number; localSize: number; library: string; version: string }, timeoutSeconds: number) {
    this.kind = kind;
    this.rank = w.rank;
    this.size = w.size;
    this.localRank = w.localRank;
    this.localSize = w.localSize;
    this.library = w.library;
    this.version = w.version;
    this.timeoutSeconds = timeoutSeconds;
  }

  /** A process on its own: rank 0 of 1, every collective the identity. */
  static single(): Communicator {
    return new Communicator('none', { rank: 0, size: 1, localRank: 0, localSize: 1, library: '', version: '' }, Infinity);
  }

  /**
   * The communicator of this process: MPI when `distributed` is 'mpi', or 'auto' (the default) under an MPI
   * launcher; a process on its own otherwise. MPI starts on the first call and is the same for later ones.
   */
  static open(opts: DistributedOptions = {}): Communicator {
    expectObject('Communicator.open', 'opts', opts, false, "e.g. { distributed: 'mpi' }");
    expectKnownKeys('Communicator.open', 'opts', opts, optionNames<DistributedOptions>({ distributed: true, mpiLibrary: true, timeoutSeconds: true }));
    const { mode, timeout } = distributedSettings('Communicator.open', opts.distributed, 'timeoutSeconds', opts.timeoutSeconds);
    if (opts.mpiLibrary !== undefined) expectString('Communicator.open', 'mpiLibrary', opts.mpiLibrary, 'a path (libmpi.so.40 or its folder)');
    const l = launcher();
    if (mode === 'none' || (mode === 'auto' && l === null)) {
      if (opts.mpiLibrary !== undefined)
        process.emitWarning(`the MPI library ${opts.mpiLibrary} is not used: ${mode === 'none' ? "distributed is 'none'" : 'no MPI launcher (mpirun, srun) started this process'}, so it runs on its own`, { code: 'MAE_MPI_UNUSED' });
      return Communicator.single();
    }
    const w = call(() => native.commInit(opts.mpiLibrary ?? null, timeout));
    if (l?.size != null && l.size !== w.size)
      throw new Error(
        `the launcher (${l.name}) started ${l.size} processes but MPI sees a world of ${w.size}: the launcher does not match the MPI library ${w.library} (use that library's mpirun, or srun --mpi=pmix)`,
      );
    if (started === null) {
      started = new Communicator('mpi', w, timeout);
      process.once('exit', finalizeAtExit);
      return started;
    }
    return new Communicator('mpi', w, timeout);
  }

  /** Whether the run has failed (a rank failed, a collective timed out); the error then says why. */
  get failure(): string | null {
    if (this.kind === 'none') return null;
    const s = native.commState();
    return s.failed ? (s.error ?? 'failed') : null;
  }

  /** The sum (or max) of `values` over the ranks, on every rank. */
  allreduce(values: number[] | Float64Array, op: 'sum' | 'max' = 'sum', what = 'an all-reduce'): Float64Array {
    expectArrayLike('Communicator.allreduce', 'values', values, 'an array of numbers or a Float64Array');
    if (op !== 'sum' && op !== 'max') throw new Error(`Communicator.allreduce: op must be 'sum' or 'max', got ${describeValue(op)}`);
    expectWhat('allreduce', what);
    const v = Float64Array.from(values);
    if (this.kind === 'mpi') call(() => native.commAllreduce(v, op, what));
    return v;
  }

  /** The root's bytes on every rank (others pass null). */
  broadcast(bytes: Uint8Array | null, root = 0, what = 'a broadcast'): Uint8Array {
    if (bytes !== null) expectInstance('Communicator.broadcast', 'bytes', bytes, Uint8Array, 'a Uint8Array (null on the ranks other than root)');
    expectRoot('broadcast', root, this.size);
    expectWhat('broadcast', what);
    if (this.kind === 'none') {
      if (!bytes) throw new Error(`Communicator.broadcast: bytes must be a Uint8Array on the root (rank ${root}), got null`);
      return bytes;
    }
    return call(() => native.commBroadcast(this.rank === root ? bytes : null, root, what));
  }

  /** The root's value (JSON) on every rank. */
  broadcastJson<T>(value: T | undefined, root = 0, what = 'a broadcast'): T {
    expectRoot('broadcastJson', root, this.size);
    expectWhat('broadcastJson', what);
    const bytes = this.rank === root ? new TextEncoder().encode(JSON.stringify(value ?? null)) : null;
    return JSON.parse(new TextDecoder().decode(this.broadcast(bytes, root, what))) as T;
  }

  /** Every rank's bytes, in rank order. */
  allgather(bytes: Uint8Array, what = 'an all-gather'): Uint8Array[] {
    expectInstance('Communicator.allgather', 'bytes', bytes, Uint8Array, 'a Uint8Array');
    expectWhat('allgather', what);
    if (this.kind === 'none') return [bytes];
    return call(() => native.commAllgather(bytes, what));
  }

  /** Every rank's value (JSON), in rank order. */
  allgatherJson<T>(value: T, what = 'an all-gather'): T[] {
    expectWhat('allgatherJson', what);
    return this.allgather(new TextEncoder().encode(JSON.stringify(value)), what).map((b) => JSON.parse(new TextDecoder().decode(b)) as T);
  }

  /** Every rank's values, concatenated in rank order (features, labels, predictions). */
  allgatherConcat<T extends Float32Array | Int32Array>(values: T, what = 'an all-gather'): T {
    if (!(values instanceof Float32Array || values instanceof Int32Array))
      throw new Error(`Communicator.allgatherConcat: values must be a Float32Array or Int32Array, got ${describeValue(values)}`);
    expectWhat('allgatherConcat', what);
    if (this.kind === 'none') return values;
    const parts = this.allgather(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), what);
    const make = (n: number) => (values instanceof Float32Array ? new Float32Array(n) : new Int32Array(n)) as T;
    const out = make(parts.reduce((n, p) => n + p.byteLength / 4, 0));
    let at = 0;
    for (const p of parts) {
      const part = make(p.byteLength / 4);
      new Uint8Array(part.buffer).set(p);
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  barrier(what = 'a barrier'): void {
    expectWhat('barrier', what);
    if (this.kind === 'mpi') call(() => native.commBarrier(what));
  }

  /**
   * Starts the average of a bucket of gradients over the ranks (MPI for CPU tensors, NCCL for CUDA ones, in
   * bfloat16 when `bf16`); returns a ticket for `wait`.
   */
  allreduceGrads(grads: Tensor[], opts: { bf16?: boolean; what?: string } = {}): number {
    const handles: NativeTensor[] = grads.map((g) => g.handle);
    return call(() => native.commAllreduceGrads(handles, opts.bf16 ?? false, opts.what ?? 'a gradient all-reduce'));
  }

  /** Waits for a ticket of allreduceGrads; [start, end] of its communication in `now()` milliseconds. */
  wait(ticket: number): [number, number] {
    return call(() => native.commWait(ticket));
  }

  /** The communication thread's clock, in milliseconds. */
  now(): number {
    return native.commNow();
  }

  /**
   * Starts NCCL on cuda:`device` for the gradients of GPU ranks (the unique id goes from rank 0 over MPI). For a
   * process on its own, a NCCL communicator of one rank (the GPU path checked without MPI, tools/nccl-check.ts).
   */
  startNccl(device: number, ncclLibrary?: string): { library: string; version: number } {
    return call(() => native.commNcclInit(device, ncclLibrary ?? null));
  }

  /**
   * Tells every other rank that this one stops because of `error` (a no-op when the run has already failed, e.g.
   * because another rank did); returns when they have heard it, 5 s at most.
   */
  fail(error: unknown): void {
    if (this.kind === 'none') return;
    native.commFail(error instanceof Error ? error.message : String(error));
  }

  /** Ends every rank of the job now (MPI_Abort), after flushing this one's output. */
  abort(code = 1): never {
    if (this.kind === 'none') process.exit(code);
    return native.commAbort(code);
  }

  /**
   * The CPU threads a rank takes by default: the cores the launcher bound it to, when it did (mpirun binds each of
   * up to 2 ranks to a core by default); otherwise the machine's cores shared among the ranks on it.
   */
  defaultThreads(): number {
    const usable = availableParallelism(); // the process's CPU affinity
    if (usable < cpus().length) return usable;
    return Math.max(1, Math.floor(usable / this.localSize));
  }
}

function finalizeAtExit(): void {
  const s = native.commState();
  if (!s.ready || s.finalized || s.failed) return;
  try {
    native.commFinalize();
  } catch (e) {
    console.error(`mae: ${(e as Error).message.replace(/^comm[A-Za-z]+: /, '')}`);
    process.exitCode = 1;
  }
}
