/** What this installation is: package and Node versions, the native addon and its backends, BLAS, threads. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { native, packageRoot } from './native.js';

export interface Info {
  version: string;
  node: string;
  platform: string;
  backends: string[];
  blas: string;
  threads: number;
  compiler: string;
  cudaBuilt: boolean;
}

export function info(): Info {
  const root = packageRoot();
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  const n = native.info();
  return {
    version: pkg.version,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    backends: n.backends,
    blas: n.blas,
    threads: n.threads,
    compiler: n.compiler,
    cudaBuilt: n.cudaBuilt,
  };
}

/** Sets the number of CPU threads used by the kernels and the BLAS. */
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}
