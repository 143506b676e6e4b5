/**
 * The device check (/work/shared/DEVICE.md): one plain-Node program to run on a GPU machine, in one call.
 *
 *   node dist/tools/device-check.js [outDir]        (outDir: argv[2], else $OUT, else ./device-check-out)
 *
 * 1. Finds libcublasLt (MAE_CUBLASLT_PATH if set, else Python's nvidia/cublas/lib or torch/lib, else the CUDA
 *    toolkit folders) and sets MAE_CUBLASLT_PATH before the addon loads; prints the GPU, driver, CUDA and cuBLASLt.
 * 2. Correctness, one child process per op family (a faulting kernel cannot poison the others' CUDA context), with
 *    MAE_CUDA_SYNC=1 (a fault names its kernel) and MAE_CUDA_DEBUG_ALLOC=1 (freed blocks hold NaN): every case of
 *    tools/cuda-cases.ts against the CPU on the same inputs, per row with the worst row named, float32 and bfloat16;
 *    every device run twice, bit for bit; the variants on the device (tensor-core attention against SIMT, the
 *    2-warp layout against SIMT, fused epilogues against MAE_FUSED=0, 16-byte kernels against MAE_CUDA_VECTOR=0,
 *    the fallback product against cuBLASLt).
 * 3. The MAE training-step check of lib/mae (deviceStepCheck: CPU fp32 against the device in fp32 and bf16, same
 *    weights, images and noise), with the fused ops and with MAE_FUSED=0.
 * 4. compute-sanitizer memcheck and racecheck over the small case set (cases marked sanitize, each run once per
 *    precision and setting; under racecheck the products run on our fallback kernel, not cuBLASLt).
 * 5. The ViT-B/16 MAE bf16 training step: img/s, model FLOP utilisation against the bf16 matrix rate measured in
 *    the same child, and the host waits per step (must be 1: the loss read); ViT-L/16 too when time is left.
 * 6. Kernel timings at MAE sizes (warm-up, medians, GPU time from CUDA events) with their floors, when time is left.
 * Every child has a timeout of 60-90 s and the whole run a budget (MAE_CHECK_BUDGET_S, default 420 s): what does not
 * fit is reported as not run, which counts as failed. Everything printed also goes to <date>-<gpu>.log in the output
 * folder, and the results to <date>-<gpu>.json beside it (gpu, driver, passed, failed, failures, vitb_img_s,
 * vitb_mfu, ...), to be committed under benchmarks/results/device/. Exit code: 0 all passed, 1 something failed or
 * did not run, 2 CUDA unavailable.
 *
 * MAE_CHECK_QUICK=1 runs the small case set. MAE_CHECK_DEVICE=cpu is a dry run of the whole program against the CPU
 * itself (float32 only; the sanitizer skipped; a small model instead of ViT-B), to check the program on a machine
 * without a GPU.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeAddon } from '../lib/native.js';
import type { CaseResult, OpCase } from './cuda-cases.js';

const quick = process.env.MAE_CHECK_QUICK === '1';
const device = process.env.MAE_CHECK_DEVICE ?? 'cuda';
const dry = device === 'cpu';
const budgetS = Number(process.env.MAE_CHECK_BUDGET_S ?? 420);
const started = Date.now();
const deadline = started + budgetS * 1000;

// ---- logging -------------------------------------------------------------------------------------------------

let logFile: string | null = null;
function log(line = ''): void {
  process.stdout.write(line + '\n');
  if (logFile) appendFileSync(logFile, line + '\n');
}

// ---- finding libraries and tools ---------------------------------------------------------------------------------

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

/** compute-sanitizer: $PATH, then the CUDA toolkit folders. */
function findSanitizer(): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) if (existsSync(join(dir, 'compute-sanitizer'))) return join(dir, 'compute-sanitizer');
  const roots = ['/usr/local/cuda'];
  try {
    roots.push(...readdirSync('/usr/local').filter((n) => n.startsWith('cuda-')).map((n) => join('/usr/local', n)));
  } catch {
    /* none */
  }
  for (const r of roots)
    for (const sub of ['bin', 'compute-sanitizer']) {
      const p = join(r, sub, 'compute-sanitizer');
      if (existsSync(p)) return p;
    }
  return null;
}

