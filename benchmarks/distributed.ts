/**
 * Data-parallel pre-training on this machine: the throughput of one process against 1 and 2 MPI ranks (one thread
 * each), how much of the gradient all-reduce is hidden behind backward, and the bytes each rank sends per step.
 *
 *   npm run bench:distributed -- [--preset mae_vit_tiny_patch4_28] [--batch-size 32] [--steps 10] [--warmup 3]
 *                                 [--rounds 2] [--bucket-mb 25,2] [--tag NAME]
 *
 * Arms, alternated round by round so that a change in the machine's load hits them alike: `single` (one process, no
 * MPI), `single x2` (two independent single processes at once: what the cores give two trainings that never talk),
 * `mpi x1` (mpirun -np 1: the same gradient path with nothing to exchange), `mpi x2` (mpirun -np 2, each rank
 * at --batch-size, so a step trains twice the images; one arm per bucket size of --bucket-mb), ranks not bound to
 * cores (--bind-to none). Each arm is a pretrain() run of --warmup + --steps optimizer
 * steps on synthetic data, data prepared in-process; step times are the medians of the last --steps steps.
 * Communication per step (from the reducer): commMs, the communication thread's busy time (packing, MPI_Iallreduce,
 * unpacking); exposedMs, the time the training thread then waited for it after backward; hidden = 1 - exposed / comm.
 * Bytes: the float32 gradients each rank puts into the all-reduces; a ring all-reduce moves 2 (N - 1) / N of that
 * through each rank's link. Results: benchmarks/results/distributed-<date>[-tag].json.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launcher } from '../lib/distributed/comm.js';
import { pretrain } from '../lib/train/pretrain.js';
import { benchArgs, describeMachine, fmt, machine, median, printTable, resultName, writeJson } from './common.js';

const args = benchArgs(
  'npm run bench:distributed -- [--preset P] [--batch-size 32] [--steps 10] [--warmup 3] [--rounds 2] [--bucket-mb 25,2] [--tag NAME]\n' +
    'Data-parallel pre-training on 2 ranks against 1 process and 2 independent processes.',
  // --arm and --bucket: what the launcher passes to each rank
  { values: ['--preset', '--batch-size', '--steps', '--warmup', '--rounds', '--bucket-mb', '--arm', '--bucket'] },
);
const value = (name: string, fallback: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1]! : fallback);
const count = (name: string, fallback: number) => {
  const v = Number(value(name, String(fallback)));
  if (!(Number.isInteger(v) && v > 0)) throw new Error(`--${name} must be a positive integer, got '${value(name, '')}'`);
  return v;
};
const preset = value('preset', 'mae_vit_tiny_patch4_28');
const batchSize = count('batch-size', 32);
const steps = count('steps', 10);
const warmup = count('warmup', 3);
const rounds = count('rounds', 2);
const bucketSizes = value('bucket-mb', '25,2').split(',').map(Number);
if (!bucketSizes.every((b) => b > 0)) throw new Error(`--bucket-mb must list positive sizes in MiB, got '${value('bucket-mb', '')}'`);

interface ArmResult {
  arm: string;
  ranks: number;
  bucketMb: number;
  stepMs: number;
  imgPerSec: number;
  commMs: number;
  exposedMs: number;
  hidden: number;
  bytesPerStep: number;
  buckets: number;
}

/** One rank (or the single process): the run, then a result line from rank 0. */
async function runRank(arm: string, bucketMb: number): Promise<void> {
  const times: number[] = [];
  const comm: { commMs: number; exposedMs: number; bytes: number; buckets: number }[] = [];
  let last = 0;
  let ranks = 1;
  const outDir = mkdtempSync(join(tmpdir(), 'mae-bench-dist-'));
  const image = preset.endsWith('_28') ? {} : { imageSize: 32, channels: 3 as const };
  const r = await pretrain({
    preset, data: { kind: 'synthetic', count: 4096, ...(preset.includes('patch16') || preset.includes('patch14') ? { imageSize: 224, channels: 3 } : image) },
    batchSize, epochs: 100, maxSteps: warmup + steps, threads: 1, workers: 0, visualizeEvery: 1000, logEvery: 1000, outDir, bucketMb,
    distributed: arm === 'single' ? 'none' : 'mpi',
    onEvent: (e) => {
      if (e.type === 'start') {
        ranks = e.worldSize;
        last = performance.now();
      }
      if (e.type !== 'step') return;
      const now = performance.now();
      if (e.step > warmup) {
        times.push(now - last);
        if (e.comm) comm.push({ commMs: e.comm.commMs, exposedMs: e.comm.exposedMs, bytes: e.comm.bytes, buckets: e.comm.buckets });
      }
      last = now;
    },
  });
  rmSync(outDir, { recursive: true, force: true });
  if (r.rank !== 0) return;
  const sum = (k: 'commMs' | 'exposedMs') => comm.reduce((s, c) => s + c[k], 0);
  const stepMs = median(times);
  const result: ArmResult = {
    arm, ranks, bucketMb, stepMs, imgPerSec: (batchSize * ranks * 1000) / stepMs,
    commMs: comm.length ? sum('commMs') / comm.length : 0, exposedMs: comm.length ? sum('exposedMs') / comm.length : 0,
    hidden: comm.length && sum('commMs') > 0 ? Math.max(0, 1 - sum('exposedMs') / sum('commMs')) : 0,
    bytesPerStep: comm[0]?.bytes ?? 0, buckets: comm[0]?.buckets ?? 0,
  };
  console.log('result ' + JSON.stringify(result));
}

