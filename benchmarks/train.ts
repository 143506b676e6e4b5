/**
 * Training-step benchmark: images per second of a full MAE training step (forward, backward, AdamW step) on the
 * CPU, model FLOP utilisation (MFU) against the sgemm peak measured in the same run, the speed-up of masking
 * (ratio 0.75 vs 0, i.e. the encoder on a quarter of the patches vs on all of them), and the same steps in PyTorch
 * (benchmarks/torch_mae.py, a re-implementation of the official models_mae.py) when python3 can import torch.
 *
 * Cases: mae_vit_tiny_patch4_28 at batch 64 and mae_vit_base_patch16 at batch 8, each at mask ratio 0.75 and 0, each in
 * fp32 and bf16 (bf16 activations, fp32 master weights: precision 'bf16'); PyTorch in fp32 and under
 * torch.autocast('cpu', dtype=torch.bfloat16) with OMP_WAIT_POLICY=PASSIVE (its best CPU setting). MFU of an fp32 step
 * is against the fp32 peak (native.linear 2048^3 on the BLAS), of a bf16 step against the bf16 peak (the same product
 * in bf16 through oneDNN), both measured in the same run.
 *
 * Model FLOPs per image are lib/mae/flops.ts's maeFlops (the count `mae bench` and the training log use:
 * multiply-accumulates of every matmul and of attention's two batched products; forward = 2 x MACs, training = 3 x
 * forward). The ViT-B counts are printed against MAE-SPEC's 58.2 (ratio 0.75) and 138.0 (full encoder) GFLOP per
 * image; MAE-SPEC counts the patch embedding of the MAE on the kept patches only, hence its 0.8% lower 58.2.
 *
 * A profiled pass (each native call wrapped in a timer) then splits a step into op families; PyTorch's steps are
 * profiled likewise (torch.autograd.profiler), and the time of its linear layers and patch embedding gives the bound
 * on ours / PyTorch that no change outside those products can pass: PyTorch's step / its linear time.
 *
 * Output: tables on stdout and benchmarks/results/train-<date>.json.
 * Output name: <kind>-<date>[-threads<N> when --threads is given][-<tag> with --tag TAG].json.
 * Options: --quick (fewer steps), --only tiny|base, --ratio R (only that mask ratio), --precision fp32|bf16 (only
 * that precision), --no-torch, --no-profile, --python PATH, --threads N (default:
 * the addon's default, all cores; PyTorch gets the same number), --torch-default-blas (PyTorch's process does not
 * inherit an OPENBLAS_CORETYPE override given to ours).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { maeFlops, type FlopCount } from '../lib/mae/flops.js';
import { amxUnusedReason } from '../lib/mae/precision.js';
import { MaskedAutoencoder, type Precision } from '../lib/mae/model.js';
import { getPreset, type MaeConfig, type PresetName } from '../lib/mae/presets.js';
import { native, ompDefaults, packageRoot, type NativeTensor } from '../lib/native.js';
import { AdamW } from '../lib/optim/adamw.js';
import { Tensor, tidy } from '../lib/tensor.js';
import { benchArgs, bf16Peak as bf16PeakOf, describeMachine, fmt, machine, median, printTable, randn, resultName, timeIt, writeJson } from './common.js';

const args = benchArgs(
  'node dist/benchmarks/train.js [--quick] [--only tiny|base] [--ratio R] [--precision fp32|bf16] [--no-torch] [--no-profile]\n' +
    '                              [--python PATH] [--threads N] [--torch-default-blas] [--tag TAG]\n' +
    'Images per second of a full training step, ours (fp32, bf16) against PyTorch (fp32, bf16 autocast), with MFU and\n' +
    'a per-op profile.',
  { flags: ['--quick', '--no-torch', '--no-profile', '--torch-default-blas'], values: ['--only', '--ratio', '--precision', '--python'] },
);
const quick = args.includes('--quick');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null;
const withTorch = !args.includes('--no-torch');
const withProfile = !args.includes('--no-profile');
const pythonArg = args.includes('--python') ? args[args.indexOf('--python') + 1]! : null;
if (args.includes('--threads')) native.setNumThreads(Number(args[args.indexOf('--threads') + 1]));
const THREADS = native.info().threads;

// ---- the training step --------------------------------------------------------------------------------------------
interface Case {
  preset: PresetName;
  batch: number;
  maskRatio: number;
  precision: Precision;
}
const onlyRatio = args.includes('--ratio') ? Number(args[args.indexOf('--ratio') + 1]) : null;
const onlyPrecision = args.includes('--precision') ? args[args.indexOf('--precision') + 1] : null;
const cases: Case[] = (
  [
    { preset: 'mae_vit_tiny_patch4_28', batch: 64, maskRatio: 0.75 },
    { preset: 'mae_vit_tiny_patch4_28', batch: 64, maskRatio: 0 },
    { preset: 'mae_vit_base_patch16', batch: 8, maskRatio: 0.75 },
    { preset: 'mae_vit_base_patch16', batch: 8, maskRatio: 0 },
  ] as const
)
  .flatMap((c) => (['fp32', 'bf16'] as const).map((precision) => ({ ...c, precision })))
  .filter((c) => !only || (only === 'tiny' ? c.preset.includes('tiny') : c.preset.includes('base')))
  .filter((c) => onlyRatio === null || c.maskRatio === onlyRatio)
  .filter((c) => onlyPrecision === null || c.precision === onlyPrecision);

interface Trainer {
  step(): { forward: number; backward: number; optimizer: number };
  dispose(): void;
}

function makeTrainer(c: Case): Trainer {
  const cfg = getPreset(c.preset);
  const model = MaskedAutoencoder.fromPreset(c.preset, {}, { seed: 0 });
  const opt = new AdamW(model.parameterGroups(0.05), { lr: (1.5e-4 * c.batch) / 256, betas: [0.9, 0.95] });
  const imgs = new Tensor(randn([c.batch, cfg.inChans, cfg.imgSize, cfg.imgSize], 1.5, 99)).keep();
  return {
    step() {
      const t0 = performance.now();
      let t1 = t0;
      tidy(() => {
        const out = model.forward(imgs, { maskRatio: c.maskRatio, precision: c.precision });
        out.loss.item();
        t1 = performance.now();
        out.loss.backward();
      });
      const t2 = performance.now();
      opt.step();
      opt.zeroGrad();
      const t3 = performance.now();
      return { forward: t1 - t0, backward: t2 - t1, optimizer: t3 - t2 };
    },
    dispose() {
      opt.dispose();
      imgs.dispose();
      model.dispose();
    },
  };
}

/**
 * `warm` warm-up steps, then `reps` timed repetitions of `per` steps each, where `per` fills about `repSeconds`
 * (from the last warm-up step's time, 1 to 10 steps); median seconds per step.
 */
