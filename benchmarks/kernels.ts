/**
 * Kernel benchmark: each CPU kernel on the MAE shapes, next to what this machine can do, measured in the same run.
 *
 *   reference 1, the sgemm peak: `native.linear` on square 1024^3 and 2048^3 problems (no bias) at the start and
 *     2048^3 again at the end; the best median.
 *   reference 2, the copy bandwidth: `native.axpby(1, x, 0, y)` (y = x) and `native.clone` on 64 MiB (DRAM), bytes
 *     = 4 read + 4 written per element; the best median. Memory-bound ops are also compared with the same copy on
 *     a buffer as large as the op's input (the cache level the op actually runs from: the tiny model sits in L2).
 *
 * Shapes (64 images): ViT-B encoder 50 tokens x 768 (12 heads) (49 kept patches + cls at ratio 0.75), decoder
 * 197 x 512 (16 heads); the 28-px tiny model encoder 13 x 192 (3 heads), decoder 50 x 128 (4 heads). Linear layers:
 * qkv (D -> 3D), proj (D -> D), fc1 (D -> 4D), fc2 (4D -> D) of each.
 *
 * FLOP conventions (rows M, in K, out N; batch B, heads H, tokens N, head dim hd):
 *   linear   forward 2MNK (the bias add not counted); backward 4MNK (dx = dy W and dW = dy^T x; db not counted)
 *   attention forward 4 B H N^2 hd (S = q k^T and P v; softmax not counted);
 *             backward 10 B H N^2 hd = 2x forward (dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q) + the S = q k^T
 *             recompute our kernel does (it keeps only the log-sum-exp)
 * Bytes: the minimum each op must read and write once (float32), listed per op below.
 *
 * bf16 (when oneDNN has bf16 kernels here): attention and biasGelu with bf16 activations on the same shapes, against
 * the bf16 peak (native.linear 2048^3 with bf16 operands, oneDNN); attention where the fused AVX512-BF16 kernel runs
 * twice, with it and with oneDNN's batched products (child processes with MAE_CPU_ATTENTION=fused and =onednn; the
 * two arms run one after the other, so compare them on a quiet machine), else with oneDNN's products.
 *
 * Output: a table on stdout and benchmarks/results/kernels-<date>.json.
 * Output name: <kind>-<date>[-threads<N> when --threads is given][-<tag> with --tag TAG].json.
 * Options: --quick (fewer repetitions), --reps N, --threads N (default: the addon's default, all cores).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { native, type NativeTensor } from '../lib/native.js';
import { benchArgs, bf16Peak, describeMachine, fmt, machine, printTable, randn, resultName, timeIt, writeJson, type Timing } from './common.js';

const args = benchArgs(
  'npm run bench (kernels) or node dist/benchmarks/kernels.js [--quick] [--reps N] [--threads N] [--tag TAG]\n' +
    'Each CPU kernel on the MAE shapes against the sgemm peak, the copy bandwidth and (bf16) the bf16 peak.',
  { flags: ['--quick', '--bf16-attention-rows'], values: ['--reps'] },
);
const quick = args.includes('--quick');
const repsArg = args.indexOf('--reps');
const REPS = repsArg >= 0 ? Number(args[repsArg + 1]) : quick ? 3 : 5;
const MIN_TIME = quick ? 0.05 : 0.1;
if (args.includes('--threads')) native.setNumThreads(Number(args[args.indexOf('--threads') + 1]));

const bench = (fn: () => void): Timing => timeIt(fn, { reps: REPS, minTime: MIN_TIME });
const free = (...ts: (NativeTensor | null)[]) => {
  for (const t of ts) t?.dispose();
};

interface Row {
  group: 'peak' | 'copy' | 'linear' | 'attention' | 'layernorm' | 'gelu' | 'masked_mse';
  /** bf16 rows: percentages against the bf16 peak */
  precision?: 'bf16';
  name: string;
  shape: string;
  dir: 'fwd' | 'bwd' | 'fwd+bwd' | '-';
  seconds: number;
  /** GFLOP/s for compute-bound rows, GB/s for memory-bound ones */
  rate: number;
  unit: 'GFLOP/s' | 'GB/s';
  /** rate / sgemm peak, or rate / DRAM copy bandwidth */
  pctOfPeak: number;
  /** memory-bound rows: rate / copy bandwidth measured on a buffer of the op's input size */
  pctOfSameSizeCopy?: number;
  sameSizeCopyGBs?: number;
  flops?: number;
  bytes?: number;
  runs: number[];
}

