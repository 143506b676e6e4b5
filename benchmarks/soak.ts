/**
 * Soak: a long pre-training run of the 28-px preset (mae_vit_tiny_patch4_28) through pretrain(), as a user runs it,
 * printing the process's memory every `--every` steps: resident set, JavaScript heap, the native allocator's bytes
 * (handed out + cached) and the live tensor count. Memory must be flat after the warm-up; the last line gives the
 * growth from the first sample after warm-up to the end, in MiB and in bytes per step.
 *
 *   npm run soak -- [--steps 10000] [--batch-size 32] [--every 500] [--workers 1] [--precision fp32|bf16] [--data DIR] [--threads N] [--tag NAME]
 *
 * Data: the synthetic set (no download), 4096 images; or --data, a shard folder (mae prepare-data --channels 1) or
 * an image folder, read through the worker threads as pretrain reads them, so that the data path (positioned reads,
 * checksums, sharp, the batches' shared memory) soaks too, over many epochs when the folder is small. Checkpoints
 * every 1000 steps (the atomic-write path soaks too). With --precision bf16 the samples also hold the bf16 weights' blocked copies (outside the allocator).
 * Results: benchmarks/results/soak-<date>[-tag].json.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../lib/native.js';
import { liveTensors } from '../lib/tensor.js';
import { guessDataKind } from '../lib/cli.js';
import type { DataSource } from '../lib/train/data.js';
import { pretrain } from '../lib/train/pretrain.js';
import { benchArgs, describeMachine, fmt, machine, printTable, resultName, writeJson } from './common.js';

const args = benchArgs(
  'npm run soak -- [--steps 10000] [--batch-size 32] [--every 500] [--workers 1] [--precision fp32|bf16] [--data DIR] [--threads N] [--tag NAME]\n' +
    "A long pre-training run that prints the process's memory every --every steps.",
  { values: ['--steps', '--batch-size', '--every', '--workers', '--precision', '--data'] },
);
function flag(name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(args[i + 1]);
  if (!(Number.isInteger(v) && v > 0)) throw new Error(`--${name} must be a positive integer, got '${args[i + 1]}'`);
  return v;
}
const steps = flag('steps', 10_000);
const batchSize = flag('batch-size', 32);
const every = flag('every', 500);
const workers = args.includes('--workers') ? Number(args[args.indexOf('--workers') + 1]) : 1;
if (!(Number.isInteger(workers) && workers >= 0)) throw new Error(`--workers must be an integer >= 0, got '${args[args.indexOf('--workers') + 1]}'`);
if (args.includes('--threads')) native.setNumThreads(flag('threads', 1));
const precision = args.includes('--precision') ? args[args.indexOf('--precision') + 1]! : 'fp32';
if (precision !== 'fp32' && precision !== 'bf16') throw new Error(`--precision must be fp32 or bf16, got '${precision}'`);
const dataDir = args.includes('--data') ? args[args.indexOf('--data') + 1]! : null;
// (the 28-px model takes one channel: an image folder is decoded to greyscale, as a --channels 1 shard folder holds it)
const dataKind = dataDir ? guessDataKind(dataDir) : null;
const data: DataSource = dataDir ? { kind: dataKind!, path: dataDir, ...(dataKind === 'folder' ? { channels: 1 as const } : {}) } : { kind: 'synthetic', count: 4096 };

const MiB = 2 ** 20;
interface Sample { step: number; seconds: number; rssMiB: number; heapMiB: number; arrayBuffersMiB: number; nativeAllocMiB: number; blockedMiB: number; liveTensors: number }
const samples: Sample[] = [];
const started = performance.now();
const sample = (step: number) => {
  const m = process.memoryUsage();
  const a = native.memoryStats();
  const s: Sample = {
    step, seconds: (performance.now() - started) / 1000, rssMiB: m.rss / MiB, heapMiB: m.heapUsed / MiB, arrayBuffersMiB: m.arrayBuffers / MiB,
    nativeAllocMiB: (a.allocatedBytes + a.cachedBytes) / MiB, blockedMiB: (a.blockedWeightBytes ?? 0) / MiB, liveTensors: liveTensors(),
  };
  samples.push(s);
  console.log(`step ${String(step).padStart(6)}  ${fmt(s.seconds, 0).padStart(5)} s  rss ${fmt(s.rssMiB)} MiB  heap ${fmt(s.heapMiB)} MiB  array buffers ${fmt(s.arrayBuffersMiB)} MiB  native ${fmt(s.nativeAllocMiB)} MiB  blocked ${fmt(s.blockedMiB)} MiB  live tensors ${s.liveTensors}`);
};

const m = machine();
console.log(`soak: mae_vit_tiny_patch4_28 ${precision}, batch ${batchSize}, ${steps} steps, ${workers} data worker(s), data ${dataDir ? `${data.kind} ${dataDir}` : 'synthetic'}; ${describeMachine(m, native.info().threads)}`);
const outDir = mkdtempSync(join(tmpdir(), 'mae-soak-'));
sample(0);
try {
  await pretrain({
    // (with --data the run stops at maxSteps, whatever the folder's size)
    preset: 'mae_vit_tiny_patch4_28', data, batchSize, epochs: dataDir ? steps : Math.ceil((steps * batchSize) / 4096),
    maxSteps: steps, checkpointEvery: 1000, visualizeEvery: 0, workers, outDir, precision,
    onEvent: (e) => {
      if (e.type === 'step' && e.step % every === 0) sample(e.step);
    },
  });
} finally {
  rmSync(outDir, { recursive: true, force: true });
}

// growth from the first sample after warm-up (a tenth of the run, at least one sample in) to the last
const warm = samples.find((s) => s.step >= Math.max(every, steps / 10)) ?? samples[0]!;
const last = samples[samples.length - 1]!;
const grownMiB = last.rssMiB - warm.rssMiB;
printTable(['step', 'seconds', 'rss MiB', 'heap MiB', 'array buffers MiB', 'native MiB', 'blocked MiB', 'live tensors'],
  samples.map((s) => [s.step, fmt(s.seconds, 0), fmt(s.rssMiB), fmt(s.heapMiB), fmt(s.arrayBuffersMiB), fmt(s.nativeAllocMiB), fmt(s.blockedMiB), s.liveTensors]));
console.log(`resident set from step ${warm.step} to ${last.step}: ${grownMiB >= 0 ? '+' : ''}${fmt(grownMiB)} MiB (${fmt((grownMiB * MiB) / Math.max(1, last.step - warm.step), 0)} bytes per step); live tensors ${warm.liveTensors} -> ${last.liveTensors}`);
const path = writeJson(resultName('soak', m.date, args), { machine: m, precision, steps, batchSize, data: dataDir ? { kind: data.kind, path: dataDir } : 'synthetic', samples, growthMiB: grownMiB, fromStep: warm.step });
console.log(`wrote ${path}`);