function timeSteps(tr: Trainer, warm: number, reps: number, repSeconds: number): { median: number; runs: number[]; per: number } {
  let last = 0;
  for (let i = 0; i < warm; i++) {
    const t0 = performance.now();
    tr.step();
    last = (performance.now() - t0) / 1e3;
  }
  const per = Math.max(1, Math.min(10, Math.round(repSeconds / last)));
  const runs: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < per; i++) tr.step();
    runs.push((performance.now() - t0) / 1e3 / per);
  }
  return { median: median(runs), runs, per };
}

// ---- the profiling wrapper: time (and FLOPs) per native function ---------------------------------------------------
interface Prof {
  ms: number;
  calls: number;
  flops: number;
}
function shapeOf(t: unknown): number[] {
  return (t as NativeTensor).shape;
}
function rowsOf(s: number[]): number {
  return s.slice(0, -1).reduce((a, b) => a * b, 1);
}
function flopsOf(name: string, a: unknown[]): number {
  if (name === 'linear' || name === 'linearBackward') {
    const xs = shapeOf(a[0]), ws = shapeOf(a[1]);
    const mnk = rowsOf(xs) * ws[0]! * ws[1]!;
    return name === 'linear' ? 2 * mnk : (a[3] ? 4 : 2) * mnk;
  }
  if (name === 'attention' || name === 'attentionBackward') {
    const [B, N, D3] = shapeOf(a[0]) as [number, number, number];
    const base = B * N * N * (D3 / 3);
    return name === 'attention' ? 4 * base : 10 * base;
  }
  return 0;
}
function instrument(into: Map<string, Prof>): () => void {
  const n = native as unknown as Record<string, unknown>;
  const saved: [string, unknown][] = [];
  for (const k of Object.keys(n)) {
    const f = n[k];
    if (typeof f !== 'function' || k === 'NativeTensor') continue;
    saved.push([k, f]);
    n[k] = function (this: unknown, ...a: unknown[]) {
      const t0 = performance.now();
      const r = (f as (...x: unknown[]) => unknown).apply(this, a);
      const dt = performance.now() - t0;
      const p = into.get(k) ?? { ms: 0, calls: 0, flops: 0 };
      p.ms += dt;
      p.calls++;
      p.flops += flopsOf(k, a);
      into.set(k, p);
      return r;
    };
  }
  return () => {
    for (const [k, f] of saved) n[k] = f;
  };
}
const family: Record<string, string> = {
  linear: 'linear fwd', linearBackward: 'linear bwd', attention: 'attention fwd', attentionBackward: 'attention bwd',
  layerNorm: 'layernorm', layerNormBackward: 'layernorm', addLayerNorm: 'layernorm', gelu: 'gelu', geluBackward: 'gelu',
  biasGelu: 'gelu', biasGeluBackward: 'gelu', to: 'convert',
  maskedMse: 'masked_mse', maskedMseBackward: 'masked_mse', adamwStep: 'adamw',
  add: 'elementwise', mul: 'elementwise', sumTo: 'elementwise', axpby: 'elementwise', sum: 'elementwise', clone: 'elementwise', fill: 'elementwise',
  gatherRows: 'tokens', scatterAddRows: 'tokens', catTokens: 'tokens', sliceTokens: 'tokens',
  patchify: 'patchify', unpatchify: 'patchify', fromArray: 'create', full: 'create',
};

