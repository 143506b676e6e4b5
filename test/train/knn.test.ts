import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pretrain } from '../../lib/train/pretrain.js';
import { writeImage } from '../helpers/images.js';
import { Communicator } from '../../lib/distributed/comm.js';
import { MaskedAutoencoder } from '../../lib/mae/model.js';
import { liveTensors } from '../../lib/tensor.js';
import { openDataset } from '../../lib/train/data.js';
import type { Dataset } from '../../lib/data/index.js';
import { extractFeatures, knnClassify, knnEvaluate, pixelFeatures, type Features } from '../../lib/train/knn.js';

const config = { imgSize: 16, patchSize: 4, inChans: 1, embedDim: 16, depth: 1, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 };

describe('feature passes stop on their signal', () => {
  it('extractFeatures and pixelFeatures end after the batch in which the signal is aborted, with its reason', async () => {
    const model = new MaskedAutoencoder(config, { seed: 1 });
    const ds = await openDataset({ kind: 'synthetic', count: 40, imageSize: 16 }, 'train');
    const live = liveTensors();
    const stop = new AbortController();
    const done: number[] = [];
    const reason = new Error('asked to stop');
    await expect(
      extractFeatures(model, ds, {
        batchSize: 8,
        signal: stop.signal,
        onProgress: (at) => {
          done.push(at);
          if (at === 16) stop.abort(reason);
        },
      }),
    ).rejects.toBe(reason);
    expect(done).toEqual([8, 16]);
    expect(liveTensors()).toBe(live);
    // not aborted: the whole pass
    const all = await extractFeatures(model, ds, { batchSize: 8, signal: new AbortController().signal });
    expect(all.n).toBe(40);

    // a stop from a timer or a signal handler (not from inside the pass): the pass lets them run between batches
    const timed = new AbortController();
    const seen: number[] = [];
    let fired = -1;
    setTimeout(() => {
      fired = seen.length;
      timed.abort();
    }, 0);
    await expect(extractFeatures(model, ds, { batchSize: 4, signal: timed.signal, onProgress: (at) => seen.push(at) })).rejects.toMatchObject({ name: 'AbortError' });
    expect(fired).toBeGreaterThanOrEqual(0);
    expect(seen.length).toBeLessThanOrEqual(fired + 1); // at most the batch during which it fired, no more
    expect(seen.length).toBeLessThan(10); // of 10
    const timedPx = new AbortController();
    setImmediate(() => timedPx.abort()); // queued before the pass's first yield: a pixel pass can end within a timer's 1 ms
    await expect(pixelFeatures(ds, { batchSize: 4, workers: 2, signal: timedPx.signal })).rejects.toMatchObject({ name: 'AbortError' });

    const early = new AbortController();
    early.abort();
    await expect(pixelFeatures(ds, { batchSize: 8, signal: early.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect((await pixelFeatures(ds, { batchSize: 8, signal: new AbortController().signal })).n).toBe(40);
    model.dispose();
  });

  it('a dataset that is not one is named', async () => {
    const model = new MaskedAutoencoder(config, { seed: 1 });
    await expect(extractFeatures(model, null as unknown as Dataset)).rejects.toThrow('extractFeatures: dataset must be a Dataset (an object with length and get(i)), got null; open one with openDataset(...)');
    await expect(pixelFeatures('x' as unknown as Dataset)).rejects.toThrow("pixelFeatures: dataset must be a Dataset (an object with length and get(i)), got the string 'x'; open one with openDataset(...)");
    // options in its own name; 0 and NaN were read as no imageSize or inChans (the dataset's own)
    const ds = await openDataset({ kind: 'synthetic', count: 8, imageSize: 16 }, 'train');
    for (const [opts, message] of [
      [{ imageSize: 0 }, 'pixelFeatures: imageSize must be an integer >= 1, got the number 0'],
      [{ imageSize: NaN }, 'pixelFeatures: imageSize must be an integer >= 1, got the number NaN'],
      [{ inChans: 0 }, 'pixelFeatures: inChans must be an integer >= 1, got the number 0'],
      [{ batchSize: '8' }, "pixelFeatures: batchSize must be an integer >= 1, got the string '8'"],
      [{ workers: -1 }, 'pixelFeatures: workers must be an integer in [0, 256], got the number -1'],
      [{ signal: {} }, 'pixelFeatures: signal must be an AbortSignal, got'],
    ] as const)
      await expect(pixelFeatures(ds, opts as never), message).rejects.toThrow(message);
    expect((await pixelFeatures(ds, { imageSize: 8, workers: 0 })).dim).toBe(8 * 8);
    model.dispose();
  });

  it('refuses a signal for a pass shared by several ranks (each rank must finish its share)', async () => {
    const model = new MaskedAutoencoder(config, { seed: 1 });
    const ds = await openDataset({ kind: 'synthetic', count: 8, imageSize: 16 }, 'train');
    const two = Object.assign(Object.create(Communicator.prototype), { size: 2, rank: 0 }) as Communicator;
    await expect(extractFeatures(model, ds, { comm: two, signal: new AbortController().signal })).rejects.toThrow(/cannot stop a pass shared by several ranks/);
    model.dispose();
  });
});

describe('knnClassify: the votes', () => {
  const feats = (rows: number[][], labels: number[]): Features => ({ features: Float32Array.from(rows.flat()), labels: Int32Array.from(labels), n: labels.length, dim: rows[0]!.length });

  it('a small temperature gives the nearest neighbour the vote (exp(sim / T) did not overflow to a tie of Infinity)', () => {
    // the query is class 1's one image; class 0 has two images a little less similar (cosine 0.985)
    const bank = feats([[1, 0.5], [1, 0.3], [1, 0.3]], [1, 0, 0]);
    const query = feats([[1, 0.5]], [1]);
    for (const temperature of [0.01, 1e-3, 1e-6]) {
      const r = knnClassify(bank, query, { k: 3, temperature });
      expect([...r.predictions], `T ${temperature}`).toEqual([1]);
    }
    // at 0.07 (exp(0.015 / 0.07) = 1.24 < 2) and at larger temperatures class 0's two votes win
    for (const temperature of [0.07, 1e6]) expect([...knnClassify(bank, query, { k: 3, temperature }).predictions], `T ${temperature}`).toEqual([0]);
  });

  it('zero-norm and duplicate features give no NaN: every neighbour ties, the lowest class wins', () => {
    const r = knnClassify(feats([[0, 0], [0, 0], [1, 0]], [2, 1, 0]), feats([[0, 0]], [1]), { k: 3, numClasses: 3 });
    expect([...r.predictions]).toEqual([0]);
    expect([r.top1, r.top5]).toEqual([0, 1]);
  });
});

describe('feature passes refuse a cache that cannot be held, before the pass', () => {
  // a dataset of two billion 16 x 16 images, none of which may be read
  const huge = { length: 2e9, numClasses: 10, channels: 1, height: 16, width: 16, get: () => Promise.reject(new Error('read an image')) } as unknown as Dataset;
  it('extractFeatures and pixelFeatures name the size', async () => {
    const model = new MaskedAutoencoder(config, { seed: 1 });
    await expect(extractFeatures(model, huge)).rejects.toThrow(/^extractFeatures: the features of 2000000000 images \(16 float32 values each\) take 119\.2 GiB, more than/);
    await expect(pixelFeatures(huge)).rejects.toThrow(/^pixelFeatures: the features of 2000000000 images \(256 float32 values each\) take 1907\.3 GiB, more than/);
    model.dispose();
  });
});

describe('the pretrain kNN monitor', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mae-knn-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses knn.data of one image (no bank and queries) before training, not after the first epoch', async () => {
    const one = join(dir, 'one');
    mkdirSync(join(one, 'a'), { recursive: true });
    await writeImage(join(one, 'a', '0.png'), 16, 16, 1);
    const events: string[] = [];
    const rgb = { ...config, inChans: 3 };
    await expect(
      pretrain({ config: rgb, data: { kind: 'synthetic', count: 16, imageSize: 16, channels: 3 }, outDir: join(dir, 'pt'), epochs: 1, batchSize: 8, visualizeEvery: 0, threads: 1, workers: 0, knn: { every: 1, data: { kind: 'folder', path: one } }, onEvent: (e) => events.push(e.type) }),
    ).rejects.toThrow(`pretrain: the kNN monitor's data (knn.data) ${one} holds 1 image: a bank and queries need 2 or more`);
    expect(events.filter((e) => e === 'epoch' || e === 'step')).toEqual([]);
  });
});

describe('knnEvaluate: labels it cannot score are refused before the feature passes', () => {
  const fake = (numClasses: number) => ({ length: 8, numClasses, channels: 1, height: 16, width: 16, get: () => Promise.reject(new Error('read an image')) }) as unknown as Dataset;
  it('unlabelled data, and test data of more classes than the bank', async () => {
    const model = new MaskedAutoencoder(config, { seed: 1 });
    await expect(knnEvaluate(model, fake(0), fake(10))).rejects.toThrow('knnEvaluate: train has no labels (no class sub-folders): kNN accuracy is measured on labelled images');
    await expect(knnEvaluate(model, fake(10), fake(0))).rejects.toThrow('knnEvaluate: test has no labels (no class sub-folders): kNN accuracy is measured on labelled images');
    await expect(knnEvaluate(model, fake(10), fake(12))).rejects.toThrow('knnEvaluate: test has 12 classes and the bank (train) 10: its classes past 10 could never be predicted');
    await expect(knnEvaluate(model, fake(10), fake(12), { numClasses: 11 })).rejects.toThrow('knnEvaluate: test has 12 classes and numClasses is 11');
    model.dispose();
  });
});
