// finetune's training checkpoint and resume: a run stopped (its AbortSignal) mid-epoch or at an epoch end and
// resumed ends with the uninterrupted run's weights (every tensor bit for bit), log lines (but for their timing
// fields) and results, with the full recipe on (mixup / cutmix, random erasing, drop path) and with accumIter 2; the
// resumed run's settings; and the refusals of a resume.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadClassifier } from '../../lib/classify/checkpoint.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { loadFinetuneCheckpoint } from '../../lib/train/checkpoint.js';
import { finetune, type FinetuneEvent, type FinetuneOptions, type FinetuneResult } from '../../lib/train/finetune.js';
import { liveTensors } from '../../lib/tensor.js';
import { writeImage } from '../helpers/images.js';

const dir = mkdtempSync(join(tmpdir(), 'mae-finetune-resume-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tiny = { patchSize: 7, embedDim: 32, depth: 2, numHeads: 2 };
// 64 images in batches of 8: 8 steps an epoch; the recipe's defaults (mixup 0.8, cutmix 1.0, random erasing 0.25,
// drop path 0.1) draw from the augmentation and drop path generators at every step
const run: FinetuneOptions = { fromScratch: true, config: tiny, data: { kind: 'synthetic', count: 512, limit: 64 }, testData: { kind: 'synthetic', count: 64 }, epochs: 2, batchSize: 8, blr: 5e-3, warmupEpochs: 0.5, logEvery: 3, threads: 1 };

/** The run's log lines without their timing fields. */
function logOf(out: string): Record<string, unknown>[] {
  return readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((line) => {
    const { imgPerSec: _i, time: _t, seconds: _s, ...rest } = JSON.parse(line) as Record<string, unknown>;
    return rest;
  });
}

/** results.json without its timing fields. */
function resultsOf(out: string): Record<string, unknown> {
  const { trainSeconds: _t, seconds: _s, ...rest } = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as Record<string, unknown>;
  return rest;
}

/** Every tensor of the classifier as its bytes. */
async function weightsOf(out: string): Promise<Map<string, Buffer>> {
  const { tensors } = await readSafetensors(join(out, 'classifier.safetensors'));
  return new Map([...tensors].map(([k, t]) => [k, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)]));
}

/** The run stopped right after step `at` (its signal aborted by that step's event). */
async function stoppedAt(options: FinetuneOptions, at: number, events: FinetuneEvent[] = []): Promise<FinetuneResult> {
  const stop = new AbortController();
  return finetune({
    ...options,
    signal: stop.signal,
    onEvent: (e) => {
      events.push(e);
      if (e.type === 'step' && e.step === at) stop.abort();
    },
  });
}

/** Checks that the run in `out` ended as the uninterrupted one in `whole` did. */
async function expectSameRun(out: string, r: FinetuneResult, whole: string, w: FinetuneResult): Promise<void> {
  expect(readdirSync(out).sort()).toEqual(['classifier.safetensors', 'confusion.png', 'log.jsonl', 'results.json']);
  const [a, b] = [await weightsOf(out), await weightsOf(whole)];
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [k, bytes] of a) expect(bytes.equals(b.get(k)!), k).toBe(true);
  expect(logOf(out)).toEqual(logOf(whole));
  expect(resultsOf(out)).toEqual(resultsOf(whole));
  expect([r.stopped, r.steps, r.top1, r.top5, r.epochLosses, r.history]).toEqual([false, w.steps, w.top1, w.top5, w.epochLosses, w.history]);
  expect(r.metrics!.confusion).toEqual(w.metrics!.confusion);
}