// ---- PyTorch ------------------------------------------------------------------------------------------------------
function findPython(): string | null {
  const candidates = pythonArg ? [pythonArg] : ['python3', '/usr/bin/python3', 'python'];
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return py;
  }
  return null;
}
interface TorchResult {
  imgPerSec: number;
  secondsPerStep: number;
  runs: number[];
  torch: string;
  threads: number;
  /** torch_mae.py --profile: self CPU ms per step of each aten op; linearMs: nn.Linear and the patch embedding */
  profile?: { steps: number; totalMs: number; linearMs: number; opsMs: Record<string, number> };
}
/**
 * PyTorch's environment: ours, with its thread count, without the OpenMP spin setting lib/native.ts added for our
 * process, and with OMP_WAIT_POLICY=PASSIVE unless the user set a policy: PyTorch's OpenBLAS keeps its own thread
 * pool next to its OpenMP team, and sleeping OpenMP threads made its tiny step 2.5x faster than libgomp's default
 * and 1.1-1.5x faster than a 0.3 ms spin (benchmarks/README.md). --torch-default-blas drops an OPENBLAS_CORETYPE
 * override.
 */
function torchEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: String(THREADS), OPENBLAS_NUM_THREADS: String(THREADS) };
  for (const name of Object.keys(ompDefaults)) delete env[name];
  if (env.GOMP_SPINCOUNT === undefined) env.OMP_WAIT_POLICY ??= 'PASSIVE';
  if (args.includes('--torch-default-blas')) delete env.OPENBLAS_CORETYPE;
  return env;
}
function runTorch(py: string, c: Case, warm: number, reps: number, repSeconds: number, profileSteps: number): TorchResult | { error: string } {
  const script = join(packageRoot(), 'benchmarks', 'torch_mae.py');
  const r = spawnSync(
    py,
    [script, '--preset', c.preset, '--batch', String(c.batch), '--mask-ratio', String(c.maskRatio), '--threads', String(THREADS),
      '--autocast', c.precision === 'bf16' ? 'bf16' : 'none',
      '--warmup', String(warm), '--reps', String(reps), '--rep-seconds', String(repSeconds), '--profile', String(profileSteps), '--json'],
    { encoding: 'utf8', env: torchEnv(), maxBuffer: 1 << 24 },
  );
  const line = r.stdout?.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (r.status !== 0 || !line) return { error: `torch_mae.py exited ${r.status}: ${(r.stderr ?? '').slice(-500)}` };
  return JSON.parse(line) as TorchResult;
}

