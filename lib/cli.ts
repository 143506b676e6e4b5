#!/usr/bin/env node
/**
 * The `mae` command.
 *   mae pretrain [flags]     pre-train an MAE (no --data: a small MAE on Fashion-MNIST in a few minutes)
 *   mae visualize [flags]    write a Figure-2 style PNG of reconstructions from a checkpoint
 *   mae info                 version, backend, BLAS, threads
 * `mae <command> --help` lists the flags.
 */
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { info } from './info.js';
import { presetNames, type MaeConfig } from './mae/index.js';
import { resolvePipelineConfig } from './data/index.js';
import { loadModel } from './train/checkpoint.js';
import { DATA_KINDS, openDataset, type DataKind, type DataSource } from './train/data.js';
import { pretrain, type PretrainOptions, type TrainEvent } from './train/pretrain.js';
import { writeReconstructions } from './train/visualize.js';

type Flags = NonNullable<ParseArgsConfig['options']>;

/** The built-in default run: a small MAE on 10,000 Fashion-MNIST images, a few minutes on 2 cores. */
export const DEFAULT_RUN: PretrainOptions = {
  preset: 'mae_vit_tiny_patch4_28',
  data: { kind: 'fashion-mnist', limit: 10000 },
  epochs: 4,
  batchSize: 64,
  blr: 1.5e-3,
  warmupEpochs: 1,
  outDir: 'runs/pretrain',
};

const modelFlags: Flags = {
  'img-size': { type: 'string' },
  'patch-size': { type: 'string' },
  'in-chans': { type: 'string' },
  'embed-dim': { type: 'string' },
  depth: { type: 'string' },
  'num-heads': { type: 'string' },
  'decoder-embed-dim': { type: 'string' },
  'decoder-depth': { type: 'string' },
  'decoder-num-heads': { type: 'string' },
  'mlp-ratio': { type: 'string' },
  'norm-pix-loss': { type: 'boolean' },
};

const dataFlags: Flags = {
  data: { type: 'string' },
  'data-kind': { type: 'string' },
  limit: { type: 'string' },
  'on-bad-file': { type: 'string' },
};