// ---- the addon and the cases, loaded after MAE_CUBLASLT_PATH is set ---------------------------------------------

async function loadNative(): Promise<NativeAddon> {
  return (await import('../lib/native.js')).native;
}

async function loadCases(): Promise<typeof import('./cuda-cases.js')> {
  return import('./cuda-cases.js');
}

// ---- child processes ----------------------------------------------------------------------------------------------

interface ChildSpec {
  mode: 'compare' | 'sanitize' | 'step' | 'train' | 'bench';
  family?: string;
  seed?: number;
  /** train: the preset and batch */
  preset?: string;
  batch?: number;
}

const RESULT = '@@result ';
const DATA = '@@data ';

function emit(prefix: string, value: unknown): void {
  process.stdout.write(prefix + JSON.stringify(value) + '\n');
}

/** every check of one case: vs the CPU and determinism per precision, then its variants */
function checkCase(n: NativeAddon, cases: typeof import('./cuda-cases.js'), c: OpCase, seed: number): void {
  for (const precision of cases.precisionsOf(c, device)) {
    for (const r of cases.compareCase(n, c, device, precision, seed)) emit(RESULT, r);
    for (const v of c.variants ?? [])
      if (!v.precisions || v.precisions.includes(precision)) emit(RESULT, cases.compareVariant(n, c, v, device, precision, seed));
  }
}

async function childCompare(spec: ChildSpec): Promise<void> {
  const n = await loadNative();
  const cases = await loadCases();
  for (const c of cases.opCases(!quick).filter((c) => c.family === spec.family)) checkCase(n, cases, c, spec.seed ?? 1);
}

/**
 * Under compute-sanitizer: each case of the small set once per precision on the device (its errors are the
 * sanitizer's), attention also with the SIMT kernels and the 2-warp layout, products also on the fallback kernel.
 */
