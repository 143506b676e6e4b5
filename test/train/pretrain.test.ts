// The pre-training loop: learning, resume equality (also after a SIGKILL, log included), non-finite loss handling,
// logs, events and yielding.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { getPreset, maeFlops } from '../../lib/mae/index.js';
import { loadCheckpoint, loadModel } from '../../lib/train/checkpoint.js';
import { cutLog, pretrain, type PretrainOptions, type TrainEvent } from '../../lib/train/pretrain.js';
import { liveTensors } from '../../lib/tensor.js';
import { native } from '../../lib/native.js';
import { readSafetensors, writeSafetensors } from '../../lib/io/safetensors.js';
import { writeImage } from '../helpers/images.js';
import { openDataset, pickSamples } from '../../lib/train/data.js';
import { knnEvaluate } from '../../lib/train/knn.js';
import { endedPid } from '../helpers/processes.js';

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
// a resumed run takes OMP_NUM_THREADS as a given thread count: the tests here set it where they mean to
delete process.env.OMP_NUM_THREADS;
const childScript = new URL('./pretrain-child.mjs', import.meta.url).pathname;
const readLog = (dir: string): { step?: number; loss?: number; partial?: boolean }[] =>
  readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
/** Options that stop a run (as Ctrl-C does) when the event of step `n` arrives: it stops right after step n. */
const stopAt = (n: number): Pick<PretrainOptions, 'signal' | 'onEvent'> => {
  const ac = new AbortController();
  return { signal: ac.signal, onEvent: (e) => e.type === 'step' && e.step === n && ac.abort() };
};
/** The names of the weights of two checkpoints that are not bit-identical. */
async function differingWeights(a: string, b: string): Promise<string[]> {
  const [x, y] = [await loadCheckpoint(a), await loadCheckpoint(b)];
  const bytes = (t: { data: Float32Array }) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return [...x.weights].filter(([k, t]) => !y.weights.has(k) || !bytes(t).equals(bytes(y.weights.get(k)!))).map(([k]) => k);
}

