import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadClassifier } from '../../lib/classify/checkpoint.js';
import { openDataset } from '../../lib/train/data.js';
import { evaluateClassifier } from '../../lib/train/evaluate.js';
import { finetune, type FinetuneEvent, type FinetuneOptions } from '../../lib/train/finetune.js';
import { liveTensors } from '../../lib/tensor.js';
import { writeImage } from '../helpers/images.js';
import { endedPid } from '../helpers/processes.js';

const dir = mkdtempSync(join(tmpdir(), 'mae-finetune-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tiny = { patchSize: 7, embedDim: 32, depth: 2, numHeads: 2 };
const data = { kind: 'synthetic' as const, count: 512 };

describe('fine-tuning end to end (synthetic data)', () => {
  it('trains the classifier well above chance and saves a classifier that evaluates to the same accuracy', async () => {
    const r = await finetune({
      fromScratch: true,
      config: tiny,
      threads: 1,
      data,
      outDir: join(dir, 'ft'),
      epochs: 6,
      batchSize: 32,
      blr: 2e-2,
      warmupEpochs: 0.5,
      layerDecay: 0.75,
      dropPath: 0.05,
      mixup: 0,
      cutmix: 0,
      reprob: 0,
      cropScale: [1, 1],
      flipProb: 0,
    });
    expect(r.top1).toBeGreaterThan(0.4);
    expect(existsSync(join(dir, 'ft', 'confusion.png'))).toBe(true);
    const res = JSON.parse(readFileSync(join(dir, 'ft', 'results.json'), 'utf8'));
    expect(res.fromScratch).toBe(true);
    const { model } = await loadClassifier(join(dir, 'ft'));
    const m = await evaluateClassifier(model, await openDataset(data, 'test'));
    expect(m.top1).toBeCloseTo(r.top1, 6);
    model.dispose();
  });

  it('runs the full recipe (mixup / cutmix, random erasing, drop path) from a checkpoint', async () => {
    const { pretrain } = await import('../../lib/train/pretrain.js');
    const pt = await pretrain({ config: { ...tiny, decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2 }, data: { ...data, limit: 128 }, outDir: join(dir, 'pt'), epochs: 1, batchSize: 32, visualizeEvery: 0, threads: 1 });
    const events: string[] = [];
    const r = await finetune({ checkpoint: pt.checkpoint, data: { ...data, limit: 128 }, outDir: join(dir, 'ft2'), epochs: 1, batchSize: 32, onEvent: (e) => {
      events.push(e.type);
      if (e.type === 'start') {
        expect(e.loaded).toBeGreaterThan(0);
        expect(e.ignored).toContain('decoder_pred.weight');
        expect(e.missing.sort()).toEqual(['fc_norm.bias', 'fc_norm.weight', 'head.bias', 'head.weight']);
      }
    } });
    expect(events[0]).toBe('start');
    expect(events).toContain('end');
    expect(r.top1).toBeGreaterThanOrEqual(0);
  });

  it('frees its model and optimizer when it finishes and when it fails', async () => {
    const before = liveTensors();
    await finetune({ fromScratch: true, config: tiny, data: { ...data, limit: 64 }, testData: { ...data, limit: 64 }, outDir: join(dir, 'ft-free'), epochs: 1, batchSize: 32 });
    expect(liveTensors()).toBe(before);
    await expect(finetune({ fromScratch: true, config: tiny, data: { ...data, limit: 64 }, testData: { ...data, limit: 64 }, outDir: join(dir, 'ft-nan'), epochs: 1, batchSize: 32, lr: 1e38, warmupEpochs: 0 })).rejects.toThrow(/finetune: the loss became/);
    expect(liveTensors()).toBe(before);
    await expect(finetune({ fromScratch: true, config: tiny, data: { ...data, limit: 64 }, outDir: join(dir, 'ft-accum'), epochs: 1, batchSize: 32, accumIter: 4 })).rejects.toThrow(/fewer than accumIter 4/);
    expect(liveTensors()).toBe(before);
  });

  it('refuses bad recipe options before it loads anything, and writes nothing', async () => {
    const cases: [Partial<FinetuneOptions>, string][] = [
      [{ epochs: 0 }, 'epochs must be a positive integer, got 0'],
      [{ epochs: 1.5 }, 'epochs must be a positive integer, got 1.5'],
      [{ batchSize: -4 }, 'batchSize must be a positive integer, got -4'],
      [{ accumIter: 0 }, 'accumIter must be a positive integer, got 0'],
      [{ accumIter: 1.5 }, 'accumIter must be a positive integer, got 1.5'],
      [{ logEvery: 0 }, 'logEvery must be a positive integer, got 0'],
      [{ evalEvery: 0.5 }, 'evalEvery must be a non-negative integer, got 0.5'],
      [{ seed: 1.5 }, 'seed must be a non-negative integer, got 1.5'],
      [{ layerDecay: -1 }, 'layerDecay must be in (0, 1], got -1'],
      [{ layerDecay: 0 }, 'layerDecay must be in (0, 1], got 0'],
      [{ layerDecay: 1.5 }, 'layerDecay must be in (0, 1], got 1.5'],
      [{ dropPath: 1 }, 'dropPath must be in [0, 1), got 1'],
      [{ dropPath: -0.1 }, 'dropPath must be in [0, 1), got -0.1'],
      [{ smoothing: 1 }, 'smoothing must be in [0, 1), got 1'],
      [{ mixup: -0.8 }, 'mixup must be a finite number >= 0, got -0.8'],
      [{ cutmix: -1 }, 'cutmix must be a finite number >= 0, got -1'],
      [{ mixupProb: 1.5 }, 'mixupProb must be in [0, 1], got 1.5'],
      [{ mixupSwitchProb: -0.5 }, 'mixupSwitchProb must be in [0, 1], got -0.5'],
      [{ reprob: 2 }, 'reprob must be in [0, 1], got 2'],
      [{ flipProb: NaN }, 'flipProb must be in [0, 1], got NaN'],
      [{ warmupEpochs: -1 }, 'warmupEpochs must be a finite number >= 0, got -1'],
      [{ weightDecay: -0.05 }, 'weightDecay must be a finite number >= 0 (in float32: at most 3.4e38), got -0.05'],
      [{ minLr: -1 }, 'minLr must be a finite number >= 0 (in float32: at most 3.4e38), got -1'],
      [{ blr: 0 }, 'blr must be a positive finite number (in float32: at most 3.4e38), got 0'],
      [{ lr: -1 }, 'lr must be a positive finite number (in float32: at most 3.4e38), got -1'],
      // finite as doubles, infinite in float32, where the optimizer runs (they failed at its first step)
      [{ lr: 1e39 }, 'lr must be a positive finite number (in float32: at most 3.4e38), got 1e+39'],
      [{ weightDecay: 1e300 }, 'weightDecay must be a finite number >= 0 (in float32: at most 3.4e38), got 1e+300'],
      [{ epochs: 1e300 }, 'epochs must be a positive integer, got 1e+300'],
      // unknown and mistyped options (JavaScript callers): named, not ignored or used as something else
      [{ epoch: 2 } as Partial<FinetuneOptions>, "options has no option 'epoch' (did you mean epochs?)"],
      // a misspelt model option was ignored, the preset's value trained
      [{ config: { ...tiny, depht: 3 } as FinetuneOptions['config'] }, "config has no option 'depht' (did you mean depth?)"],
      // limit cuts the default data only: with data it was ignored
      [{ limit: 10 }, "limit is for the default data (the checkpoint's, else Fashion-MNIST): give data.limit with data"],
      [{ lr_decay: 0.65 } as Partial<FinetuneOptions>, "options has no option 'lr_decay'"],
      [{ fromScratch: 'no' as unknown as boolean }, "fromScratch must be true or false, got the string 'no'"],
      [{ config: [] as unknown as object }, 'config must be an object, got an array of 0'],
      [{ epochs: '2' as unknown as number }, "epochs must be a number, got the string '2'"],
      [{ cropScale: [0.2, '1'] as unknown as [number, number] }, 'cropScale must be an array of numbers, got an array of 2'],
    ];
    const outDir = join(dir, 'ft-refused');
    for (const [bad, message] of cases) {
      await expect(finetune({ fromScratch: true, config: tiny, data: { ...data, limit: 64 }, outDir, epochs: 1, batchSize: 32, ...bad }), message).rejects.toThrow(`finetune: ${message}`);
      expect(existsSync(outDir), message).toBe(false);
    }
    // the model comes from a checkpoint: a preset or model config would be silently ignored
    const checkpoint = join(dir, 'no-such-checkpoint');
    await expect(finetune({ checkpoint, preset: 'mae_vit_tiny_patch4_28', outDir })).rejects.toThrow(`finetune: the model comes from the checkpoint ${checkpoint}, so preset "mae_vit_tiny_patch4_28" would not be used; preset and config apply only with fromScratch and no checkpoint`);
    await expect(finetune({ checkpoint, fromScratch: true, config: { depth: 4 }, outDir })).rejects.toThrow(`so config {"depth":4} would not be used`);
    expect(existsSync(outDir)).toBe(false);
  });
});

describe('fine-tuning: the output folder, the test data, a stop', () => {
  const small = { ...data, limit: 64 };
  const quick = { fromScratch: true, config: tiny, data: small, epochs: 1, batchSize: 32 } as const;
  const folderOf = (out: string) => Object.fromEntries(readdirSync(out).sort().map((f) => [f, readFileSync(join(out, f), 'utf8')]));

  it('refuses an outDir that holds a run, touching nothing; overwrite removes the old run only once the new one is checked', async () => {
    const out = join(dir, 'ft-held');
    for (const f of ['checkpoint.safetensors', 'classifier.safetensors', 'results.json', 'log.jsonl', 'head.safetensors']) {
      rmSync(out, { recursive: true, force: true });
      mkdirSync(out);
      writeFileSync(join(out, f), 'old');
      await expect(finetune({ ...quick, outDir: out }), f).rejects.toThrow(
        `finetune: ${out} holds a run already (${f}): choose another folder (--out), or start again there with --overwrite (overwrite), which removes that run's files`,
      );
      expect(folderOf(out), f).toEqual({ [f]: 'old' });
    }
    // with overwrite, a run refused after its data and model are made (too few batches) leaves the old run whole
    const old = { 'confusion.png': 'old', 'head.safetensors': 'old', 'log.jsonl': 'old', 'results.json': 'old' };
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out);
    for (const [f, text] of Object.entries(old)) writeFileSync(join(out, f), text);
    await expect(finetune({ ...quick, outDir: out, overwrite: true, accumIter: 4 })).rejects.toThrow('finetune: 2 batches per epoch are fewer than accumIter 4');
    expect(folderOf(out)).toEqual(old);
    // a good one replaces it: the old probe head is gone, the results are the new run's
    await finetune({ ...quick, outDir: out, overwrite: true });
    expect(readdirSync(out).sort()).toEqual(['classifier.safetensors', 'confusion.png', 'log.jsonl', 'results.json']);
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect([res.epochs, res.trainSamples, res.precision, res.testData]).toEqual([1, 64, 'fp32', null]);
  });

  it('removes, with a warning, the writes of its files that a killed run left unfinished', async () => {
    const out = join(dir, 'ft-killed');
    mkdirSync(out);
    const deadPid = endedPid();
    const stale = ['classifier.safetensors', 'confusion.png'].map((f) => join(out, `.${f}.${deadPid}.0123456789ab.tmp`));
    writeFileSync(join(out, 'log.jsonl'), 'old');
    for (const f of stale) writeFileSync(f, 'half');
    const events: FinetuneEvent[] = [];
    await finetune({ ...quick, outDir: out, overwrite: true, onEvent: (e) => events.push(e) });
    expect(events.filter((e) => e.type === 'warning')).toEqual(stale.map((f) => ({ type: 'warning', message: `removed ${f}, a write that a killed process left unfinished` })));
    expect(readdirSync(out).sort()).toEqual(['classifier.safetensors', 'confusion.png', 'log.jsonl', 'results.json']);
  });

  it("holds its outDir with a lock while it writes there: a folder another run holds is refused, a dead run's lock taken over", async () => {
    const out = join(dir, 'ft-locked');
    mkdirSync(out);
    const lock = join(out, '.lock');
    const other = JSON.stringify({ pid: process.ppid, host: hostname(), thread: 0 }); // a process that runs
    writeFileSync(lock, other);
    await expect(finetune({ ...quick, outDir: out })).rejects.toThrow(
      `finetune: ${out} is in use by another run (process ${process.ppid} on ${hostname()}): wait for it to end or choose another folder (--out); if no run writes there, remove ${lock}`,
    );
    expect(folderOf(out)).toEqual({ '.lock': other });
    const dead = endedPid();
    writeFileSync(lock, JSON.stringify({ pid: dead, host: hostname(), thread: 0 }));
    const warnings: string[] = [];
    let held: unknown = null;
    await finetune({
      ...quick,
      outDir: out,
      onEvent: (e) => {
        if (e.type === 'warning') warnings.push(e.message);
        if (e.type === 'step' && e.step === 1) held = JSON.parse(readFileSync(lock, 'utf8'));
      },
    });
    expect(warnings).toEqual([`took over ${lock}, the lock of a run that ended without removing it (process ${dead}, no longer running)`]);
    expect(held).toEqual({ pid: process.pid, host: hostname(), thread: 0 });
    expect(readdirSync(out).sort()).toEqual(['classifier.safetensors', 'confusion.png', 'log.jsonl', 'results.json']);
    // the folder is checked again under the lock: a run that ended there since the first check is not overwritten
    const late = join(dir, 'ft-late');
    const run = finetune({ ...quick, outDir: late, onEvent: (e) => e.type === 'start' && (mkdirSync(late), writeFileSync(join(late, 'results.json'), 'other')) });
    await expect(run).rejects.toThrow(`finetune: ${late} holds a run already (results.json)`);
    expect(folderOf(late)).toEqual({ 'results.json': 'other' });
  });

  it("never writes into the folder of the checkpoint it starts from, and creates nothing before the checkpoint is read", async () => {
    const { pretrain } = await import('../../lib/train/pretrain.js');
    const pt = join(dir, 'ft-pt');
    await pretrain({ config: { ...tiny, decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2 }, data: small, outDir: pt, epochs: 1, batchSize: 32, visualizeEvery: 0, threads: 1 });
    const before = Object.fromEntries(readdirSync(pt).map((f) => [f, statSync(join(pt, f)).mtimeMs]));
    const log = readFileSync(join(pt, 'log.jsonl'), 'utf8');
    await expect(finetune({ checkpoint: pt, data: small, outDir: pt, epochs: 1, batchSize: 32 })).rejects.toThrow(`finetune: ${pt} holds a run already (checkpoint.safetensors)`);
    await expect(finetune({ checkpoint: pt, data: small, outDir: pt, epochs: 1, batchSize: 32, overwrite: true })).rejects.toThrow(
      `finetune: ${pt} holds the checkpoint this run starts from (${pt}), which --overwrite would remove: choose another folder (--out)`,
    );
    const file = join(pt, 'checkpoint.safetensors');
    await expect(finetune({ checkpoint: file, data: small, outDir: pt, epochs: 1, batchSize: 32, overwrite: true })).rejects.toThrow(`holds the checkpoint this run starts from (${file})`);
    expect(Object.fromEntries(readdirSync(pt).map((f) => [f, statSync(join(pt, f)).mtimeMs]))).toEqual(before);
    expect(readFileSync(join(pt, 'log.jsonl'), 'utf8')).toBe(log);
    const fresh = join(dir, 'ft-no-checkpoint');
    await expect(finetune({ checkpoint: join(dir, 'no-such-run'), outDir: fresh })).rejects.toThrow(`checkpoint not found: ${join(dir, 'no-such-run')}`);
    expect(existsSync(fresh)).toBe(false);
  });

  it('refuses image-folder or shard data without test data (its test score would be on the training images), and scores testData', async () => {
    const images = async (root: string, perClass: number, seed: number) => {
      for (const c of ['a', 'b']) {
        mkdirSync(join(root, c), { recursive: true });
        for (let i = 0; i < perClass; i++) await writeImage(join(root, c, `${i}.png`), 16, 16, seed + i + (c === 'b' ? 100 : 0));
      }
    };
    const train = join(dir, 'ft-images-train');
    const test = join(dir, 'ft-images-test');
    await images(train, 8, 0);
    await images(test, 3, 50);
    const out = join(dir, 'ft-folder');
    const config = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 1, numHeads: 2 };
    for (const kind of ['folder', 'shards'] as const)
      await expect(finetune({ fromScratch: true, config, data: { kind, path: train }, outDir: out, epochs: 1, batchSize: 8 })).rejects.toThrow(
        `finetune: the data (${kind} ${train}) has no test split: its test score would be measured on its training images; give test data (testData, --test-data PATH)`,
      );
    expect(existsSync(out)).toBe(false);
    await finetune({ fromScratch: true, config, data: { kind: 'folder', path: train }, testData: { kind: 'folder', path: test }, outDir: out, epochs: 1, batchSize: 8 });
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect([res.trainSamples, res.testSamples, res.testData]).toEqual([16, 6, { kind: 'folder', path: test }]);
    const saved = await loadClassifier(out);
    expect(saved.meta.recipe).toMatchObject({ data: { kind: 'folder', path: train }, testData: { kind: 'folder', path: test }, precision: 'fp32' });
    saved.model.dispose();
  });

  it('refuses data the model cannot take and test data it cannot score (channels, more classes) before training, writing nothing', async () => {
    const out = join(dir, 'ft-unfit');
    const events: string[] = [];
    const grey = { imgSize: 16, patchSize: 4, inChans: 1, embedDim: 32, depth: 1, numHeads: 2 };
    const base = { fromScratch: true, config: grey, data: { kind: 'synthetic' as const, count: 64, imageSize: 16 }, outDir: out, epochs: 1, batchSize: 8, workers: 0, onEvent: (e: FinetuneEvent) => events.push(e.type) };
    const rgb = { kind: 'synthetic' as const, count: 16, imageSize: 16, channels: 3 as const };
    await expect(finetune({ ...base, data: { ...rgb, count: 64 } })).rejects.toThrow('finetune: the data has 3 channels but the model takes 1 (only 1-channel data is replicated)');
    await expect(finetune({ ...base, testData: rgb })).rejects.toThrow('finetune: the test data has 3 channels but the model takes 1 (only 1-channel data is replicated)');
    // a folder of 2 classes trains a 2-class head: test data of 10 classes cannot be scored by it
    const train = join(dir, 'ft-unfit-train');
    for (const c of ['a', 'b']) {
      mkdirSync(join(train, c), { recursive: true });
      for (let i = 0; i < 4; i++) await writeImage(join(train, c, `${i}.png`), 16, 16, i + (c === 'b' ? 100 : 0));
    }
    await expect(finetune({ ...base, config: { ...grey, inChans: 3 }, data: { kind: 'folder', path: train }, testData: rgb })).rejects.toThrow(
      'finetune: the test data has 10 classes and the classifier 2: score it on data of at most 2 classes',
    );
    expect(events).toEqual([]);
    expect(existsSync(out)).toBe(false);
  });

  it('stops at the next step when its signal is aborted: the log of the steps taken and a checkpoint, no classifier or results', async () => {
    const out = join(dir, 'ft-stop');
    const stop = new AbortController();
    const events: string[] = [];
    const before = liveTensors();
    const r = await finetune({
      ...quick,
      data: { ...data, limit: 128 },
      epochs: 3,
      logEvery: 1,
      outDir: out,
      signal: stop.signal,
      onEvent: (e) => {
        events.push(e.type);
        if (e.type === 'step' && e.step === 2) stop.abort();
      },
    });
    expect([r.stopped, r.steps, r.top1, r.metrics]).toEqual([true, 2, NaN, null]);
    expect(events).toEqual(['start', 'step', 'step', 'checkpoint', 'stopped']);
    expect(readdirSync(out).sort()).toEqual(['checkpoint.safetensors', 'log.jsonl']);
    expect(readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step)).toEqual([1, 2]);
    expect(liveTensors()).toBe(before);
  });
});