// ---- run ------------------------------------------------------------------------------------------------------------
const m = machine();
console.log(`training benchmark, ${describeMachine(m, THREADS)}`);

function sgemmPeak(): number {
  const s = 2048;
  const x = randn([s, s], 1, 1), w = randn([s, s], 1, 2);
  const t = timeIt(() => native.linear(x, w, null).dispose(), { reps: quick ? 3 : 5, minTime: 0.2 });
  x.dispose();
  w.dispose();
  return (2 * s * s * s) / t.median / 1e9;
}
const peakStart = sgemmPeak();
console.log(`sgemm peak (native.linear 2048^3): ${fmt(peakStart)} GFLOP/s`);

const bf16Peak = () => bf16PeakOf({ reps: quick ? 3 : 5 });
const bf16PeakStart = bf16Peak();
const dnnl = native.info().dnnl;
console.log(
  `bf16 peak (the same in bf16, oneDNN ${dnnl.version ?? '-'} isa ${dnnl.isa ?? '-'}, native bf16 ${dnnl.bf16Native ?? false}, AMX ${dnnl.amx ?? false}): ${fmt(bf16PeakStart)} GFLOP/s`,
);
const amxUnused = amxUnusedReason(dnnl);
if (amxUnused) console.log(`this CPU has AMX, unused: ${amxUnused}`);

const py = withTorch ? findPython() : null;
if (withTorch && !py) console.log('python3 cannot import torch: skipping the PyTorch comparison');

interface Result {
  preset: string;
  batch: number;
  maskRatio: number;
  precision: Precision;
  secondsPerStep: number;
  runs: number[];
  stepsPerRep: number;
  imgPerSec: number;
  flopsPerImage: FlopCount;
  achievedGflops: number;
  /** the peak of this case's precision (fp32: sgemm; bf16: oneDNN bf16), measured right before it */
  sgemmPeakGflops: number;
  mfu: number;
  phaseMs?: { forward: number; backward: number; optimizer: number };
  profile?: { fn: string; family: string; msPerStep: number; pct: number; calls: number; gflops: number | null }[];
  torch?: TorchResult | { error: string };
  oursOverTorch?: number;
}
const results: Result[] = [];

