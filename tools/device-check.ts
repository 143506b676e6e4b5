/**
 * The device check (/work/shared/DEVICE.md): one plain-Node program to run on a GPU machine.
 *
 *   node dist/tools/device-check.js [outDir]        (outDir: argv[2], else $OUT, else ./device-check-out)
 *
 * 1. Finds libcublasLt (MAE_CUBLASLT_PATH if set, else Python's nvidia/cublas/lib or torch/lib, else the CUDA
 *    toolkit folders) and sets MAE_CUBLASLT_PATH before the addon loads.
 * 2. Prints the GPU, driver, CUDA runtime and cuBLASLt versions.
 * 3. For every op family, in a child process of its own (so that a faulting kernel cannot poison the others'
 *    CUDA context), runs CPU and CUDA on the same fresh random inputs of several shapes, odd ones too, and prints
 *    the norm-relative error |out - ref| / |ref| of every output and gradient, float32 and bfloat16 (attention in
 *    bfloat16 twice: tensor-core kernels and the SIMT kernels). Correctness runs with MAE_CUDA_SYNC=1, so a fault
 *    names the kernel that caused it.
 * 4. Runs the MAE training-step parity check when lib/mae provides it (see maeStepCheck); otherwise says so.
 * 5. Times the kernels at MAE sizes (warm-up, then the median of several timed repeats) after measuring the
 *    device's copy bandwidth and matrix rates, and prints a table last: GPU time (CUDA events), wall time per call
 *    from Node, TFLOP/s, GB/s, and the floor.
 * Everything printed also goes to a log file in the output folder. Exit code: 0 all ok, 1 some check failed,
 * 2 CUDA unavailable. MAE_CHECK_QUICK=1 uses the small shapes only.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { NativeAddon } from '../lib/native.js';
import type { CaseResult, OpCase, Precision } from './cuda-cases.js';

const quick = process.env.MAE_CHECK_QUICK === '1';
// MAE_CHECK_DEVICE=cpu: a dry run of the whole program against the CPU itself (float32 only), to check the program
// on a machine without a GPU
const device = process.env.MAE_CHECK_DEVICE ?? 'cuda';
const dry = device === 'cpu';

// ---- logging -------------------------------------------------------------------------------------------------

let logFile: string | null = null;
function log(line = ''): void {
  process.stdout.write(line + '\n');
  if (logFile) appendFileSync(logFile, line + '\n');
}

// ---- cuBLASLt --------------------------------------------------------------------------------------------------

function libIn(dir: string): string | null {
  if (!existsSync(dir)) return null;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return null;
  }
  for (const want of ['libcublasLt.so.13', 'libcublasLt.so.12']) if (names.includes(want)) return join(dir, want);
  const any = names.filter((n) => n.startsWith('libcublasLt.so')).sort();
  return any.length ? join(dir, any[any.length - 1]!) : null;
}

function python(code: string): string | null {
  for (const py of ['python3', 'python']) {
    try {
      return execFileSync(py, ['-c', code], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 60000 }).trim();
    } catch {
      /* next */
    }
  }
  return null;
}

/** Where libcublasLt is: the file, and how it was found. */
function findCublasLt(): { path: string | null; how: string } {
  const env = process.env.MAE_CUBLASLT_PATH;
  if (env) return { path: env, how: 'MAE_CUBLASLT_PATH was set' };
  const dirs: [string, string][] = [];
  const nv = python("import nvidia.cublas as m, os; print(os.path.join(list(m.__path__)[0], 'lib'))");
  if (nv) dirs.push([nv, 'python: nvidia.cublas']);
  const torch = python("import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))");
  if (torch) dirs.push([torch, 'python: torch/lib']);
  const site = python("import site, sys; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))");
  for (const s of (site ?? '').split('\n').filter(Boolean)) dirs.push([join(s, 'nvidia', 'cublas', 'lib'), 'site-packages']);
  for (const root of ['/usr/local/lib', '/usr/lib', '/opt/conda/lib', join(os.homedir(), '.local', 'lib')]) {
    let entries: string[] = [];
    try {
      entries = readdirSync(root).filter((n) => /^python3/.test(n));
    } catch {
      /* none */
    }
    for (const py of entries)
      for (const sp of ['site-packages', 'dist-packages']) dirs.push([join(root, py, sp, 'nvidia', 'cublas', 'lib'), 'glob']);
  }
  for (const d of ['/usr/local/cuda/lib64', '/usr/local/cuda/targets/x86_64-linux/lib', '/opt/conda/lib', '/usr/lib/x86_64-linux-gnu'])
    dirs.push([d, 'system folder']);
  try {
    for (const n of readdirSync('/usr/local').filter((n) => n.startsWith('cuda-'))) dirs.push([join('/usr/local', n, 'lib64'), 'system folder']);
  } catch {
    /* none */
  }
  for (const [d, how] of dirs) {
    const f = libIn(d);
    if (f) return { path: f, how: `${how} (${d})` };
  }
  return { path: null, how: 'not found in Python site-packages or CUDA folders' };
}

