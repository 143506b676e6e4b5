/**
 * Prints the results JSON of the benchmarks as Markdown tables (for benchmarks/README.md).
 *   node dist/benchmarks/report.js kernels-<date>.json train-<date>.json blas-<date>.json ...
 *   node dist/benchmarks/report.js --compare kernels-a.json kernels-b.json ...   (kernel runs side by side)
 * Paths are relative to benchmarks/results/ unless absolute. The kind of each file is read from its content.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { resultsDir } from './common.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const f1 = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');

function table(header: string[], rows: (string | number)[][]): string {
  const line = (r: (string | number)[]) => `| ${r.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

function kernels(j: Json): string {
  const out: string[] = [];
  const m = j.machine;
  out.push(`Kernels, ${m.date}, ${m.threads} threads, load ${m.loadavg.join(' ')} -> ${m.loadavgEnd.join(' ')}: sgemm peak ${f1(j.sgemmPeakGflops)} GFLOP/s, copy ${f1(j.copyBandwidthGBs)} GB/s\n`);
  const rows = (j.rows as Json[]).filter((r) => r.dir !== 'fwd+bwd' || r.group === 'linear' || r.group === 'attention');
  out.push(
    table(
      ['group', 'op', 'shape', 'dir', 'ms', 'rate', '% of peak / copy', '% same-size copy'],
      rows.map((r) => [r.group, r.name, r.shape, r.dir, f1(r.seconds * 1e3, 3), `${f1(r.rate)} ${r.unit}`, f1(r.pctOfPeak), r.pctOfSameSizeCopy !== undefined ? f1(r.pctOfSameSizeCopy) : '']),
    ),
  );
  return out.join('\n');
}

function train(j: Json): string {
  const out: string[] = [];
  const m = j.machine;
  out.push(`Training, ${m.date}, ${m.threads} threads, load ${m.loadavg.join(' ')} -> ${m.loadavgEnd.join(' ')}\n`);
  out.push(
    table(
      ['preset', 'batch', 'mask ratio', 'ms/step', 'img/s', 'GFLOP/img', 'GFLOP/s', 'sgemm peak', 'MFU %', 'PyTorch img/s', 'ours / PyTorch'],
      (j.results as Json[]).map((r) => [
        r.preset, r.batch, r.maskRatio, f1(r.secondsPerStep * 1e3), f1(r.imgPerSec, 2), f1(r.flopsPerImage.training / 1e9, 2), f1(r.achievedGflops),
        f1(r.sgemmPeakGflops), f1(100 * r.mfu), r.torch?.imgPerSec ? f1(r.torch.imgPerSec, 2) : '-', r.oursOverTorch ? `${f1(r.oursOverTorch, 2)}x` : '-',
      ]),
    ),
  );
  for (const [p, s] of Object.entries(j.speedups as Record<string, Json>))
    out.push(`\n${p}: 0.75 vs 0 speed-up ours ${f1(s.ours, 2)}x, PyTorch ${s.torch ? f1(s.torch, 2) + 'x' : '-'}, FLOP ratio ${f1(s.flopRatio, 2)}x`);
  for (const r of j.results as Json[]) {
    if (!r.profile) continue;
    const fam = new Map<string, number>();
    for (const p of r.profile as Json[]) fam.set(p.family, (fam.get(p.family) ?? 0) + p.msPerStep);
    const total = [...fam.values()].reduce((a, b) => a + b, 0);
    out.push(`\nProfile ${r.preset} batch ${r.batch} ratio ${r.maskRatio} (${f1(total)} ms/step profiled): ` +
      [...fam.entries()].sort((a, b) => b[1] - a[1]).filter(([, ms]) => ms / total >= 0.005).map(([f, ms]) => `${f} ${f1((100 * ms) / total)}%`).join(', '));
    const g = (r.profile as Json[]).filter((p) => p.gflops).map((p) => `${p.fn} ${f1(p.gflops)} GFLOP/s`).join(', ');
    if (g) out.push(`  achieved in the step: ${g}`);
  }
  return out.join('\n');
}

function blas(j: Json): string {
  const out: string[] = [];
  out.push(`sgemm, ${j.openblas_core} OpenBLAS vs oneDNN ${j.onednn}, ${j.threads} threads, ${j.rounds} rounds; FMA loop AVX2 ${f1(j.fma_peak_gflops.avx2)}, AVX-512 ${f1(j.fma_peak_gflops.avx512)} GFLOP/s; all MAE products time-weighted: OpenBLAS ${f1(j.total_time_weighted_gflops.openblas)}, oneDNN ${f1(j.total_time_weighted_gflops.onednn)} GFLOP/s\n`);
  out.push(
    table(
      ['model', 'layer', 'op', 'm x n x k', 'OpenBLAS', 'oneDNN', 'oneDNN / OpenBLAS'],
      (j.cases as Json[]).map((c) => [c.model, c.layer, c.op, `${c.m}x${c.n}x${c.k}`, f1(c.openblas_gflops), f1(c.onednn_gflops), `${f1(c.onednn_gflops / c.openblas_gflops, 2)}x`]),
    ),
  );
  return out.join('\n');
}

/** several kernels results side by side: one row per op and direction, rate and % of the reference per run */
function compareKernels(files: string[], js: Json[]): string {
  const key = (r: Json) => `${r.name}|${r.shape}|${r.dir}`;
  const first = (js[0]!.rows as Json[]).filter((r) => r.group !== 'peak' && r.group !== 'copy' && !(r.dir === 'fwd+bwd' && r.group === 'attention'));
  const maps = js.map((j) => new Map((j.rows as Json[]).map((r) => [key(r), r])));
  const head = ['op', 'shape', 'dir', ...files.flatMap((f) => [`${f}: rate`, '%'])];
  const refs = ['reference (sgemm peak GFLOP/s / copy GB/s)', '', '', ...js.flatMap((j) => [`${f1(j.sgemmPeakGflops)} / ${f1(j.copyBandwidthGBs)}`, ''])];
  const rows = [refs, ...first.map((r) => [r.name, r.shape, r.dir, ...maps.flatMap((m) => {
    const x = m.get(key(r));
    return x ? [`${f1(x.rate)} ${x.unit === 'GB/s' ? 'GB/s' : 'GF/s'}`, f1(x.pctOfPeak)] : ['-', '-'];
  })])];
  return table(head, rows);
}

const argv = process.argv.slice(2);
if (argv[0] === '--compare') {
  const files = argv.slice(1);
  const js = files.map((a) => JSON.parse(readFileSync(isAbsolute(a) ? a : join(resultsDir(), a), 'utf8')) as Json);
  console.log(compareKernels(files, js));
  process.exit(0);
}
for (const a of argv) {
  const j = JSON.parse(readFileSync(isAbsolute(a) ? a : join(resultsDir(), a), 'utf8')) as Json;
  console.log(`\n### ${a}\n`);
  console.log(j.benchmark === 'kernels' ? kernels(j) : j.benchmark === 'train' ? train(j) : blas(j));
}
