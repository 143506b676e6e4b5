/**
 * Matrix-product benchmark: the three products of a Linear in a training step (fwd y = x W^T + b, then backward dx
 * and dW together) on this machine's MAE shapes, in three arms, alternated round by round in one process:
 *   blas         float32 through our per-thread OpenBLAS blocks (native/cpu/gemm.cpp, the default)
 *   onednn-fp32  float32 through oneDNN's matmul primitive (MAE_FP32_GEMM=onednn)
 *   onednn-bf16  bf16 activations and weight copy, float32 accumulation (precision 'bf16')
 * plus the peaks: a large product (3200x3072x768, the ViT-B fc1 shape of the issue, and 2048^3) in each arm, and the
 * implementation oneDNN picks (ONEDNN_VERBOSE is not needed: the primitive's impl string, via info()).
 *
 * Output: a table of GFLOP/s per shape and arm, the per-class summary (time-weighted over fwd + bwd), and
 * benchmarks/results/matmul-<date>[-<tag>].json. Options: --quick, --threads N, --tag TAG.
 */
import { native, type NativeTensor } from '../lib/native.js';
import { benchArgs, describeMachine, fmt, machine, median, printTable, randn, resultName, writeJson } from './common.js';

const args = benchArgs(
  'node dist/benchmarks/matmul.js [--quick] [--threads N] [--tag TAG]\n' +
    "The model's matrix products through the BLAS blocks and through oneDNN (fp32 and bf16), arms alternating.",
  { flags: ['--quick'] },
);
const quick = args.includes('--quick');
if (args.includes('--threads')) native.setNumThreads(Number(args[args.indexOf('--threads') + 1]));
const THREADS = native.info().threads;
const ROUNDS = quick ? 3 : 5;

interface Shape {
  cls: string;
  layer: string;
  M: number;
  K: number;
  N: number;
}
// x [M, K], W [N, K]; M = batch x tokens: tiny at batch 64 (encoder 1 + 12 tokens, decoder 1 + 49), ViT-B at batch 8
// (encoder 1 + 49, decoder 1 + 196)
const shapes: Shape[] = [
  ...[['qkv', 192, 576], ['proj', 192, 192], ['fc1', 192, 768], ['fc2', 768, 192]].map(([l, K, N]) => ({ cls: 'tiny enc', layer: l as string, M: 64 * 13, K: K as number, N: N as number })),
  ...[['qkv', 128, 384], ['proj', 128, 128], ['fc1', 128, 512], ['fc2', 512, 128], ['pred', 128, 16]].map(([l, K, N]) => ({ cls: 'tiny dec', layer: l as string, M: 64 * 50, K: K as number, N: N as number })),
  ...[['qkv', 768, 2304], ['proj', 768, 768], ['fc1', 768, 3072], ['fc2', 3072, 768]].map(([l, K, N]) => ({ cls: 'ViT-B enc', layer: l as string, M: 8 * 50, K: K as number, N: N as number })),
  ...[['qkv', 512, 1536], ['proj', 512, 512], ['fc1', 512, 2048], ['fc2', 2048, 512], ['pred', 512, 768]].map(([l, K, N]) => ({ cls: 'ViT-B dec', layer: l as string, M: 8 * 197, K: K as number, N: N as number })),
  { cls: 'ViT-B patch', layer: 'patch_embed', M: 8 * 196, K: 768, N: 768 },
];
const peaks: Shape[] = [
  { cls: 'peak', layer: '3200x3072x768', M: 3200, K: 768, N: 3072 },
  { cls: 'peak', layer: '2048^3', M: 2048, K: 2048, N: 2048 },
];
type Arm = 'blas' | 'onednn-fp32' | 'onednn-bf16';
const ARMS: Arm[] = ['blas', 'onednn-fp32', 'onednn-bf16'];

interface Operands {
  x: NativeTensor;
  w: NativeTensor;
  b: NativeTensor;
  dy: NativeTensor;
  xb: NativeTensor;
  wb: NativeTensor;
  dyb: NativeTensor;
}
function operands(s: Shape): Operands {
  const x = randn([s.M, s.K], 1, 1), w = randn([s.N, s.K], 0.05, 2), b = randn([s.N], 0.1, 3), dy = randn([s.M, s.N], 1, 4);
  return { x, w, b, dy, xb: native.to(x, 'cpu', 'bfloat16'), wb: native.to(w, 'cpu', 'bfloat16'), dyb: native.to(dy, 'cpu', 'bfloat16') };
}

/** seconds of one forward and of one backward (dx and dW) in `arm`: the median of `reps` timed calls after one warm-up */
function timeArm(o: Operands, arm: Arm, reps: number): { fwd: number; bwd: number } {
  if (arm === 'onednn-fp32') process.env.MAE_FP32_GEMM = 'onednn';
  else delete process.env.MAE_FP32_GEMM;
  const bf = arm === 'onednn-bf16';
  const fwd = () => native.linear(bf ? o.xb : o.x, o.w, o.b, bf ? o.wb : null).dispose();
  const bwd = () => {
    for (const t of native.linearBackward(bf ? o.xb : o.x, o.w, bf ? o.dyb : o.dy, true, true, bf ? o.wb : null)) t?.dispose();
  };
  const time = (f: () => void) => {
    f();
    const runs: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      f();
      runs.push((performance.now() - t0) / 1e3);
    }
    return median(runs);
  };
  const r = { fwd: time(fwd), bwd: time(bwd) };
  delete process.env.MAE_FP32_GEMM;
  return r;
}

