// The pre-training loop: learning, resume equality, non-finite loss handling, logs, events and yielding.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getPreset, maeFlops } from '../../lib/mae/index.js';
import { loadCheckpoint, loadModel } from '../../lib/train/checkpoint.js';
import { pretrain, type PretrainOptions, type TrainEvent } from '../../lib/train/pretrain.js';
import { liveTensors } from '../../lib/tensor.js';

const small: PretrainOptions = {
  preset: 'mae_vit_tiny_patch4_28',
  config: { embedDim: 32, depth: 2, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 },
  data: { kind: 'synthetic', count: 128 },
  batchSize: 16,
  epochs: 3,
  blr: 1e-2,
  warmupEpochs: 1,
  workers: 0,
  visualizeEvery: 0,
};

const tmp = () => mkdtempSync(join(tmpdir(), 'mae-pretrain-'));

describe('pretrain', () => {
  it('learns, logs, emits events in order and yields to the event loop', async () => {
    const outDir = tmp();
    const events: TrainEvent[] = [];
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const before = liveTensors();
    const r = await pretrain({ ...small, outDir, logEvery: 4, onEvent: (e) => events.push(e) });
    clearInterval(timer);
    expect(liveTensors()).toBe(before);
    expect(r.steps).toBe(24);
    expect(r.losses).toHaveLength(24);
    expect(r.epochLosses).toHaveLength(3);
    expect(r.epochLosses[2]!).toBeLessThan(r.epochLosses[0]! * 0.9);
    expect(ticks).toBeGreaterThan(5);
    expect(events[0]!.type).toBe('start');
    expect(events[events.length - 1]!.type).toBe('end');
    expect(events.filter((e) => e.type === 'step')).toHaveLength(24);
    expect(events.filter((e) => e.type === 'epoch')).toHaveLength(3);
    const log = readFileSync(join(outDir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(log.map((l) => l.step)).toEqual([4, 8, 12, 16, 20, 24]);
    for (const l of log) for (const k of ['epoch', 'lr', 'loss', 'imgPerSec', 'gflopPerSec']) expect(Number.isFinite(l[k])).toBe(true);
    // the achieved model GFLOP/s: maeFlops' training FLOPs per image x img/s
    const start = events[0]!;
    if (start.type !== 'start') throw new Error('no start event');
    expect(start.trainingFlopsPerImage).toBe(maeFlops({ ...getPreset('mae_vit_tiny_patch4_28'), ...small.config }, 0.75).training);
    for (const l of log) expect(Math.abs(l.gflopPerSec - (start.trainingFlopsPerImage * l.imgPerSec) / 1e9)).toBeLessThan(0.1 + 1e-3 * l.gflopPerSec);
    // warm-up for one epoch (8 steps), then cosine down
    const lrs = events.flatMap((e) => (e.type === 'step' ? [e.lr] : []));
    expect(lrs[1]!).toBeGreaterThan(lrs[0]!);
    expect(lrs[23]!).toBeLessThan(lrs[10]!);
    expect(existsSync(r.reconstructions[0]!)).toBe(true);
    const ck = await loadCheckpoint(outDir);
    expect(ck.meta.position).toMatchObject({ epoch: 3, iter: 0, step: 24 });
  });

  it('resumes exactly: an interrupted and resumed run has the same losses as an uninterrupted one', async () => {
    const opts: PretrainOptions = { ...small, accumIter: 2, epochs: 2, checkpointEvery: 1 };
    const full = await pretrain({ ...opts, outDir: tmp() });
    const dir = tmp();
    const first = await pretrain({ ...opts, outDir: dir, maxSteps: 3 });
    expect(first.steps).toBe(3);
    const rest = await pretrain({ ...opts, outDir: dir, resume: true });
    expect(rest.steps).toBe(full.steps);
    expect([...first.losses, ...rest.losses]).toEqual(full.losses);
  });

  it('trains the mask-token encoder: it learns, and its checkpoint holds encoder_mask_token and no decoder mask_token', async () => {
    const outDir = tmp();
    const r = await pretrain({ ...small, config: { ...small.config, maskTokenEncoder: true }, epochs: 2, outDir });
    expect(r.epochLosses[1]!).toBeLessThan(r.epochLosses[0]!);
    const ck = await loadCheckpoint(outDir);
    expect(ck.meta.config.maskTokenEncoder).toBe(true);
    expect(ck.weights.get('encoder_mask_token')!.shape).toEqual([1, 1, 32]);
    expect(ck.weights.has('mask_token')).toBe(false);
    const { model } = await loadModel(outDir);
    expect(Array.from(model.encoder_mask_token!.dataSync())).toEqual(Array.from(ck.weights.get('encoder_mask_token')!.data));
    model.dispose();
  });

  it('refuses to resume with different run options', async () => {
    const dir = tmp();
    await pretrain({ ...small, epochs: 1, outDir: dir, maxSteps: 2 });
    await expect(pretrain({ ...small, epochs: 1, blr: 0.5, outDir: dir, resume: true })).rejects.toThrow(/option blr differs/);
  });

  it('stops on a non-finite loss and keeps the last good checkpoint', async () => {
    const dir = tmp();
    const err = await pretrain({ ...small, lr: 1e6, warmupEpochs: 0, checkpointEvery: 1, outDir: dir }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/loss became (NaN|Infinity|-Infinity).*last good checkpoint is .*checkpoint\.safetensors/);
    const ck = await loadCheckpoint(dir);
    expect(ck.meta.position.step).toBeGreaterThan(0);
    for (const [, t] of ck.weights) expect(t.data.every(Number.isFinite)).toBe(true);
  });

  it('rejects bad options with clear errors', async () => {
    await expect(pretrain({ ...small, batchSize: 0 })).rejects.toThrow(/batchSize must be a positive integer/);
    await expect(pretrain({ ...small, maskRatio: 1 })).rejects.toThrow(/maskRatio must be in \[0, 1\)/);
    await expect(pretrain({ ...small, preset: 'nope' })).rejects.toThrow(/unknown preset 'nope'/);
    await expect(pretrain({ ...small, data: { kind: 'folder', path: '/nonexistent/folder' }, outDir: tmp() })).rejects.toThrow(/nonexistent/);
  });
});