// ---- the addon and the cases, loaded after MAE_CUBLASLT_PATH is set ---------------------------------------------

async function loadNative(): Promise<NativeAddon> {
  return (await import('../lib/native.js')).native;
}

async function loadCases(): Promise<typeof import('./cuda-cases.js')> {
  return import('./cuda-cases.js');
}

// ---- child: correctness of one family -----------------------------------------------------------------------------

interface ChildSpec {
  mode: 'compare' | 'bench';
  family?: string;
  runs?: { precision: Precision; simt?: boolean; label: string }[];
  seed?: number;
}

const RESULT = '@@result ';
const TIMING = '@@timing ';

async function childCompare(spec: ChildSpec): Promise<void> {
  process.env.MAE_CUDA_SYNC = '1';
  const n = await loadNative();
  const { opCases, compareCase } = await loadCases();
  const cases = opCases(!quick).filter((c) => c.family === spec.family);
  for (const run of spec.runs!) {
    if (run.simt) process.env.MAE_ATTENTION_SIMT = '1';
    else delete process.env.MAE_ATTENTION_SIMT;
    for (const c of cases) {
      const r = compareCase(n, c, device, run.precision, spec.seed);
      process.stdout.write(RESULT + JSON.stringify({ ...r, precision: run.label }) + '\n');
    }
  }
}

// ---- child: timing ------------------------------------------------------------------------------------------------

interface Timing {
  name: string;
  precision: string;
  /** GPU microseconds per call (CUDA events) */
  us: number;
  /** wall microseconds per call seen from Node */
  wallUs?: number;
  flops?: number;
  bytes?: number;
  floorUs?: number;
  note?: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface Timed {
  /** median GPU seconds per call (CUDA events around the repeats: kernel time, launch gaps included) */
  gpu: number;
  /** median wall seconds per call seen from Node (launch and binding overhead included) */
  wall: number;
}

/** per-call times of fn (fn queues work): warm-up, then `repeats` timed batches of k calls each */
function timeIt(n: NativeAddon, fn: () => void, minSeconds = 0.02, repeats = 7): Timed {
  for (let i = 0; i < 3; i++) fn();
  n.synchronize(device);
  let t0 = performance.now();
  fn();
  n.synchronize(device);
  const once = Math.max((performance.now() - t0) / 1000, 1e-6);
  const k = Math.max(1, Math.min(1000, Math.ceil(minSeconds / once)));
  const gpu: number[] = [], wall: number[] = [];
  for (let r = 0; r < repeats; r++) {
    t0 = performance.now();
    if (!dry) n.timerStart(device);
    for (let i = 0; i < k; i++) fn();
    // the dry run on the CPU has no events: its ops finish before they return, so wall time is its time
    const ms = dry ? performance.now() - t0 : n.timerStop(device);
    gpu.push(ms / 1000 / k);
    wall.push((performance.now() - t0) / 1000 / k);
  }
  return { gpu: median(gpu), wall: median(wall) };
}

async function childBench(): Promise<void> {
  const n = await loadNative();
  const { opCases, hostInputs, deviceInputs } = await loadCases();
  const emit = (t: Timing): void => void process.stdout.write(TIMING + JSON.stringify(t) + '\n');

  // floors: device copy bandwidth and matrix rates
  const big = dry ? 1 << 20 : 64 << 20; // floats: 256 MiB
  const hostOnes = n.fromArray(new Float32Array(big).fill(1), [big]);
  const src = n.to(hostOnes, device);
  hostOnes.dispose();
  const copy = timeIt(n, () => n.clone(src).dispose());
  const bw = (2 * 4 * big) / copy.gpu; // read + write
  emit({ name: `copy (clone ${(4 * big) >> 20} MiB)`, precision: 'float32', us: copy.gpu * 1e6, wallUs: copy.wall * 1e6, bytes: 8 * big, note: 'bandwidth floor' });
  src.dispose();
  const rates: Record<string, number> = {};
  for (const precision of (dry ? ['float32'] : ['float32', 'bfloat16']) as Precision[]) {
    const M = dry ? 512 : 8192;
    const host = n.fromArray(new Float32Array(M * M).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5), [M, M]);
    const a = n.to(host, device, precision === 'bfloat16' ? 'bfloat16' : undefined);
    host.dispose();
    const mm = timeIt(n, () => n.linear(a, a, null).dispose(), 0.1, 5);
    rates[precision] = (2 * M * M * M) / mm.gpu;
    emit({ name: `matmul ${M}^3 (rate floor)`, precision, us: mm.gpu * 1e6, wallUs: mm.wall * 1e6, flops: 2 * M * M * M, note: 'matrix-rate floor' });
    a.dispose();
  }
  n.emptyCache(device);

