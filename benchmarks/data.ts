/**
 * Data-loading benchmark: how many training images per second per core the DataLoader delivers at 224 px
 * (RandomResizedCrop 0.2-1 + flip + normalisation, batch 64) from
 *   folder-ts     an image folder of JPEGs through the TypeScript transforms (the path before native augmentation:
 *                 transforms 'typescript', antialias false)
 *   folder        the same folder through the native augmentation
 *   shards-raw    the folder prepared by prepareShards (short side 256, raw uint8 records)
 *   shards-raw-fresh  the same without batch.release(): fresh memory for every batch
 *   shards-jpeg   the same as JPEG records (quality 90)
 * with 1 and 2 worker threads, and the stall time of a training loop fed from each: a consumer that spends
 * --step-ms per batch away from the CPU (as a GPU step does), so the workers have the cores to themselves.
 *
 * The images: --images (512) synthetic JPEGs of 500 x 375 (ImageNet-like size; smooth colour fields, texture and
 * noise, quality 90), made in a temporary folder, prepared into shards there (the preparation is timed too).
 * Per case: --epochs (3) epochs timed from the first batch (worker start-up left out); img/s over the wall time, CPU cores busy
 * (process CPU time, all threads: main, workers, sharp's and libuv's pools, / wall time) and images per CPU-second
 * (= img/s per core). The consumer releases each batch (batch.release(), as pretrain does) except in
 * shards-raw-fresh. Cases run round-robin, --rounds (2) times, and the median is reported. The native kernel alone
 * (one thread, 256 x 341 -> 224) is timed as well, against the TypeScript transforms.
 *
 * Output: a table on stdout and benchmarks/results/data-<date>[-<tag>].json. Options: --images N, --epochs N,
 * --rounds N, --step-ms MS (default 32: a loop consuming 2,000 img/s), --workers 1,2, --sources a,b (of the five
 * above), --tag T, --keep (leave the temporary folder and print its path).
 */
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { DataLoader, ImageFolderDataset, ShardDataset, prepareShards, randomResizedCropParams, resizedCrop, type Dataset, type DataLoaderOptions } from '../lib/data/index.js';
import { native } from '../lib/native.js';
import { Generator } from '../lib/random.js';
import { benchArgs, describeMachine, fmt, machine, median, printTable, resultName, timeIt, writeJson } from './common.js';

const args = benchArgs(
  'npm run bench:data -- [--images N] [--epochs N] [--rounds N] [--step-ms MS] [--workers 1,2] [--sources a,b] [--keep] [--tag T]\n' +
    'Images per CPU-second of each data source (folder JPEGs, prepared shards), through the DataLoader.',
  { flags: ['--keep'], values: ['--images', '--epochs', '--rounds', '--step-ms', '--workers', '--sources'] },
);
const opt = (name: string, def: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : def);
const IMAGES = Number(opt('--images', '512'));
const EPOCHS = Number(opt('--epochs', '3'));
const ROUNDS = Number(opt('--rounds', '2'));
const STEP_MS = Number(opt('--step-ms', '32'));
const WORKERS = opt('--workers', '1,2').split(',').map(Number);
const SOURCES = opt('--sources', 'folder-ts,folder,shards-raw,shards-raw-fresh,shards-jpeg').split(',');
const BATCH = 64;
const SIZE = 224;

/** A 500 x 375 JPEG with the statistics of a photo: large smooth colour areas, some texture, sensor-like noise. */
async function syntheticPhoto(path: string, seed: number): Promise<void> {
  const w = 500, h = 375;
  const g = new Generator(seed);
  const waves = Array.from({ length: 6 }, () => ({ fx: g.uniform() * 0.05, fy: g.uniform() * 0.05, p: g.uniform() * 6.3, a: 20 + 40 * g.uniform(), c: g.int(3) }));
  const base = [g.uniform() * 200, g.uniform() * 200, g.uniform() * 200];
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = [base[0]!, base[1]!, base[2]!];
      for (const s of waves) v[s.c] = v[s.c]! + s.a * Math.sin(s.fx * x + s.fy * y + s.p);
      const texture = 12 * Math.sin(x * 0.9 + 3 * Math.sin(y * 0.3)) * Math.sin(y * 0.7);
      for (let c = 0; c < 3; c++) px[(y * w + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v[c]! + texture + 8 * (g.uniform() - 0.5))));
    }
  }
  await sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(path);
}