// ---- the MAE shapes -----------------------------------------------------------------------------------------------
interface Cfg {
  name: string;
  B: number;
  N: number;
  D: number;
  H: number;
}
const cfgs: Cfg[] = [
  { name: 'vitb-enc', B: 64, N: 50, D: 768, H: 12 },
  { name: 'vitb-dec', B: 64, N: 197, D: 512, H: 16 },
  { name: 'tiny-enc', B: 64, N: 13, D: 192, H: 3 },
  { name: 'tiny-dec', B: 64, N: 50, D: 128, H: 4 },
];

const toBf16 = (t: NativeTensor): NativeTensor => {
  const b = native.to(t, 'cpu', 'bfloat16');
  t.dispose();
  return b;
};

/**
 * bf16 attention forward and backward on every shape, with the kernel this process runs (percentages left at 0):
 * `kernel` names it in the rows
 */
function bf16AttentionRows(kernel: string): Row[] {
  const out: Row[] = [];
  for (const c of cfgs) {
    const hd = c.D / c.H;
    const qkv = toBf16(randn([c.B, c.N, 3 * c.D], 1, 21)), dout = toBf16(randn([c.B, c.N, c.D], 1, 22));
    const [o, lse] = native.attention(qkv, c.H);
    const tf = bench(() => free(...native.attention(qkv, c.H)));
    const tb = bench(() => free(native.attentionBackward(qkv, o, dout, lse, c.H)));
    const ff = 4 * c.B * c.H * c.N * c.N * hd, fb = 10 * c.B * c.H * c.N * c.N * hd;
    const shape = `B${c.B} N${c.N} D${c.D} H${c.H} hd${hd}`;
    const name = `${c.name} attention bf16 (${kernel})`;
    const base = { group: 'attention', precision: 'bf16', name, shape, unit: 'GFLOP/s', pctOfPeak: 0 } as const;
    out.push({ ...base, dir: 'fwd', seconds: tf.median, rate: ff / tf.median / 1e9, flops: ff, runs: tf.runs });
    out.push({ ...base, dir: 'bwd', seconds: tb.median, rate: fb / tb.median / 1e9, flops: fb, runs: tb.runs });
    const ts = tf.median + tb.median;
    out.push({ ...base, dir: 'fwd+bwd', seconds: ts, rate: (ff + fb) / ts / 1e9, flops: ff + fb, runs: [] });
    free(qkv, dout, o, lse);
  }
  return out;
}

// an arm of the bf16 attention rows, in a child process started with MAE_CPU_ATTENTION=fused or =onednn
if (args.includes('--bf16-attention-rows')) {
  console.log(JSON.stringify(bf16AttentionRows(process.env.MAE_CPU_ATTENTION === 'fused' ? 'fused' : 'oneDNN')));
  process.exit(0);
}

const rows: Row[] = [];
const m = machine();
console.log(`kernels benchmark, ${describeMachine(m, m.threads)}`);

// ---- reference 1: sgemm peak through native.linear --------------------------------------------------------------
let peak = 0;
for (const s of [1024, 2048]) {
  const x = randn([s, s], 1, 1), w = randn([s, s], 1, 2);
  const t = bench(() => free(native.linear(x, w, null)));
  const flops = 2 * s * s * s;
  const rate = flops / t.median / 1e9;
  peak = Math.max(peak, rate);
  rows.push({ group: 'peak', name: 'sgemm (native.linear)', shape: `${s}x${s}x${s}`, dir: 'fwd', seconds: t.median, rate, unit: 'GFLOP/s', pctOfPeak: NaN, flops, runs: t.runs });
  free(x, w);
}
for (const r of rows) r.pctOfPeak = (100 * r.rate) / peak;

