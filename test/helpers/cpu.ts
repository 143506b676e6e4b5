// The CPU's feature flags as the kernel lists them in /proc/cpuinfo (avx512f, avx512_bf16, amx_tile, ...), for tests
// whose expectations depend on the CPU they run on.
import { readFileSync } from 'node:fs';

/** the flags of the first CPU in /proc/cpuinfo (empty where the file has none) */
export function cpuFlags(): Set<string> {
  const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
  return new Set((line ?? '').replace(/^flags\s*:/, '').trim().split(/\s+/));
}

/** whether /proc/cpuinfo lists `flag` among the CPU's flags */
export function hasCpuFlag(flag: string): boolean {
  return cpuFlags().has(flag);
}
