/**
 * Loads the native addon (build/Release/mae.node from a source build, else the prebuilt binary for this platform
 * under prebuilds/<platform>-<arch>/, picked by node-gyp-build's rules) and types its surface. Everything native
 * goes through `native`; when nothing loads, the error lists every file tried, why it failed, and the build command.
 */
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A native tensor handle. Once disposed it holds nothing: shape [], dtype and device null. */
export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: 'float32' | 'int32' | 'bfloat16' | null;
  readonly device: string | null;
  readonly disposed: boolean;
  dispose(): void;
  read(): Float32Array | Int32Array;
  readAsync(): Promise<Float32Array | Int32Array>;
  write(data: Float32Array | Int32Array): void;
  reshape(shape: number[]): NativeTensor;
}

type T = NativeTensor;

export interface NativeCudaDevice {
  index: number;
  name: string;
  /** e.g. '9.0' */
  computeCapability: string;
  totalMemory: number;
  multiprocessors: number;
  /** false when the build has no kernels for it (compute capability below 8.0) */
  usable: boolean;
}

/** The CUDA backend (libmae_cuda.so, loaded at run time): whether it can be used and, if not, why. */
export interface NativeCudaInfo {
  available: boolean;
  /** why CUDA is unavailable (library not built, no driver, driver too old, no device, cuBLASLt not found) */
  reason?: string;
  /** where libmae_cuda.so was looked for ($MAE_CUDA_LIB or next to mae.node) */
  library: string;
  /** e.g. 13000 for CUDA 13.0 */
  driverVersion?: number;
  runtimeVersion?: number;
  cublasLt?: { path: string; version: number };
  archs?: string;
  devices?: NativeCudaDevice[];
}

/** oneDNN (libdnnl.so.2), opened at run time for bf16 matrix products on the CPU. */
export interface NativeDnnlInfo {
  available: boolean;
  /** why it could not be loaded */
  reason?: string;
  /** the file loaded (or looked for) */
  library: string;
  version?: string;
  /** the instruction set its kernels run on (dnnl_get_effective_cpu_isa), e.g. 'avx512_core_bf16', 'avx512_core_amx' */
  isa?: string;
  /**
   * whether that ISA computes bf16 products natively (AVX512-BF16 or AMX): only then do bf16 products go to oneDNN
   * (its emulation elsewhere is slower than the BLAS in float32, which runs them instead)
   */
  bf16Native?: boolean;
  amx?: boolean;
  /**
   * what AMX needs besides oneDNN: the CPU has AMX-TILE and AMX-BF16 (CPUID), the kernel enables their state (XCR0:
   * Linux 5.16 and later), and the kernel gave this process the tile data (arch_prctl, after oneDNN asked for it)
   */
  amxSupport?: { cpu: boolean; kernel: boolean; permitted: boolean };
  /**
   * on AMX with oneDNN before 2.7.4: bf16 products of two matrices whose reduction length is odd and above 32 run on
   * the BLAS instead (that oneDNN's AMX matmul can configure the tiles wrongly for them)
   */
  amxOddKDeclined?: boolean;
  /** whether oneDNN has bf16 matmul kernels on this CPU (oneDNN 2.x: AVX-512 and up), native or emulated */
  bf16Matmul?: boolean;
  /** whether bf16 products on the CPU go to oneDNN (its kernels are native); else the BLAS runs them on float32 copies */
  bf16Products: boolean;
}

export interface NativeInfo {
  backends: string[];
  blas: string;
  /** 'static' (OpenBLAS inside the addon: prebuilt binaries) or 'shared <path of libopenblas.so.0>' */
  blasLink: string;
  threads: number;
  compiler: string;
  cudaBuilt: boolean;
  /** whether the CUDA backend can be used (devices, versions) and, when not, why */
  cuda: NativeCudaInfo;
  /** oneDNN, which runs the CPU's bf16 matrix products: whether it loaded (else why), its ISA, native bf16 or not */
  dnnl: NativeDnnlInfo;
  /** whether the CPU kernels' AVX-512 paths run: "on", "off (MAE_CPU_AVX512=off)", or why the CPU has none */
  avx512Kernels: string;
  /** how CPU kernels round float32 to bfloat16: the AVX512-BF16 instruction, or the integer fallback */
  bf16Convert: string;
  /** which kernel runs bf16 attention on the CPU (MAE_CPU_ATTENTION=onednn or =fused forces one of the two) */
  bf16Attention: string;
}