async function childSanitize(spec: ChildSpec): Promise<void> {
  const n = await loadNative();
  const cases = await loadCases();
  const settings: Record<string, Record<string, string>[]> = {
    attention: [{}, { MAE_ATTENTION_SIMT: '1' }, { MAE_ATTENTION_WARPS: '2' }],
    gemm: [{}, { MAE_GEMM_FALLBACK: '1' }],
  };
  for (const c of cases.opCases(false).filter((c) => c.sanitize))
    for (const precision of cases.precisionsOf(c, device))
      for (const env of settings[c.family] ?? [{}]) {
        const r: CaseResult = { family: c.family, name: c.name, precision, check: `under the sanitizer${Object.keys(env).length ? ` (${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')})` : ''}`, ok: true, errors: [] };
        try {
          cases.runOn(n, c, cases.hostInputs(c, n, precision, spec.seed ?? 1), device, precision, env);
        } catch (e) {
          r.ok = false;
          r.failure = (e as Error).message;
        }
        emit(RESULT, r);
      }
}

async function childStep(): Promise<void> {
  const { deviceStepCheck } = await import('../lib/mae/device_check.js');
  const r = await deviceStepCheck({ device, steps: 5, log: (l) => process.stdout.write(l + '\n') });
  emit(DATA, r);
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

/** the device's copy bandwidth (bytes/s) and bf16 (fp32 in the dry run) matrix rate (FLOP/s), measured now */
function ceilings(n: NativeAddon): { bandwidth: number; matmul: number; M: number } {
  const big = dry ? 1 << 20 : 64 << 20; // floats: 256 MiB
  const hostOnes = n.fromArray(new Float32Array(big).fill(1), [big]);
  const src = n.to(hostOnes, device);
  hostOnes.dispose();
  const copy = timeIt(n, () => n.clone(src).dispose());
  src.dispose();
  const M = dry ? 256 : 8192;
  const host = n.fromArray(new Float32Array(M * M).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5), [M, M]);
  const a = n.to(host, device, dry ? undefined : 'bfloat16');
  host.dispose();
  const mm = timeIt(n, () => n.linear(a, a, null).dispose(), 0.1, 5);
  a.dispose();
  n.emptyCache(device);
  return { bandwidth: (2 * 4 * big) / copy.gpu, matmul: (2 * M * M * M) / mm.gpu, M };
}

/** FLOPs of one MAE training step (forward + backward = 3 x the forward's matrix products and attention). */
function maeStepFlops(c: { imgSize: number; patchSize: number; inChans: number; embedDim: number; depth: number; decoderEmbedDim: number; decoderDepth: number }, B: number, maskRatio: number): number {
  const L = (c.imgSize / c.patchSize) ** 2;
  const P = c.patchSize ** 2 * c.inChans;
  const K = Math.floor(L * (1 - maskRatio));
  const blocks = (N: number, D: number, depth: number): number => depth * (24 * N * D * D + 4 * N * N * D);
  const forward =
    2 * L * P * c.embedDim + // patch embedding of every patch
    blocks(K + 1, c.embedDim, c.depth) +
    2 * (K + 1) * c.embedDim * c.decoderEmbedDim + // decoder_embed
    blocks(L + 1, c.decoderEmbedDim, c.decoderDepth) +
    2 * (L + 1) * c.decoderEmbedDim * P; // decoder_pred
  return 3 * B * forward;
}

async function childTrain(spec: ChildSpec): Promise<void> {
  const n = await loadNative();
  const { MaskedAutoencoder } = await import('../lib/mae/model.js');
  const { getPreset } = await import('../lib/mae/presets.js');
  const { AdamW } = await import('../lib/optim/adamw.js');
  const { Tensor, tidy } = await import('../lib/tensor.js');
  const { Generator } = await import('../lib/random.js');
  const ceil = ceilings(n);
  const preset = spec.preset!;
  const B = spec.batch!;
  const config = getPreset(preset);
  const t0 = performance.now();
  const model = new MaskedAutoencoder(config, { seed: 0 }).to(device);
  const opt = new AdamW(model.parameterGroups(0.05), { lr: 1e-4, betas: [0.9, 0.95] });
  const g = new Generator(5);
  const imgs = Tensor.fromArray(g.normalArray(B * config.inChans * config.imgSize ** 2), [B, config.inChans, config.imgSize, config.imgSize], { device }).keep();
  const setupS = (performance.now() - t0) / 1000;
  const precision = dry ? 'fp32' : 'bf16';
  const step = (): number => {
    const loss = tidy(() => {
      const out = model.forward(imgs, { maskRatio: 0.75, precision });
      out.loss.backward();
      return out.loss;
    });
    opt.step();
    opt.zeroGrad();
    const v = loss.item();
    loss.dispose();
    return v;
  };
  const warm = [step(), step()];
  n.synchronize(device);
  const syncs0 = dry ? 0 : n.syncCount(device);
  const times: number[] = [];
  const losses: number[] = [];
  const steps = dry ? 2 : 5;
  for (let i = 0; i < steps; i++) {
    const s = performance.now();
    losses.push(step());
    times.push((performance.now() - s) / 1000);
  }
  const syncsPerStep = dry ? null : (n.syncCount(device) - syncs0) / steps;
  const stepS = median(times);
  const flops = maeStepFlops(config, B, 0.75);
  emit(DATA, {
    preset,
    batch: B,
    precision,
    setupS,
    stepS,
    imgPerS: B / stepS,
    tflops: flops / stepS / 1e12,
    mfu: flops / stepS / ceil.matmul,
    matmulTflops: ceil.matmul / 1e12,
    matmulM: ceil.M,
    copyGBs: ceil.bandwidth / 1e9,
    syncsPerStep,
    losses: [...warm, ...losses],
    fused: process.env.MAE_FUSED !== '0',
  });
  imgs.dispose();
  opt.dispose();
  model.dispose();
}

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

async function childBench(): Promise<void> {
  const n = await loadNative();
  const { opCases, hostInputs, deviceInputs } = await loadCases();
  const out = (t: Timing): void => emit(DATA, t);
  const ceil = ceilings(n);
  out({ name: 'copy (clone 256 MiB)', precision: 'float32', us: NaN, note: `bandwidth floor ${(ceil.bandwidth / 1e9).toFixed(0)} GB/s` });
  out({ name: `matmul ${ceil.M}^3`, precision: dry ? 'float32' : 'bfloat16', us: NaN, note: `matrix-rate floor ${(ceil.matmul / 1e12).toFixed(1)} TFLOP/s` });
  for (const c of opCases(!quick).filter((c) => c.bench)) {
    for (const precision of (dry ? ['float32'] : ['float32', 'bfloat16']) as ('float32' | 'bfloat16')[]) {
      const ins = hostInputs(c, n, precision, 3);
      const t = deviceInputs(n, ins, device, precision);
      try {
        const { gpu: s, wall } = timeIt(n, () => {
          const r = c.run(n, t);
          if (r) for (const v of Object.values(r)) v?.dispose();
        });
        // bytes: float32 sizes, halved for bfloat16 runs (an estimate: only activations are bfloat16)
        const scale = precision === 'bfloat16' ? 0.5 : 1;
        const floor = Math.max(c.bytes ? (c.bytes * scale) / ceil.bandwidth : 0, c.flops ? c.flops / ceil.matmul : 0);
        out({ name: c.name, precision, us: s * 1e6, wallUs: wall * 1e6, flops: c.flops, bytes: c.bytes ? c.bytes * scale : undefined, floorUs: floor * 1e6 });
      } catch (e) {
        out({ name: c.name, precision, us: NaN, note: `failed: ${(e as Error).message}` });
      } finally {
        for (const x of t) x.dispose();
      }
    }
  }
}

interface ChildRun {
  lines: string[];
  ok: boolean;
  timedOut: boolean;
  tail: string;
  seconds: number;
}

function runChild(spec: ChildSpec, timeoutS: number, env: Record<string, string> = {}, wrap: string[] = []): ChildRun {
  const script = fileURLToPath(import.meta.url);
  const args = [...wrap, process.execPath, script, '--child', JSON.stringify(spec)];
  const t0 = performance.now();
  const r = spawnSync(args[0]!, args.slice(1), {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    timeout: Math.max(1, timeoutS) * 1000,
    killSignal: 'SIGKILL',
  });
  const out = r.stdout ?? '';
  const timedOut = r.signal === 'SIGKILL' || (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
  const tail = (out.split('\n').filter((l) => !l.startsWith('@@')).join('\n') + '\n' + (r.stderr ?? '')).trim().slice(-4000);
  const why = timedOut ? ` (killed after ${timeoutS} s)` : r.error ? ` (${r.error.message})` : r.signal ? ` (signal ${r.signal})` : r.status ? ` (exit ${r.status})` : '';
  return { lines: out.split('\n'), ok: r.status === 0 && !r.error, timedOut, tail: tail + why, seconds: (performance.now() - t0) / 1000 };
}

function dataOf<T>(run: ChildRun): T[] {
  return run.lines.filter((l) => l.startsWith(DATA)).map((l) => JSON.parse(l.slice(DATA.length)) as T);
}

/** seconds left in the budget, keeping `reserve` for what must still run */
function left(reserve = 0): number {
  return Math.floor((deadline - Date.now()) / 1000) - reserve;
}

function fmt(x: number | undefined | null, digits = 1): string {
  return x === undefined || x === null || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

// ---- the parent ----------------------------------------------------------------------------------------------------

interface Stage {
  name: string;
  status: 'ok' | 'failed' | 'not run' | 'skipped';
  seconds?: number;
  note?: string;
}

async function main(): Promise<void> {
  const childAt = process.argv.indexOf('--child');
  if (childAt >= 0) {
    const spec = JSON.parse(process.argv[childAt + 1]!) as ChildSpec;
    if (spec.mode === 'compare') await childCompare(spec);
    else if (spec.mode === 'sanitize') await childSanitize(spec);
    else if (spec.mode === 'step') await childStep();
    else if (spec.mode === 'train') await childTrain(spec);
    else await childBench();
    return;
  }

  const outDir = process.argv[2] ?? process.env.OUT ?? 'device-check-out';
  mkdirSync(outDir, { recursive: true });
  const date = new Date().toISOString().slice(0, 10);
  const pending = join(outDir, `device-check-${process.pid}.log`);
  logFile = pending;
  log(`masked-autoencoder device check, ${new Date().toISOString()}, budget ${budgetS} s${quick ? ', QUICK mode' : ''}`);
  log(`host: ${os.hostname()}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), node ${process.version}`);

  const lt = findCublasLt();
  if (lt.path) process.env.MAE_CUBLASLT_PATH = lt.path;
  log(`cuBLASLt: ${lt.path ?? 'NOT FOUND'} (${lt.how})`);
  let smi = '';
  try {
    smi = execFileSync('nvidia-smi', ['--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit', '--format=csv,noheader'], {
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
  const gpu = dry ? 'cpu (dry run)' : cu.devices?.[0]?.name ?? 'unknown';
  const slug = dry ? 'cpu-dry-run' : gpu.toLowerCase().replace(/^nvidia\s+/, '').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  const base = join(outDir, `${date}-${slug}${quick ? '-quick' : ''}`);
  renameSync(pending, `${base}.log`);
  logFile = `${base}.log`;
  const ver = (v?: number): string => (v ? `${Math.floor(v / 1000)}.${(v % 1000) / 10}` : '?');
  const driver = smi.split(',')[1]?.trim() ?? (cu.driverVersion ? `CUDA ${ver(cu.driverVersion)}` : 'unknown');
  if (!cu.available && !dry) {
    log(`CUDA NOT AVAILABLE: ${cu.reason}`);
    writeFileSync(`${base}.json`, JSON.stringify({ date, gpu, driver, passed: 0, failed: 1, failures: [`CUDA not available: ${cu.reason}`], vitb_img_s: null, vitb_mfu: null }, null, 2) + '\n');
    process.exitCode = 2;
    return;
  }
  if (dry) log(`DRY RUN against the CPU (MAE_CHECK_DEVICE=cpu): checks this program, not a GPU. CUDA: ${cu.available ? 'available' : cu.reason}`);
  if (cu.available) {
    log(`CUDA driver ${ver(cu.driverVersion)}, runtime ${ver(cu.runtimeVersion)} (static), cuBLASLt ${cu.cublasLt?.version} at ${cu.cublasLt?.path}`);
    log(`kernels compiled for: ${cu.archs}`);
  }
  for (const d of cu.devices ?? [])
    log(`device cuda:${d.index}: ${d.name}, compute capability ${d.computeCapability}, ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB, ${d.multiprocessors} SMs${d.usable ? '' : ' (NOT USABLE)'}`);

  const cases = await loadCases();
  const stages: Stage[] = [];
  const results: CaseResult[] = [];
  const failures: string[] = [];
  const seed = (Date.now() % 1_000_000) + 1;

  // 2. correctness per family ---------------------------------------------------------------------------------------
  const families = [...new Set(cases.opCases(!quick).map((c) => c.family))];
  log('');
  log(`== correctness (seed ${seed}): device vs CPU per row, each device run twice bit for bit, device variants ==`);
  for (const family of families) {
    const timeout = Math.min(90, left(180));
    if (timeout < 20) {
      stages.push({ name: `correctness ${family}`, status: 'not run', note: 'out of time' });
      continue;
    }
    const child = runChild({ mode: 'compare', family, seed }, timeout, { MAE_CUDA_SYNC: '1', MAE_CUDA_DEBUG_ALLOC: '1' });
    const got = child.lines.filter((l) => l.startsWith(RESULT)).map((l) => JSON.parse(l.slice(RESULT.length)) as CaseResult);
    log(`-- ${family}: ${got.length} checks, ${got.filter((r) => !r.ok).length} failed, ${child.seconds.toFixed(1)} s`);
    for (const r of got) {
      results.push(r);
      if (!r.ok || !quick) log('  ' + cases.formatResult(r));
    }
    if (!child.ok) {
      log(`  !! the ${family} child did not finish cleanly; its last output:`);
      for (const l of child.tail.split('\n')) log('     ' + l);
    }
    stages.push({ name: `correctness ${family}`, status: child.ok ? 'ok' : 'failed', seconds: child.seconds, note: child.ok ? undefined : child.tail.split('\n').slice(-1)[0] });
  }

  // 3. the MAE training step, fused and unfused ---------------------------------------------------------------------
  log('');
  log('== MAE training step: CPU fp32 vs the device (fp32, bf16), same weights, images and noise ==');
  const steps: Record<string, unknown> = {};
  for (const fused of [true, false]) {
    const name = `MAE step check (${fused ? 'fused ops' : 'MAE_FUSED=0'})`;
    const timeout = Math.min(90, left(150));
    if (timeout < 30) {
      stages.push({ name, status: 'not run', note: 'out of time' });
      continue;
    }
    const child = runChild({ mode: 'step' }, timeout, { MAE_FUSED: fused ? '1' : '0' });
    for (const l of child.lines.filter((l) => l && !l.startsWith('@@'))) log('  ' + l);
    const r = dataOf<{ ok: boolean; fp32MaxRelDiff: number; bf16MaxRelDiff: number | null; imgPerSec?: number; imgPerSecBf16?: number }>(child)[0];
    steps[fused ? 'fused' : 'unfused'] = r ?? null;
    const ok = child.ok && !!r?.ok;
    if (!child.ok) for (const l of child.tail.split('\n')) log('     ' + l);
    stages.push({ name, status: ok ? 'ok' : 'failed', seconds: child.seconds });
  }

  // 4. compute-sanitizer --------------------------------------------------------------------------------------------
  log('');
  log('== compute-sanitizer over the small case set ==');
  const sanitizer: Record<string, unknown> = {};
  const san = dry ? null : findSanitizer();
  for (const tool of ['memcheck', 'racecheck']) {
    const name = `compute-sanitizer ${tool}`;
    if (dry) {
      stages.push({ name, status: 'skipped', note: 'dry run' });
      log(`${tool}: skipped (dry run)`);
      continue;
    }
    if (!san) {
      stages.push({ name, status: 'failed', note: 'compute-sanitizer not found' });
      log(`${tool}: compute-sanitizer NOT FOUND (PATH, /usr/local/cuda*/bin)`);
      continue;
    }
    const timeout = Math.min(90, left(90));
    if (timeout < 30) {
      stages.push({ name, status: 'not run', note: 'out of time' });
      continue;
    }
    // racecheck looks at shared memory, which our kernels use; the products go to the fallback kernel there, so
    // that what it reports is ours, not cuBLASLt's (memcheck runs them on cuBLASLt)
    const env: Record<string, string> = { MAE_CUDA_SYNC: '1', ...(tool === 'racecheck' ? { MAE_GEMM_FALLBACK: '1' } : {}) };
    const child = runChild({ mode: 'sanitize', seed }, timeout, env, [san, '--tool', tool, '--error-exitcode', '99', '--print-limit', '20']);
    const summary = child.tail.match(/ERROR SUMMARY: (\d+) error/g) ?? [];
    const checks = child.lines.filter((l) => l.startsWith(RESULT)).map((l) => JSON.parse(l.slice(RESULT.length)) as CaseResult);
    const wrong = checks.filter((r) => !r.ok);
    log(`${tool}: ${child.ok ? 'no errors' : 'ERRORS or did not finish'} (${summary.join('; ') || 'no summary'}), ${checks.length} checks ran under it (${wrong.length} failed), ${child.seconds.toFixed(1)} s`);
    if (!child.ok) for (const l of child.tail.split('\n').slice(-40)) log('     ' + l);
    for (const r of wrong) log('  ' + cases.formatResult(r));
    sanitizer[tool] = { ok: child.ok, summary, checks: checks.length, seconds: child.seconds };
    stages.push({ name, status: child.ok && !wrong.length ? 'ok' : 'failed', seconds: child.seconds, note: child.timedOut ? 'timed out' : undefined });
  }

  // 5. the ViT training steps ---------------------------------------------------------------------------------------
  log('');
  log(`== MAE training step speed (${dry ? 'fp32 on the CPU, a small model' : 'bf16'}) ==`);
  interface TrainData { preset: string; batch: number; stepS: number; imgPerS: number; tflops: number; mfu: number; matmulTflops: number; copyGBs: number; syncsPerStep: number | null; losses: number[]; fused: boolean; setupS: number }
  const trains: TrainData[] = [];
  // [label, preset, batch, environment, seconds that must be left to start it, required]: the fused ViT-B run is
  // part of the check; the others (the unfused path's speed, ViT-L) run when there is time
  const vitbBatch = Number(process.env.MAE_CHECK_VITB_BATCH ?? 128);
  const trainRuns: [string, string, number, Record<string, string>, number, boolean][] = dry
    ? [['mae_vit_tiny_patch4_28 (dry run)', 'mae_vit_tiny_patch4_28', 8, {}, 30, true]]
    : [
        ['ViT-B/16', 'mae_vit_base_patch16', vitbBatch, {}, 50, true],
        ['ViT-B/16, MAE_FUSED=0', 'mae_vit_base_patch16', vitbBatch, { MAE_FUSED: '0' }, 150, false],
        ['ViT-L/16', 'mae_vit_large_patch16', Number(process.env.MAE_CHECK_VITL_BATCH ?? 64), {}, 150, false],
      ];
  for (const [label, preset, batch, env, needLeft, required] of trainRuns) {
    const name = `training step ${label}`;
    if (left() < needLeft) {
      stages.push({ name, status: required ? 'not run' : 'skipped', note: 'out of time' });
      log(`${label}: ${required ? 'not run' : 'skipped'} (out of time)`);
      continue;
    }
    const timeout = Math.min(90, left(10));
    const child = runChild({ mode: 'train', preset, batch }, timeout, env);
    const d = dataOf<TrainData>(child)[0];
    if (d) {
      trains.push(d);
      log(
        `${label}, batch ${d.batch}: ${fmt(d.stepS * 1000)} ms/step, ${fmt(d.imgPerS)} img/s, ${fmt(d.tflops, 1)} TFLOP/s = ${fmt(100 * d.mfu)}% of the ${fmt(d.matmulTflops, 0)} TFLOP/s matrix rate measured now; host waits per step ${d.syncsPerStep ?? '-'}; losses ${d.losses.map((x) => x.toFixed(4)).join(' ')} (setup ${fmt(d.setupS)} s)`,
      );
    }
    const syncsOk = !d || d.syncsPerStep === null || d.syncsPerStep === 1;
    if (d && !syncsOk) log(`  !! ${d.syncsPerStep} host waits per step, expected 1 (the loss read)`);
    const lossesOk = !d || d.losses.every(Number.isFinite);
    if (!child.ok) for (const l of child.tail.split('\n')) log('     ' + l);
    stages.push({ name, status: child.ok && !!d && syncsOk && lossesOk ? 'ok' : 'failed', seconds: child.seconds });
  }

  // 6. kernel timings -----------------------------------------------------------------------------------------------
  let timings: Timing[] = [];
  const benchTimeout = Math.min(90, left(5));
  if (benchTimeout >= 30) {
    const bench = runChild({ mode: 'bench' }, benchTimeout);
    timings = dataOf<Timing>(bench);
    stages.push({ name: 'kernel timings', status: bench.ok ? 'ok' : 'failed', seconds: bench.seconds, note: bench.timedOut ? 'timed out (partial table)' : undefined });
    if (!bench.ok) for (const l of bench.tail.split('\n').slice(-10)) log('     ' + l);
  } else stages.push({ name: 'kernel timings', status: 'skipped', note: 'out of time' });

  // summary -----------------------------------------------------------------------------------------------------------
  log('');
  log('== summary ==');
  for (const family of families)
    for (const check of [...new Set(results.filter((r) => r.family === family).map((r) => r.check))]) {
      const rs = results.filter((r) => r.family === family && r.check === check);
      const worst = Math.max(0, ...rs.flatMap((r) => r.errors.filter((e) => e.kind === 'row' && Number.isFinite(e.err)).map((e) => e.err / e.tol)));
      log(`${family.padEnd(12)} ${check.padEnd(40)} ${rs.filter((r) => r.ok).length}/${rs.length} ok, worst error ${(100 * worst).toFixed(0)}% of its tolerance`);
    }
  for (const s of stages) log(`${s.name.padEnd(52)} ${s.status}${s.seconds !== undefined ? ` (${s.seconds.toFixed(1)} s)` : ''}${s.note ? `: ${s.note}` : ''}`);
  for (const r of results.filter((r) => !r.ok)) failures.push(cases.formatResult(r));
  for (const s of stages.filter((s) => s.status === 'failed' || s.status === 'not run')) failures.push(`${s.name}: ${s.status}${s.note ? ` (${s.note})` : ''}`);
  const passed = results.filter((r) => r.ok).length + stages.filter((s) => s.status === 'ok').length;
  const failed = failures.length;
  log(`passed ${passed}, failed ${failed}`);
  for (const fl of failures) log('FAILED ' + fl);

  if (timings.length) {
    log('');
    log(`== kernel timings (${device}; per call, median of 7 repeats after warm-up) ==`);
    log('op'.padEnd(64) + 'dtype'.padEnd(10) + 'GPU us'.padStart(10) + 'wall us'.padStart(10) + 'TFLOP/s'.padStart(9) + 'GB/s'.padStart(8) + 'floor us'.padStart(10) + '  of floor');
    for (const t of timings) {
      const tflops = t.flops ? t.flops / (t.us * 1e-6) / 1e12 : undefined;
      const gbs = t.bytes ? t.bytes / (t.us * 1e-6) / 1e9 : undefined;
      const frac = t.floorUs ? `${((100 * t.floorUs) / t.us).toFixed(0)}%` : '';
      log(t.name.slice(0, 63).padEnd(64) + t.precision.padEnd(10) + fmt(t.us).padStart(10) + fmt(t.wallUs).padStart(10) + fmt(tflops, 2).padStart(9) + fmt(gbs, 0).padStart(8) + fmt(t.floorUs).padStart(10) + '  ' + frac + (t.note ? `  ${t.note}` : ''));
    }
  }

  const vitb = trains.find((t) => t.preset === 'mae_vit_base_patch16' && t.fused) ?? (dry ? trains[0] : undefined);
  const json = {
    date,
    gpu,
    driver,
    cuda_driver: ver(cu.driverVersion),
    cuda_runtime: ver(cu.runtimeVersion),
    cublaslt: cu.cublasLt ?? null,
    archs: cu.archs ?? null,
    host: `${os.hostname()}, ${os.cpus().length} CPUs`,
    quick,
    dry_run: dry,
    seed,
    budget_s: budgetS,
    seconds: Math.round((Date.now() - started) / 100) / 10,
    passed,
    failed,
    failures,
    vitb_img_s: vitb ? Math.round(vitb.imgPerS * 10) / 10 : null,
    vitb_mfu: vitb ? Math.round(vitb.mfu * 1000) / 1000 : null,
    train_steps: trains,
    mae_step_check: steps,
    sanitizer,
    stages,
    checks: results.map((r) => ({ family: r.family, name: r.name, precision: r.precision, check: r.check, ok: r.ok, failure: r.failure, errors: r.errors.map((e) => ({ output: e.output, kind: e.kind, err: e.err, tol: e.tol, at: e.at })) })),
    timings,
  };
  writeFileSync(`${base}.json`, JSON.stringify(json, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 1) + '\n');
  log('');
  log(`results: ${base}.json, log: ${base}.log (${json.seconds} s). Copy both to benchmarks/results/device/ and commit them.`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  log(`device check crashed: ${(e as Error).stack ?? e}`);
  process.exitCode = 1;
});