const pretrainFlags: Flags = {
  preset: { type: 'string' },
  ...modelFlags,
  ...dataFlags,
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  'accum-iter': { type: 'string' },
  blr: { type: 'string' },
  lr: { type: 'string' },
  'min-lr': { type: 'string' },
  'warmup-epochs': { type: 'string' },
  'weight-decay': { type: 'string' },
  'mask-ratio': { type: 'string' },
  seed: { type: 'string' },
  threads: { type: 'string' },
  workers: { type: 'string' },
  out: { type: 'string' },
  resume: { type: 'boolean' },
  'checkpoint-every': { type: 'string' },
  'log-every': { type: 'string' },
  'visualize-every': { type: 'string' },
  'max-steps': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const visualizeFlags: Flags = {
  checkpoint: { type: 'string' },
  ...dataFlags,
  split: { type: 'string' },
  out: { type: 'string' },
  count: { type: 'string' },
  start: { type: 'string' },
  'mask-ratio': { type: 'string' },
  seed: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const HELP: Record<string, string> = {
  pretrain: `mae pretrain [flags]
  With no --data, runs the built-in default: ${DEFAULT_RUN.preset} on ${DEFAULT_RUN.data!.limit} Fashion-MNIST images
  (Debian package dataset-fashion-mnist), ${DEFAULT_RUN.epochs} epochs, writing ${DEFAULT_RUN.outDir}/.

  model:  --preset NAME (${presetNames().join(', ')})
          --img-size --patch-size --in-chans --embed-dim --depth --num-heads --decoder-embed-dim
          --decoder-depth --decoder-num-heads --mlp-ratio --norm-pix-loss
  data:   --data PATH  --data-kind ${DATA_KINDS.join('|')} (guessed from PATH)  --limit N
          --on-bad-file skip|stop  --workers N (data-loading threads, default 1)
  recipe: --epochs --batch-size --accum-iter --blr (default 1.5e-4) --lr --min-lr --warmup-epochs
          --weight-decay (0.05) --mask-ratio (0.75) --seed (0) --max-steps
  run:    --out DIR (runs/pretrain) --resume --checkpoint-every STEPS --log-every STEPS --visualize-every EPOCHS
          --threads N`,
  visualize: `mae visualize --checkpoint PATH [flags]
  Writes rows of original | masked | reconstruction | reconstruction + visible patches.
  --data PATH --data-kind KIND (default: the checkpoint's data)  --split train|test (test)
  --out FILE (reconstructions.png next to the checkpoint)  --count N (8)  --start INDEX (0)
  --mask-ratio R (0.75)  --seed S (0)`,
  info: 'mae info: version, Node, native backend, BLAS, threads',
};

function num(v: unknown, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${flag} must be a number, got '${String(v)}'`);
  return n;
}

class UsageError extends Error {}

/** Guesses the kind of the data at `path`. */
export function guessDataKind(path: string): DataKind {
  if (!existsSync(path)) throw new UsageError(`--data ${path}: no such file or folder`);
  if (!statSync(path).isDirectory()) throw new UsageError(`--data ${path}: expected a folder`);
  const names = new Set(readdirSync(path));
  if (names.has('train-images-idx3-ubyte.gz') || names.has('train-images-idx3-ubyte')) return 'mnist';
  if (names.has('data_batch_1.bin') || names.has('cifar-10-batches-bin')) return 'cifar10';
  return 'folder';
}

function dataSource(v: Record<string, unknown>): DataSource | undefined {
  if (v.data === undefined && v['data-kind'] === undefined) return undefined;
  const kind = (v['data-kind'] as string | undefined) ?? guessDataKind(v.data as string);
  if (!DATA_KINDS.includes(kind as DataKind)) throw new UsageError(`--data-kind must be one of ${DATA_KINDS.join(', ')}, got '${kind}'`);
  const src: DataSource = { kind: kind as DataKind };
  if (v.data !== undefined) src.path = resolve(v.data as string);
  const limit = num(v.limit, 'limit');
  if (limit !== undefined) src.limit = limit;
  const bad = v['on-bad-file'];
  if (bad !== undefined) {
    if (bad !== 'skip' && bad !== 'stop') throw new UsageError(`--on-bad-file must be skip or stop, got '${String(bad)}'`);
    src.onBadFile = bad;
  }
  return src;
}

function modelConfig(v: Record<string, unknown>): Partial<MaeConfig> {
  const map: [string, keyof MaeConfig][] = [
    ['img-size', 'imgSize'],
    ['patch-size', 'patchSize'],
    ['in-chans', 'inChans'],
    ['embed-dim', 'embedDim'],
    ['depth', 'depth'],
    ['num-heads', 'numHeads'],
    ['decoder-embed-dim', 'decoderEmbedDim'],
    ['decoder-depth', 'decoderDepth'],
    ['decoder-num-heads', 'decoderNumHeads'],
    ['mlp-ratio', 'mlpRatio'],
  ];
  const c: Partial<MaeConfig> = {};
  for (const [flag, key] of map) {
    const n = num(v[flag], flag);
    if (n !== undefined) (c as Record<string, number>)[key] = n;
  }
  if (v['norm-pix-loss']) c.normPixLoss = true;
  return c;
}

export function pretrainOptions(argv: string[]): PretrainOptions {
  const { values: v } = parseArgs({ args: argv, options: pretrainFlags, allowPositionals: false });
  const data = dataSource(v);
  const base: PretrainOptions = data ? { data } : { ...DEFAULT_RUN, data: { ...DEFAULT_RUN.data! } };
  const o: PretrainOptions = { ...base };
  if (v.preset !== undefined) o.preset = v.preset as string;
  const config = modelConfig(v);
  if (Object.keys(config).length) o.config = config;
  const numeric: [string, keyof PretrainOptions][] = [
    ['epochs', 'epochs'],
    ['batch-size', 'batchSize'],
    ['accum-iter', 'accumIter'],
    ['blr', 'blr'],
    ['lr', 'lr'],
    ['min-lr', 'minLr'],
    ['warmup-epochs', 'warmupEpochs'],
    ['weight-decay', 'weightDecay'],
    ['mask-ratio', 'maskRatio'],
    ['seed', 'seed'],
    ['threads', 'threads'],
    ['workers', 'workers'],
    ['checkpoint-every', 'checkpointEvery'],
    ['log-every', 'logEvery'],
    ['visualize-every', 'visualizeEvery'],
    ['max-steps', 'maxSteps'],
  ];
  for (const [flag, key] of numeric) {
    const n = num(v[flag], flag);
    if (n !== undefined) (o as Record<string, unknown>)[key] = n;
  }
  if (data && v.limit !== undefined) data.limit = num(v.limit, 'limit');
  else if (!data && v.limit !== undefined) o.data!.limit = num(v.limit, 'limit');
  if (v.out !== undefined) o.outDir = v.out as string;
  if (v.resume) o.resume = true;
  return o;
}

function formatTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
}

/** A progress bar on a terminal, a line every few seconds elsewhere. */
function progressPrinter(): (e: TrainEvent) => void {
  const tty = process.stderr.isTTY;
  let lastLine = 0;
  return (e) => {
    switch (e.type) {
      case 'start':
        console.log(
          `pre-training ${e.parameters.toLocaleString('en-US')} parameters on ${e.datasetSize} images: ${e.totalSteps} steps of ${e.effectiveBatch} images, lr ${e.lr.toExponential(2)}, data ${e.dataMode}` +
            (e.resumedFrom ? ` (resumed at step ${e.resumedFrom.step})` : ''),
        );
        break;
      case 'step': {
        const frac = e.step / e.totalSteps;
        const width = 24;
        const filled = Math.round(frac * width);
        const line = `epoch ${e.epoch.toFixed(2)} [${'='.repeat(filled)}${' '.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% step ${e.step}/${e.totalSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ${e.imgPerSec.toFixed(0)} img/s ETA ${formatTime(e.etaSeconds)}`;
        if (tty) process.stderr.write(`\r${line}\x1b[K`);
        else if (Date.now() - lastLine > 5000 || e.step === e.totalSteps) {
          console.log(line);
          lastLine = Date.now();
        }
        break;
      }
      case 'epoch':
        if (tty) process.stderr.write('\n');
        console.log(`epoch ${e.epoch} done: mean loss ${e.loss.toFixed(4)}, ${e.seconds.toFixed(1)} s, waited ${(e.stallMs / 1000).toFixed(2)} s for data`);
        break;
      case 'checkpoint':
        break;
      case 'visualize':
        console.log(`reconstructions: ${e.path}`);
        break;
      case 'warning':
        if (tty) process.stderr.write('\n');
        console.warn(`warning: ${e.message}`);
        break;
      case 'end':
        if (tty) process.stderr.write('\n');
        console.log(`${e.stopped ? 'stopped' : 'finished'} after ${e.steps} steps in ${formatTime(e.seconds)}, last loss ${e.loss.toFixed(4)}`);
        break;
    }
  };
}

async function cmdPretrain(argv: string[]): Promise<void> {
  const o = pretrainOptions(argv);
  const abort = new AbortController();
  process.once('SIGINT', () => {
    console.log('\ninterrupted: finishing the current step and writing a checkpoint (Ctrl-C again to quit at once)');
    abort.abort();
    process.once('SIGINT', () => process.exit(130));
  });
  const r = await pretrain({ ...o, signal: abort.signal, onEvent: progressPrinter() });
  console.log(`checkpoint: ${r.checkpoint}`);
  console.log(`log: ${join(r.outDir, 'log.jsonl')}`);
  if (r.reconstructions.length) console.log(`reconstructions: ${r.reconstructions[r.reconstructions.length - 1]}`);
}

async function cmdVisualize(argv: string[]): Promise<void> {
  const { values: v } = parseArgs({ args: argv, options: visualizeFlags });
  if (!v.checkpoint) throw new UsageError('visualize: --checkpoint PATH is required (a checkpoint file or a run folder)');
  const { model, meta } = await loadModel(v.checkpoint as string);
  const data = dataSource(v) ?? (meta.options.data as DataSource | undefined);
  if (!data) throw new UsageError('visualize: the checkpoint names no data; pass --data');
  const split = (v.split as string | undefined) ?? 'test';
  if (split !== 'train' && split !== 'test') throw new UsageError(`--split must be train or test, got '${split}'`);
  const dataset = await openDataset({ ...data, limit: undefined }, data.kind === 'folder' ? 'train' : split);
  const c = model.config;
  const pipeline = resolvePipelineConfig(dataset, { batchSize: 1, imageSize: c.imgSize, inChans: c.inChans });
  const ckDir = statSync(v.checkpoint as string).isDirectory() ? (v.checkpoint as string) : join(v.checkpoint as string, '..');
  const out = (v.out as string | undefined) ?? join(ckDir, 'reconstructions.png');
  const opts: { count?: number; start?: number; maskRatio?: number; seed?: number } = {};
  for (const [flag, key] of [['count', 'count'], ['start', 'start'], ['mask-ratio', 'maskRatio'], ['seed', 'seed']] as const) {
    const n = num(v[flag], flag);
    if (n !== undefined) opts[key] = n;
  }
  await writeReconstructions(model, dataset, pipeline, out, opts);
  console.log(`wrote ${out}`);
  model.dispose();
}

function cmdInfo(): void {
  const i = info();
  const rows: [string, string][] = [
    ['masked-autoencoder', i.version],
    ['node', `${i.node} (${i.platform})`],
    ['backends', i.backends.join(', ')],
    ['blas', i.blas],
    ['threads', String(i.threads)],
    ['compiler', i.compiler],
    ['cuda library built', i.cudaBuilt ? 'yes' : 'no'],
  ];
  for (const [k, val] of rows) console.log(`${k.padEnd(20)} ${val}`);
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
      console.log('usage: mae <pretrain|visualize|info> [flags]; mae <command> --help');
      return cmd ? 0 : 1;
    }
    if (rest.includes('--help') || rest.includes('-h')) {
      console.log(HELP[cmd] ?? `unknown command '${cmd}'`);
      return HELP[cmd] ? 0 : 1;
    }
    if (cmd === 'pretrain') await cmdPretrain(rest);
    else if (cmd === 'visualize') await cmdVisualize(rest);
    else if (cmd === 'info') cmdInfo();
    else {
      console.error(`mae: unknown command '${cmd}'; commands: pretrain, visualize, info`);
      return 1;
    }
    return 0;
  } catch (e) {
    const err = e as Error & { code?: string };
    const usage = e instanceof UsageError || err.code?.startsWith('ERR_PARSE_ARGS');
    console.error(`mae ${cmd}: ${err.message}`);
    return usage ? 2 : 1;
  }
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
