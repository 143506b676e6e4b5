import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { linprobe, type LinprobeEvent, type LinprobeOptions } from '../../lib/train/linprobe.js';
import { pretrain } from '../../lib/train/pretrain.js';
import { liveTensors } from '../../lib/tensor.js';
import { loadClassifier } from '../../lib/classify/checkpoint.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { writeImage } from '../helpers/images.js';
import { endedPid } from '../helpers/processes.js';

const dir = mkdtempSync(join(tmpdir(), 'mae-linprobe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tiny = { imgSize: 28, patchSize: 7, inChans: 1, embedDim: 32, depth: 2, numHeads: 2, decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2, mlpRatio: 2 };
const data = { kind: 'synthetic' as const, count: 512 };

describe('linear probing end to end (synthetic data)', () => {
  it('probes a briefly pre-trained encoder well above chance, and the raw-pixel baseline too', async () => {
    const events: string[] = [];
    const pt = await pretrain({ config: tiny, data, outDir: join(dir, 'pt'), epochs: 10, batchSize: 32, blr: 1e-2, warmupEpochs: 1, visualizeEvery: 0, threads: 1, knn: { every: 10, trainLimit: 512, testLimit: 256 }, onEvent: (e) => events.push(e.type) });
    expect(events).toContain('knn');
    const log = readFileSync(join(pt.outDir, 'log.jsonl'), 'utf8');
    expect(log).toMatch(/"knnEpoch":10/);

    // LARS moves each weight matrix by about lr * 0.001 of its norm per step: a small batch needs a large base lr
    const r = await linprobe({ checkpoint: pt.checkpoint, data, outDir: join(dir, 'lp'), epochs: 100, batchSize: 64, blr: 40, warmupEpochs: 2 });
    expect(r.top1).toBeGreaterThan(0.4);
    expect(r.top5).toBeGreaterThanOrEqual(r.top1);
    expect(existsSync(join(dir, 'lp', 'confusion.png'))).toBe(true);
    expect(existsSync(join(dir, 'lp', 'classifier.safetensors'))).toBe(true);
    const res = JSON.parse(readFileSync(join(dir, 'lp', 'results.json'), 'utf8'));
    expect(res.featureDim).toBe(32);
    expect(res.confusion.reduce((a: number, b: number) => a + b, 0)).toBe(512);

    const px = await linprobe({ rawPixels: true, data, outDir: join(dir, 'px'), epochs: 30, batchSize: 64, blr: 2, warmupEpochs: 2 });
    expect(px.top1).toBeGreaterThan(0.4);
  });

  it('chooses the base lr on a held-out part of the training set, never the test set', async () => {
    const sweeps: { blr: number; valTop1: number }[] = [];
    const px = await linprobe({
      rawPixels: true,
      data,
      outDir: join(dir, 'px-sweep'),
      epochs: 30,
      batchSize: 64,
      blrSweep: [1e-4, 2],
      valSize: 100,
      warmupEpochs: 2,
      onEvent: (e) => {
        if (e.type === 'sweep') sweeps.push(e);
      },
    });
    // a base lr of 1e-4 barely moves the head in 30 epochs; 2 learns
    expect(sweeps.map((e) => e.blr)).toEqual([1e-4, 2]);
    expect(sweeps[1]!.valTop1).toBeGreaterThan(sweeps[0]!.valTop1 + 0.2);
    expect(px.lr).toBeCloseTo((2 * 64) / 256, 12);
    expect(px.top1).toBeGreaterThan(0.4);
    const res = JSON.parse(readFileSync(join(dir, 'px-sweep', 'results.json'), 'utf8'));
    expect(res.sweep).toHaveLength(2);
    expect(res.valSize).toBe(100);
    expect(res.blr).toBeCloseTo(2, 12);

    // a base lr whose loss diverges scores 0 on the held-out part instead of stopping the sweep (and its head is freed)
    const before = liveTensors();
    const diverging = await linprobe({ rawPixels: true, data, outDir: join(dir, 'px-diverge'), epochs: 5, batchSize: 64, blrSweep: [2, 1e38], valSize: 100, warmupEpochs: 1 });
    expect(diverging.sweep.map((e) => e.valTop1)[1]).toBe(0);
    expect(diverging.lr).toBeCloseTo((2 * 64) / 256, 12);
    expect(liveTensors()).toBe(before);
    // a head whose loss diverges in the final fit ends the probe with the error, and nothing is left behind
    await expect(linprobe({ rawPixels: true, data, outDir: join(dir, 'px-diverge2'), epochs: 2, batchSize: 64, lr: 1e38, warmupEpochs: 0 })).rejects.toThrow(/loss became .* lower the lr/);
    expect(liveTensors()).toBe(before);

    await expect(linprobe({ rawPixels: true, data, outDir: join(dir, 'px-bad'), blrSweep: [0.1, -1] })).rejects.toThrow('linprobe: blrSweep[1] must be a positive base lr, finite in float32 (at most 3.4e38), got the number -1');
    await expect(linprobe({ rawPixels: true, data, outDir: join(dir, 'px-bad'), blrSweep: [0.1], valSize: 500, batchSize: 64 })).rejects.toThrow('linprobe: the held-out part (valSize, --val-size) of 500 of the 512 training samples leaves 12 to train on, fewer than a batch of 64');
    await expect(linprobe({ rawPixels: true, data, outDir: join(dir, 'px-bad'), valSize: 100 })).rejects.toThrow(/valSize \(--val-size\) only applies with a base-lr sweep/);
  });

  it('refuses bad training options before extracting any features, and writes nothing', async () => {
    const cases: [Partial<LinprobeOptions>, string][] = [
      [{ epochs: 0 }, 'epochs must be a positive integer, got 0'],
      [{ epochs: -1 }, 'epochs must be a positive integer, got -1'],
      [{ epochs: 1.5 }, 'epochs must be a positive integer, got 1.5'],
      [{ batchSize: 0 }, 'batchSize must be a positive integer, got 0'],
      [{ batchSize: 1.5 }, 'batchSize must be a positive integer, got 1.5'],
      [{ batchSize: -4 }, 'batchSize must be a positive integer, got -4'],
      [{ warmupEpochs: -1 }, 'warmupEpochs must be a finite number >= 0, got -1'],
      [{ warmupEpochs: Infinity }, 'warmupEpochs must be a finite number >= 0, got Infinity'],
      [{ minLr: -1e-6 }, 'minLr must be a finite number >= 0 (in float32: at most 3.4e38), got -0.000001'],
      [{ weightDecay: NaN }, 'weightDecay must be a finite number >= 0 (in float32: at most 3.4e38), got NaN'],
      // finite as doubles, infinite in float32, where the optimizer runs (the loss became NaN, 'lower the lr')
      [{ weightDecay: 1e300 }, 'weightDecay must be a finite number >= 0 (in float32: at most 3.4e38), got 1e+300'],
      [{ blr: 1e39 }, 'blr must be a positive finite number (in float32: at most 3.4e38), got 1e+39'],
      [{ epochs: 1e300 }, 'epochs must be a positive integer, got 1e+300'],
      [{ evalEvery: 1.5 }, 'evalEvery must be a non-negative integer, got 1.5'],
      [{ evalEvery: -1 }, 'evalEvery must be a non-negative integer, got -1'],
      [{ seed: -1 }, 'seed must be a non-negative integer, got -1'],
      [{ blr: 0 }, 'blr must be a positive finite number (in float32: at most 3.4e38), got 0'],
      [{ lr: -1 }, 'lr must be a positive finite number (in float32: at most 3.4e38), got -1'],
      [{ lr: Infinity }, 'lr must be a positive finite number (in float32: at most 3.4e38), got Infinity'],
      [{ blrSweep: [0.1, NaN] }, 'blrSweep[1] must be a positive base lr, finite in float32 (at most 3.4e38), got the number NaN'],
      [{ blrSweep: [0.1, 1e39] }, 'blrSweep[1] must be a positive base lr, finite in float32 (at most 3.4e38), got the number 1e+39'],
      // options that would not be used
      [{ blrSweep: [0.1, 1], blr: 0.5 }, 'blr and lr (--blr, --lr) do not apply with a base-lr sweep (blrSweep, --blr-sweep), which chooses the base lr'],
      [{ blrSweep: [0.1], lr: 0.01 }, 'blr and lr (--blr, --lr) do not apply with a base-lr sweep'],
      [{ pool: 'avg' }, 'pool (--pool) only applies to encoder features, not with rawPixels (--raw-pixels)'],
      [{ precision: 'bf16' }, "precision (--precision) only applies to the encoder's feature pass, not with rawPixels (--raw-pixels)"],
      // unknown and mistyped options (JavaScript callers): named, not a TypeError or RangeError from inside
      [{ blrSweep: '0.1' as unknown as number[] }, "blrSweep must be an array of numbers, got the string '0.1'"],
      [{ pool: 'max' as 'cls' }, "pool must be one of cls, avg, cls+avg, got 'max'"],
      [{ epoch: 2 } as Partial<LinprobeOptions>, "options has no option 'epoch' (did you mean epochs?)"],
      // limit cuts the default data only: with data it was ignored
      [{ limit: 10 }, "limit is for the default data (the checkpoint's, else Fashion-MNIST): give data.limit with data"],
      [{ signal: {} as AbortSignal }, 'signal must be an AbortSignal, got an object'],
    ];
    for (const [bad, message] of cases) {
      const events: string[] = [];
      const outDir = join(dir, 'px-refused');
      await expect(linprobe({ rawPixels: true, data, outDir, epochs: 1, batchSize: 64, ...bad, onEvent: (e) => events.push(e.type) }), message).rejects.toThrow(`linprobe: ${message}`);
      expect(events, message).toEqual([]);
      expect(existsSync(outDir), message).toBe(false);
    }
  });
});

describe('linear probing: the output folder, what it records, the test data, a stop', () => {
  const small = { kind: 'synthetic' as const, count: 128 };
  const quick = { data: small, epochs: 2, batchSize: 32 };
  const folderOf = (out: string) => Object.fromEntries(readdirSync(out, { withFileTypes: true }).filter((f) => f.isFile()).map((f) => [f.name, readFileSync(join(out, f.name), 'utf8')]));
  let pt = '';

  it('refuses an outDir that holds a run, touching nothing; overwrite replaces the old run once the new features are made', async () => {
    pt = (await pretrain({ config: tiny, data: small, outDir: join(dir, 'lp-pt'), epochs: 1, batchSize: 32, visualizeEvery: 0, threads: 1 })).outDir;
    const out = join(dir, 'lp-held');
    for (const f of ['checkpoint.safetensors', 'classifier.safetensors', 'results.json', 'log.jsonl', 'head.safetensors']) {
      rmSync(out, { recursive: true, force: true });
      mkdirSync(out);
      writeFileSync(join(out, f), 'old');
      await expect(linprobe({ rawPixels: true, ...quick, outDir: out }), f).rejects.toThrow(
        `linprobe: ${out} holds a run already (${f}): choose another folder (--out), or start again there with --overwrite (overwrite), which removes that run's files`,
      );
      expect(folderOf(out), f).toEqual({ [f]: 'old' });
    }
    // the checkpoint's own folder: refused, even with overwrite (the checkpoint would go)
    const ptFiles = folderOf(pt);
    await expect(linprobe({ checkpoint: pt, ...quick, outDir: pt, overwrite: true })).rejects.toThrow(`linprobe: ${pt} holds the checkpoint this run starts from (${pt}), which --overwrite would remove`);
    expect(folderOf(pt)).toEqual(ptFiles);

    // a cls probe writes the classifier; an avg probe over it with overwrite leaves only its own head, which says what
    // it holds (encoder features, pooled by averaging), not the old classifier beside it
    rmSync(out, { recursive: true, force: true });
    await linprobe({ checkpoint: pt, ...quick, outDir: out });
    expect(readdirSync(out).sort()).toEqual(['classifier.safetensors', 'confusion.png', 'log.jsonl', 'results.json']);
    await expect(linprobe({ checkpoint: pt, ...quick, pool: 'avg', outDir: out })).rejects.toThrow(`holds a run already (classifier.safetensors)`);
    await linprobe({ checkpoint: pt, ...quick, pool: 'avg', outDir: out, overwrite: true });
    expect(readdirSync(out).sort()).toEqual(['confusion.png', 'head.safetensors', 'log.jsonl', 'results.json']);
    const meta = JSON.parse((await readSafetensors(join(out, 'head.safetensors'))).metadata['mae-linprobe']!);
    expect([meta.rawPixels, meta.pool, meta.dim, meta.numClasses]).toEqual([false, 'avg', 32, 10]);
    expect(meta.recipe).toMatchObject({ checkpoint: pt, data: small, testData: null, pool: 'avg', epochs: 2, precision: 'fp32' });
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect([res.pool, res.precision, res.testData]).toEqual(['avg', 'fp32', null]);
    const px = join(dir, 'lp-px-meta');
    await linprobe({ rawPixels: true, ...quick, outDir: px });
    expect(JSON.parse((await readSafetensors(join(px, 'head.safetensors'))).metadata['mae-linprobe']!)).toMatchObject({ rawPixels: true, pool: 'pixels', dim: 784 });
  });

  it('refuses fewer training samples than a batch (or a held-out part leaving less) before the features, keeping the old run', async () => {
    const out = join(dir, 'lp-few');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'results.json'), 'old');
    const events: string[] = [];
    const few = { rawPixels: true, data: { kind: 'synthetic' as const, count: 20 }, epochs: 1, outDir: out, overwrite: true, workers: 0, onEvent: (e: LinprobeEvent) => events.push(e.type) };
    await expect(linprobe({ ...few, batchSize: 32 })).rejects.toThrow('linprobe: the 20 training samples are fewer than a batch of 32 (batchSize, --batch-size)');
    await expect(linprobe({ ...few, batchSize: 16, blrSweep: [0.1, 1], valSize: 8 })).rejects.toThrow(
      'linprobe: the held-out part (valSize, --val-size) of 8 of the 20 training samples leaves 12 to train on, fewer than a batch of 16',
    );
    expect(events).toEqual([]);
    expect(folderOf(out)).toEqual({ 'results.json': 'old' });
  });

  it('removes, with a warning, the writes of its files that a killed run left unfinished', async () => {
    const out = join(dir, 'lp-killed');
    mkdirSync(out);
    const deadPid = endedPid();
    const stale = ['results.json', 'head.safetensors'].map((f) => join(out, `.${f}.${deadPid}.0123456789ab.tmp`));
    writeFileSync(join(out, 'log.jsonl'), 'old');
    for (const f of stale) writeFileSync(f, 'half');
    const events: LinprobeEvent[] = [];
    await linprobe({ rawPixels: true, ...quick, outDir: out, overwrite: true, onEvent: (e) => events.push(e) });
    expect(events.filter((e) => e.type === 'warning')).toEqual(stale.map((f) => ({ type: 'warning', message: `removed ${f}, a write that a killed process left unfinished` })));
    expect(readdirSync(out).sort()).toEqual(['confusion.png', 'head.safetensors', 'log.jsonl', 'results.json']);
  });

  it("holds its outDir with a lock while it writes there: a folder another run holds is refused, a dead run's lock taken over", async () => {
    const out = join(dir, 'lp-locked');
    mkdirSync(out);
    const lock = join(out, '.lock');
    const other = JSON.stringify({ pid: process.ppid, host: hostname(), thread: 0 }); // a process that runs
    writeFileSync(lock, other);
    await expect(linprobe({ rawPixels: true, ...quick, outDir: out })).rejects.toThrow(
      `linprobe: ${out} is in use by another run (process ${process.ppid} on ${hostname()}): wait for it to end or choose another folder (--out); if no run writes there, remove ${lock}`,
    );
    expect(folderOf(out)).toEqual({ '.lock': other });
    const dead = endedPid();
    writeFileSync(lock, JSON.stringify({ pid: dead, host: hostname(), thread: 0 }));
    const warnings: string[] = [];
    let held: unknown = null;
    await linprobe({
      rawPixels: true,
      ...quick,
      outDir: out,
      onEvent: (e) => {
        if (e.type === 'warning') warnings.push(e.message);
        if (e.type === 'epoch' && e.epoch === 1) held = JSON.parse(readFileSync(lock, 'utf8'));
      },
    });
    expect(warnings).toEqual([`took over ${lock}, the lock of a run that ended without removing it (process ${dead}, no longer running)`]);
    expect(held).toEqual({ pid: process.pid, host: hostname(), thread: 0 });
    expect(readdirSync(out).sort()).toEqual(['confusion.png', 'head.safetensors', 'log.jsonl', 'results.json']);
    // the folder is checked again under the lock: a run that ended there since the first check is not overwritten
    const late = join(dir, 'lp-late');
    const run = linprobe({ rawPixels: true, ...quick, outDir: late, onEvent: (e) => e.type === 'features' && e.split === 'test' && (mkdirSync(late), writeFileSync(join(late, 'results.json'), 'other')) });
    await expect(run).rejects.toThrow(`linprobe: ${late} holds a run already (results.json)`);
    expect(folderOf(late)).toEqual({ 'results.json': 'other' });
  });

  it("records its data in the classifier it saves (the recipe mae eval reads), and the precision in results.json", async () => {
    const out = join(dir, 'lp-recipe');
    await linprobe({ checkpoint: pt, ...quick, testData: { kind: 'synthetic', count: 64 }, outDir: out, precision: 'fp32' });
    const { model, meta } = await loadClassifier(out);
    model.dispose();
    expect(meta.job).toBe('linprobe');
    expect(meta.recipe).toEqual({ checkpoint: pt, data: small, testData: { kind: 'synthetic', count: 64 }, pool: 'cls', epochs: 2, batchSize: 32, lr: (0.1 * 32) / 256, warmupEpochs: 2 / 9, minLr: 0, weightDecay: 0, seed: 0, precision: 'fp32' });
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect([res.precision, res.testSamples]).toEqual(['fp32', 64]);
  });

  it('refuses image-folder or shard data without test data (its test score would be on the training images), and scores testData', async () => {
    const images = async (root: string, perClass: number, seed: number) => {
      for (const c of ['a', 'b']) {
        mkdirSync(join(root, c), { recursive: true });
        for (let i = 0; i < perClass; i++) await writeImage(join(root, c, `${i}.png`), 16, 16, seed + i + (c === 'b' ? 100 : 0));
      }
    };
    const train = join(dir, 'lp-images-train');
    const test = join(dir, 'lp-images-test');
    await images(train, 8, 0);
    await images(test, 3, 50);
    const config = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 1, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 };
    const rgb = (await pretrain({ config, data: { kind: 'folder', path: train }, outDir: join(dir, 'lp-pt-rgb'), epochs: 1, batchSize: 8, visualizeEvery: 0, threads: 1 })).outDir;
    const out = join(dir, 'lp-folder');
    // the checkpoint's data (the folder) by default, or given
    for (const given of [undefined, { kind: 'folder', path: train }, { kind: 'shards', path: train }] as const)
      await expect(linprobe({ checkpoint: rgb, data: given, outDir: out, epochs: 1, batchSize: 8 })).rejects.toThrow(
        `linprobe: the data (${given?.kind ?? 'folder'} ${train}) has no test split: its test score would be measured on its training images; give test data (testData, --test-data PATH)`,
      );
    expect(existsSync(out)).toBe(false);
    const r = await linprobe({ checkpoint: rgb, testData: { kind: 'folder', path: test }, outDir: out, epochs: 1, batchSize: 8 });
    expect(r.metrics!.n).toBe(6);
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect([res.trainSamples, res.testSamples, res.testData]).toEqual([16, 6, { kind: 'folder', path: test }]);
  });

  it('refuses data the encoder cannot take and test data the head cannot score (channels, more classes) before any features', async () => {
    const pt = await pretrain({ config: tiny, data: { ...data, limit: 32 }, outDir: join(dir, 'pt-unfit'), epochs: 1, batchSize: 32, visualizeEvery: 0, threads: 1, workers: 0 });
    const out = join(dir, 'lp-unfit');
    const events: string[] = [];
    const base = { checkpoint: pt.checkpoint, data: { ...data, count: 64 }, outDir: out, epochs: 1, batchSize: 32, workers: 0, onEvent: (e: LinprobeEvent) => events.push(e.type) };
    const rgb = { kind: 'synthetic' as const, count: 16, channels: 3 as const };
    await expect(linprobe({ ...base, data: { ...rgb, count: 64 } })).rejects.toThrow('linprobe: the data has 3 channels but the model takes 1 (only 1-channel data is replicated)');
    await expect(linprobe({ ...base, testData: rgb })).rejects.toThrow('linprobe: the test data has 3 channels but the model takes 1 (only 1-channel data is replicated)');
    // raw pixels: a folder of 2 classes makes a 2-class head, which test data of 10 classes would be scored against
    const train = join(dir, 'lp-unfit-train');
    for (const c of ['a', 'b']) {
      mkdirSync(join(train, c), { recursive: true });
      for (let i = 0; i < 4; i++) await writeImage(join(train, c, `${i}.png`), 28, 28, i + (c === 'b' ? 100 : 0));
    }
    await expect(linprobe({ rawPixels: true, data: { kind: 'folder', path: train }, testData: { ...rgb, imageSize: 28 }, outDir: out, epochs: 1, batchSize: 4, workers: 0 })).rejects.toThrow(
      'linprobe: the test data has 10 classes and the classifier 2: score it on data of at most 2 classes',
    );
    // raw pixels need images of one size: an image folder's are known only once decoded
    await expect(linprobe({ rawPixels: true, data: { kind: 'folder', path: train }, testData: { kind: 'folder', path: train }, outDir: out, epochs: 1, batchSize: 4, workers: 0 })).rejects.toThrow(
      `linprobe: rawPixels (--raw-pixels) flattens images of one size, and the data (${train}) holds images whose size is known only once decoded (an image folder); probe encoder features instead`,
    );
    expect(events).toEqual([]);
    expect(existsSync(out)).toBe(false);
  });

  it('stops after the epoch in which its signal is aborted: the log of the epochs done, no head, classifier or results', async () => {
    const out = join(dir, 'lp-stop');
    const stop = new AbortController();
    const events: string[] = [];
    const r = await linprobe({
      checkpoint: pt,
      ...quick,
      epochs: 5,
      outDir: out,
      signal: stop.signal,
      onEvent: (e) => {
        events.push(e.type);
        if (e.type === 'epoch' && e.epoch === 2) stop.abort();
      },
    });
    expect([r.stopped, r.top1, r.metrics]).toEqual([true, NaN, null]);
    expect(events).toEqual(['features', 'features', 'start', 'epoch', 'epoch', 'stopped']);
    expect(readdirSync(out)).toEqual(['log.jsonl']);
    expect(readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).epoch)).toEqual([1, 2]);
    // a stop asked during the feature pass ends it after its current batch: no features event, nothing written,
    // not even the folder, and the encoder's tensors are freed
    const live = liveTensors();
    for (const rawPixels of [false, true]) {
      const early = new AbortController();
      early.abort();
      const earlyEvents: string[] = [];
      const none = await linprobe({ ...(rawPixels ? { rawPixels } : { checkpoint: pt }), ...quick, outDir: join(dir, 'lp-stop-early'), signal: early.signal, onEvent: (e) => earlyEvents.push(e.type) });
      expect(none.stopped).toBe(true);
      expect(earlyEvents).toEqual(['stopped']);
      expect(existsSync(join(dir, 'lp-stop-early'))).toBe(false);
    }
    expect(liveTensors()).toBe(live);
  });
});
