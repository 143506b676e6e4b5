// DataLoader on synthetic in-memory data, in-process (vitest runs the TS sources): seeded order, coverage, startAt,
// dropLast, shards of a data-parallel run, normalisation, channel replication, stall accounting; and worker failure handling
// and close() during an epoch with small plain-JS worker scripts passed as workerUrl (the real compiled worker is checked in
// worker.test.ts).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { DataLoader, IMAGENET_MEAN, IMAGENET_STD, InMemoryDataset, type Batch, type Dataset, type DataLoaderOptions, type MemoryDatasetSpec } from '../../lib/data/index.js';

/** n images of c x 6 x 6; every pixel of image i is (i * 7) % 256; label i % 10. */
function dataset(n: number, c = 1): InMemoryDataset {
  const per = c * 36;
  const images = new Uint8Array(n * per);
  for (let i = 0; i < n; i++) images.fill((i * 7) % 256, i * per, (i + 1) * per);
  return new InMemoryDataset({ images, labels: Array.from({ length: n }, (_, i) => i % 10), channels: c, height: 6, width: 6, numClasses: 10 });
}

async function collect(loader: DataLoader, epoch: number, startAt = 0): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of loader.epoch(epoch, { startAt })) out.push(b);
  return out;
}

const ds = dataset(53);
const base: DataLoaderOptions = { batchSize: 8, seed: 42, workers: 0 };