const m = machine();
const d = native.info().dnnl;
console.log(`matmul benchmark, ${describeMachine(m, THREADS)}`);
console.log(`oneDNN: ${d.available ? `${d.version}, isa ${d.isa}, bf16 native ${d.bf16Native}, AMX ${d.amx}` : `unavailable: ${d.reason}`}`);

interface Row {
  cls: string;
  layer: string;
  M: number;
  K: number;
  N: number;
  /** seconds per fwd / bwd call, per arm: the median over rounds */
  seconds: Record<Arm, { fwd: number; bwd: number }>;
  gflops: Record<Arm, { fwd: number; bwd: number; step: number }>;
}
const rows: Row[] = [];
for (const s of [...peaks, ...shapes]) {
  const o = operands(s);
  const per: Record<Arm, { fwd: number[]; bwd: number[] }> = { blas: { fwd: [], bwd: [] }, 'onednn-fp32': { fwd: [], bwd: [] }, 'onednn-bf16': { fwd: [], bwd: [] } };
  // the arms alternate, round by round, so that a change of load on the shared machine falls on all of them
  const reps = s.cls === 'peak' ? 3 : 5;
  for (let r = 0; r < ROUNDS; r++)
    for (const arm of r % 2 ? [...ARMS].reverse() : ARMS) {
      const t = timeArm(o, arm, reps);
      per[arm].fwd.push(t.fwd);
      per[arm].bwd.push(t.bwd);
    }
  for (const t of Object.values(o)) t.dispose();
  const flop = 2 * s.M * s.N * s.K;
  const seconds = {} as Row['seconds'];
  const gflops = {} as Row['gflops'];
  for (const arm of ARMS) {
    const f = median(per[arm].fwd), b = median(per[arm].bwd);
    seconds[arm] = { fwd: f, bwd: b };
    gflops[arm] = { fwd: flop / f / 1e9, bwd: (2 * flop) / b / 1e9, step: (3 * flop) / (f + b) / 1e9 };
  }
  rows.push({ ...s, seconds, gflops });
  console.log(`${s.cls} ${s.layer} [${s.M}x${s.K}]x[${s.K}x${s.N}]: ` + ARMS.map((a) => `${a} ${fmt(gflops[a].step)}`).join(', ') + ' GFLOP/s (fwd + bwd)');
}

printTable(
  ['class', 'layer', 'M', 'K', 'N', ...ARMS.flatMap((a) => [`${a} fwd`, `${a} bwd`]), 'fp32 winner'],
  rows.map((r) => [
    r.cls, r.layer, r.M, r.K, r.N, ...ARMS.flatMap((a) => [fmt(r.gflops[a].fwd), fmt(r.gflops[a].bwd)]),
    r.gflops.blas.step >= r.gflops['onednn-fp32'].step ? 'blas' : 'onednn',
  ]),
);

// per class, time-weighted over the class's products (fwd + bwd): total FLOPs / total seconds
const classes = [...new Set(rows.map((r) => r.cls))];
const summary = classes.map((cls) => {
  const rs = rows.filter((r) => r.cls === cls);
  const g = (a: Arm) => rs.reduce((s, r) => s + 6 * r.M * r.N * r.K, 0) / rs.reduce((s, r) => s + r.seconds[a].fwd + r.seconds[a].bwd, 0) / 1e9;
  return { cls, blas: g('blas'), onednnFp32: g('onednn-fp32'), onednnBf16: g('onednn-bf16') };
});
console.log('\nper class (GFLOP/s over fwd + bwd, time-weighted):');
printTable(
  ['class', 'blas fp32', 'oneDNN fp32', 'oneDNN bf16', 'oneDNN fp32 / blas', 'bf16 / best fp32'],
  summary.map((s) => [s.cls, fmt(s.blas), fmt(s.onednnFp32), fmt(s.onednnBf16), fmt(s.onednnFp32 / s.blas, 2), fmt(s.onednnBf16 / Math.max(s.blas, s.onednnFp32), 2)]),
);

const path = writeJson(resultName('matmul', m.date, args), {
  benchmark: 'matmul',
  machine: { ...m, loadavgEnd: machine().loadavg },
  dnnl: d,
  conventions: {
    arms: 'blas: float32 per-thread OpenBLAS blocks; onednn-fp32: MAE_FP32_GEMM=onednn; onednn-bf16: bf16 x, dy and weight copy, fp32 accumulation, dW fp32',
    timing: `${ROUNDS} rounds alternating the arms; per round the median of 5 (peaks 3) calls after one warm-up; the median over rounds`,
    gflops: 'fwd 2MNK, bwd (dx and dW) 4MNK, step 6MNK per (fwd + bwd) seconds',
  },
  rows,
  summary,
});
console.log(`wrote ${path}`);
