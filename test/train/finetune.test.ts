import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadClassifier } from '../../lib/classify/checkpoint.js';
import { openDataset } from '../../lib/train/data.js';
import { evaluateClassifier } from '../../lib/train/evaluate.js';
import { finetune, type FinetuneOptions } from '../../lib/train/finetune.js';
import { liveTensors } from '../../lib/tensor.js';

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
      [{ weightDecay: -0.05 }, 'weightDecay must be a finite number >= 0, got -0.05'],
      [{ minLr: -1 }, 'minLr must be a finite number >= 0, got -1'],
      [{ blr: 0 }, 'blr must be a positive finite number, got 0'],
      [{ lr: -1 }, 'lr must be a positive finite number, got -1'],
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