describe('DataLoader (in-process)', () => {
  it('runs in-process from TypeScript sources and says why', () => {
    const fromTs = new DataLoader(ds, { batchSize: 8 });
    expect(fromTs.mode).toBe('in-process');
    expect(fromTs.inProcessReason).toMatch(/TypeScript sources/);
    expect(new DataLoader(ds, base).inProcessReason).toBe('workers: 0');
  });

  it('visits every index exactly once per epoch, in a seeded order that changes per epoch', async () => {
    const loader = new DataLoader(ds, base);
    expect(loader.stepsPerEpoch).toBe(7);
    const orders: number[][] = [];
    for (const epoch of [0, 1]) {
      const batches = await collect(loader, epoch);
      expect(batches.map((b) => b.size)).toEqual([8, 8, 8, 8, 8, 8, 5]);
      expect(batches.map((b) => b.step)).toEqual([0, 1, 2, 3, 4, 5, 6]);
      const order = batches.flatMap((b) => Array.from(b.indices));
      expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: 53 }, (_, i) => i));
      expect(order).toEqual(Array.from(loader.order(epoch)));
      for (const b of batches) expect(Array.from(b.labels)).toEqual(Array.from(b.indices, (i) => i % 10));
      orders.push(order);
    }
    expect(orders[0]).not.toEqual(orders[1]);
    expect(orders[0]).not.toEqual(Array.from({ length: 53 }, (_, i) => i));
    const noShuffle = await collect(new DataLoader(ds, { ...base, shuffle: false }), 3);
    expect(noShuffle.flatMap((b) => Array.from(b.indices))).toEqual(Array.from({ length: 53 }, (_, i) => i));
  });

  it("cuts each global batch into the ranks' disjoint slices, augmented as one process at the whole batch augments them", async () => {
    const opts = { ...base, augment: true, imageSize: 5, dropLast: true };
    const whole = await collect(new DataLoader(ds, { ...opts, batchSize: 12 }), 1);
    const ranks = await Promise.all([0, 1, 2].map((rank) => collect(new DataLoader(ds, { ...opts, batchSize: 4, shard: { rank, count: 3 } }), 1)));
    expect(whole).toHaveLength(4); // floor(53 / 12)
    for (const r of ranks) expect(r).toHaveLength(4);
    whole.forEach((w, step) => {
      expect(w.start).toBe(step * 12);
      const parts = ranks.map((r) => r[step]!);
      parts.forEach((p, rank) => expect(p.start).toBe(step * 12 + rank * 4));
      expect(parts.flatMap((p) => Array.from(p.indices))).toEqual(Array.from(w.indices));
      const images = new Float32Array(w.images.length);
      parts.forEach((p, rank) => images.set(p.images, rank * p.images.length));
      expect(images).toEqual(w.images);
    });
    // a resumed rank continues at the same slice
    const resumed = await collect(new DataLoader(ds, { ...opts, batchSize: 4, shard: { rank: 2, count: 3 } }), 1, 3);
    expect(Array.from(resumed[0]!.indices)).toEqual(Array.from(ranks[2]![3]!.indices));
    expect(() => new DataLoader(ds, { ...base, shard: { rank: 0, count: 2 } })).toThrow(/needs dropLast/);
    expect(() => new DataLoader(ds, { ...base, dropLast: true, shard: { rank: 2, count: 2 } })).toThrow(/0 <= rank < count/);
    expect(() => new DataLoader(ds, { ...base, batchSize: 27, dropLast: true, shard: { rank: 0, count: 2 } })).toThrow(/27 x 2 ranks > dataset length 53/);
  });

  it('gives identical batches (augmented) for the same seed, different ones for another seed', async () => {
    const opts = { ...base, augment: true, imageSize: 5 };
    const a = await collect(new DataLoader(ds, opts), 2);
    const b = await collect(new DataLoader(ds, opts), 2);
    const c = await collect(new DataLoader(ds, { ...opts, seed: 43 }), 2);
    expect(a.map((x) => Array.from(x.images))).toEqual(b.map((x) => Array.from(x.images)));
    expect(a.map((x) => Array.from(x.indices))).toEqual(b.map((x) => Array.from(x.indices)));
    expect(a.map((x) => Array.from(x.indices))).not.toEqual(c.map((x) => Array.from(x.indices)));
  });

  it('resumes with startAt exactly where a full epoch would be, whatever ran before', async () => {
    const opts = { ...base, augment: true, imageSize: 4 };
    const full = await collect(new DataLoader(ds, opts), 5);
    const resumedLoader = new DataLoader(ds, opts);
    await collect(resumedLoader, 0); // an unrelated epoch first must not matter
    const resumed = await collect(resumedLoader, 5, 4);
    expect(resumed.map((b) => b.step)).toEqual([4, 5, 6]);
    for (let k = 0; k < 3; k++) {
      expect(Array.from(resumed[k]!.indices)).toEqual(Array.from(full[k + 4]!.indices));
      expect(Array.from(resumed[k]!.images)).toEqual(Array.from(full[k + 4]!.images));
    }
    expect(await collect(resumedLoader, 5, 7)).toEqual([]);
    await expect(resumedLoader.epoch(5, { startAt: 8 }).next()).rejects.toThrow('DataLoader: startAt must be an integer step in [0, 7], got the number 8');
  });

  it('drops the last partial batch with dropLast', async () => {
    const batches = await collect(new DataLoader(ds, { ...base, dropLast: true }), 0);
    expect(batches.map((b) => b.size)).toEqual([8, 8, 8, 8, 8, 8]);
    expect(new Set(batches.flatMap((b) => Array.from(b.indices))).size).toBe(48);
  });

  it('normalises with the Fashion-MNIST defaults (eval: the image itself), replicated to inChans', async () => {
    const [b] = await collect(new DataLoader(ds, { ...base, batchSize: 53, shuffle: false }), 0);
    expect(b!.shape).toEqual([53, 1, 6, 6]);
    for (const i of [0, 1, 30]) {
      const expected = ((i * 7) % 256 / 255 - 0.286) / 0.353;
      for (let p = 0; p < 36; p++) expect(b!.images[i * 36 + p]).toBeCloseTo(expected, 5);
    }
    const [r] = await collect(new DataLoader(ds, { ...base, batchSize: 4, shuffle: false, inChans: 3, augment: true }), 0);
    expect(r!.shape).toEqual([4, 3, 6, 6]);
    for (let i = 0; i < 4; i++) {
      const plane = (k: number) => Array.from(r!.images.subarray((i * 3 + k) * 36, (i * 3 + k + 1) * 36));
      expect(plane(1)).toEqual(plane(0));
      expect(plane(2)).toEqual(plane(0));
    }
    const [m] = await collect(new DataLoader(ds, { ...base, batchSize: 1, shuffle: false, mean: [0.5], std: [2] }), 0);
    expect(m!.images[0]).toBeCloseTo(-0.25, 6);
  });

  it('uses the ImageNet defaults for 3-channel data and resizes in eval mode', async () => {
    const rgb = dataset(3, 3);
    const [b] = await collect(new DataLoader(rgb, { ...base, shuffle: false, imageSize: 9 }), 0);
    expect(b!.shape).toEqual([3, 3, 9, 9]);
    for (let k = 0; k < 3; k++) expect(b!.images[(3 + k) * 81 + 40]).toBeCloseTo((7 / 255 - IMAGENET_MEAN[k]!) / IMAGENET_STD[k]!, 5); // constant image stays constant
  });

  it('rejects bad options with clear messages', () => {
    expect(() => new DataLoader(ds, { ...base, mean: [0.1, 0.2], std: [1, 1] })).toThrow('DataLoader: mean and std need 1 values (one per output channel), got 2 and 2');
    expect(() => new DataLoader(dataset(2, 3), { ...base, inChans: 1 })).toThrow("DataLoader: inChans 1 does not match the dataset's 3 channels");
    expect(() => new DataLoader(ds, { ...base, batchSize: 0 })).toThrow('DataLoader: batchSize must be a positive integer, got 0');
    expect(() => new DataLoader(ds, { ...base, batchSize: 60, dropLast: true })).toThrow('leaves no batches');
  });

  it('refuses non-finite or non-number mean and std at construction, naming the option', () => {
    expect(() => new DataLoader(ds, { ...base, mean: [NaN] })).toThrow('DataLoader: mean[0] must be a finite number, got the number NaN');
    expect(() => new DataLoader(ds, { ...base, mean: ['0.5' as unknown as number] })).toThrow("DataLoader: mean[0] must be a finite number, got the string '0.5'");
    expect(() => new DataLoader(ds, { ...base, transforms: 'typescript', std: [Infinity] })).toThrow('DataLoader: std[0] must be a finite number > 0, got the number Infinity');
    expect(() => new DataLoader(ds, { ...base, std: [0] })).toThrow('DataLoader: std[0] must be a finite number > 0, got the number 0');
    expect(() => new DataLoader(ds, { ...base, std: 0.5 as unknown as number[] })).toThrow('DataLoader: std must be an array, each item a finite number > 0, got the number 0.5');
  });

  it('checks scale and ratio at construction, and takes an extreme ratio (a crop 1 pixel tall)', async () => {
    const aug = { ...base, augment: true };
    expect(() => new DataLoader(ds, { ...aug, scale: [1, 0.5] })).toThrow('DataLoader: scale must be [min, max] with 0 < min <= max <= 1, finite numbers, got [1, 0.5]');
    expect(() => new DataLoader(ds, { ...aug, scale: [0.5, 1.5] })).toThrow('DataLoader: scale must be [min, max] with 0 < min <= max <= 1, finite numbers, got [0.5, 1.5]');
    expect(() => new DataLoader(ds, { ...aug, scale: 'big' as unknown as [number, number] })).toThrow("DataLoader: scale must be [min, max] with 0 < min <= max <= 1, finite numbers, got the string 'big'");
    expect(() => new DataLoader(ds, { ...aug, ratio: [0, 1] })).toThrow('DataLoader: ratio must be [min, max] with 0 < min <= max, finite numbers, got [0, 1]');
    expect(() => new DataLoader(ds, { ...aug, ratio: [1, Infinity] })).toThrow('DataLoader: ratio must be [min, max] with 0 < min <= max, finite numbers, got [1, Infinity]');
    for (const ratio of [[100, 100], [0.01, 0.01]] as [number, number][]) {
      const batches = await collect(new DataLoader(ds, { ...aug, ratio }), 0);
      expect(batches.reduce((n, b) => n + b.size, 0)).toBe(ds.length);
      expect(batches.every((b) => b.images.every((v) => Number.isFinite(v)))).toBe(true);
    }
  });

  it('refuses more than 256 workers and a dataset.length that is not a count', () => {
    expect(new DataLoader(ds, { ...base, workers: 256 }).inProcessReason).not.toBeNull(); // the most allowed (in-process here: TS sources)
    expect(() => new DataLoader(ds, { ...base, workers: 257 })).toThrow('DataLoader: workers must be an integer in [0, 256], got 257');
    expect(() => new DataLoader(ds, { ...base, workers: 100000 })).toThrow('DataLoader: workers must be an integer in [0, 256], got 100000');
    const fake = (length: number): Dataset => ({ length, numClasses: 2, channels: 1, height: 2, width: 2, get: async () => ({ image: new Float32Array(4), label: 0 }) });
    for (const length of [NaN, -5, 2.5, Infinity]) {
      expect(() => new DataLoader(fake(length), { batchSize: 2 })).toThrow(`DataLoader: dataset.length must be a non-negative safe integer (the number of samples), got ${length}`);
    }
    expect(() => new DataLoader(fake(0), { batchSize: 2 })).toThrow('DataLoader: the dataset is empty');
  });

  it('records the time spent waiting for batches, per epoch and in total', async () => {
    const loader = new DataLoader(ds, { ...base, augment: true, imageSize: 6 });
    expect(loader.stallMs).toBe(0);
    await collect(loader, 0);
    await collect(loader, 1);
    expect(loader.epochStallMs(0)).toBeGreaterThan(0);
    expect(loader.epochStallMs(1)).toBeGreaterThan(0);
    expect(loader.epochStallMs(2)).toBe(0);
    expect(loader.stallMs).toBeCloseTo(loader.epochStallMs(0) + loader.epochStallMs(1), 6);
  });

  it('refuses to iterate after close()', async () => {
    const loader = new DataLoader(ds, base);
    await loader.close();
    await expect(loader.epoch(0).next()).rejects.toThrow('DataLoader: epoch() called after close()');
  });

  it('works in-process for a custom Dataset without workerSpec()', async () => {
    const custom: Dataset = {
      length: 3, numClasses: 0, channels: 1, height: 2, width: 2,
      get: async (i) => ({ image: new Float32Array(4).fill(i / 4), label: -1 }),
    };
    const loader = new DataLoader(custom, { batchSize: 3, shuffle: false, mean: [0], std: [1] });
    expect(loader.mode).toBe('in-process');
    const [b] = await collect(loader, 0);
    expect(Array.from(b!.images)).toEqual([0, 0, 0, 0, 0.25, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5]);
    expect(Array.from(b!.labels)).toEqual([-1, -1, -1]);
  });

  it("holds a few of a batch's samples at once, not all (each may be a large decoded image), whatever order they come in", async () => {
    const big = dataset(200, 3);
    for (const transforms of ['native', 'typescript'] as const) {
      let active = 0;
      let most = 0;
      // each sample comes after a delay of its own, so that they arrive out of order
      const slow = <T>(i: number, value: Promise<T>): Promise<T> => {
        most = Math.max(most, ++active);
        return new Promise((resolve) => setTimeout(() => (active--, resolve(value)), (i * 7) % 5));
      };
      const delayed: Dataset = {
        length: big.length, numClasses: 10, channels: 3, height: 6, width: 6,
        get: (i) => slow(i, big.get(i)),
        getPixels: (i) => slow(i, big.getPixels(i)),
      };
      const opts: DataLoaderOptions = { batchSize: 100, seed: 4, augment: true, imageSize: 5, workers: 0, transforms };
      const got = await collect(new DataLoader(delayed, opts), 1);
      const want = await collect(new DataLoader(big, opts), 1);
      expect(got.map((b) => Array.from(b.images))).toEqual(want.map((b) => Array.from(b.images)));
      expect(got.map((b) => Array.from(b.labels))).toEqual(want.map((b) => Array.from(b.labels)));
      expect(most).toBeGreaterThan(1); // still fetched concurrently (decoding overlaps)
      expect(most).toBeLessThanOrEqual(16);
    }
  });
});

