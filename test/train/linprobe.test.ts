import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { linprobe, type LinprobeOptions } from '../../lib/train/linprobe.js';
import { pretrain } from '../../lib/train/pretrain.js';
import { liveTensors } from '../../lib/tensor.js';

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

    await expect(linprobe({ rawPixels: true, data, outDir: join(dir, 'px-bad'), blrSweep: [0.1, -1] })).rejects.toThrow(/every base lr of the sweep must be positive/);
    await expect(linprobe({ rawPixels: true, data, outDir: join(dir, 'px-bad'), blrSweep: [0.1], valSize: 500, batchSize: 64 })).rejects.toThrow(/held-out part .* got 500 of 512 samples/);
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
      [{ minLr: -1e-6 }, 'minLr must be a finite number >= 0, got -0.000001'],
      [{ weightDecay: NaN }, 'weightDecay must be a finite number >= 0, got NaN'],
      [{ evalEvery: 1.5 }, 'evalEvery must be a non-negative integer, got 1.5'],
      [{ evalEvery: -1 }, 'evalEvery must be a non-negative integer, got -1'],
      [{ blr: 0 }, 'blr must be a positive finite number, got 0'],
      [{ lr: -1 }, 'lr must be a positive finite number, got -1'],
      [{ lr: Infinity }, 'lr must be a positive finite number, got Infinity'],
      [{ blrSweep: [0.1, NaN] }, 'every base lr of the sweep must be positive, got 0.1, NaN'],
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