  for (const c of opCases(!quick).filter((c) => c.bench)) {
    for (const precision of (dry ? ['float32'] : ['float32', 'bfloat16']) as Precision[]) {
      const ins = hostInputs(c, n, precision, 3);
      const t = deviceInputs(n, ins, device, precision);
      try {
        const { gpu: s, wall } = timeIt(n, () => {
          const r = c.run(n, t);
          if (r) for (const v of Object.values(r)) v?.dispose();
        });
        const scale = precision === 'bfloat16' ? 0.5 : 1;
        const floor = Math.max(c.bytes ? (c.bytes * scale) / bw : 0, c.flops ? c.flops / rates[precision]! : 0);
        // bytes: float32 sizes, halved for bfloat16 runs (an estimate: only activations are bfloat16)
        emit({ name: c.name, precision, us: s * 1e6, wallUs: wall * 1e6, flops: c.flops, bytes: c.bytes ? c.bytes * scale : undefined, floorUs: floor * 1e6 });
      } catch (e) {
        emit({ name: c.name, precision, us: NaN, note: `failed: ${(e as Error).message}` });
      } finally {
        for (const x of t) x.dispose();
      }
    }
  }
}

// ---- the MAE training-step parity check ---------------------------------------------------------------------------

/**
 * The MAE training-step check belongs to the model code: lib/mae is expected to export
 *   deviceStepCheck(options: { device: string; steps: number; log: (line: string) => void }):
 *     Promise<{ ok: boolean; cpuLosses: number[]; deviceLosses: number[]; imgPerSec?: number; mfu?: number }>
 * which builds one model with fixed weights and masking noise, runs `steps` training steps on the CPU and on the
 * device, and reports both loss curves (and the device's throughput). Until it exists this says so and passes
 * nothing off as checked.
 */
