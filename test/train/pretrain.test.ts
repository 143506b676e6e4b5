// The pre-training loop: learning, resume equality (also after a SIGKILL, log included), non-finite loss handling,
// logs, events and yielding.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getPreset, maeFlops } from '../../lib/mae/index.js';
import { loadCheckpoint, loadModel } from '../../lib/train/checkpoint.js';
import { cutLog, pretrain, type PretrainOptions, type TrainEvent } from '../../lib/train/pretrain.js';
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
const childScript = new URL('./pretrain-child.mjs', import.meta.url).pathname;
const readLog = (dir: string): { step?: number; loss?: number }[] =>
  readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));

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

  it('resumes exactly: an interrupted and resumed run has the same losses and epoch means as an uninterrupted one', async () => {
    const opts: PretrainOptions = { ...small, accumIter: 2, epochs: 2, checkpointEvery: 1 };
    const full = await pretrain({ ...opts, outDir: tmp() });
    const dir = tmp();
    const first = await pretrain({ ...opts, outDir: dir, maxSteps: 3 });
    expect(first.steps).toBe(3);
    const rest = await pretrain({ ...opts, outDir: dir, resume: true });
    expect(rest.steps).toBe(full.steps);
    expect([...first.losses, ...rest.losses]).toEqual(full.losses);
    // the epoch cut by the stop counts its steps before the resume too
    expect(rest.epochLosses).toEqual(full.epochLosses);
  });

  it("after a SIGKILL, the resumed run's log holds each step once, in order, with the uninterrupted run's losses", async () => {
    const opts: PretrainOptions = { ...small, epochs: 2, checkpointEvery: 4, logEvery: 1, threads: 1 };
    const child = (outDir: string, killAt?: number) =>
      spawnSync(process.execPath, [childScript, JSON.stringify({ ...opts, outDir }), ...(killAt ? [String(killAt)] : [])], { encoding: 'utf8', timeout: 60_000 });
    const steps = (dir: string) => readLog(dir).map((l) => l.step);
    const dir = tmp();
    const killed = child(dir, 11);
    expect(killed.signal, killed.stderr).toBe('SIGKILL');
    // killed at step 11: the checkpoint is step 8's, the log already has steps 9 and 10
    expect((await loadCheckpoint(dir)).meta.position.step).toBe(8);
    expect(steps(dir)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    const resumed = spawnSync(process.execPath, [childScript, JSON.stringify({ ...opts, outDir: dir, resume: true })], { encoding: 'utf8', timeout: 60_000 });
    expect(resumed.status, resumed.stderr).toBe(0);
    const ref = tmp();
    expect(child(ref).status).toBe(0);
    const total = 16;
    expect(steps(dir)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(readLog(dir).map((l) => l.loss)).toEqual(readLog(ref).map((l) => l.loss));
  });

  it('cutLog drops the lines after the checkpoint, kNN lines of unfinished epochs and a torn last line', async () => {
    const path = join(tmp(), 'log.jsonl');
    const line = (o: object) => JSON.stringify(o) + '\n';
    writeFileSync(path, line({ step: 4, loss: 1 }) + line({ knnEpoch: 1, top1: 0.5 }) + line({ step: 8, loss: 0.9 }) + line({ step: 12, loss: 0.8 }) + line({ knnEpoch: 2, top1: 0.6 }) + '{"step": 16, "lo');
    await cutLog(path, { epoch: 1, iter: 4, step: 8 });
    expect(readFileSync(path, 'utf8')).toBe(line({ step: 4, loss: 1 }) + line({ knnEpoch: 1, top1: 0.5 }) + line({ step: 8, loss: 0.9 }));
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

  it('refuses to start afresh in a folder that holds a run, unless told to overwrite it (log started again)', async () => {
    const dir = tmp();
    await pretrain({ ...small, epochs: 1, outDir: dir, maxSteps: 3, logEvery: 1 });
    await expect(pretrain({ ...small, epochs: 1, outDir: dir, maxSteps: 1 })).rejects.toThrow(
      `${dir} holds a run already (checkpoint.safetensors): resume it (--resume), start it again (--overwrite) or choose another folder (--out)`,
    );
    expect((await loadCheckpoint(dir)).meta.position.step).toBe(3);
    await pretrain({ ...small, epochs: 1, outDir: dir, maxSteps: 1, logEvery: 1, overwrite: true });
    expect((await loadCheckpoint(dir)).meta.position.step).toBe(1);
    expect(readLog(dir).map((l) => l.step)).toEqual([1]);
  });

  it('writes a checkpoint at each epoch end, and trains on when a figure cannot be written', async () => {
    const dir = tmp();
    mkdirSync(join(dir, 'reconstructions', 'epoch-001.png'), { recursive: true }); // a folder where the figure goes
    const events: TrainEvent[] = [];
    const r = await pretrain({ ...small, epochs: 2, visualizeEvery: 1, outDir: dir, onEvent: (e) => events.push(e) });
    expect(r.steps).toBe(16);
    expect(events.flatMap((e) => (e.type === 'checkpoint' ? [e.step] : []))).toEqual([8, 16]);
    expect(events.filter((e) => e.type === 'warning').map((e) => (e as { message: string }).message)).toEqual([
      expect.stringMatching(/^the reconstructions of epoch 1 were not written: .*EISDIR/),
    ]);
    expect(r.reconstructions).toEqual([join(dir, 'reconstructions', 'epoch-002.png')]);
  });

  it('refuses to resume with different run options', async () => {
    const dir = tmp();
    await pretrain({ ...small, epochs: 1, outDir: dir, maxSteps: 2 });
    await expect(pretrain({ ...small, epochs: 1, blr: 0.5, outDir: dir, resume: true })).rejects.toThrow(/option blr differs/);
  });

  it('stops on a non-finite loss, keeps the last good checkpoint and frees its model', async () => {
    const dir = tmp();
    const before = liveTensors();
    const err = await pretrain({ ...small, lr: 1e6, warmupEpochs: 0, checkpointEvery: 1, outDir: dir }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(liveTensors()).toBe(before);
    expect((err as Error).message).toMatch(/loss became (NaN|Infinity|-Infinity).*last good checkpoint is .*checkpoint\.safetensors/);
    const ck = await loadCheckpoint(dir);
    expect(ck.meta.position.step).toBeGreaterThan(0);
    for (const [, t] of ck.weights) expect(t.data.every(Number.isFinite)).toBe(true);
  });

  it('rejects bad options with clear errors', async () => {
    await expect(pretrain({ ...small, batchSize: 0 })).rejects.toThrow(/batchSize must be a positive integer/);
    await expect(pretrain({ ...small, maskRatio: 1 })).rejects.toThrow(/maskRatio must be in \[0, 1\)/);
    await expect(pretrain({ ...small, bucketMb: 0 })).rejects.toThrow(/bucketMb must be positive/);
    await expect(pretrain({ ...small, distributed: 'mpi', distTimeout: -1 })).rejects.toThrow(/distributed timeout must be a positive number of seconds/);
    await expect(pretrain({ ...small, preset: 'nope' })).rejects.toThrow(/unknown preset 'nope'/);
    await expect(pretrain({ ...small, minLr: -1 })).rejects.toThrow(/pretrain: minLr must be a non-negative finite number, got -1/);
    await expect(pretrain({ ...small, weightDecay: -0.1 })).rejects.toThrow(/pretrain: weightDecay must be a non-negative finite number, got -0.1/);
    // the kNN monitor's settings are checked before training, not at its first epoch
    await expect(pretrain({ ...small, knn: { every: 0.5 } })).rejects.toThrow(/pretrain: knn.every must be a non-negative integer, got 0.5/);
    await expect(pretrain({ ...small, knn: { every: 1, k: 0 } })).rejects.toThrow(/knn: k must be a positive integer, got 0/);
    await expect(pretrain({ ...small, knn: { every: 1, temperature: 0 } })).rejects.toThrow(/knn: temperature must be a positive finite number, got 0/);
    await expect(pretrain({ ...small, data: { kind: 'folder', path: '/nonexistent/folder' }, outDir: tmp() })).rejects.toThrow(/nonexistent/);
  });
});