for (const c of cases) {
  const cfg = getPreset(c.preset);
  const base = c.preset.includes('base');
  // steps: ViT-B takes seconds per step (one step per repetition), the tiny model less (several per repetition)
  const warm = base ? 1 : 3;
  const reps = base ? (quick ? 2 : 3) : quick ? 3 : 5;
  const repSeconds = base ? 0 : quick ? 1 : 2;
  // right before the case, in its precision: the machine may be shared, so MFU uses the peak of the moment
  const peak = c.precision === 'bf16' ? bf16Peak() : sgemmPeak();
  const tr = makeTrainer(c);
  const t = timeSteps(tr, warm, reps, repSeconds);
  const flops = maeFlops(cfg, c.maskRatio);
  const imgPerSec = c.batch / t.median;
  const achieved = (flops.training * imgPerSec) / 1e9;
  const res: Result = {
    ...c, secondsPerStep: t.median, runs: t.runs, stepsPerRep: t.per, imgPerSec, flopsPerImage: flops, achievedGflops: achieved, sgemmPeakGflops: peak, mfu: achieved / peak,
  };
  console.log(
    `${c.preset} batch ${c.batch} ratio ${c.maskRatio} ${c.precision}: ${fmt(t.median * 1e3)} ms/step, ${fmt(imgPerSec, 2)} img/s, ` +
      `${fmt(flops.training / 1e9, 2)} GFLOP/img, ${fmt(achieved)} GFLOP/s, MFU ${fmt(100 * res.mfu)}%`,
  );

  const nprof = base ? 1 : 5;
  if (withProfile) {
    const prof = new Map<string, Prof>();
    const restore = instrument(prof);
    const phases = { forward: 0, backward: 0, optimizer: 0 };
    const t0 = performance.now();
    try {
      for (let i = 0; i < nprof; i++) {
        const ph = tr.step();
        phases.forward += ph.forward / nprof;
        phases.backward += ph.backward / nprof;
        phases.optimizer += ph.optimizer / nprof;
      }
    } finally {
      restore();
    }
    const stepMs = (performance.now() - t0) / nprof;
    const list = [...prof.entries()].map(([fn, p]) => ({
      fn, family: family[fn] ?? 'other', msPerStep: p.ms / nprof, pct: (100 * p.ms) / nprof / stepMs, calls: p.calls / nprof,
      gflops: p.flops > 0 ? p.flops / (p.ms / 1e3) / 1e9 : null,
    }));
    const nativeMs = list.reduce((a, b) => a + b.msPerStep, 0);
    list.push({ fn: '(outside native: JS, autograd, tidy)', family: 'js', msPerStep: stepMs - nativeMs, pct: (100 * (stepMs - nativeMs)) / stepMs, calls: 0, gflops: null });
    list.sort((a, b) => b.msPerStep - a.msPerStep);
    res.phaseMs = phases;
    res.profile = list;
  }

  if (py) {
    const tt = runTorch(py, c, warm, reps, repSeconds, withProfile ? nprof : 0);
    res.torch = tt;
    if ('imgPerSec' in tt) {
      res.oursOverTorch = imgPerSec / tt.imgPerSec;
      console.log(`  PyTorch ${tt.torch}${c.precision === 'bf16' ? ' bf16 autocast' : ''}: ${fmt(tt.secondsPerStep * 1e3)} ms/step, ${fmt(tt.imgPerSec, 2)} img/s; ours / PyTorch ${fmt(res.oursOverTorch, 2)}x`);
      if (tt.profile && res.profile) {
        // with linear layers as fast as PyTorch's and every other op free, ours / PyTorch would be step / linear
        const oursLinear = res.profile.filter((p) => p.family.startsWith('linear')).reduce((a, p) => a + p.msPerStep, 0);
        const theirs = tt.profile.linearMs;
        console.log(
          `  linear layers + patch embedding: PyTorch ${fmt(theirs)} ms of its step (profiler), ours ${fmt(oursLinear)} ms; ` +
            `bound on ours / PyTorch at PyTorch's linear time: ${fmt((tt.secondsPerStep * 1e3) / theirs, 2)}x`,
        );
      }
    } else console.log(`  PyTorch failed: ${tt.error}`);
  }
  tr.dispose();
  results.push(res);
}
const peakEnd = sgemmPeak();
const bf16PeakEnd = bf16Peak();