async function maeStepCheck(): Promise<'ok' | 'failed' | 'not run'> {
  const here = dirname(fileURLToPath(import.meta.url));
  const file = join(here, '..', 'lib', 'mae', 'index.js');
  if (!existsSync(file)) {
    log(`MAE training-step check NOT RUN: ${file} does not exist yet (the model code comes later).`);
    return 'not run';
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (e) {
    log(`MAE training-step check NOT RUN: importing lib/mae failed: ${(e as Error).message}`);
    return 'failed';
  }
  const check = mod.deviceStepCheck;
  if (typeof check !== 'function') {
    log('MAE training-step check NOT RUN: lib/mae has no deviceStepCheck({ device, steps, log }) export yet.');
    return 'not run';
  }
  try {
    process.env.MAE_CUDA_SYNC = '0';
    const r = (await check({ device, steps: 5, log })) as { ok: boolean; cpuLosses: number[]; deviceLosses: number[]; imgPerSec?: number; mfu?: number };
    log(`MAE step losses, CPU:  ${r.cpuLosses.map((x) => x.toFixed(6)).join(' ')}`);
    log(`MAE step losses, CUDA: ${r.deviceLosses.map((x) => x.toFixed(6)).join(' ')}`);
    if (r.imgPerSec !== undefined) log(`MAE training step on CUDA: ${r.imgPerSec.toFixed(1)} img/s${r.mfu !== undefined ? `, MFU ${(100 * r.mfu).toFixed(1)}%` : ''}`);
    return r.ok ? 'ok' : 'failed';
  } catch (e) {
    log(`MAE training-step check FAILED with an error: ${(e as Error).stack ?? (e as Error).message}`);
    return 'failed';
  }
}

// ---- parent ----------------------------------------------------------------------------------------------------

function runChild(spec: ChildSpec, timeoutS: number): { lines: string[]; ok: boolean; tail: string } {
  const script = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, [script, '--child', JSON.stringify(spec)], {
    env: process.env,
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    timeout: timeoutS * 1000,
  });
  const out = r.stdout ?? '';
  const tail = ((out.split('\n').filter((l) => !l.startsWith('@@')).join('\n') + '\n' + (r.stderr ?? '')).trim()).slice(-3000);
  const why = r.error ? ` (${r.error.message})` : r.signal ? ` (signal ${r.signal})` : '';
  return { lines: out.split('\n'), ok: r.status === 0 && !r.error, tail: tail + why };
}