// ---- reference 2: copy bandwidth ---------------------------------------------------------------------------------
/** GB/s of y = x (axpby, beta 0) on n floats, counting 8 bytes per element. */
function copyRate(n: number): { rate: number; t: Timing } {
  const x = randn([n], 1, 3), y = randn([n], 1, 4);
  const t = bench(() => native.axpby(1, x, 0, y));
  free(x, y);
  return { rate: (8 * n) / t.median / 1e9, t };
}
const BIG = 16 * 1024 * 1024; // 64 MiB per buffer, twice the L3
let copyBw = 0;
{
  const c = copyRate(BIG);
  rows.push({ group: 'copy', name: 'axpby y = x', shape: `${BIG}`, dir: '-', seconds: c.t.median, rate: c.rate, unit: 'GB/s', pctOfPeak: NaN, bytes: 8 * BIG, runs: c.t.runs });
  const x = randn([BIG], 1, 5);
  const t = bench(() => free(native.clone(x)));
  free(x);
  const rate = (8 * BIG) / t.median / 1e9;
  rows.push({ group: 'copy', name: 'clone', shape: `${BIG}`, dir: '-', seconds: t.median, rate, unit: 'GB/s', pctOfPeak: NaN, bytes: 8 * BIG, runs: t.runs });
  copyBw = Math.max(c.rate, rate);
  for (const r of rows) if (r.group === 'copy') r.pctOfPeak = (100 * r.rate) / copyBw;
}
const sameSizeCache = new Map<number, number>();
/** copy bandwidth on a buffer of n floats (the op's main tensor), cached by size */
function sameSizeCopy(n: number): number {
  let v = sameSizeCache.get(n);
  if (v === undefined) {
    v = copyRate(n).rate;
    sameSizeCache.set(n, v);
  }
  return v;
}

// linear: x [M, K], w [N, K], b [N], dy [M, N]
for (const c of cfgs) {
  const M = c.B * c.N;
  const layers: [string, number, number][] = [
    ['qkv', c.D, 3 * c.D],
    ['proj', c.D, c.D],
    ['fc1', c.D, 4 * c.D],
    ['fc2', 4 * c.D, c.D],
  ];
  for (const [layer, K, N] of layers) {
    const x = randn([M, K], 1, 11), w = randn([N, K], 0.05, 12), b = randn([N], 0.1, 13), dy = randn([M, N], 1, 14);
    const shape = `${M}x${K}->${N}`;
    const tf = bench(() => free(native.linear(x, w, b)));
    const tb = bench(() => free(...native.linearBackward(x, w, dy, true, true)));
    const ff = 2 * M * N * K, fb = 4 * M * N * K;
    const name = `${c.name} ${layer}`;
    rows.push({ group: 'linear', name, shape, dir: 'fwd', seconds: tf.median, rate: ff / tf.median / 1e9, unit: 'GFLOP/s', pctOfPeak: 0, flops: ff, runs: tf.runs });
    rows.push({ group: 'linear', name, shape, dir: 'bwd', seconds: tb.median, rate: fb / tb.median / 1e9, unit: 'GFLOP/s', pctOfPeak: 0, flops: fb, runs: tb.runs });
    const ts = tf.median + tb.median;
    rows.push({ group: 'linear', name, shape, dir: 'fwd+bwd', seconds: ts, rate: (ff + fb) / ts / 1e9, unit: 'GFLOP/s', pctOfPeak: 0, flops: ff + fb, runs: [] });
    free(x, w, b, dy);
  }
}

