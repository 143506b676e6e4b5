/**
 * What this installation is: package and Node versions, which native addon was loaded (local build or prebuilt) and
 * from where, its backends, BLAS and threads, oneDNN (bf16 on the CPU: the ISA it runs), the CUDA backend (devices,
 * driver/runtime, cuBLASLt, precisions), and what data-parallel runs would use: the MPI library, NCCL, and the MPI
 * launcher that started this process.
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { expectFinite } from './check.js';
import { launcher, mpiStatus, ncclStatus, type Launcher } from './distributed/comm.js';
import { native, nativeBinary, packageRoot, type NativeBinary, type NativeInfo, type NativeLibraryInfo } from './native.js';

export interface Info extends NativeInfo {
  version: string;
  /** the package folder */
  root: string;
  node: string;
  platform: string;
  /** the addon file that was loaded: a local build (build/Release/mae.node) or a prebuilt binary (prebuilds/) */
  binary: NativeBinary;
  /** the compute precisions per backend: fp32 and bf16 (fp32 accumulation) on the CPU, and on CUDA when available */
  precisions: { cpu: string[]; cuda: string[] };
  /** Open MPI for data-parallel runs: found (library, version) or why not; MPI is not started */
  mpi: NativeLibraryInfo;
  /** NCCL for the gradients of GPU ranks: found (library, ncclGetVersion) or why not */
  nccl: NativeLibraryInfo;
  /** the MPI launcher that started this process (rank, size), or null */
  launcher: Launcher | null;
}

export function info(): Info {
  const root = packageRoot();
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  const n = native.info();
  return {
    version: pkg.version,
    root,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    binary: nativeBinary,
    backends: n.backends,
    blas: n.blas,
    blasLink: n.blasLink ?? 'unknown (an addon built before info().blasLink existed)',
    threads: n.threads,
    compiler: n.compiler,
    cudaBuilt: n.cudaBuilt,
    cuda: n.cuda,
    dnnl: n.dnnl,
    avx512Kernels: n.avx512Kernels,
    bf16Convert: n.bf16Convert,
    bf16Attention: n.bf16Attention,
    precisions: { cpu: ['fp32', 'bf16'], cuda: n.cuda.available ? ['fp32', 'bf16'] : [] },
    mpi: mpiStatus(),
    nccl: ncclStatus(),
    launcher: launcher(),
  };
}

/**
 * Sets the number of CPU threads (one OpenMP team) that runs every CPU kernel; matrix products are split between
 * them, each thread calling the single-threaded BLAS on its block. The default is OpenMP's: `OMP_NUM_THREADS`, else
 * one per core.
 */
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}

/** The most threads setNumThreads takes (the addon's limit, kMaxThreads in bindings/addon.cpp). */
const MAX_THREADS = 1024;

/**
 * The threads option of a run (`where`: pretrain, finetune, linprobe, bench), checked in its name before it reaches
 * setNumThreads, whose own message would name setNumThreads; undefined (the default) passes.
 */
export function checkThreads(where: string, threads: number | undefined): void {
  if (threads !== undefined) expectFinite(where, 'threads', threads, (n) => Number.isInteger(n) && n >= 1 && n <= MAX_THREADS, `an integer in [1, ${MAX_THREADS}]`);
}

/** Native memory of a device ('cpu' by default, 'cuda', 'cuda:N'), in bytes. */
export interface MemoryStats {
  /** held by live tensors (rounded up to the allocator's size classes) */
  allocatedBytes: number;
  /** freed blocks the caching allocator keeps for reuse (emptyCache gives them back) */
  cachedBytes: number;
  /** the largest allocatedBytes so far */
  peakBytes: number;
  /** the CPU: bf16 weight copies in oneDNN's blocked layouts (2 bytes a weight for each of the forward and dx products), outside the allocator */
  blockedWeightBytes?: number;
}

/** How much native memory the tensors of a device hold, and the caching allocator keeps. */
export function memoryStats(device = 'cpu'): MemoryStats {
  return native.memoryStats(device);
}

/** Gives a device's cached free blocks back to the system (CUDA: to the driver); live tensors are untouched. */
export function emptyCache(device = 'cpu'): void {
  native.emptyCache(device);
}

/** The CPU's model name (/proc/cpuinfo's `model name` on Linux, else Node's). */
export function cpuModel(): string {
  try {
    const m = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    /* not Linux */
  }
  return cpus()[0]?.model ?? 'unknown';
}
