/**
 * Loads the native addon (build/Release/mae.node from a source build, else the prebuilt binary for this platform
 * under prebuilds/) through node-gyp-build, and types its surface. Everything native goes through `native`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: 'float32' | 'int32' | 'bfloat16';
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

export interface NativeInfo {
  backends: string[];
  blas: string;
  threads: number;
  compiler: string;
  cudaBuilt: boolean;
  cuda: NativeCudaInfo;
}

export interface NativeAddon {
  NativeTensor: new () => NativeTensor;
  fromArray(data: Float32Array | Int32Array, shape: number[]): T;
  full(shape: number[], value: number, dtype?: 'float32' | 'int32'): T;
  clone(x: T): T;
  liveTensors(): number;
  memoryStats(device?: string): { allocatedBytes: number; cachedBytes: number; peakBytes: number };
  emptyCache(device?: string): void;
  /** A tensor on `device` ('cpu', 'cuda', 'cuda:N') in `dtype`; shares x's storage when nothing changes. */
  to(x: T, device: string, dtype?: 'float32' | 'bfloat16' | 'int32'): T;
  /** Waits for the work queued on a device (a no-op for the CPU). */
  synchronize(device?: string): void;
  setNumThreads(n: number): void;
  info(): NativeInfo;

  linear(x: T, weight: T, bias: T | null): T;
  linearBackward(x: T, weight: T, dy: T, needDx: boolean, hasBias: boolean): [T | null, T, T | null];
  layerNorm(x: T, weight: T, bias: T, eps: number): [T, T, T];
  layerNormBackward(dy: T, x: T, weight: T, mean: T, rstd: T): [T, T, T];
  gelu(x: T): T;
  geluBackward(x: T, dy: T): T;
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
  adamwStep(param: T, grad: T, m: T, v: T, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number): void;
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

function load(): NativeAddon {
  const require = createRequire(import.meta.url);
  const root = packageRoot();
  try {
    let gypBuild: (dir: string) => NativeAddon;
    try {
      gypBuild = require('node-gyp-build') as (dir: string) => NativeAddon;
    } catch {
      // without node_modules (a copied build on a GPU machine): the source build's addon directly
      gypBuild = (dir: string) => require(join(dir, 'build', 'Release', 'mae.node')) as NativeAddon;
    }
    return gypBuild(root);
  } catch (e) {
    throw new Error(
      `masked-autoencoder: the native addon could not be loaded from ${root} ` +
        `(looked for build/Release/mae.node and prebuilds/${process.platform}-${process.arch}/): ` +
        `${(e as Error).message}\nBuild it from source with: npm run build (needs cmake, g++ and libopenblas-dev).`,
    );
  }
}

export const native: NativeAddon = load();