/** What commInit returns: this process's place in the MPI world, and the library. */
export interface NativeWorld {
  rank: number;
  size: number;
  localRank: number;
  localSize: number;
  library: string;
  version: string;
}

/** Whether a run-time library (MPI, NCCL) can be opened, and if not why. */
export interface NativeLibraryInfo {
  found: boolean;
  library?: string;
  /** MPI: MPI_Get_library_version's first line; NCCL: ncclGetVersion(), e.g. 22105 */
  version?: string | number;
  reason?: string;
}

export interface NativeAddon {
  NativeTensor: new () => NativeTensor;
  fromArray(data: Float32Array | Int32Array, shape: number[]): T;
  full(shape: number[], value: number, dtype?: 'float32' | 'int32'): T;
  clone(x: T): T;
  liveTensors(): number;
  /**
   * blockedWeightBytes (CPU): the copies of bf16 weight shadows in oneDNN's blocked layouts that the bf16 products
   * read (2 bytes per weight for each of the forward and dx products), held outside the allocator
   */
  memoryStats(device?: string): { allocatedBytes: number; cachedBytes: number; peakBytes: number; blockedWeightBytes?: number };
  emptyCache(device?: string): void;
  /** A tensor on `device` ('cpu', 'cuda', 'cuda:N') in `dtype`; shares x's storage when nothing changes. */
  to(x: T, device: string, dtype?: 'float32' | 'bfloat16' | 'int32'): T;
  /** Waits for the work queued on a device (a no-op for the CPU). */
  synchronize(device?: string): void;
  /** starts a GPU-time measurement on a CUDA device's stream (CUDA events) */
  timerStart(device: string): void;
  /** milliseconds of GPU time since timerStart on that device; waits for the queued work */
  timerStop(device: string): number;
  /** how many times the host has waited for a CUDA device so far (synchronisations, copies to the host) */
  syncCount(device: string): number;
  setNumThreads(n: number): void;
  info(): NativeInfo;
  /** This environment's (thread's) id in the table of shared tensors. */
  envId(): number;
  /**
   * Puts x's storage (shared, not copied) in a process-wide table for any thread's environment to take; the id. The
   * entry is dropped when its owner's environment is torn down: this one, or `owner` (the envId of the taker).
   */
  shareTensor(x: T, owner?: number): number;
  /** Removes a shared tensor from the table and returns it as a tensor of this environment (same storage). */
  takeTensor(id: number): T;
  /** Removes a shared tensor that will not be taken (a no-op if it was). */
  dropTensor(id: number): void;
  /** Entries in the table of shared tensors (for leak checks). */
  sharedTensorCount(): number;

  // the communicator of data-parallel runs (bindings/comm.cpp); lib/distributed wraps it
  mpiInfo(path?: string | null): NativeLibraryInfo;
  ncclInfo(path?: string | null): NativeLibraryInfo;
  commInit(path: string | null, timeoutSeconds: number): NativeWorld;
  commNcclInit(device: number, path?: string | null): { library: string; version: number };
  /** queues the average over ranks of a bucket of gradients; returns a ticket for commWait */
  commAllreduceGrads(grads: T[], bf16: boolean, what: string): number;
  /** waits for a ticket; [start, end] of the communication thread's work on it, in commNow() milliseconds */
  commWait(ticket: number): [number, number];
  commAllreduce(values: Float64Array, op: 'sum' | 'max', what: string): void;
  commBroadcast(bytes: Uint8Array | null, root: number, what: string): Uint8Array;
  commAllgather(bytes: Uint8Array, what: string): Uint8Array[];
  commBarrier(what: string): void;
  commFail(message: string): void;
  commAbort(code: number): never;
  commFinalize(): void;
  commNow(): number;
  commState(): { ready: boolean; finalized: boolean; failed: boolean; error?: string };