// ---- report -------------------------------------------------------------------------------------------------------
console.log(
  `\nsgemm peak: ${fmt(peakStart)} GFLOP/s at the start, ${fmt(peakEnd)} at the end; bf16 peak ${fmt(bf16PeakStart)} / ${fmt(bf16PeakEnd)}; ` +
    `MFU uses the peak of the case's precision measured right before it\n`,
);
printTable(
  ['preset', 'batch', 'ratio', 'precision', 'ms/step', 'img/s', 'GFLOP/img', 'GFLOP/s', 'peak', 'MFU %', 'torch img/s', 'ours/torch'],
  results.map((r) => [
    r.preset, r.batch, r.maskRatio, r.precision, fmt(r.secondsPerStep * 1e3), fmt(r.imgPerSec, 2), fmt(r.flopsPerImage.training / 1e9, 2),
    fmt(r.achievedGflops), fmt(r.sgemmPeakGflops), fmt(100 * r.mfu), r.torch && 'imgPerSec' in r.torch ? fmt(r.torch.imgPerSec, 2) : '-',
    r.oursOverTorch ? `${fmt(r.oursOverTorch, 2)}x` : '-',
  ]),
);

const speedups: Record<string, { ours: number; torch?: number; flopRatio: number }> = {};
for (const p of new Set(results.map((r) => r.preset))) {
  const a = results.find((r) => r.preset === p && r.maskRatio === 0.75 && r.precision === 'fp32'),
    b = results.find((r) => r.preset === p && r.maskRatio === 0 && r.precision === 'fp32');
  if (!a || !b) continue;
  const ta = a.torch && 'imgPerSec' in a.torch ? a.torch.imgPerSec : null, tb = b.torch && 'imgPerSec' in b.torch ? b.torch.imgPerSec : null;
  speedups[p] = { ours: a.imgPerSec / b.imgPerSec, flopRatio: b.flopsPerImage.training / a.flopsPerImage.training, ...(ta && tb ? { torch: ta / tb } : {}) };
  console.log(
    `${p}: ratio 0.75 vs 0 speed-up ${fmt(speedups[p]!.ours, 2)}x (FLOP ratio ${fmt(speedups[p]!.flopRatio, 2)}x` +
      `${speedups[p]!.torch ? `; PyTorch ${fmt(speedups[p]!.torch!, 2)}x` : ''}); the paper's Table 2: 2.8x to 4.1x`,
  );
}

// the issue's table: ours fp32 and bf16 against PyTorch fp32 and bf16 autocast, and ours (best) / PyTorch (best)
const versus: { preset: string; batch: number; maskRatio: number; ours: Record<string, number>; torch: Record<string, number>; bestOverBest: number | null }[] = [];
for (const key of new Set(results.map((r) => `${r.preset}|${r.batch}|${r.maskRatio}`))) {
  const rs = results.filter((r) => `${r.preset}|${r.batch}|${r.maskRatio}` === key);
  const ours: Record<string, number> = {}, torch: Record<string, number> = {};
  for (const r of rs) {
    ours[r.precision] = r.imgPerSec;
    if (r.torch && 'imgPerSec' in r.torch) torch[r.precision === 'bf16' ? 'bf16 autocast' : 'fp32'] = r.torch.imgPerSec;
  }
  const bt = Math.max(...Object.values(torch));
  versus.push({ preset: rs[0]!.preset, batch: rs[0]!.batch, maskRatio: rs[0]!.maskRatio, ours, torch, bestOverBest: Number.isFinite(bt) ? Math.max(...Object.values(ours)) / bt : null });
}
console.log('\nimg/s, ours against PyTorch (its best of fp32 and bf16 autocast):');
printTable(
  ['model', 'batch', 'ratio', 'ours fp32', 'ours bf16', 'PyTorch fp32', 'PyTorch bf16 autocast', 'ours best / PyTorch best'],
  versus.map((v) => [
    v.preset, v.batch, v.maskRatio, v.ours.fp32 ? fmt(v.ours.fp32, 2) : '-', v.ours.bf16 ? fmt(v.ours.bf16, 2) : '-', v.torch.fp32 ? fmt(v.torch.fp32, 2) : '-',
    v.torch['bf16 autocast'] ? fmt(v.torch['bf16 autocast']!, 2) : '-', v.bestOverBest ? `${fmt(v.bestOverBest, 2)}x` : '-',
  ]),
);