// attention: qkv [B, N, 3D] -> out [B, N, D], lse [B, H, N]
for (const c of cfgs) {
  const hd = c.D / c.H;
  const qkv = randn([c.B, c.N, 3 * c.D], 1, 21), dout = randn([c.B, c.N, c.D], 1, 22);
  const [out, lse] = native.attention(qkv, c.H);
  const tf = bench(() => free(...native.attention(qkv, c.H)));
  const tb = bench(() => free(native.attentionBackward(qkv, out, dout, lse, c.H)));
  const ff = 4 * c.B * c.H * c.N * c.N * hd, fb = 10 * c.B * c.H * c.N * c.N * hd;
  const shape = `B${c.B} N${c.N} D${c.D} H${c.H} hd${hd}`;
  const name = `${c.name} attention`;
  rows.push({ group: 'attention', name, shape, dir: 'fwd', seconds: tf.median, rate: ff / tf.median / 1e9, unit: 'GFLOP/s', pctOfPeak: 0, flops: ff, runs: tf.runs });
  rows.push({ group: 'attention', name, shape, dir: 'bwd', seconds: tb.median, rate: fb / tb.median / 1e9, unit: 'GFLOP/s', pctOfPeak: 0, flops: fb, runs: tb.runs });
  const ts = tf.median + tb.median;
  rows.push({ group: 'attention', name, shape, dir: 'fwd+bwd', seconds: ts, rate: (ff + fb) / ts / 1e9, unit: 'GFLOP/s', pctOfPeak: 0, flops: ff + fb, runs: [] });
  free(qkv, dout, out, lse);
}
for (const r of rows) if (r.unit === 'GFLOP/s') r.pctOfPeak = (100 * r.rate) / peak;

function memRow(group: Row['group'], name: string, shape: string, dir: Row['dir'], t: Timing, bytes: number, mainFloats: number, precision?: 'bf16'): void {
  const rate = bytes / t.median / 1e9;
  const same = sameSizeCopy(mainFloats);
  rows.push({
    group, name, shape, dir, seconds: t.median, rate, unit: 'GB/s', pctOfPeak: (100 * rate) / copyBw,
    pctOfSameSizeCopy: (100 * rate) / same, sameSizeCopyGBs: same, bytes, runs: t.runs, ...(precision ? { precision } : {}),
  });
}

// ---- bf16: attention (this process's kernel, and oneDNN's products in a child when that is the fused one) and
// biasGelu (fc1's output with its bias; bytes: bf16 x read and y written, 4 per element, backward also dy, 6) --------
const dnnlInfo = native.info().dnnl;
let bf16PeakRate = 0;
// where bf16 products go to oneDNN (native bf16: AVX512-BF16 or AMX; elsewhere the BLAS runs them in float32)
if (dnnlInfo.bf16Products) {
  bf16PeakRate = bf16Peak({ reps: REPS, minTime: MIN_TIME });
  rows.push({ group: 'peak', precision: 'bf16', name: `bf16 product (native.linear, oneDNN ${dnnlInfo.isa})`, shape: '2048x2048x2048', dir: 'fwd', seconds: (2 * 2048 ** 3) / bf16PeakRate / 1e9, rate: bf16PeakRate, unit: 'GFLOP/s', pctOfPeak: 100, flops: 2 * 2048 ** 3, runs: [] });
  // where the fused kernel runs, each kernel in a child process that forces it (the default picks per shape on AMX)
  const att: Row[] = [];
  if (native.info().bf16Attention.startsWith('fused')) {
    for (const choice of ['fused', 'onednn']) {
      const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--bf16-attention-rows', ...args], {
        encoding: 'utf8', env: { ...process.env, MAE_CPU_ATTENTION: choice }, maxBuffer: 1 << 26,
      });
      if (child.status !== 0) throw new Error(`the ${choice} arm of bf16 attention failed: ${child.stderr}`);
      att.push(...(JSON.parse(child.stdout.trim().split('\n').pop()!) as Row[]));
    }
  } else {
    att.push(...bf16AttentionRows('oneDNN'));
  }
  for (const r of att) r.pctOfPeak = (100 * r.rate) / bf16PeakRate;
  rows.push(...att);
  for (const c of cfgs) {
    const R = c.B * c.N, F = 4 * c.D, n = R * F;
    const x = toBf16(randn([R, F], 3, 41)), b = randn([F], 0.1, 43), dy = toBf16(randn([R, F], 1, 42));
    const tf = bench(() => free(native.biasGelu(x, b)));
    const tb = bench(() => free(...native.biasGeluBackward(x, b, dy, true)));
    memRow('gelu', `${c.name} biasGelu bf16`, `${R}x${F}`, 'fwd', tf, 4 * n, n, 'bf16');
    memRow('gelu', `${c.name} biasGelu bf16`, `${R}x${F}`, 'bwd', tb, 6 * n, n, 'bf16');
    free(x, b, dy);
  }
}