  /** weightBf16: a bfloat16 copy of weight that the product reads instead of converting weight */
  linear(x: T, weight: T, bias: T | null, weightBf16?: T | null): T;
  linearBackward(x: T, weight: T, dy: T, needDx: boolean, hasBias: boolean, weightBf16?: T | null): [T | null, T, T | null];
  layerNorm(x: T, weight: T, bias: T, eps: number): [T, T, T];
  /** [s = x + r, layerNorm(s), mean, rstd] in one pass */
  addLayerNorm(x: T, r: T, weight: T, bias: T, eps: number): [T, T, T, T];
  /** dres: a gradient of x from another path, added to dx in the same pass */
  layerNormBackward(dy: T, x: T, weight: T, mean: T, rstd: T, dres?: T | null): [T, T, T];
  gelu(x: T): T;
  geluBackward(x: T, dy: T): T;
  /** gelu(x + bias), bias [N] over the last dimension */
  biasGelu(x: T, bias: T): T;
  /** [dx, dbias | null] of biasGelu in one pass */
  biasGeluBackward(x: T, bias: T, dy: T, needDb: boolean): [T, T | null];
  attention(qkv: T, numHeads: number): [T, T];
  attentionBackward(qkv: T, out: T, dout: T, lse: T, numHeads: number): T;
  maskedMse(pred: T, target: T, mask: T, normPix: boolean): T;
  maskedMseBackward(pred: T, target: T, mask: T, normPix: boolean, dloss: T): T;
  crossEntropy(logits: T, target: T, smoothing: number): T;
  crossEntropyBackward(logits: T, target: T, smoothing: number, dloss: T): T;
  batchNorm(x: T, runningMean: T, runningVar: T, training: boolean, momentum: number, eps: number): [T, T];
  batchNormBackward(dy: T, y: T, rstd: T, training: boolean): T;
  gatherRows(x: T, index: T): T;
  scatterAddRows(dy: T, index: T, n: number): T;
  catTokens(a: T, b: T): T;
  sliceTokens(x: T, start: number, length: number): T;
  add(a: T, b: T): T;
  mul(a: T, b: T): T;
  sumTo(x: T, shape: number[]): T;
  axpby(alpha: number, x: T, beta: number, y: T): void;
  sum(x: T, scale: number): T;
  meanTokens(x: T): T;
  meanTokensBackward(dy: T, n: number): T;
  fill(y: T, value: number): void;
  patchify(imgs: T, patchSize: number, hwc: boolean): T;
  unpatchify(x: T, patchSize: number, hwc: boolean, imageShape: number[]): T;
  /**
   * one AdamW step over all the listed parameters (entry k of every list belongs to params[k]); shadows[k], when
   * given, is a bfloat16 tensor that receives the new params[k] rounded to bfloat16
   */
  adamwStep(params: T[], grads: T[], m: T[], v: T[], lr: number[], weightDecay: number[], beta1: number, beta2: number, eps: number, step: number, shadows?: (T | null)[]): void;
  /**
   * Data augmentation on one 8-bit image (native/cpu/augment.cpp; synchronous, single-threaded, for data workers):
   * the box of src [H, W, C] resampled bicubically to outSize, the window of that written to out[outOffset ..] as
   * [outC, winH, winW] (flipped left-right when `flip`), normalised (v / 255 - mean) / std; out a Float32Array or
   * a Uint16Array of bfloat16 bits. antialias: PIL / torchvision antialiased bicubic; else F.interpolate's.
   */
  resizedCrop(
    src: Uint8Array, shape: readonly [number, number, number], box: readonly [number, number, number, number],
    outSize: readonly [number, number], window: readonly [number, number, number, number], flip: boolean, antialias: boolean, mean: readonly number[], std: readonly number[],
    out: Float32Array | Uint16Array, outOffset: number,
  ): void;
}