/** Runs a command to its end; its stdout, or an Error with both outputs. */
function run(cmd: string, argv: string[], env: NodeJS.ProcessEnv, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`the ${what} arm failed (status ${code}):\n${out}\n${err}`))));
  });
}

const resultOf = (out: string): ArmResult => JSON.parse(out.split('\n').find((l) => l.startsWith('result '))!.slice(7)) as ArmResult;

async function spawnArm(arm: string, bucketMb: number): Promise<ArmResult> {
  const script = fileURLToPath(import.meta.url);
  const env = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMP_NUM_THREADS: '1' };
  const rankArgs = [script, ...args, '--arm', arm, '--bucket', String(bucketMb)];
  if (arm === 'single') return resultOf(await run(process.execPath, rankArgs, env, arm));
  if (arm === 'single x2') {
    // two independent processes at once: what the cores give two trainings without any communication
    const [a, b] = (await Promise.all([0, 1].map(() => run(process.execPath, [script, ...args, '--arm', 'single'], env, arm)))).map(resultOf);
    return { ...a!, arm, ranks: 2, stepMs: (a!.stepMs + b!.stepMs) / 2, imgPerSec: a!.imgPerSec + b!.imgPerSec };
  }
  // not bound to cores: on a machine shared with other jobs a rank pinned to a busy core runs far slower
  return resultOf(await run('mpirun', ['--oversubscribe', '--bind-to', 'none', '-np', arm.slice(-1), process.execPath, ...rankArgs], env, arm));
}

if (launcher() !== null || args.includes('--arm')) {
  await runRank(value('arm', 'mpi'), Number(value('bucket', '25')));
} else {
  const m = machine();
  console.log(`distributed: ${preset}, batch ${batchSize} per rank, ${steps} steps after ${warmup}, ${rounds} rounds; ${describeMachine(m, 1)}`);
  const arms: [string, number][] = [['single', bucketSizes[0]!], ['single x2', bucketSizes[0]!], ['mpi x1', bucketSizes[0]!], ...bucketSizes.map((b): [string, number] => ['mpi x2', b])];
  const runs: ArmResult[] = [];
  for (let round = 0; round < rounds; round++)
    for (const [arm, b] of round % 2 ? [...arms].reverse() : arms) {
      const r = await spawnArm(arm, b);
      runs.push(r);
      console.log(`round ${round + 1} ${arm} (buckets ${b} MiB): ${fmt(r.stepMs)} ms/step, ${fmt(r.imgPerSec)} img/s, comm ${fmt(r.commMs)} ms (${fmt(100 * r.hidden, 0)}% hidden)`);
    }
  const byArm = arms.map(([arm, b]) => {
    const rs = runs.filter((r) => r.arm === arm && r.bucketMb === b);
    const med = (k: keyof ArmResult) => median(rs.map((r) => r[k] as number));
    return { arm, bucketMb: b, ranks: rs[0]!.ranks, stepMs: med('stepMs'), imgPerSec: med('imgPerSec'), commMs: med('commMs'), exposedMs: med('exposedMs'), hidden: med('hidden'), bytesPerStep: rs[0]!.bytesPerStep, buckets: rs[0]!.buckets };
  });
  const single = byArm[0]!.imgPerSec;
  printTable(
    ['arm', 'bucket MiB', 'ranks', 'batch/rank', 'ms/step', 'img/s', 'vs single', 'comm ms', 'exposed ms', 'hidden', 'MB/step/rank', 'ring MB/rank', 'buckets'],
    byArm.map((r) => [
      r.arm, r.arm.startsWith('single') ? '-' : r.bucketMb, r.ranks, batchSize, fmt(r.stepMs), fmt(r.imgPerSec), `${fmt(r.imgPerSec / single, 2)}x`, fmt(r.commMs), fmt(r.exposedMs), `${fmt(100 * r.hidden, 0)}%`,
      fmt(r.bytesPerStep / 1e6, 2), fmt((r.bytesPerStep * 2 * (r.ranks - 1)) / r.ranks / 1e6, 2), r.buckets,
    ]),
  );
  const path = writeJson(resultName('distributed', m.date, args), { machine: m, preset, batchSize, steps, warmup, rounds, bucketSizes, runs, summary: byArm });
  console.log(`results: ${path}`);
}