// layernorm: fwd reads x [R, D], w, b; writes y, mean, rstd. bwd reads dy, x, w, mean, rstd; writes dx, dw, db.
for (const c of cfgs) {
  const R = c.B * c.N, D = c.D;
  const x = randn([R, D], 1, 31), w = randn([D], 1, 32), b = randn([D], 1, 33), dy = randn([R, D], 1, 34);
  const [y, mean, rstd] = native.layerNorm(x, w, b, 1e-6);
  const tf = bench(() => free(...native.layerNorm(x, w, b, 1e-6)));
  const tb = bench(() => free(...native.layerNormBackward(dy, x, w, mean, rstd)));
  const shape = `${R}x${D}`;
  memRow('layernorm', `${c.name} layernorm`, shape, 'fwd', tf, 4 * (2 * R * D + 2 * D + 2 * R), R * D);
  memRow('layernorm', `${c.name} layernorm`, shape, 'bwd', tb, 4 * (3 * R * D + 3 * D + 2 * R), R * D);
  free(x, w, b, dy, y, mean, rstd);
}

// gelu on the fc1 output [R, 4D]: fwd reads x, writes y (8 bytes/elt); bwd reads x, dy, writes dx (12 bytes/elt)
for (const c of cfgs) {
  const R = c.B * c.N, F = 4 * c.D, n = R * F;
  const x = randn([R, F], 3, 41), dy = randn([R, F], 1, 42);
  const tf = bench(() => free(native.gelu(x)));
  const tb = bench(() => free(native.geluBackward(x, dy)));
  memRow('gelu', `${c.name} gelu`, `${R}x${F}`, 'fwd', tf, 8 * n, n);
  memRow('gelu', `${c.name} gelu`, `${R}x${F}`, 'bwd', tb, 12 * n, n);
  free(x, dy);
}

// masked MSE, ratio 0.75: pred, target [B, L, P], mask [B, L] (L - int(L/4) removed per image).
// fwd must read the mask and pred + target of the removed patches only; bwd also writes all of dpred.
for (const [name, B, L, P] of [['vitb', 64, 196, 768], ['tiny', 64, 49, 16]] as [string, number, number, number][]) {
  const keep = Math.floor(L * 0.25), removed = L - keep;
  const pred = randn([B, L, P], 1, 51), target = randn([B, L, P], 1, 52);
  const maskArr = new Float32Array(B * L);
  let s = 7;
  for (let b = 0; b < B; b++) {
    const ids = Array.from({ length: L }, (_, i) => i);
    for (let i = L - 1; i > 0; i--) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const j = s % (i + 1);
      [ids[i], ids[j]] = [ids[j]!, ids[i]!];
    }
    for (let k = keep; k < L; k++) maskArr[b * L + ids[k]!] = 1;
  }
  const mask = native.fromArray(maskArr, [B, L]);
  const dloss = native.full([1], 1);
  const fwdBytes = 4 * (2 * B * removed * P + B * L + 1);
  const bwdBytes = 4 * (2 * B * removed * P + B * L * P + B * L + 1);
  for (const normPix of [false, true]) {
    const tf = bench(() => free(native.maskedMse(pred, target, mask, normPix)));
    const tb = bench(() => free(native.maskedMseBackward(pred, target, mask, normPix, dloss)));
    const nm = `${name} masked_mse${normPix ? ' norm_pix' : ''}`;
    const shape = `${B}x${L}x${P} r0.75`;
    memRow('masked_mse', nm, shape, 'fwd', tf, fwdBytes, B * L * P);
    memRow('masked_mse', nm, shape, 'bwd', tb, bwdBytes, B * L * P);
  }
  free(pred, target, mask, dloss);
}