/** The package root: the nearest folder above this file whose package.json is ours. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj) && JSON.parse(readFileSync(pj, 'utf8')).name === 'masked-autoencoder') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('masked-autoencoder: cannot find the package root above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

/** Where the loaded addon came from, and the candidates before it that failed (see `info()`). */
export interface NativeBinary {
  kind: 'local build' | 'prebuilt' | 'MAE_ADDON';
  path: string;
  /** candidates tried first that did not load, with why */
  skipped: { path: string; error: string }[];
}

interface Candidate {
  kind: NativeBinary['kind'];
  path: string;
  /** why it cannot be loaded, when known without trying */
  missing?: string;
}

/** The parts of node-gyp-build used to pick a prebuilt binary (its own tuple and tag matching). */
interface GypBuild {
  parseTuple(name: string): { name: string } | undefined;
  matchTuple(platform: string, arch: string): (t: { name: string } | undefined) => t is { name: string };
  compareTuples(a: { name: string }, b: { name: string }): number;
  parseTags(file: string): { file: string } | undefined;
  matchTags(runtime: string, abi: string | undefined): (t: { file: string } | undefined) => t is { file: string };
  compareTags(runtime: string): (a: { file: string }, b: { file: string }) => number;
}

/**
 * The addon candidates in order: a source build (build/Release/mae.node), then the prebuilt binary that
 * node-gyp-build's rules pick for this platform, Node-API and libc under prebuilds/<platform>-<arch>/; only the
 * file that the environment variable MAE_ADDON names, when it is set.
 */
function candidates(root: string, gyp: GypBuild): Candidate[] {
  const out: Candidate[] = [];
  // MAE_ADDON names the one binary to load (a sanitizer or debug build): no other is tried; a relative path is taken
  // from the working folder (require() would read it as a package name)
  const chosen = process.env.MAE_ADDON && resolve(process.env.MAE_ADDON);
  if (chosen) return [{ kind: 'MAE_ADDON', path: chosen, missing: existsSync(chosen) ? undefined : 'not found (MAE_ADDON names it)' }];
  const local = join(root, 'build', 'Release', 'mae.node');
  out.push({ kind: 'local build', path: local, missing: existsSync(local) ? undefined : 'not found (no source build)' });
  const tuple = `${process.platform}-${process.arch}`;
  const prebuilds = join(root, 'prebuilds');
  const have = existsSync(prebuilds) ? readdirSync(prebuilds) : [];
  const match = have
    .map((n) => gyp.parseTuple(n))
    .filter(gyp.matchTuple(process.platform, process.arch))
    .sort(gyp.compareTuples)[0];
  if (!match) {
    const note = have.length ? `prebuilt only for ${have.join(', ')}` : 'no prebuilds/ folder';
    out.push({ kind: 'prebuilt', path: join(prebuilds, tuple) + '/', missing: `no prebuilt binary for ${tuple} (${note})` });
    return out;
  }
  const dir = join(prebuilds, match.name);
  const best = readdirSync(dir)
    .map((f) => gyp.parseTags(f))
    .filter(gyp.matchTags('node', process.versions.modules))
    .sort(gyp.compareTags('node'))[0];
  if (!best) {
    out.push({ kind: 'prebuilt', path: dir + '/', missing: `no binary there matches Node-API and this libc (${readdirSync(dir).join(', ')})` });
    return out;
  }
  const path = join(dir, best.file);
  const lacking = tuple === 'linux-x64' ? missingCpuFeatures() : [];
  out.push({ kind: 'prebuilt', path, missing: lacking.length ? `built for x86-64-v3 CPUs, this CPU lacks ${lacking.join(', ')}` : undefined });
  return out;
}