describe('pretrain', () => {
  it('says that an NCCL library it was given goes unused outside a data-parallel CUDA run', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      const r = await pretrain({ ...small, outDir: tmp(), maxSteps: 1, ncclLibrary: '/opt/nccl/lib/libnccl.so.2' });
      expect(r.steps).toBe(1);
      expect(warn.mock.calls.filter((c) => String(JSON.stringify(c[1])).includes('NCCL'))).toEqual([
        ['the NCCL library /opt/nccl/lib/libnccl.so.2 is not used: only data-parallel runs on CUDA (under MPI) use NCCL, and this one runs on its own', { code: 'MAE_NCCL_UNUSED' }],
      ]);
    } finally {
      warn.mockRestore();
    }
  });

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

  it('resuming a finished run takes no step and rewrites nothing (checkpoint, log, figure)', async () => {
    const dir = tmp();
    await pretrain({ ...small, epochs: 1, outDir: dir });
    const files = ['checkpoint.safetensors', 'log.jsonl', 'reconstructions/epoch-001.png'].map((f) => join(dir, f));
    const before = files.map((f) => [readFileSync(f), statSync(f).mtimeMs]);
    const again = await pretrain({ outDir: dir, resume: true });
    expect([again.steps, again.losses, again.reconstructions, again.stopped]).toEqual([8, [], [], false]);
    expect(files.map((f) => [readFileSync(f), statSync(f).mtimeMs])).toEqual(before);
    expect(readdirSync(join(dir, 'reconstructions'))).toEqual(['epoch-001.png']);
  });

  it("resuming a finished run from another folder writes the run's checkpoint and figure into outDir", async () => {
    const from = tmp();
    await pretrain({ ...small, epochs: 1, outDir: from });
    const dir = join(tmp(), 'copy');
    const again = await pretrain({ outDir: dir, resume: from });
    expect([again.steps, again.losses, again.checkpoint]).toEqual([8, [], join(dir, 'checkpoint.safetensors')]);
    expect((await loadCheckpoint(dir)).meta.position).toEqual({ epoch: 1, iter: 0, step: 8 });
    expect(await differingWeights(from, dir)).toEqual([]);
    expect(again.reconstructions).toEqual([join(dir, 'reconstructions', 'epoch-001.png')]);
  });

  it("a stop asked by an epoch's end (its 'epoch' or 'checkpoint' event) lands right after that epoch's last step", async () => {
    for (const type of ['epoch', 'checkpoint'] as const) {
      const dir = tmp();
      const ac = new AbortController();
      const steps: number[] = [];
      const r = await pretrain({ ...small, outDir: dir, signal: ac.signal, onEvent: (e) => (e.type === 'step' && steps.push(e.step), e.type === type && ac.abort()) });
      expect([type, r.stopped, r.steps, steps.length]).toEqual([type, true, 8, 8]);
      expect((await loadCheckpoint(dir)).meta.position).toEqual({ epoch: 1, iter: 0, step: 8 });
    }
  });

  it("a stop asked by step n's event lands right after step n: step n's checkpoint, and the resumed run continues exactly", async () => {
    const opts: PretrainOptions = { ...small, epochs: 2, threads: 1 };
    const full = await pretrain({ ...opts, outDir: tmp() });
    const dir = tmp();
    const events: TrainEvent[] = [];
    const stop = stopAt(3);
    const first = await pretrain({ ...opts, outDir: dir, signal: stop.signal, onEvent: (e) => (events.push(e), stop.onEvent!(e)) });
    expect([first.stopped, first.steps, first.losses.length]).toEqual([true, 3, 3]);
    expect(events.filter((e) => e.type === 'step').map((e) => (e as { step: number }).step)).toEqual([1, 2, 3]);
    expect(events[events.length - 1]).toMatchObject({ type: 'end', steps: 3, stopped: true });
    expect((await loadCheckpoint(dir)).meta.position).toEqual({ epoch: 0, iter: 3, step: 3 });
    const rest = await pretrain({ ...opts, outDir: dir, resume: true });
    expect([...first.losses, ...rest.losses]).toEqual(full.losses);
    expect(rest.epochLosses).toEqual(full.epochLosses);
    expect(await differingWeights(full.checkpoint, dir)).toEqual([]);
  });

  it("after a SIGKILL, the resumed run's log holds each step once, in order, with the uninterrupted run's losses", async () => {
    const opts: PretrainOptions = { ...small, epochs: 2, checkpointEvery: 4, logEvery: 1, threads: 1 };
    const child = (outDir: string, killAt?: number) =>
      spawnSync(process.execPath, [childScript, JSON.stringify({ ...opts, outDir }), ...(killAt ? [String(killAt)] : [])], { encoding: 'utf8', timeout: 60_000 });
    const steps = (dir: string) => readLog(dir).map((l) => l.step);
    const dir = tmp();
    const killed = child(dir, 11);
    expect(killed.signal, killed.stderr).toBe('SIGKILL');
    // killed at step 11: the checkpoint is step 8's, the log already has steps 9 and 10, and its lock is left
    expect((await loadCheckpoint(dir)).meta.position.step).toBe(8);
    expect(steps(dir)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    expect(JSON.parse(readFileSync(join(dir, '.lock'), 'utf8')).pid).toBe(killed.pid);
    const resumed = spawnSync(process.execPath, [childScript, JSON.stringify({ ...opts, outDir: dir, resume: true })], { encoding: 'utf8', timeout: 60_000 });
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(existsSync(join(dir, '.lock'))).toBe(false);
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
    const figures = () => readdirSync(join(dir, 'reconstructions'));
    expect(figures()).toEqual(['step-000003.png']);
    // a new run that fails its checks (here: no images) removes nothing of the old run
    const empty = tmp();
    await expect(pretrain({ ...small, data: { kind: 'folder', path: empty }, epochs: 1, outDir: dir, overwrite: true })).rejects.toThrow(`${empty}: no images found`);
    expect((await loadCheckpoint(dir)).meta.position.step).toBe(3);
    expect(readLog(dir).map((l) => l.step)).toEqual([1, 2, 3]);
    expect(figures()).toEqual(['step-000003.png']);
    // one that starts removes the old run's checkpoint, log and figures together
    await pretrain({ ...small, epochs: 1, outDir: dir, maxSteps: 1, logEvery: 1, overwrite: true });
    expect((await loadCheckpoint(dir)).meta.position.step).toBe(1);
    expect(readLog(dir).map((l) => l.step)).toEqual([1]);
    expect(figures()).toEqual(['step-000001.png']);
  });

  it('a run that fails before writing leaves no empty output folder it made, and keeps one that was there', async () => {
    const rgb = tmp();
    for (let i = 0; i < 4; i++) await writeImage(join(rgb, `${i}.png`), 28, 28, i);
    // 3-channel images for the 1-channel preset: refused after the folder is locked
    const made = join(tmp(), 'runs', 'new');
    await expect(pretrain({ ...small, data: { kind: 'folder', path: rgb }, outDir: made })).rejects.toThrow('has 3 channels but the model takes 1');
    expect(existsSync(made)).toBe(false);
    const there = tmp();
    await expect(pretrain({ ...small, data: { kind: 'folder', path: rgb }, outDir: there })).rejects.toThrow('has 3 channels but the model takes 1');
    expect(readdirSync(there)).toEqual([]);
  });

  it('holds its folder with a lock while it runs: another run into it, fresh or resumed, is refused; the lock goes however the run ends', async () => {
    const dir = tmp();
    const lock = join(dir, '.lock');
    let held: unknown = null;
    const refused: Promise<string>[] = [];
    const first = await pretrain({
      ...small, epochs: 1, outDir: dir, checkpointEvery: 1, logEvery: 1,
      onEvent: (e) => {
        if (e.type !== 'step' || e.step !== 2) return;
        held = JSON.parse(readFileSync(lock, 'utf8'));
        for (const o of [{ ...small, outDir: dir }, { ...small, outDir: dir, overwrite: true }, { outDir: dir, resume: true }])
          refused.push(pretrain(o).then(() => 'accepted', (e: Error) => e.message));
      },
    });
    expect(held).toEqual({ pid: process.pid, host: hostname(), thread: 0 });
    const inUse = `pretrain: ${dir} is in use by another run (process ${process.pid} on ${hostname()}): wait for it to end or choose another folder (--out); if no run writes there, remove ${lock}`;
    expect(await Promise.all(refused)).toEqual([inUse, inUse, inUse]);
    // the refused runs touched nothing of the first
    expect(first.steps).toBe(8);
    expect((await loadCheckpoint(dir)).meta.position.step).toBe(8);
    expect(readLog(dir).map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(existsSync(lock)).toBe(false);
    // gone after a run that fails (its handler throws) and after one that is stopped
    await expect(pretrain({ ...small, outDir: dir, overwrite: true, onEvent: (e) => { if (e.type === 'step') throw new Error('handler threw'); } })).rejects.toThrow('handler threw');
    expect(existsSync(lock)).toBe(false);
    expect((await pretrain({ ...small, outDir: dir, overwrite: true, ...stopAt(1) })).stopped).toBe(true);
    expect(existsSync(lock)).toBe(false);
    // a lock whose process died is taken over with a warning
    const deadPid = endedPid();
    writeFileSync(lock, JSON.stringify({ pid: deadPid, host: hostname(), thread: 0 }));
    const events: TrainEvent[] = [];
    await pretrain({ outDir: dir, resume: true, maxSteps: 3, onEvent: (e) => events.push(e) });
    expect(events.filter((e) => e.type === 'warning')).toEqual([{ type: 'warning', message: `took over ${lock}, the lock of a run that ended without removing it (process ${deadPid}, no longer running)` }]);
    expect(existsSync(lock)).toBe(false);
  });

  it("a resumed run keeps the run's settings (threads, workers, log, checkpoint and figure cadence) unless given", async () => {
    const settings = { threads: 1, workers: 0, logEvery: 1, checkpointEvery: 2, visualizeEvery: 0 };
    const opts: PretrainOptions = { ...small, epochs: 2, ...settings };
    const ref = tmp();
    await pretrain({ ...opts, outDir: ref });
    const dir = tmp();
    await pretrain({ ...opts, outDir: dir, maxSteps: 5 });
    expect((await loadCheckpoint(dir)).meta.options).toMatchObject(settings);
    native.setNumThreads(2); // not the run's count: the resumed run sets the run's again
    const events: TrainEvent[] = [];
    const rest = await pretrain({ outDir: dir, resume: true, onEvent: (e) => events.push(e) });
    expect(native.info().threads).toBe(1);
    expect(rest.steps).toBe(16);
    expect(events.flatMap((e) => (e.type === 'checkpoint' ? [e.step] : []))).toEqual([6, 8, 10, 12, 14, 16]);
    expect(readLog(dir)).toEqual(readLog(ref).map((l) => ({ ...l, imgPerSec: expect.any(Number), gflopPerSec: expect.any(Number), stallMs: expect.any(Number), time: expect.any(String) })));
    expect(rest.reconstructions).toEqual([join(dir, 'reconstructions', 'epoch-002.png')]);
    expect(await differingWeights(ref, dir)).toEqual([]);
    expect((await loadCheckpoint(dir)).meta.options).toMatchObject(settings);

    // given settings may differ; another thread count is said to make the result differ
    const dir2 = tmp();
    await pretrain({ ...opts, outDir: dir2, maxSteps: 5 });
    const events2: TrainEvent[] = [];
    await pretrain({ outDir: dir2, resume: true, threads: 2, logEvery: 3, checkpointEvery: 0, onEvent: (e) => events2.push(e) });
    expect(events2[0]).toMatchObject({ type: 'start', resumedFrom: { step: 5 }, resumeNote: "2 threads, not the run's 1: the result will not be bit-identical to the uninterrupted run's" });
    expect(events2.flatMap((e) => (e.type === 'checkpoint' ? [e.step] : []))).toEqual([8, 16]);
    expect(readLog(dir2).map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 9, 12, 15, 16]);
    expect((await loadCheckpoint(dir2)).meta.options).toMatchObject({ ...settings, threads: 2, logEvery: 3, checkpointEvery: 0 });
    // the run's count again: nothing to say
    const dir3 = tmp();
    await pretrain({ ...opts, outDir: dir3, maxSteps: 5 });
    const events3: TrainEvent[] = [];
    await pretrain({ outDir: dir3, resume: true, threads: 1, maxSteps: 6, onEvent: (e) => events3.push(e) });
    expect(events3[0]).toMatchObject({ type: 'start', resumedFrom: { step: 5 } });
    expect(events3[0]).not.toHaveProperty('resumeNote');
  });

  it("a resumed run keeps the run's precision, device, bucket size and kNN monitor unless given, and says so when another is given", async () => {
    const knn = { every: 2, trainLimit: 64, testLimit: 32 };
    const opts: PretrainOptions = { ...small, epochs: 2, threads: 1, precision: 'bf16', bucketMb: 4, knn };
    const ref = tmp();
    await pretrain({ ...opts, outDir: ref });
    const dir = tmp();
    await pretrain({ ...opts, outDir: dir, maxSteps: 5 });
    expect((await loadCheckpoint(dir)).meta.options).toMatchObject({ precision: 'bf16', device: 'cpu', bucketMb: 4, knn });
    const events: TrainEvent[] = [];
    await pretrain({ outDir: dir, resume: true, onEvent: (e) => events.push(e) });
    expect(events[0]).toMatchObject({ type: 'start', precision: 'bf16', resumedFrom: { step: 5 } });
    expect(events[0]).not.toHaveProperty('resumeNote');
    expect(events.filter((e) => e.type === 'knn').map((e) => (e as { epoch: number }).epoch)).toEqual([2]);
    expect(await differingWeights(ref, dir)).toEqual([]);
    // another precision is allowed, and said
    const dir2 = tmp();
    await pretrain({ ...opts, outDir: dir2, maxSteps: 5 });
    const events2: TrainEvent[] = [];
    await pretrain({ outDir: dir2, resume: true, precision: 'fp32', maxSteps: 6, onEvent: (e) => events2.push(e) });
    expect(events2[0]).toMatchObject({ type: 'start', precision: 'fp32', resumeNote: "precision fp32, not the run's bf16: the result will not be bit-identical to the uninterrupted run's" });
  });

  it("refuses to resume on another number of images than the run's, and says when its images changed", async () => {
    const data = tmp();
    for (let i = 0; i < 16; i++) await writeImage(join(data, `${String(i).padStart(2, '0')}.png`), 28, 28, i);
    const rgb: PretrainOptions = { ...small, config: { ...small.config, inChans: 3 }, data: { kind: 'folder', path: data }, batchSize: 4, epochs: 2, threads: 1 };
    const dir = tmp();
    await pretrain({ ...rgb, outDir: dir, ...stopAt(3) });
    const ck = await loadCheckpoint(dir);
    expect(ck.meta.data).toMatchObject({ images: 16 });
    const fingerprint = (ck.meta.data as { fingerprint: string }).fingerprint;
    expect(fingerprint).toMatch(/^[0-9a-f]{16}$/);
    // an image added: the epochs' orders, the steps per epoch and the schedule would all be another run's
    await writeImage(join(data, '16.png'), 28, 28, 16);
    await expect(pretrain({ outDir: dir, resume: true })).rejects.toThrow(
      `resume: the data is not the run's: ${data} has 17 images now, 16 when the run began; resume on the run's own data, or start a new run on this data (--overwrite, or another --out)`,
    );
    // the same number of images, one of them changed: the same order and schedule, other pixels; said
    rmSync(join(data, '16.png'));
    await writeImage(join(data, '05.png'), 28, 28, 99);
    const events: TrainEvent[] = [];
    expect((await pretrain({ outDir: tmp(), resume: join(dir, 'checkpoint.safetensors'), onEvent: (e) => events.push(e) })).steps).toBe(8);
    expect(events[0]).toMatchObject({ type: 'start', resumedFrom: { step: 3 } });
    expect((events[0] as { resumeNote?: string }).resumeNote).toMatch(
      new RegExp(`^the data's images differ from the run's \\(fingerprint [0-9a-f]{16}, not ${fingerprint}\\): the result will not be bit-identical to the uninterrupted run's$`),
    );
    // the run's images again: it resumes, saying nothing
    await writeImage(join(data, '05.png'), 28, 28, 5);
    const again: TrainEvent[] = [];
    expect((await pretrain({ outDir: dir, resume: true, onEvent: (e) => again.push(e) })).steps).toBe(8);
    expect(again[0]).toMatchObject({ type: 'start', resumedFrom: { step: 3 } });
    expect(again[0]).not.toHaveProperty('resumeNote');
    // a checkpoint written before the data was kept resumes unchecked
    const older = tmp();
    await pretrain({ ...rgb, outDir: older, ...stopAt(3) });
    const path = join(older, 'checkpoint.safetensors');
    const file = await readSafetensors(path);
    const meta = JSON.parse(file.metadata.mae!);
    delete meta.data;
    await writeSafetensors(path, new Map([...file.tensors].map(([k, t]) => [k, { shape: t.shape, data: t.data }])), { ...file.metadata, mae: JSON.stringify(meta) });
    await writeImage(join(data, '16.png'), 28, 28, 16);
    expect((await pretrain({ outDir: older, resume: true })).steps).toBe(8);
  });

  it('refuses the kNN monitor on unlabelled data before training, not after the first epoch', async () => {
    const flat = tmp();
    for (let i = 0; i < 8; i++) await writeImage(join(flat, `${i}.png`), 28, 28, i);
    const events: string[] = [];
    const rgb = { ...small, config: { ...small.config, inChans: 3 } };
    await expect(pretrain({ ...rgb, data: { kind: 'folder', path: flat }, outDir: tmp(), threads: 1, batchSize: 4, knn: { every: 1 }, onEvent: (e) => events.push(e.type) })).rejects.toThrow(
      'pretrain: the kNN monitor (knn.every 1) needs labelled data (class sub-folders), and the training data has none; give knn.data, or leave the monitor off',
    );
    expect(events).toEqual([]);
    await expect(pretrain({ ...small, outDir: tmp(), threads: 1, knn: { every: 1, data: { kind: 'folder', path: flat } } })).rejects.toThrow('and knn.data has none');
  });

  it("refuses a kNN monitor's data of more channels than the model takes before training, not after the first epoch", async () => {
    const events: string[] = [];
    // the training data's likewise, named as finetune and linprobe name it (with the job)
    await expect(pretrain({ ...small, data: { kind: 'synthetic', count: 16, channels: 3 }, outDir: tmp(), threads: 1 })).rejects.toThrow(
      new Error('pretrain: the data has 3 channels but the model takes 1 (only 1-channel data is replicated)'),
    );
    await expect(pretrain({ ...small, outDir: tmp(), threads: 1, knn: { every: 1, data: { kind: 'synthetic', count: 16, channels: 3 } }, onEvent: (e) => events.push(e.type) })).rejects.toThrow(
      "pretrain: the kNN monitor's data (knn.data) has 3 channels but the model takes 1 (only 1-channel data is replicated)",
    );
    expect(events).toEqual([]);
  });

  it('the kNN monitor on an image folder scores every 5th image against a bank of the others, never a query against itself', async () => {
    const dir = tmp();
    for (let k = 0; k < 20; k++) {
      mkdirSync(join(dir, `c${k % 4}`), { recursive: true });
      await writeImage(join(dir, `c${k % 4}`, `${k}.png`), 28, 28, k);
    }
    const events: TrainEvent[] = [];
    const outDir = tmp();
    const rgb = { ...small, config: { ...small.config, inChans: 3 } };
    await pretrain({ ...rgb, data: { kind: 'folder', path: dir }, epochs: 1, batchSize: 4, threads: 1, outDir, knn: { every: 1, k: 1 }, onEvent: (e) => events.push(e) });
    const knn = events.filter((e) => e.type === 'knn') as Extract<TrainEvent, { type: 'knn' }>[];
    expect(knn).toHaveLength(1);
    // the same kNN by hand on the run's final weights (those the monitor used): queries 0, 5, 10, 15, the others the bank
    const all = await openDataset({ kind: 'folder', path: dir });
    expect(all.length).toBe(20);
    const { model } = await loadModel(outDir);
    const r = await knnEvaluate(model, pickSamples(all, [1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19]), pickSamples(all, [0, 5, 10, 15]), { k: 1 });
    model.dispose();
    expect([knn[0]!.top1, knn[0]!.top5]).toEqual([r.top1, r.top5]);
    expect(r.top1).toBeLessThan(1); // with each query in the bank, k = 1 finds it: 100%
  });

  it('removes, with a warning, the writes of its log and figures that a killed run left unfinished', async () => {
    const dir = tmp();
    await pretrain({ ...small, outDir: dir, maxSteps: 2, threads: 1 });
    const deadPid = endedPid();
    const stale = [join(dir, `.log.jsonl.${deadPid}.00000000abcd.tmp`), join(dir, 'reconstructions', `.epoch-001.png.${deadPid}.00000000abcd.tmp`)];
    for (const f of stale) writeFileSync(f, 'half a file');
    // a live process's write stays
    const live = join(dir, 'reconstructions', `.step-000002.png.${process.ppid}.00000000abcd.tmp`);
    writeFileSync(live, 'being written');
    const events: TrainEvent[] = [];
    await pretrain({ outDir: dir, resume: true, maxSteps: 3, onEvent: (e) => events.push(e) });
    expect(events.filter((e) => e.type === 'warning')).toEqual(stale.map((f) => ({ type: 'warning', message: `removed ${f}, a write that a killed process left unfinished` })));
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    expect(readdirSync(join(dir, 'reconstructions')).filter((n) => n.endsWith('.tmp'))).toEqual([live.split('/').pop()]);
  });

  it('removes, with a warning, a checkpoint write that a killed run left unfinished (beside the file a symbolic link points to)', async () => {
    const dir = tmp();
    await pretrain({ ...small, outDir: dir, maxSteps: 2, threads: 1 });
    const deadPid = endedPid();
    const stale = join(dir, `.checkpoint.safetensors.${deadPid}.00000000abcd.tmp`);
    writeFileSync(stale, 'half a checkpoint');
    const events: TrainEvent[] = [];
    const warnings = () => events.splice(0).filter((e) => e.type === 'warning');
    await pretrain({ outDir: dir, resume: true, maxSteps: 3, onEvent: (e) => events.push(e) });
    expect(warnings()).toEqual([{ type: 'warning', message: `removed ${stale}, a checkpoint write that a killed process left unfinished` }]);
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    // the checkpoint a link to a file kept elsewhere: it is written there, and so are its unfinished writes
    const kept = tmp();
    renameSync(join(dir, 'checkpoint.safetensors'), join(kept, 'run.safetensors'));
    symlinkSync(join(kept, 'run.safetensors'), join(dir, 'checkpoint.safetensors'));
    const staleKept = join(kept, `.run.safetensors.${deadPid}.00000000abcd.tmp`);
    writeFileSync(staleKept, 'half a checkpoint');
    await pretrain({ outDir: dir, resume: true, maxSteps: 4, onEvent: (e) => events.push(e) });
    expect(warnings()).toEqual([{ type: 'warning', message: `removed ${staleKept}, a checkpoint write that a killed process left unfinished` }]);
    expect(readdirSync(kept)).toEqual(['run.safetensors']);
    expect((await loadCheckpoint(dir)).meta.position.step).toBe(4);
  });

  it('a run stopped between two log lines and resumed writes the log of the uninterrupted run', async () => {
    const opts: PretrainOptions = { ...small, epochs: 2, logEvery: 3, threads: 1 };
    const ref = tmp();
    await pretrain({ ...opts, outDir: ref });
    const dir = tmp();
    const first = await pretrain({ ...opts, outDir: dir, ...stopAt(5) });
    expect([first.stopped, first.steps]).toEqual([true, 5]);
    // steps 4 and 5 of the line of step 6, 16 images each
    expect((await loadCheckpoint(dir)).meta.logWindow).toEqual({ loss: first.losses[3]! + first.losses[4]!, steps: 2, images: 32, seconds: expect.any(Number) });
    await pretrain({ ...opts, outDir: dir, resume: true });
    const lines = (d: string) => readLog(d).map((l) => ({ ...l, imgPerSec: undefined, gflopPerSec: undefined, stallMs: undefined, time: undefined }));
    expect(readLog(dir).map((l) => l.step)).toEqual([3, 6, 9, 12, 15, 16]);
    expect(lines(dir)).toEqual(lines(ref));
    for (const l of readLog(dir) as { imgPerSec: number }[]) expect(l.imgPerSec).toBeGreaterThan(0);
    // the same after maxSteps: its line at step 5 (between two of the run's) is partial, dropped on resuming
    const cut = tmp();
    await pretrain({ ...opts, outDir: cut, maxSteps: 5 });
    expect(readLog(cut).map((l) => [l.step, l.partial])).toEqual([[3, undefined], [5, true]]);
    await pretrain({ ...opts, outDir: cut, resume: true });
    expect(lines(cut)).toEqual(lines(ref));
  });

  it('resumes a checkpoint written before the settings and the log line were kept: defaults, and the line starts again', async () => {
    const dir = tmp();
    const first = await pretrain({ ...small, epochs: 2, logEvery: 3, outDir: dir, ...stopAt(5) });
    expect(first.steps).toBe(5);
    const path = join(dir, 'checkpoint.safetensors');
    const file = await readSafetensors(path);
    const meta = JSON.parse(file.metadata.mae!);
    for (const k of ['threads', 'workers', 'logEvery', 'checkpointEvery', 'visualizeEvery']) delete meta.options[k];
    delete meta.logWindow;
    await writeSafetensors(path, new Map([...file.tensors].map(([k, t]) => [k, { shape: t.shape, data: t.data }])), { ...file.metadata, mae: JSON.stringify(meta) });
    const rest = await pretrain({ outDir: dir, resume: true, logEvery: 3, workers: 0 });
    expect(rest.steps).toBe(16);
    expect(rest.reconstructions.map((f) => f.slice(dir.length))).toEqual(['/reconstructions/epoch-001.png', '/reconstructions/epoch-002.png']); // visualizeEvery 1
    const log = readLog(dir);
    expect(log.map((l) => l.step)).toEqual([3, 6, 9, 12, 15, 16]);
    // the line of step 6 averages step 6 alone, the first of the resumed run
    expect(log[1]!.loss).toBe(rest.losses[0]);
  });

  it('takes OMP_NUM_THREADS set when resuming as a given thread count', async () => {
    const dir = tmp();
    await pretrain({ ...small, outDir: dir, maxSteps: 2, threads: 1 });
    process.env.OMP_NUM_THREADS = '2';
    try {
      const events: TrainEvent[] = [];
      await pretrain({ outDir: dir, resume: true, maxSteps: 3, onEvent: (e) => events.push(e) });
      expect(native.info().threads).toBe(2);
      expect(events[0]).toMatchObject({ type: 'start', resumeNote: "2 threads, not the run's 1: the result will not be bit-identical to the uninterrupted run's" });
    } finally {
      delete process.env.OMP_NUM_THREADS;
    }
  });

  it("says that a run's device from its checkpoint cannot be used here, and takes another when given", async () => {
    const dir = tmp();
    await pretrain({ ...small, outDir: dir, maxSteps: 2, threads: 1 });
    const path = join(dir, 'checkpoint.safetensors');
    const file = await readSafetensors(path);
    const meta = JSON.parse(file.metadata.mae!);
    meta.options.device = 'cuda:99'; // a GPU no machine here has
    await writeSafetensors(path, new Map([...file.tensors].map(([k, t]) => [k, { shape: t.shape, data: t.data }])), { ...file.metadata, mae: JSON.stringify(meta) });
    await expect(pretrain({ outDir: dir, resume: true })).rejects.toThrow(/^resume: the run's device 'cuda:99' comes from its checkpoint and cannot be used here \(pretrain: device 'cuda:99' .*\); give another, e\.g\. --device cpu/);
    const events: TrainEvent[] = [];
    await pretrain({ outDir: dir, resume: true, device: 'cpu', maxSteps: 3, onEvent: (e) => events.push(e) });
    expect(events[0]).toMatchObject({ type: 'start', device: 'cpu', resumeNote: "device cpu, not the run's cuda:99: the result will not be bit-identical to the uninterrupted run's" });
  });

  it("a figure written at a stop between epoch ends is named by its step and replaces no epoch's figure", async () => {
    const opts: PretrainOptions = { ...small, epochs: 3, visualizeEvery: 1 };
    const dir = tmp();
    const fig = (name: string) => join(dir, 'reconstructions', name);
    // the first epoch ends at step 8; stopped at step 10
    const first = await pretrain({ ...opts, outDir: dir, ...stopAt(10) });
    expect(first.steps).toBe(10);
    expect(first.reconstructions).toEqual([fig('epoch-001.png')]);
    const epochFigure = readFileSync(fig('epoch-001.png'));
    const events: TrainEvent[] = [];
    const stop = stopAt(12);
    const second = await pretrain({ ...opts, outDir: dir, resume: true, signal: stop.signal, onEvent: (e) => (events.push(e), stop.onEvent!(e)) });
    expect(second.steps).toBe(12);
    expect(second.reconstructions).toEqual([fig('step-000012.png')]);
    expect(events.filter((e) => e.type === 'visualize')).toEqual([{ type: 'visualize', epoch: 1, step: 12, path: fig('step-000012.png') }]);
    // likewise at maxSteps
    const third = await pretrain({ ...opts, outDir: dir, resume: true, maxSteps: 14 });
    expect(third.reconstructions).toEqual([fig('step-000014.png')]);
    expect(readFileSync(fig('epoch-001.png')).equals(epochFigure)).toBe(true);
    expect(readdirSync(join(dir, 'reconstructions'))).toEqual(['epoch-001.png', 'step-000012.png', 'step-000014.png']);
  });

  it('writes a checkpoint at each epoch end, and trains on when a figure cannot be written', async () => {
    const dir = tmp();
    mkdirSync(join(dir, 'reconstructions', 'epoch-001.png'), { recursive: true }); // a folder where the figure goes
    const events: TrainEvent[] = [];
    const r = await pretrain({ ...small, epochs: 2, visualizeEvery: 1, outDir: dir, onEvent: (e) => events.push(e) });
    expect(r.steps).toBe(16);
    expect(events.flatMap((e) => (e.type === 'checkpoint' ? [e.step] : []))).toEqual([8, 16]);
    expect(events.filter((e) => e.type === 'warning').map((e) => (e as { message: string }).message)).toEqual([
      expect.stringMatching(/^the reconstructions of epoch 1 were not written: .*epoch-001\.png is a folder: give the path of a file/),
    ]);
    expect(r.reconstructions).toEqual([join(dir, 'reconstructions', 'epoch-002.png')]);
  });

  it('refuses to resume with different run options', async () => {
    const dir = tmp();
    await pretrain({ ...small, epochs: 1, outDir: dir, maxSteps: 2 });
    await expect(pretrain({ ...small, epochs: 1, blr: 0.5, outDir: dir, resume: true })).rejects.toThrow(/option blr differs/);
    // a limit alone (the CLI's --limit without --data) is checked against the limit of the run's data
    const limited = tmp();
    await pretrain({ ...small, data: { kind: 'synthetic', count: 128, limit: 64 }, epochs: 1, outDir: limited, maxSteps: 1 });
    await expect(pretrain({ outDir: limited, resume: true, limit: 32 })).rejects.toThrow("resume: option limit differs from the checkpoint's (64 there, 32 here)");
    await expect(pretrain({ outDir: dir, resume: true, limit: 32 })).rejects.toThrow("resume: option limit differs from the checkpoint's (none: all of its data there, 32 here)");
    const r = await pretrain({ outDir: limited, resume: true, limit: 64, maxSteps: 2, workers: 0 });
    expect(r.steps).toBe(2);
  });

  it("resumes with a model option given that agrees with the run's, also one its preset set; names one that differs", async () => {
    const dir = tmp();
    await pretrain({ ...small, epochs: 1, outDir: dir, maxSteps: 1 });
    // embedDim was given to the run, patchSize came from its preset (4): both agree
    const r = await pretrain({ outDir: dir, resume: true, config: { embedDim: 32, patchSize: 4 }, maxSteps: 2, workers: 0 });
    expect(r.steps).toBe(2);
    await expect(pretrain({ outDir: dir, resume: true, config: { patchSize: 7 } })).rejects.toThrow("resume: option config.patchSize differs from the checkpoint's (4 there, 7 here)");
    await expect(pretrain({ outDir: dir, resume: true, config: { maskTokenEncoder: true } })).rejects.toThrow("resume: option config.maskTokenEncoder differs from the checkpoint's (false there, true here)");
    // a misspelt model option is named as such, as a new run names it (not as one of 'undefined there')
    await expect(pretrain({ outDir: dir, resume: true, config: { embeddim: 32 } as never })).rejects.toThrow("pretrain: config has no option 'embeddim' (did you mean embedDim?); it takes");
  });

  it('refuses to resume from a folder that holds no run, and does not make that folder', async () => {
    const dir = join(tmp(), 'no-run');
    await expect(pretrain({ ...small, outDir: dir, resume: true })).rejects.toThrow(`resume: ${dir} holds no run to resume (no checkpoint.safetensors)`);
    expect(existsSync(dir)).toBe(false);
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
    await expect(pretrain({ ...small, distributed: 'mpi', distTimeout: -1 })).rejects.toThrow(/^pretrain: distTimeout must be a positive number of seconds, at most 1e9 \(about 31 years\), got the number -1$/);
    await expect(pretrain({ ...small, preset: 'nope' })).rejects.toThrow(/pretrain: preset must be one of mae_vit_base_patch16, .*, got the string 'nope'/);
    await expect(pretrain({ ...small, minLr: -1 })).rejects.toThrow(/pretrain: minLr must be a non-negative number, finite in float32 \(at most 3.4e38\), got -1/);
    await expect(pretrain({ ...small, weightDecay: -0.1 })).rejects.toThrow(/pretrain: weightDecay must be a non-negative number, finite in float32 \(at most 3.4e38\), got -0.1/);
    // finite as doubles, infinite in float32, where the optimizer runs: refused before training, not at its first step
    await expect(pretrain({ ...small, weightDecay: 1e39 })).rejects.toThrow(/pretrain: weightDecay must be a non-negative number, finite in float32 \(at most 3.4e38\), got 1e\+39/);
    await expect(pretrain({ ...small, blr: Infinity })).rejects.toThrow(/pretrain: blr must be positive and finite in float32 \(at most 3.4e38\), got Infinity/);
    await expect(pretrain({ ...small, lr: 1e39 })).rejects.toThrow(/pretrain: lr must be positive and finite in float32 \(at most 3.4e38\), got 1e\+39/);
    // the kNN monitor's settings are checked before training, not at its first epoch
    await expect(pretrain({ ...small, knn: { every: 0.5 } })).rejects.toThrow(/pretrain: knn.every must be a non-negative integer, got 0.5/);
    await expect(pretrain({ ...small, knn: { every: 1, train_limit: 8 } as never })).rejects.toThrow(/^pretrain: knn has no option 'train_limit' \(did you mean trainLimit\?\)/);
    await expect(pretrain({ ...small, knn: { every: 1, testLimit: 0 } })).rejects.toThrow(/^pretrain: knn.testLimit must be an integer >= 1, got the number 0$/);
    await expect(pretrain({ ...small, bucketMb: Infinity })).rejects.toThrow(/^pretrain: bucketMb must be positive and finite, got Infinity$/);
    await expect(pretrain({ ...small, knn: { every: 1, k: 0 } })).rejects.toThrow(/^pretrain: knn.k must be a positive integer, got the number 0$/);
    await expect(pretrain({ ...small, knn: { every: 1, temperature: 0 } })).rejects.toThrow(/^pretrain: knn.temperature must be a positive finite number, got the number 0$/);
    await expect(pretrain({ ...small, data: { kind: 'folder', path: '/nonexistent/folder' }, outDir: tmp() })).rejects.toThrow(/nonexistent/);
  });

  it("an onEvent that throws on a data thread's warning ends the run with its error (it crashed the process)", async () => {
    const data = tmp();
    for (const c of ['a', 'b']) {
      mkdirSync(join(data, c));
      for (let i = 0; i < 12; i++) await writeImage(join(data, c, `${i}.png`), 16, 16, i);
    }
    writeFileSync(join(data, 'b', '5-bad.png'), 'not a png');
    const options = { config: { imgSize: 16, patchSize: 8, inChans: 3, embedDim: 16, depth: 1, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 }, data: { kind: 'folder', path: data }, batchSize: 5, epochs: 1, workers: 1, visualizeEvery: 0, outDir: tmp() };
    const script = [
      `import { pretrain } from ${JSON.stringify(new URL('../../dist/lib/train/pretrain.js', import.meta.url).pathname)};`,
      `const seen = [];`,
      `await pretrain({ ...${JSON.stringify(options)}, onEvent: (e) => { seen.push(e.type); if (e.type === 'warning') throw new Error('handler threw on ' + e.message); } })`,
      `  .then(() => console.log('resolved'), (e) => console.log('rejected:', e.message, seen.join(',')));`,
    ].join('\n');
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^rejected: handler threw on .*5-bad\.png.* start,.*warning/m);
  });

  it('checks every option before anything is written, unknown and mistyped ones (JavaScript callers) too', async () => {
    const bad = (o: object) => pretrain({ ...small, ...o } as PretrainOptions);
    await expect(bad({ epoch: 1 })).rejects.toThrow(/^pretrain: options has no option 'epoch' \(did you mean epochs\?\); it takes preset, config/);
    await expect(bad({ batch_size: 8 })).rejects.toThrow(/options has no option 'batch_size' \(did you mean batchSize\?\)/);
    await expect(pretrain(null as unknown as PretrainOptions)).rejects.toThrow('pretrain: options must be an object, got null');
    await expect(pretrain('x' as unknown as PretrainOptions)).rejects.toThrow("pretrain: options must be an object, got the string 'x'");
    await expect(bad({ epochs: '2' })).rejects.toThrow("pretrain: epochs must be a number, got the string '2'");
    await expect(bad({ config: [] })).rejects.toThrow('pretrain: config must be an object, got an array of 0');
    await expect(bad({ overwrite: 'yes' })).rejects.toThrow("pretrain: overwrite must be true or false, got the string 'yes'");
    // null is no default (an option left out or undefined is): refused alike for every option, saying so
    for (const [k, type] of [['lr', 'a number'], ['maxSteps', 'a number'], ['threads', 'a number'], ['epochs', 'a number'], ['outDir', 'a string'], ['knn', 'an object']] as const)
      await expect(bad({ [k]: null }), k).rejects.toThrow(new Error(`pretrain: ${k} must be ${type}, got null; leave it out (or undefined) for its default`));
    // these were found only after an overwrite had removed the old run: the run in the folder must survive them
    const dir = tmp();
    await pretrain({ ...small, epochs: 1, outDir: dir, maxSteps: 1 });
    const before = readdirSync(dir).sort();
    for (const [o, message] of [
      [{ warmupEpochs: '1' }, "pretrain: warmupEpochs must be a number, got the string '1'"],
      [{ maskRatio: '0.5' }, "pretrain: maskRatio must be a number, got the string '0.5'"],
      [{ onEvent: 'x' }, "pretrain: onEvent must be a function, got the string 'x'"],
      [{ signal: {} }, 'pretrain: signal must be an AbortSignal, got an object'],
    ] as const) {
      await expect(bad({ ...o, epochs: 1, outDir: dir, overwrite: true })).rejects.toThrow(message);
      expect(readdirSync(dir).sort()).toEqual(before);
    }
  });
});