// ---- the sgemm peak again: the machine may be shared, so the reference is the better of the two measurements ---------
{
  const s = 2048;
  const x = randn([s, s], 1, 1), w = randn([s, s], 1, 2);
  const t = bench(() => free(native.linear(x, w, null)));
  const flops = 2 * s * s * s;
  const rate = flops / t.median / 1e9;
  rows.push({ group: 'peak', name: 'sgemm (native.linear), again at the end', shape: `${s}x${s}x${s}`, dir: 'fwd', seconds: t.median, rate, unit: 'GFLOP/s', pctOfPeak: 0, flops, runs: t.runs });
  free(x, w);
  if (rate > peak) {
    peak = rate;
    for (const r of rows) if (r.unit === 'GFLOP/s' && r.precision !== 'bf16') r.pctOfPeak = (100 * r.rate) / peak;
  } else rows[rows.length - 1]!.pctOfPeak = (100 * rate) / peak;
}

// ---- report -------------------------------------------------------------------------------------------------------
console.log(`\nsgemm peak (native.linear, best of 1024^3, 2048^3 and 2048^3 at the end): ${fmt(peak)} GFLOP/s; copy bandwidth (64 MiB): ${fmt(copyBw)} GB/s\n`);
printTable(
  ['group', 'op', 'shape', 'dir', 'ms', 'rate', 'unit', '% of peak', '% same-size copy'],
  rows.map((r) => [
    r.group, r.name, r.shape, r.dir, fmt(r.seconds * 1e3, 3), fmt(r.rate), r.unit,
    fmt(r.pctOfPeak),
    r.pctOfSameSizeCopy !== undefined ? `${fmt(r.pctOfSameSizeCopy)} (${fmt(r.sameSizeCopyGBs!)} GB/s)` : '',
  ]),
);
console.log('\n% of peak: GFLOP/s rows against the sgemm peak (bf16 rows: the bf16 peak), GB/s rows against the 64 MiB copy bandwidth.');

const shortLinear = rows.filter((r) => r.group === 'linear' && r.dir === 'fwd+bwd' && r.pctOfPeak < 70);
if (shortLinear.length) console.log(`linear fwd+bwd under 70% of the sgemm peak: ${shortLinear.map((r) => `${r.name} ${fmt(r.pctOfPeak, 0)}%`).join(', ')}`);
const shortMem = rows.filter((r) => r.unit === 'GB/s' && r.group !== 'copy' && r.pctOfPeak < 50);
if (shortMem.length) console.log(`memory-bound ops under half the copy bandwidth: ${shortMem.map((r) => `${r.name} ${r.dir} ${fmt(r.pctOfPeak, 0)}%`).join(', ')}`);

const path = writeJson(resultName('kernels', m.date, args), {
  benchmark: 'kernels',
  machine: { ...m, loadavgEnd: machine().loadavg },
  conventions: {
    linear: 'fwd 2MNK, bwd 4MNK (bias and db not counted)',
    attention: 'fwd 4*B*H*N^2*hd; bwd 10*B*H*N^2*hd = 2x fwd + the q k^T recompute',
    bytes: 'minimum float32 bytes read + written once; masked_mse counts only the removed patches of pred/target',
    peak: 'best median GFLOP/s of native.linear on 1024^3 and 2048^3 (start) and 2048^3 (end)',
    copy: 'best median of axpby(1, x, 0, y) and clone on 64 MiB, 8 bytes per element',
    timing: `median of ${REPS} repetitions of >= ${MIN_TIME} s after warm-up`,
  },
  sgemmPeakGflops: peak,
  bf16PeakGflops: bf16PeakRate || null,
  bf16Attention: native.info().bf16Attention,
  copyBandwidthGBs: copyBw,
  rows,
});
console.log(`wrote ${path}`);