/** The x86-64-v3 features (the prebuilt binaries' target) that this CPU lacks; loading them would crash (SIGILL). */
function missingCpuFeatures(): string[] {
  let flags: Set<string>;
  try {
    const line = /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
    if (!line) return [];
    flags = new Set(line.trim().split(/\s+/));
  } catch {
    return [];
  }
  return ['avx2', 'fma', 'bmi2', 'f16c', 'movbe'].filter((f) => !flags.has(f));
}

/** The command that builds the addon from source here: `npm run build` in a checkout, cmake-js in an installed package. */
export function buildCommand(root: string): string {
  const checkout = existsSync(join(root, 'lib', 'native.ts')) && existsSync(join(root, 'node_modules', 'cmake-js'));
  return checkout ? `cd ${root} && npm run build` : `cd ${root} && npx --yes cmake-js@8 compile`;
}

let binary: NativeBinary | undefined;

function load(): NativeAddon {
  const require = createRequire(import.meta.url);
  const root = packageRoot();
  const gyp = require('node-gyp-build') as GypBuild;
  const skipped: { path: string; error: string }[] = [];
  for (const c of candidates(root, gyp)) {
    if (c.missing) {
      skipped.push({ path: c.path, error: c.missing });
      continue;
    }
    try {
      const addon = require(c.path) as NativeAddon;
      binary = { kind: c.kind, path: c.path, skipped: skipped.filter((s) => existsSync(s.path) && !s.path.endsWith('/')) };
      return addon;
    } catch (e) {
      skipped.push({ path: c.path, error: (e as Error).message.split('\n')[0]! });
    }
  }
  const message =
    `masked-autoencoder: no native addon could be loaded for ${process.platform}-${process.arch} (Node ${process.version}). Tried:\n` +
      skipped.map((s) => `  ${s.path}: ${s.error}`).join('\n') +
      `\nBuild it from source (needs cmake, g++, libopenblas-dev and libdnnl-dev, e.g. sudo apt-get install -y cmake g++ make libopenblas-dev libdnnl-dev):\n` +
      `  ${buildCommand(root)}`;
  // the `mae` command: the message alone, not a stack trace through the module loader
  if (process.argv[1] && realpathOrSelf(process.argv[1]) === join(root, 'dist', 'lib', 'cli.js')) {
    console.error(message);
    process.exit(1);
  }
  throw new Error(message);
}

function realpathOrSelf(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/**
 * How long idle OpenMP threads spin before they sleep, set here unless the user set OMP_WAIT_POLICY or
 * GOMP_SPINCOUNT (libgomp reads both when the addon loads it). A training step runs hundreds of parallel regions
 * with a few tens of microseconds of JS between them: about 0.3 ms of spinning (30000 spins) bridges those gaps
 * (tiny preset 5% faster per step than sleeping at once), and then the threads sleep, leaving the cores to the
 * data-loading workers and to other processes; libgomp's own default spins ~3 ms. The names and values set here, for
 * child processes that should not inherit them (benchmarks/train.ts gives PyTorch its own best setting).
 */
export const ompDefaults: Readonly<Record<string, string>> =
  process.env.OMP_WAIT_POLICY === undefined && process.env.GOMP_SPINCOUNT === undefined ? { GOMP_SPINCOUNT: '30000' } : {};
Object.assign(process.env, ompDefaults);

export const native: NativeAddon = load();

/** Which addon file was loaded: a local build or a prebuilt binary, and its path. */
export const nativeBinary: NativeBinary = binary!;

// A machine with an NVIDIA driver whose GPU this build cannot use (driver too old, library missing, ...) runs on
// the CPU; say so once, with the reason, rather than leaving the user to wonder why training is slow.
if (existsSync('/proc/driver/nvidia/version')) {
  const cuda = native.info().cuda;
  if (!cuda.available)
    process.emitWarning(`an NVIDIA driver is installed but the CUDA backend cannot be used: ${cuda.reason ?? 'unknown reason'}; running on the CPU (see \`mae info\`)`, {
      code: 'MAE_CUDA_UNAVAILABLE',
    });
}