describe("a caller's own Dataset: what does not fit it is an Error naming the sample", () => {
  /** A Dataset of n 1 x 4 x 4 images of value i / n, label i % 3, whose sample `at` is replaced by `bad`. */
  const userData = (n: number, at: number, bad: (i: number) => unknown, numClasses = 3): Dataset => ({
    length: n,
    numClasses,
    channels: 1,
    height: 4,
    width: 4,
    get: async (i: number) => (i === at ? (bad(i) as never) : { image: new Float32Array(16).fill(i / n), label: numClasses ? i % numClasses : -1 }),
  });
  const first = async (d: Dataset, opts: Partial<DataLoaderOptions> = {}) => collect(new DataLoader(d, { batchSize: 4, shuffle: false, workers: 0, ...opts }), 0);

  it('a get() that throws, a sample of the wrong size or kind, pixel values outside [0, 1], and labels that do not fit', async () => {
    const cases: [(i: number) => unknown, string, number?][] = [
      [() => { throw new Error('disk gone'); }, 'DataLoader: sample 5 of the dataset: disk gone'],
      [() => undefined, 'DataLoader: sample 5 of the dataset: get(i) must resolve to a Sample { image: Float32Array, label }, got undefined'],
      [() => ({ image: new Float32Array(9), label: 0 }), 'DataLoader: sample 5 of the dataset: its image has 9 values, expected channels x height x width = 1 x 4 x 4 = 16'],
      [() => ({ image: new Float32Array(16).fill(200), label: 0 }), 'DataLoader: sample 5 of the dataset: its pixel values must be in [0, 1], got 200 at 0 (8-bit values are divided by 255)'],
      [() => ({ image: new Float32Array(16).fill(NaN), label: 0 }), 'DataLoader: sample 5 of the dataset: its pixel values must be in [0, 1], got NaN at 0'],
      [() => ({ image: new Float32Array(16), label: NaN }), 'DataLoader: sample 5 of the dataset: its label must be a class index, an integer in [0, 3), got the number NaN'],
      [() => ({ image: new Float32Array(16), label: 1.7 }), 'its label must be a class index, an integer in [0, 3), got the number 1.7'],
      [() => ({ image: new Float32Array(16), label: 99 }), 'its label must be a class index, an integer in [0, 3), got the number 99'],
      [() => ({ image: new Float32Array(16), label: 2 }), 'its label must be -1 (the dataset has numClasses 0: unlabelled), got the number 2', 0],
    ];
    for (const [bad, message, numClasses] of cases) await expect(first(userData(8, 5, bad, numClasses ?? 3)), message).rejects.toThrow(message);
  });

  it("a subclass that overrides get() gets its own samples, and a dataset whose length changes is refused", async () => {
    class Inverted extends InMemoryDataset {
      override async get(i: number) {
        const s = await super.get(i);
        return { ...s, image: s.image.map((v) => 1 - v) };
      }
    }
    const inv = new Inverted({ images: new Uint8Array(4 * 36).fill(51), labels: [0, 1, 2, 3], channels: 1, height: 6, width: 6, numClasses: 10 });
    const loader = new DataLoader(inv, { batchSize: 4, shuffle: false, workers: 1, workerUrl: new URL('file:///nonexistent/worker.js'), mean: [0], std: [1] });
    expect(loader.inProcessReason).toMatch(/overrides get\(\)/);
    const [b] = await collect(loader, 0);
    expect(b!.images.every((v) => Math.abs(v - 0.8) < 1e-6)).toBe(true); // 1 - 51 / 255, not 0.2
    const grows = userData(8, -1, () => null);
    const l = new DataLoader(grows, { batchSize: 4, workers: 0 });
    grows.length = 12;
    await expect(collect(l, 0)).rejects.toThrow("DataLoader: the dataset's length changed from 8 to 12 after the loader was made (its steps per epoch were counted then): make a new DataLoader");
  });

  it('options of the wrong type or name are refused', () => {
    const d = userData(8, -1, () => null);
    expect(() => new DataLoader(d, { batchSize: 4, augment: 'false' as unknown as boolean })).toThrow("DataLoader: augment must be true or false, got the string 'false'");
    expect(() => new DataLoader(d, { batchSize: 4, batchsize: 8 } as DataLoaderOptions)).toThrow("DataLoader: options has no option 'batchsize' (did you mean batchSize?)");
  });
});