function fmt(x: number | undefined, digits = 1): string {
  return x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

async function main(): Promise<void> {
  const childAt = process.argv.indexOf('--child');
  if (childAt >= 0) {
    const spec = JSON.parse(process.argv[childAt + 1]!) as ChildSpec;
    if (spec.mode === 'compare') await childCompare(spec);
    else await childBench();
    return;
  }

  const outDir = process.argv[2] ?? process.env.OUT ?? 'device-check-out';
  mkdirSync(outDir, { recursive: true });
  logFile = join(outDir, `device-check-${new Date().toISOString().replace(/[:.]/g, '-')}.log`);
  log(`masked-autoencoder device check, ${new Date().toISOString()}, log: ${logFile}`);
  log(`host: ${os.hostname()}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), node ${process.version}${quick ? ', QUICK mode' : ''}`);

  const lt = findCublasLt();
  if (lt.path) process.env.MAE_CUBLASLT_PATH = lt.path;
  log(`cuBLASLt: ${lt.path ?? 'NOT FOUND'} (${lt.how})`);
  try {
    const smi = execFileSync('nvidia-smi', ['--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit', '--format=csv,noheader'], {
      encoding: 'utf8',
      timeout: 30000,
    }).trim();
    log(`nvidia-smi: ${smi}`);
  } catch {
    log('nvidia-smi: not available');
  }

  const n = await loadNative();
  const info = n.info();
  log(`addon: ${info.compiler}, BLAS ${info.blas}, ${info.threads} threads, cudaBuilt ${info.cudaBuilt}`);
  const cu = info.cuda;
  log(`libmae_cuda: ${cu.library}`);
  if (!cu.available && !dry) {
    log(`CUDA NOT AVAILABLE: ${cu.reason}`);
    process.exitCode = 2;
    return;
  }
  if (dry) log(`DRY RUN against the CPU (MAE_CHECK_DEVICE=cpu): checks this program, not a GPU. CUDA: ${cu.available ? 'available' : cu.reason}`);
  const ver = (v?: number): string => (v ? `${Math.floor(v / 1000)}.${(v % 1000) / 10}` : '?');
  log(`CUDA driver ${ver(cu.driverVersion)}, runtime ${ver(cu.runtimeVersion)} (static), cuBLASLt ${cu.cublasLt?.version} at ${cu.cublasLt?.path}`);
  log(`kernels compiled for: ${cu.archs}`);
  for (const d of cu.devices ?? [])
    log(`device cuda:${d.index}: ${d.name}, compute capability ${d.computeCapability}, ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB, ${d.multiprocessors} SMs${d.usable ? '' : ' (NOT USABLE)'}`);

  // correctness, one child per family
  const { opCases, formatResult } = await loadCases();
  const families = [...new Set(opCases(!quick).map((c: OpCase) => c.family))];
  const seed = (Date.now() % 1_000_000) + 1;
  log('');
  log(`== CUDA vs CPU (norm-relative error per output; tolerance float32 1e-5, bfloat16 1e-2; seed ${seed}) ==`);
  const results: CaseResult[] = [];
  const crashed: string[] = [];
  for (const family of families) {
    const runs: ChildSpec['runs'] = [{ precision: 'float32', label: 'float32' }];
    if (!dry) runs.push({ precision: 'bfloat16', label: 'bfloat16' });
    if (family === 'attention' && !dry) runs.push({ precision: 'bfloat16', simt: true, label: 'bf16-simt' });
    const t0 = performance.now();
    const child = runChild({ mode: 'compare', family, runs, seed }, 300);
    const got: CaseResult[] = child.lines.filter((l) => l.startsWith(RESULT)).map((l) => JSON.parse(l.slice(RESULT.length)) as CaseResult);
    log(`-- ${family} (${got.length} comparisons, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    for (const r of got) {
      results.push(r);
      log('  ' + formatResult(r));
    }
    if (!child.ok) {
      crashed.push(family);
      log(`  !! the ${family} child process did not finish cleanly; its last output:`);
      for (const l of child.tail.split('\n')) log('     ' + l);
    }
  }

  log('');
  log('== MAE training step ==');
  const step = await maeStepCheck();

  log('');
  log(`== timing (${device}; per call, median of 7 repeats after warm-up: GPU time from CUDA events, and wall time from Node incl. launch overhead) ==`);
  const bench = runChild({ mode: 'bench' }, 420);
  const timings = bench.lines.filter((l) => l.startsWith(TIMING)).map((l) => JSON.parse(l.slice(TIMING.length)) as Timing);
  if (!bench.ok) {
    log('!! the timing child did not finish cleanly; its last output:');
    for (const l of bench.tail.split('\n')) log('   ' + l);
  }

  // summary, then the timing table last
  const failed = results.filter((r) => !r.ok);
  log('');
  log('== summary ==');
  for (const family of families) {
    for (const p of ['float32', 'bfloat16', 'bf16-simt']) {
      const rs = results.filter((r) => r.family === family && r.precision === p);
      if (!rs.length) continue;
      const worst = Math.max(...rs.flatMap((r) => r.errors.map((e) => e.rel)), 0);
      log(`${family.padEnd(12)} ${p.padEnd(10)} ${rs.filter((r) => r.ok).length}/${rs.length} ok, worst rel error ${worst.toExponential(2)}`);
    }
  }
  for (const f of crashed) log(`${f}: child process crashed or timed out (see above)`);
  log(`comparisons: ${results.length - failed.length}/${results.length} ok; MAE step check: ${step}`);
  for (const r of failed) log('FAILED ' + formatResult(r));

  log('');
  log('op'.padEnd(64) + 'dtype'.padEnd(10) + 'GPU us'.padStart(10) + 'wall us'.padStart(10) + 'TFLOP/s'.padStart(9) + 'GB/s'.padStart(8) + 'floor us'.padStart(10) + '  of floor');
  for (const t of timings) {
    const tflops = t.flops ? t.flops / (t.us * 1e-6) / 1e12 : undefined;
    const gbs = t.bytes ? t.bytes / (t.us * 1e-6) / 1e9 : undefined;
    const frac = t.floorUs ? `${((100 * t.floorUs) / t.us).toFixed(0)}%` : '';
    log(
      t.name.slice(0, 63).padEnd(64) +
        t.precision.padEnd(10) +
        fmt(t.us).padStart(10) +
        fmt(t.wallUs).padStart(10) +
        fmt(tflops, 2).padStart(9) +
        fmt(gbs, 0).padStart(8) +
        fmt(t.floorUs).padStart(10) +
        '  ' +
        frac +
        (t.note ? `  ${t.note}` : ''),
    );
  }
  log('');
  log(`log written to ${logFile}`);
  process.exitCode = failed.length || crashed.length || step === 'failed' || !bench.ok ? 1 : 0;
}

main().catch((e) => {
  log(`device check crashed: ${(e as Error).stack ?? e}`);
  process.exitCode = 1;
});