describe('finetune resume', () => {
  it('a run stopped mid-epoch or at an epoch end and resumed ends bit-identical to the uninterrupted run (mixup, cutmix, erasing, drop path)', async () => {
    const before = liveTensors();
    const whole = join(dir, 'whole');
    const w = await finetune({ ...run, outDir: whole });
    expect(w.steps).toBe(16);
    for (const at of [5, 8]) {
      const out = join(dir, `stopped-${at}`);
      const events: FinetuneEvent[] = [];
      const s = await stoppedAt({ ...run, outDir: out }, at, events);
      expect([s.stopped, s.steps, s.top1]).toEqual([true, at, NaN]);
      // the checkpoint is written when the run stops (and at the epoch end: the same step, written once)
      expect(events.filter((e) => e.type === 'checkpoint')).toEqual([{ type: 'checkpoint', step: at, path: join(out, 'checkpoint.safetensors') }]);
      expect(events.at(-1)).toMatchObject({ type: 'stopped', step: at, totalSteps: 16, checkpoint: join(out, 'checkpoint.safetensors') });
      expect(readdirSync(out).sort()).toEqual(['checkpoint.safetensors', 'log.jsonl']);
      const ck = await loadFinetuneCheckpoint(out);
      expect(ck.meta.position).toEqual(at === 8 ? { epoch: 1, iter: 0, step: 8 } : { epoch: 0, iter: at, step: at });
      expect(ck.meta.history).toEqual(at === 8 ? [w.history[0]] : []);
      const resumed: FinetuneEvent[] = [];
      const r = await finetune({ outDir: out, resume: true, onEvent: (e) => resumed.push(e) });
      expect(resumed[0]).toMatchObject({ type: 'start', resumedFrom: ck.meta.position, totalSteps: 16 });
      expect(resumed[0]).not.toHaveProperty('resumeNote');
      expect(resumed.filter((e) => e.type === 'step').map((e) => (e as { step: number }).step)).toEqual(Array.from({ length: 16 - at }, (_, i) => at + 1 + i));
      await expectSameRun(out, r, whole, w);
    }
    expect(liveTensors()).toBe(before);
  });

  it('with accumIter 2 and checkpoints every 3 steps: a run stopped twice and resumed twice ends bit-identical', async () => {
    const acc = { ...run, accumIter: 2, checkpointEvery: 3, logEvery: 2 };
    const whole = join(dir, 'acc-whole');
    const events: FinetuneEvent[] = [];
    const w = await finetune({ ...acc, outDir: whole, onEvent: (e) => events.push(e) });
    // 4 steps an epoch: every 3 steps and at each epoch end; none is left once the run has written its results
    expect(events.filter((e) => e.type === 'checkpoint').map((e) => (e as { step: number }).step)).toEqual([3, 4, 6, 8]);
    expect(existsSync(join(whole, 'checkpoint.safetensors'))).toBe(false);
    const out = join(dir, 'acc-stopped');
    expect((await stoppedAt({ ...acc, outDir: out }, 1)).steps).toBe(1);
    const stop = new AbortController();
    const r1 = await finetune({ outDir: out, resume: true, signal: stop.signal, onEvent: (e) => e.type === 'step' && e.step === 6 && stop.abort() });
    expect([r1.stopped, r1.steps]).toEqual([true, 6]);
    expect((await loadFinetuneCheckpoint(out)).meta.position).toEqual({ epoch: 1, iter: 4, step: 6 });
    const r = await finetune({ outDir: out, resume: true });
    await expectSameRun(out, r, whole, w);
  });

  it("a resumed run keeps the run's settings unless given; another thread count is said in the start event", async () => {
    const out = join(dir, 'settings');
    await stoppedAt({ ...run, epochs: 1, checkpointEvery: 2, logEvery: 1, outDir: out }, 3);
    const events: FinetuneEvent[] = [];
    await finetune({ outDir: out, resume: true, logEvery: 4, threads: 2, onEvent: (e) => events.push(e) });
    expect(events[0]).toMatchObject({ type: 'start', resumedFrom: { epoch: 0, iter: 3, step: 3 }, resumeNote: "2 threads, not the run's 1: the result will not be bit-identical to the uninterrupted run's" });
    // checkpointEvery 2 from the run's checkpoint (the epoch's last step, 8, has the epoch end's); log lines every 4 from here
    expect(events.filter((e) => e.type === 'checkpoint').map((e) => (e as { step: number }).step)).toEqual([4, 6, 8]);
    expect(logOf(out).filter((l) => 'step' in l).map((l) => l.step)).toEqual([1, 2, 3, 4, 8]);
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect([res.epochs, res.batchSize, res.fromScratch, res.testData]).toEqual([1, 8, true, run.testData]);
  });

  it('refuses a resume with no run, of a finished run, with other options or data, or with overwrite', async () => {
    const none = join(dir, 'no-run');
    await expect(finetune({ outDir: none, resume: true })).rejects.toThrow(
      `finetune: resume: ${none} holds no run to resume (no checkpoint.safetensors); start a new run there without --resume, or give the folder of the run (--out)`,
    );
    expect(existsSync(none)).toBe(false);
    const out = join(dir, 'refusals');
    await stoppedAt({ ...run, epochs: 1, outDir: out }, 2);
    const files = readdirSync(out).sort();
    // (no classifier yet: loading one says what the folder holds)
    await expect(loadClassifier(out)).rejects.toThrow(
      `classifier not found: ${join(out, 'classifier.safetensors')} (${out} holds an unfinished fine-tuning run, which writes its classifier when it ends: mae finetune --resume --out ${out} continues it)`,
    );
    const cases: [FinetuneOptions, string][] = [
      [{ epochs: 3 }, 'finetune: resume: option epochs differs from the run\'s (1 in its checkpoint, 3 here)'],
      [{ config: { depth: 3 } }, 'finetune: resume: option config.depth differs from the run\'s (2 in its checkpoint, 3 here)'],
      [{ mixup: 0 }, 'finetune: resume: option mixup differs from the run\'s (0.8 in its checkpoint, 0 here)'],
      [{ checkpoint: join(dir, 'pt') }, `finetune: resume: option checkpoint differs from the run's (none in its checkpoint, "${join(dir, 'pt')}" here)`],
      [{ limit: 32 }, "finetune: resume: option limit differs from the run's (64 in its checkpoint, 32 here)"],
      [{ overwrite: true }, 'finetune: resume continues the run in outDir and overwrite removes it: give one of them'],
    ];
    for (const [bad, message] of cases) await expect(finetune({ outDir: out, resume: true, ...bad }), message).rejects.toThrow(message);
    // options given that agree, and settings, are taken
    const r = await finetune({ outDir: out, resume: true, epochs: 1, config: { depth: 2, embedDim: 32 }, limit: 64, fromScratch: true, workers: 0 });
    expect(r.steps).toBe(8);
    expect(files).toEqual(['checkpoint.safetensors', 'log.jsonl']);
    // the run is finished: nothing left to train
    await expect(finetune({ outDir: out, resume: true })).rejects.toThrow(
      `finetune: resume: the run in ${out} is finished (results.json, and no checkpoint.safetensors): there is nothing left to train; start a new run there with --overwrite, or in another folder (--out)`,
    );
  });

  it('refuses to resume on data with another number of images, and a pre-training checkpoint', async () => {
    const train = join(dir, 'images');
    const write = async (from: number, to: number) => {
      for (const c of ['a', 'b']) {
        mkdirSync(join(train, c), { recursive: true });
        for (let i = from; i < to; i++) await writeImage(join(train, c, `${i}.png`), 16, 16, i + (c === 'b' ? 100 : 0));
      }
    };
    await write(0, 8);
    const out = join(dir, 'folder-run');
    const config = { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 1, numHeads: 2 };
    await stoppedAt({ fromScratch: true, config, data: { kind: 'folder', path: train }, testData: { kind: 'folder', path: train }, outDir: out, epochs: 2, batchSize: 4, threads: 1 }, 2);
    await write(8, 10);
    await expect(finetune({ outDir: out, resume: true })).rejects.toThrow(
      `finetune: resume: the data is not the run's: ${train} has 20 images now, 16 when the run began; resume on the run's own data, or start a new run on this data (--overwrite, or another --out)`,
    );
    const { pretrain } = await import('../../lib/train/pretrain.js');
    const pt = join(dir, 'pt-run');
    await pretrain({ config: { ...tiny, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 }, data: { kind: 'synthetic', count: 512, limit: 32 }, outDir: pt, epochs: 1, batchSize: 32, visualizeEvery: 0, threads: 1 });
    await expect(finetune({ outDir: pt, resume: true })).rejects.toThrow(
      `finetune: resume: ${join(pt, 'checkpoint.safetensors')} is a pre-training checkpoint (mae pretrain --resume continues it), not the checkpoint of a fine-tuning run`,
    );
    // and pretrain says what a fine-tuning run's checkpoint is
    await expect(pretrain({ outDir: out, resume: true })).rejects.toThrow(`${join(out, 'checkpoint.safetensors')} is the training checkpoint of a fine-tuning run (mae finetune --resume continues it), not a pre-training checkpoint`);
  });
});