const dir = mkdtempSync(join(tmpdir(), 'mae-workers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
/** A plain-JS worker script `name` in a temp dir: `body` after an import of parentPort and workerData. */
const script = (name: string, body: string) => {
  const path = join(dir, name);
  writeFileSync(path, `import { parentPort, workerData } from 'node:worker_threads';\n${body}\n`);
  return pathToFileURL(path);
};
/** A worker script that runs `prelude`, then answers each batch request `delayMs` after it came with a batch of zeros. */
const replying = (name: string, delayMs: number, prelude = '') =>
  script(
    name,
    `${prelude}
const per = workerData.config.inChans * workerData.config.imageSize ** 2;
parentPort.on('message', (m) => {
  if (m.type !== 'batch') return;
  const n = m.job.indices.length;
  setTimeout(() => parentPort.postMessage({ type: 'batch', id: m.id, images: new Float32Array(n * per), labels: new Int32Array(n) }), ${delayMs});
});`,
  );

describe('DataLoader worker threads', () => {
  it('starts no more threads than an epoch has batches (dataset length, batch size, dropLast, shard)', async () => {
    const started = join(dir, 'started.txt');
    const url = replying('counts.mjs', 0, `import { appendFileSync } from 'node:fs';\nappendFileSync(${JSON.stringify(started)}, 'x');`);
    const cases: [Partial<DataLoaderOptions>, number][] = [
      [{ workers: 16 }, 7], // ceil(53 / 8) batches
      [{ workers: 16, dropLast: true, shard: { rank: 1, count: 2 } }, 3], // floor(53 / 16)
      [{ workers: 4, batchSize: 60 }, 1],
      [{ workers: 3 }, 3],
    ];
    for (const [opts, expected] of cases) {
      writeFileSync(started, '');
      const loader = new DataLoader(ds, { ...base, ...opts, workerUrl: url });
      expect(loader.numWorkers).toBe(expected);
      expect((await collect(loader, 0)).length).toBe(loader.stepsPerEpoch);
      // a thread that got no batch may still be starting: wait for all before close() terminates them
      await vi.waitFor(() => expect(readFileSync(started, 'utf8').length).toBeGreaterThanOrEqual(expected), { timeout: 10_000 });
      await loader.close();
      expect(readFileSync(started, 'utf8').length).toBe(expected);
    }
    expect(new DataLoader(ds, { ...base, workers: 16 }).numWorkers).toBe(0); // in-process
  });

  it('keeps every thread busy: two batches in flight per thread by default, and no more threads than prefetch', async () => {
    const trace = join(dir, 'trace.txt');
    // each thread appends '+' when it takes a batch and '-' when it sends one back, 200 ms later
    const url = script(
      'traced.mjs',
      `import { appendFileSync } from 'node:fs';
const per = workerData.config.inChans * workerData.config.imageSize ** 2;
parentPort.on('message', (m) => {
  if (m.type !== 'batch') return;
  appendFileSync(${JSON.stringify(trace)}, '+');
  const n = m.job.indices.length;
  setTimeout(() => { appendFileSync(${JSON.stringify(trace)}, '-'); parentPort.postMessage({ type: 'batch', id: m.id, images: new Float32Array(n * per), labels: new Int32Array(n) }); }, 200);
});`,
    );
    const mostInFlight = () => [...readFileSync(trace, 'utf8')].reduce((acc, c) => ({ n: acc.n + (c === '+' ? 1 : -1), most: Math.max(acc.most, acc.n + (c === '+' ? 1 : -1)) }), { n: 0, most: 0 }).most;
    const many = dataset(160); // 20 batches of 8
    for (const [opts, threads, prefetch] of [[{ workers: 4 }, 4, 8], [{ workers: 4, prefetch: 3 }, 3, 3], [{ workers: 1 }, 1, 2]] as const) {
      writeFileSync(trace, '');
      const loader = new DataLoader(many, { ...base, ...opts, workerUrl: url });
      expect([loader.numWorkers, loader.prefetch]).toEqual([threads, prefetch]);
      expect((await collect(loader, 0)).length).toBe(20);
      await loader.close();
      expect(mostInFlight()).toBe(prefetch);
    }
  });
});

describe('DataLoader worker failures surface as errors, never hangs', () => {
  async function firstBatchError(workerUrl: URL): Promise<string> {
    const loader = new DataLoader(ds, { ...base, workers: 2, workerUrl });
    expect(loader.mode).toBe('workers');
    try {
      await collect(loader, 0);
      return 'no error';
    } catch (e) {
      return (e as Error).message;
    } finally {
      await loader.close();
    }
  }

  it('a batch error reply rejects with the cause', async () => {
    const url = script('reply-error.mjs', "parentPort.on('message', (m) => parentPort.postMessage({ type: 'error', id: m.id, message: 'disk on fire' }));");
    expect(await firstBatchError(url)).toMatch(/^DataLoader: batch failed in worker thread \d: disk on fire$/);
  });

  it('a worker that throws at start-up rejects pending batches', async () => {
    const url = script('throws.mjs', "throw new Error('cannot start: bad config');");
    expect(await firstBatchError(url)).toMatch(/^DataLoader: worker thread \d failed: cannot start: bad config$/);
  });

  it('a worker that exits rejects pending batches', async () => {
    const url = script('exits.mjs', "parentPort.on('message', () => process.exit(3));");
    expect(await firstBatchError(url)).toMatch(/^DataLoader: worker thread \d exited unexpectedly \(exit code 3\)$/);
  });

  it("a dataset whose workerSpec() cannot be structured-cloned is an Error naming workerSpec()", async () => {
    const spec = { ...ds.workerSpec(), decode: () => 0 } as unknown as MemoryDatasetSpec;
    const unclonable: Dataset = { length: 53, numClasses: 10, channels: 1, height: 6, width: 6, get: (i) => ds.get(i), workerSpec: () => spec };
    const loader = new DataLoader(unclonable, { ...base, workers: 2, workerUrl: replying('never-started.mjs', 0) });
    expect(loader.mode).toBe('workers');
    await expect(collect(loader, 0)).rejects.toThrow("DataLoader: the dataset's workerSpec() cannot be sent to a worker thread: () => 0 could not be cloned.");
    await loader.close();
  });

  it('a missing worker script rejects', async () => {
    expect(await firstBatchError(pathToFileURL(join(dir, 'missing.mjs')))).toMatch(/^DataLoader: worker thread \d failed: .*missing\.mjs/);
  });

  it("a dataset's onWarning that throws (warnings made errors) fails the run with its error, as in-process, instead of crashing the process", async () => {
    const strict: Dataset = {
      length: 53, numClasses: 10, channels: 1, height: 6, width: 6, get: (i) => ds.get(i), workerSpec: () => ds.workerSpec(),
      onWarning: (m) => {
        throw new Error(`warnings are errors here: ${m}`);
      },
    };
    const url = replying('warns.mjs', 20, "parentPort.postMessage({ type: 'warning', message: 'skipping bad image file: /data/x.png: cannot decode image' });");
    const loader = new DataLoader(strict, { ...base, workers: 1, workerUrl: url });
    await expect(collect(loader, 0)).rejects.toThrow(
      "DataLoader: the dataset's onWarning threw on a warning from worker thread 0 (skipping bad image file: /data/x.png: cannot decode image): warnings are errors here: skipping bad image file: /data/x.png: cannot decode image",
    );
    await loader.close();
  });
});

/** 8 samples of 1 x 2 x 2 (values 0, label -1) whose get(i) never resolves for i >= 4. */
const hangsAfter4: Dataset = {
  length: 8, numClasses: 0, channels: 1, height: 2, width: 2,
  get: async (i) => (i < 4 ? { image: new Float32Array(4), label: -1 } : new Promise<never>(() => {})),
};

describe('close() during an epoch: no batch is handed out after it', () => {
  const closed = /^DataLoader: closed during epoch 0, before step 1$/;

  it('a batch prefetched before close() is not handed out; the next next() rejects, then the epoch is done', async () => {
    const loader = new DataLoader(ds, { ...base, workers: 1, prefetch: 3, workerUrl: replying('instant.mjs', 0) });
    const it = loader.epoch(0);
    expect((await it.next()).value?.step).toBe(0);
    await loader.close(); // lets the in-flight batches 1 to 3 arrive first
    await expect(it.next()).rejects.toThrow(closed);
    expect(await it.next()).toEqual({ done: true, value: undefined });
  });

  it('a next() waiting for a worker when close() is called rejects', async () => {
    const loader = new DataLoader(ds, { ...base, workers: 1, prefetch: 1, workerUrl: replying('slow.mjs', 300) });
    const it = loader.epoch(0);
    await it.next();
    const waiting = expect(it.next()).rejects.toThrow(closed);
    await loader.close();
    await waiting;
  });

  it('waiting for close() costs nothing per batch: 40,000 batches leave the heap as it was (a reaction each leaked ~1 KB)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const loader = new DataLoader(dataset(64), { batchSize: 1, shuffle: false, workers: 0, imageSize: 6, mean: [0], std: [1] });
    const heap = () => (gc(), process.memoryUsage().heapUsed);
    let before = 0;
    for (let e = 0; e < 650; e++) {
      for await (const b of loader.epoch(e)) b.release();
      if (e === 24) before = heap();
    }
    const grown = heap() - before;
    await loader.close();
    expect(grown).toBeLessThan(4e6);
  });

  it("a next() waiting in-process for a get() that never resolves rejects at close()", async () => {
    const loader = new DataLoader(hangsAfter4, { batchSize: 4, shuffle: false, workers: 0, mean: [0], std: [1] });
    const it = loader.epoch(0);
    await it.next();
    const waiting = expect(it.next()).rejects.toThrow(closed);
    await loader.close();
    await waiting;
  });
});

describe('a batch that never comes: the timeout option, and a warning after 60 s', () => {
  const opts: DataLoaderOptions = { batchSize: 4, shuffle: false, workers: 0, mean: [0], std: [1] };

  it("timeout rejects a batch not ready in time, naming it; the warning's timers do not keep the process alive", async () => {
    const setTimer = vi.spyOn(globalThis, 'setTimeout');
    try {
      const loader = new DataLoader(hangsAfter4, { ...opts, timeout: 0.05 });
      expect(loader.timeout).toBe(0.05);
      await expect(collect(loader, 3)).rejects.toThrow('DataLoader: the batch of epoch 3, step 1 was not ready within the timeout of 0.05 s');
      // the warning's (60 s), for both batches
      const timers = setTimer.mock.calls.flatMap((call, k) => (call[1] === 60_000 ? [setTimer.mock.results[k]!.value as NodeJS.Timeout] : []));
      expect(timers).toHaveLength(2);
      for (const t of timers) expect(t.hasRef()).toBe(false);
    } finally {
      setTimer.mockRestore();
    }
  });

  it('a program with nothing else to do still gets the timeout error; without a timeout it is not kept alive 60 s', () => {
    const program = (timeout: number) => `import { DataLoader } from ${JSON.stringify(new URL('../../dist/lib/data/loader.js', import.meta.url).href)};
const hangs = { length: 8, numClasses: 0, channels: 1, height: 2, width: 2, get: async (i) => (i < 4 ? { image: new Float32Array(4), label: -1 } : new Promise(() => {})) };
const loader = new DataLoader(hangs, { batchSize: 4, shuffle: false, workers: 0, mean: [0], std: [1], timeout: ${timeout} });
try { for await (const b of loader.epoch(0)) console.log('batch', b.step); } catch (e) { console.log(e.message); process.exitCode = 1; }`;
    const run = (timeout: number) => spawnSync(process.execPath, ['--input-type=module', '-e', program(timeout)], { encoding: 'utf8', timeout: 30_000 });
    const bounded = run(0.2);
    expect([bounded.status, bounded.stdout]).toEqual([1, 'batch 0\nDataLoader: the batch of epoch 0, step 1 was not ready within the timeout of 0.2 s\n']);
    // Node ends a program whose top-level await can never settle (status 13), at once rather than after 60 s
    const unbounded = run(0);
    expect([unbounded.status, unbounded.stdout, unbounded.error]).toEqual([13, 'batch 0\n', undefined]);
  });

  it('timeout applies to a batch owed by a worker thread', async () => {
    const loader = new DataLoader(ds, { ...base, workers: 1, timeout: 0.1, workerUrl: replying('late.mjs', 500) });
    await expect(collect(loader, 2)).rejects.toThrow('DataLoader: the batch of epoch 2, step 0 was not ready within the timeout of 0.1 s');
    await loader.close();
  });

  it('timeout must be a number of seconds in [0, 2147483]', () => {
    const range = 'a number of seconds in [0, 2147483] (0: no limit)';
    expect(() => new DataLoader(ds, { ...base, timeout: -1 })).toThrow(`DataLoader: timeout must be ${range}, got the number -1`);
    expect(() => new DataLoader(ds, { ...base, timeout: NaN })).toThrow(`DataLoader: timeout must be ${range}, got the number NaN`);
    expect(() => new DataLoader(ds, { ...base, timeout: Infinity })).toThrow(`DataLoader: timeout must be ${range}, got the number Infinity`);
    expect(() => new DataLoader(ds, { ...base, timeout: 3e6 })).toThrow(`DataLoader: timeout must be ${range}, got the number 3000000`);
    expect(() => new DataLoader(ds, { ...base, timeout: '5' as unknown as number })).toThrow("DataLoader: timeout must be a number, got the string '5'");
    expect(new DataLoader(ds, base).timeout).toBe(0);
  });

  it('warns once (MAE_DATA_SLOW) when a batch has been awaited 60 s, and clears its timers when a batch comes', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      // samples 0 to 3 come after 59 s (the global setTimeout: faked), the others never
      const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
      const slow: Dataset = { ...hangsAfter4, get: (i) => (i < 4 ? sleep(59_000).then(() => hangsAfter4.get(i)) : hangsAfter4.get(i)) };
      const loader = new DataLoader(slow, opts);
      const it = loader.epoch(0);
      const first = it.next();
      await vi.advanceTimersByTimeAsync(59_000);
      expect((await first).value?.step).toBe(0);
      expect(vi.getTimerCount()).toBe(0);
      const second = expect(it.next()).rejects.toThrow('DataLoader: closed during epoch 0, before step 1');
      await vi.advanceTimersByTimeAsync(59_999);
      expect(warn).not.toHaveBeenCalled();
      await vi.advanceTimersByTimeAsync(1);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warn.mock.calls[0]![0]).toMatch(/^DataLoader: the batch of epoch 0, step 1 has been awaited for 60 s and is not ready/);
      expect(warn.mock.calls[0]![1]).toEqual({ code: 'MAE_DATA_SLOW' });
      const other = expect(loader.epoch(1, { startAt: 1 }).next()).rejects.toThrow('DataLoader: closed during epoch 1, before step 1');
      await vi.advanceTimersByTimeAsync(120_000);
      expect(warn).toHaveBeenCalledTimes(1); // once per loader
      await loader.close();
      await Promise.all([second, other]);
    } finally {
      warn.mockRestore();
      vi.useRealTimers();
    }
  });
});