const vb = getPreset('mae_vit_base_patch16');
const check = {
  ratio075: { ours: maeFlops(vb, 0.75).training / 1e9, spec: 58.2 },
  ratio0: { ours: maeFlops(vb, 0).training / 1e9, spec: 138.0 },
};
console.log(
  `ViT-B training GFLOP/img: ${fmt(check.ratio075.ours, 2)} at ratio 0.75 (MAE-SPEC 58.2, ${fmt((100 * (check.ratio075.ours - 58.2)) / 58.2, 2)}%), ` +
    `${fmt(check.ratio0.ours, 2)} for the full encoder (MAE-SPEC 138.0, ${fmt((100 * (check.ratio0.ours - 138)) / 138, 2)}%); ` +
    'MAE-SPEC counts the patch embedding on the kept patches only at ratio 0.75, the code embeds all of them',
);

for (const r of results) {
  if (!r.profile) continue;
  console.log(`\nprofile, ${r.preset} batch ${r.batch} ratio ${r.maskRatio} ${r.precision} (ms per step; phases: forward ${fmt(r.phaseMs!.forward)}, backward ${fmt(r.phaseMs!.backward)}, optimizer ${fmt(r.phaseMs!.optimizer)})`);
  const fam = new Map<string, number>();
  for (const p of r.profile) fam.set(p.family, (fam.get(p.family) ?? 0) + p.msPerStep);
  const total = [...fam.values()].reduce((a, b) => a + b, 0);
  printTable(
    ['function', 'family', 'ms/step', '%', 'calls', 'GFLOP/s'],
    r.profile.filter((p) => p.pct >= 0.5).map((p) => [p.fn, p.family, fmt(p.msPerStep, 2), fmt(p.pct), fmt(p.calls, 0), p.gflops ? fmt(p.gflops) : '']),
  );
  console.log('by family: ' + [...fam.entries()].sort((a, b) => b[1] - a[1]).map(([f, ms]) => `${f} ${fmt((100 * ms) / total)}%`).join(', '));
}

const path = writeJson(resultName('train', m.date, args), {
  benchmark: 'train',
  machine: { ...m, loadavgEnd: machine().loadavg },
  conventions: {
    flops: 'analytic per image: MACs of every matmul (patch embed on L patches, encoder on 1+kept tokens, decoder and pred on 1+L) and of attention (2 T^2 D per block); forward = 2 x MACs, training = 3 x forward',
    mfu: 'training FLOPs per image x img/s / the peak of the case precision (fp32: native.linear 2048^3 on the BLAS; bf16: the same with bf16 x and weight copy through oneDNN), measured right before each case',
    timing: 'warm-up steps (1 for ViT-B, 3 for tiny), then the median over repetitions (3 / 5) of seconds per step, each repetition 1 step (ViT-B) or as many as fill ~2 s (tiny, 1-10); a step = forward + backward + AdamW step + zero_grad',
    torch: "benchmarks/torch_mae.py, same preset, batch, mask ratio and thread count, torch.optim.AdamW(betas=(0.9, 0.95)); the bf16 cases under torch.autocast('cpu', dtype=torch.bfloat16), OMP_WAIT_POLICY=PASSIVE",
  },
  sgemmPeakGflops: { start: peakStart, end: peakEnd },
  bf16PeakGflops: { start: bf16PeakStart, end: bf16PeakEnd },
  dnnl,
  versus,
  vitbFlopCheck: check,
  speedups,
  results,
});
console.log(`wrote ${path}`);