interface Measure {
  imgPerSec: number;
  cpuCores: number;
  imgPerCpuSecond: number;
  stallMsPerStep: number;
  stallFraction: number;
}

/**
 * One run of the DataLoader over `ds`: EPOCHS epochs, timed from the first batch (so worker start-up is left out),
 * consuming each batch in stepMs.
 */
async function measure(ds: Dataset, workers: number, stepMs: number, extra: Partial<DataLoaderOptions>, release: boolean): Promise<Measure> {
  const loader = new DataLoader(ds, { batchSize: BATCH, imageSize: SIZE, augment: true, seed: 0, workers, prefetch: 2, dropLast: true, ...extra });
  let images = 0, steps = 0, t0 = 0, stall0 = 0;
  let cpu0 = process.cpuUsage();
  for (let e = 0; e < EPOCHS; e++) {
    for await (const b of loader.epoch(e)) {
      if (t0 === 0) {
        t0 = performance.now();
        cpu0 = process.cpuUsage();
        stall0 = loader.stallMs;
      } else {
        images += b.size;
        steps++;
      }
      if (stepMs > 0) await sleep(stepMs);
      if (release) b.release();
    }
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const stall = loader.stallMs - stall0;
  await loader.close();
  return { imgPerSec: images / wall, cpuCores: cpuSeconds / wall, imgPerCpuSecond: images / cpuSeconds, stallMsPerStep: stall / steps, stallFraction: stall / (wall * 1000) };
}

async function main(): Promise<void> {
  const m = machine();
  console.log(describeMachine(m, native.info().threads));
  const dir = mkdtempSync(join(tmpdir(), 'mae-bench-data-'));
  try {
    const folder = join(dir, 'folder');
    let t = performance.now();
    for (let i = 0; i < IMAGES; i++) {
      const cls = join(folder, `class${i % 8}`);
      mkdirSync(cls, { recursive: true });
      await syntheticPhoto(join(cls, `${i}.jpg`), i);
    }
    console.log(`made ${IMAGES} JPEGs of 500x375 in ${fmt((performance.now() - t) / 1000)} s`);
    const prepared: Record<string, { seconds: number; imgPerSec: number; mib: number }> = {};
    for (const format of ['raw', 'jpeg'] as const) {
      t = performance.now();
      const r = await prepareShards({ data: folder, out: join(dir, format), format, shortSide: 256 });
      const seconds = (performance.now() - t) / 1000;
      prepared[format] = { seconds, imgPerSec: IMAGES / seconds, mib: r.bytes / 2 ** 20 };
      console.log(`prepare-data --format ${format}: ${fmt(seconds)} s (${fmt(IMAGES / seconds)} img/s), ${fmt(r.bytes / 2 ** 20)} MiB in ${r.shards} shard(s)`);
    }
    const folderDs = await ImageFolderDataset.open(folder);
    const raw = await ShardDataset.open(join(dir, 'raw'));
    const sources = ([
      ['folder-ts', folderDs, { transforms: 'typescript', antialias: false }, true],
      ['folder', folderDs, {}, true],
      ['shards-raw', raw, {}, true],
      ['shards-raw-fresh', raw, {}, false],
      ['shards-jpeg', await ShardDataset.open(join(dir, 'jpeg')), {}, true],
    ] as [string, Dataset, Partial<DataLoaderOptions>, boolean][]).filter(([name]) => SOURCES.includes(name));

    // the kernel alone, one thread: a 256 x 341 image (the raw shard size of a 500 x 375 photo) to 224
    const h = 256, w = 341;
    const g = new Generator(1);
    const px = Uint8Array.from({ length: h * w * 3 }, () => g.int(256));
    const boxes = Array.from({ length: 64 }, () => randomResizedCropParams(h, w, g, { scale: [0.2, 1], ratio: [3 / 4, 4 / 3] }));
    const out = new Float32Array(3 * SIZE * SIZE);
    const kernel: Record<string, number> = {};
    for (const antialias of [true, false]) {
      let k = 0;
      const s = timeIt(() => {
        const b = boxes[k++ % boxes.length]!;
        native.resizedCrop(px, [h, w, 3], [b.top, b.left, b.height, b.width], [SIZE, SIZE], [0, 0, SIZE, SIZE], k % 2 === 0, antialias, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], out, 0);
      }, { reps: 5, minTime: 0.2 });
      kernel[`native${antialias ? '' : '-plain'}`] = 1 / s.median;
    }
    const floats = Float32Array.from(px, (v) => v / 255);
    for (const antialias of [true, false]) {
      let k = 0;
      const s = timeIt(() => {
        const b = boxes[k++ % boxes.length]!;
        resizedCrop(floats, 3, h, w, b.top, b.left, b.height, b.width, SIZE, SIZE, antialias);
      }, { reps: 3, minTime: 0.2 });
      kernel[`typescript${antialias ? '' : '-plain'}`] = 1 / s.median;
    }
    console.log(`kernel alone, 1 thread, img/s: ${Object.entries(kernel).map(([k, v]) => `${k} ${fmt(v, 0)}`).join(', ')}`);

    const runs: Record<string, { free: Measure[]; fed: Measure[] }> = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, ds, extra, release] of sources) {
        for (const workers of WORKERS) {
          const key = `${name} w${workers}`;
          runs[key] ??= { free: [], fed: [] };
          runs[key].free.push(await measure(ds, workers, 0, extra, release));
          runs[key].fed.push(await measure(ds, workers, STEP_MS, extra, release));
          const f = runs[key].free.at(-1)!, d = runs[key].fed.at(-1)!;
          console.log(`round ${round + 1} ${key}: ${fmt(f.imgPerSec, 0)} img/s, ${fmt(f.imgPerCpuSecond, 0)} img/CPU-s; fed at ${STEP_MS} ms/step: stall ${fmt(d.stallMsPerStep)} ms/step`);
        }
      }
    }
    const med = (xs: Measure[], k: keyof Measure) => median(xs.map((x) => x[k]));
    const rows = Object.entries(runs).map(([key, r]) => [
      key, fmt(med(r.free, 'imgPerSec'), 0), fmt(med(r.free, 'cpuCores'), 2), fmt(med(r.free, 'imgPerCpuSecond'), 0),
      fmt(med(r.fed, 'stallMsPerStep'), 1), fmt(100 * med(r.fed, 'stallFraction'), 0),
    ]);
    console.log('');
    printTable(['source', 'img/s', 'CPU cores busy', 'img/s per core', `stall ms/step at ${STEP_MS} ms/step`, 'stall %'], rows);
    const endLoad = machine().loadavg;
    const path = writeJson(resultName('data', m.date, args), {
      machine: { ...m, loadavgEnd: endLoad }, images: IMAGES, imageSize: '500x375 JPEG q90', batch: BATCH, outSize: SIZE, epochs: EPOCHS, rounds: ROUNDS, stepMs: STEP_MS,
      prepared, kernelImgPerSec: kernel, runs,
    });
    console.log(`\nload ${m.loadavg.join(' ')} -> ${endLoad.join(' ')}; results: ${path}`);
  } finally {
    if (args.includes('--keep')) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

await main();
