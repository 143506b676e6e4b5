/**
 * Shared pieces of the benchmarks: timing (warm-up, then the median of several repetitions), machine facts,
 * random native tensors, table printing and the results folder.
 *
 * The machine may be shared with other work, so every benchmark reports ratios measured within one run (against
 * the sgemm peak and the copy bandwidth measured in the same process) next to absolute numbers.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { cpuModel } from '../lib/info.js';
import { native, packageRoot, type NativeTensor } from '../lib/native.js';

/**
 * A benchmark's command line, checked: --help (or -h) prints `usage` and exits; an option the benchmark does not take,
 * or one of `values` without its value, stops it (exit code 2) with a line that names the option and lists the ones it takes
 * (every benchmark takes --threads N and --tag TAG, which resultName and describeMachine read). Returns the arguments.
 */
export function benchArgs(usage: string, options: { flags?: string[]; values?: string[] }): string[] {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log(usage);
    process.exit(0);
  }
  const flags = new Set(options.flags ?? []);
  const values = new Set([...(options.values ?? []), '--threads', '--tag']);
  const taken = [...flags, ...[...values].map((v) => `${v} VALUE`)].join(', ');
  const stop = (why: string): never => {
    console.error(`${why} (options: ${taken}; --help for more)`);
    process.exit(2);
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (values.has(a)) {
      if (i + 1 >= args.length || args[i + 1]!.startsWith('--')) stop(`${a} needs a value`);
      i++;
    } else if (!flags.has(a)) stop(`unknown option '${a}'`);
  }
  return args;
}

export interface Timing {
  /** median seconds per call */
  median: number;
  /** seconds per call of every repetition */
  runs: number[];
  /** calls per repetition */
  calls: number;
}

/**
 * Seconds per call of `fn`: warm-up (at least 2 calls and `warmup` seconds), then `reps` repetitions of as many
 * calls as fill `minTime` seconds (at least one); the median over repetitions.
 */
export function timeIt(fn: () => void, opts: { reps?: number; minTime?: number; warmup?: number } = {}): Timing {
  const reps = opts.reps ?? 5;
  const minTime = opts.minTime ?? 0.1;
  const warmup = opts.warmup ?? 0.05;
  let t0 = performance.now();
  let w = 0;
  while (w < 2 || performance.now() - t0 < warmup * 1e3) {
    fn();
    w++;
  }
  // calls per repetition, from the warm-up rate
  const per = (performance.now() - t0) / 1e3 / w;
  const calls = Math.max(1, Math.ceil(minTime / Math.max(per, 1e-9)));
  const runs: number[] = [];
  for (let r = 0; r < reps; r++) {
    t0 = performance.now();
    for (let i = 0; i < calls; i++) fn();
    runs.push((performance.now() - t0) / 1e3 / calls);
  }
  return { median: median(runs), runs, calls };
}

/**
 * The bf16 matrix-product peak, GFLOP/s: native.linear on 2048^3 with a bf16 x and a bf16 weight copy, as the
 * model's layers run (oneDNN: AMX or AVX512-BF16 where the CPU has them).
 */
export function bf16Peak(opts: { reps?: number; minTime?: number } = {}): number {
  const s = 2048;
  const x32 = randn([s, s], 1, 1), w = randn([s, s], 1, 2);
  const x = native.to(x32, 'cpu', 'bfloat16'), wb = native.to(w, 'cpu', 'bfloat16');
  const t = timeIt(() => native.linear(x, w, null, wb).dispose(), { reps: opts.reps ?? 5, minTime: opts.minTime ?? 0.2 });
  for (const h of [x32, w, x, wb]) h.dispose();
  return (2 * s * s * s) / t.median / 1e9;
}

export function median(v: readonly number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2]! : 0.5 * (s[n / 2 - 1]! + s[n / 2]!);
}

/** A float32 tensor of uniform values in [-scale, scale) (a fixed LCG: the same data every run). */
export function randn(shape: number[], scale = 1, seed = 1): NativeTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 32 - 0.5) * 2 * scale;
  }
  return native.fromArray(a, shape);
}

export interface Machine {
  cpu: string;
  cores: number;
  threads: number;
  blas: string;
  /** OPENBLAS_CORETYPE in the environment: overrides OpenBLAS's own kernel choice (null: not set) */
  openblasCoretype: string | null;
  /** libgomp's waiting in our process: OMP_WAIT_POLICY and GOMP_SPINCOUNT (null: not set) */
  ompWait: { policy: string | null; spincount: string | null };
  node: string;
  date: string;
  loadavg: number[];
}

/** One line that says where and how a benchmark runs: CPU, threads, BLAS and the settings that change its speed. */
export function describeMachine(m: Machine, threads: number): string {
  return (
    `${m.date}: ${m.cpu}, ${m.cores} cores, ${threads} threads; ${m.blas} (OPENBLAS_CORETYPE=${m.openblasCoretype ?? 'unset'}); ` +
    `OMP_WAIT_POLICY=${m.ompWait.policy ?? 'unset'} GOMP_SPINCOUNT=${m.ompWait.spincount ?? 'unset'}; load ${m.loadavg.join(' ')}`
  );
}

export function machine(): Machine {
  const cpu = cpuModel();
  const info = native.info();
  let loadavg: number[] = [];
  try {
    loadavg = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
  } catch {
    /* not Linux */
  }
  return {
    cpu, cores: cpus().length, threads: info.threads, blas: info.blas, openblasCoretype: process.env.OPENBLAS_CORETYPE ?? null,
    ompWait: { policy: process.env.OMP_WAIT_POLICY ?? null, spincount: process.env.GOMP_SPINCOUNT ?? null },
    node: process.version, date: today(), loadavg,
  };
}

/** UTC date, YYYY-MM-DD. */
export function today(): string {
  return new Date().toISOString().slice(0, 10);
}

export function resultsDir(): string {
  const dir = join(packageRoot(), 'benchmarks', 'results');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A result file's name: `<benchmark>-<date>[-threads<N>][-<tag>].json`, threads when `--threads` was given. */
export function resultName(benchmark: string, date: string, args: string[]): string {
  const threads = args.includes('--threads') ? `-threads${native.info().threads}` : '';
  const tag = args.includes('--tag') ? `-${args[args.indexOf('--tag') + 1]}` : '';
  return `${benchmark}-${date}${threads}${tag}.json`;
}

export function writeJson(name: string, value: unknown): string {
  const path = join(resultsDir(), name);
  writeFileSync(path, JSON.stringify(value, null, 2) + '\n');
  return path;
}

/** Prints rows as an aligned text table (numbers right-aligned). */
export function printTable(header: string[], rows: (string | number)[][]): void {
  const cells = [header, ...rows.map((r) => r.map((c) => String(c)))];
  const width = header.map((_, j) => Math.max(...cells.map((r) => (r[j] ?? '').length)));
  const numeric = header.map((_, j) => rows.every((r) => typeof r[j] === 'number' || /^[-+0-9.x%]+$/.test(String(r[j]))));
  const line = (r: string[]) => r.map((c, j) => (numeric[j] ? c.padStart(width[j]!) : c.padEnd(width[j]!))).join('  ');
  console.log(line(cells[0]!));
  console.log(width.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells.slice(1)) console.log(line(r));
}

export function fmt(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : String(x);
}
