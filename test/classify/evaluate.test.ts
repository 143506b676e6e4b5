import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VisionTransformerClassifier, classifierConfigFrom } from '../../lib/classify/model.js';
import { ImageFolderDataset, prepareShards } from '../../lib/data/index.js';
import { MaskedAutoencoder } from '../../lib/mae/model.js';
import { openDataset } from '../../lib/train/data.js';
import { MetricAccumulator, confusionImage, evaluateClassifier, topkAccuracy } from '../../lib/train/evaluate.js';
import { extractFeatures, knnClassify, knnData, knnEvaluate, l2Normalize } from '../../lib/train/knn.js';
import { writeImage } from '../helpers/images.js';

describe('classification metrics', () => {
  it('computes top-1, top-5 and the confusion matrix', () => {
    // 3 samples, 6 classes
    const logits = Float32Array.from([
      9, 8, 7, 6, 5, 4, // true 0: top-1 hit
      9, 8, 7, 6, 5, 4, // true 4: rank 5 -> top-5 hit, predicted 0
      9, 8, 7, 6, 5, 4, // true 5: rank 6 -> miss
    ]);
    const labels = [0, 4, 5];
    const { top1, top5 } = topkAccuracy(logits, labels, 6);
    expect(top1).toBeCloseTo(1 / 3, 10);
    expect(top5).toBeCloseTo(2 / 3, 10);
    const m = new MetricAccumulator(6);
    m.add(logits, labels);
    const r = m.result();
    expect(r.n).toBe(3);
    expect(r.confusion[0 * 6 + 0]).toBe(1);
    expect(r.confusion[4 * 6 + 0]).toBe(1);
    expect(r.confusion[5 * 6 + 0]).toBe(1);
    expect(r.confusion.reduce((a, b) => a + b, 0)).toBe(3);
  });

  it('refuses a label that is not a class, leaving the counts as they were', () => {
    const logits = Float32Array.from([3, 2, 1]);
    for (const y of [3, -1, 0.5, NaN]) {
      expect(() => topkAccuracy(logits, [y], 3)).toThrow(`metrics: labels[0] is ${y}, not a class of [0, 3)`);
      const m = new MetricAccumulator(3);
      expect(() => m.add(Float32Array.from([...logits, ...logits]), [0, y])).toThrow(`metrics: labels[1] is ${y}, not a class of [0, 3)`);
      expect(m.n).toBe(0);
      expect(m.confusion.every((c) => c === 0)).toBe(true);
    }
  });

  it('draws the confusion matrix as a heat map: a dark cell where a row is concentrated, white where empty', () => {
    const cm = Int32Array.from([10, 0, 5, 5]);
    const img = confusionImage(cm, 2, { cell: 4 });
    expect(img.width).toBe(2 * 4 + 3);
    expect(img.channels).toBe(3);
    const px = (x: number, y: number) => Array.from(img.pixels.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));
    expect(px(3, 2)).toEqual([8, 48, 107]); // row 0, col 0: all of the row (inside the red diagonal outline)
    expect(px(7, 2)).toEqual([255, 255, 255]); // row 0, col 1: nothing
    const half = px(7, 7); // row 1, col 0: half
    expect(half[0]).toBe(Math.round(255 * 0.5 + 8 * 0.5));
  });
});

describe('evaluateClassifier', () => {
  it('refuses data of more classes than the classifier, and unlabelled data, before scoring; takes fewer classes', async () => {
    const base = { imgSize: 28, patchSize: 7, inChans: 1, embedDim: 16, depth: 1, numHeads: 2, mlpRatio: 4, eps: 1e-6 };
    const data = await openDataset({ kind: 'synthetic', count: 8 }); // 10 classes
    const small = new VisionTransformerClassifier(classifierConfigFrom(base, { numClasses: 3 }));
    await expect(evaluateClassifier(small, data)).rejects.toThrow(
      "evaluateClassifier: the data has 10 classes and the classifier 3: score it on data of at most 3 classes (class i of the data is the classifier's class i)",
    );
    const large = new VisionTransformerClassifier(classifierConfigFrom(base, { numClasses: 12 }));
    const r = await evaluateClassifier(large, data);
    expect([r.n, r.numClasses]).toEqual([8, 12]);
    const flat = mkdtempSync(join(tmpdir(), 'mae-eval-flat-'));
    for (let i = 0; i < 2; i++) await writeImage(join(flat, `${i}.png`), 28, 28, i);
    const rgb = new VisionTransformerClassifier(classifierConfigFrom({ ...base, inChans: 3 }, { numClasses: 3 }));
    await expect(evaluateClassifier(rgb, await ImageFolderDataset.open(flat))).rejects.toThrow(
      'evaluateClassifier: the data has no labels (no class sub-folders): a classifier is scored on labelled images',
    );
    for (const m of [small, large, rgb]) m.dispose();
  });
});

describe('kNN data', () => {
  it('cuts data without a test split in two, every 5th image a query and the others the bank, then limits each', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mae-knn-data-'));
    for (const c of ['x', 'y']) mkdirSync(join(dir, 'images', c), { recursive: true });
    for (let k = 0; k < 12; k++) await writeImage(join(dir, 'images', k < 7 ? 'x' : 'y', `${k}.png`), 12, 12, k);
    const files = (await ImageFolderDataset.open(join(dir, 'images'))).index.files;
    const src = { kind: 'folder' as const, path: join(dir, 'images') };
    const names = (ds: unknown) => (ds as ImageFolderDataset).index.files;
    const all = await knnData(src);
    expect(names(all.query)).toEqual([files[0], files[5], files[10]]);
    expect(names(all.bank)).toEqual(files.filter((_, i) => i % 5 !== 0));
    expect(all.scored).toBe(`3 images of ${src.path} (every 5th) against a bank of 9 of its other images`);
    // the limits apply after the cut; the source's own limit is not used
    const cut = await knnData({ ...src, limit: 2 }, { bank: 4, query: 2 });
    expect(names(cut.query)).toEqual([files[0], files[5]]);
    expect(names(cut.bank)).toEqual([files[1], files[2], files[3], files[4]]);
    expect(cut.scored).toBe(`2 images of ${src.path} (every 5th) against a bank of 4 of its other images`);
    // shards likewise
    const shards = (await prepareShards({ data: src.path, out: join(dir, 'shards') })).dir;
    const s = await knnData({ kind: 'shards', path: shards });
    expect([s.query.length, s.bank.length]).toEqual([3, 9]);
    expect(await s.query.get(1)).toEqual(await all.query.get(1));
    expect(await s.bank.get(8)).toEqual(await all.bank.get(8));
    // one image cannot be cut
    mkdirSync(join(dir, 'one', 'x'), { recursive: true });
    await writeImage(join(dir, 'one', 'x', '0.png'), 12, 12, 0);
    await expect(knnData({ kind: 'folder', path: join(dir, 'one') })).rejects.toThrow(
      `knn: ${join(dir, 'one')} holds 1 image: a bank and queries need 2 or more (every 5th image a query, the others the bank)`,
    );
  });

  it('takes the train split as the bank and the test split as the queries where the data has them', async () => {
    const r = await knnData({ kind: 'synthetic', count: 20, limit: 3 }, { bank: 8, query: 5 });
    const train = await openDataset({ kind: 'synthetic', count: 20 }, 'train');
    const test = await openDataset({ kind: 'synthetic', count: 20 }, 'test');
    expect([r.bank.length, r.query.length]).toEqual([8, 5]);
    for (let i = 0; i < 5; i++) expect(await r.query.get(i)).toEqual(await test.get(i));
    for (let i = 0; i < 8; i++) expect(await r.bank.get(i)).toEqual(await train.get(i));
    expect(r.scored).toBe('5 test images against a bank of 8 train images');
    expect((await knnData({ kind: 'synthetic', count: 20 })).scored).toBe('20 test images against a bank of 20 train images');
    await expect(knnData({ kind: 'synthetic' }, { bank: 0 })).rejects.toThrow('knnData: limits.bank must be an integer >= 1, got the number 0');
  });
});

describe('kNN monitor', () => {
  it('votes with exp(sim / T) over the k nearest by cosine similarity', () => {
    // bank: 3 of class 0 near (1, 0), 2 of class 1 near (0, 1)
    const bank = { features: Float32Array.from([1, 0, 0.9, 0.1, 0.8, 0.2, 0.1, 0.9, 0, 1]), labels: Int32Array.from([0, 0, 0, 1, 1]), n: 5, dim: 2 };
    const query = { features: Float32Array.from([2, 0.1, 0.05, 3, 1, 1.2]), labels: Int32Array.from([0, 1, 1]), n: 3, dim: 2 };
    const r = knnClassify(bank, query, { k: 2, temperature: 0.07 });
    expect(Array.from(r.predictions)).toEqual([0, 1, 1]);
    expect(r.top1).toBe(1);
    expect(r.k).toBe(2);
    // a k beyond the bank: every bank feature votes, and the result says how many did
    const all = knnClassify(bank, query, { k: 100 });
    expect(all.k).toBe(5);
    expect(all.predictions).toEqual(knnClassify(bank, query, { k: 5 }).predictions);
    // with k = 5 the majority class wins the third query only through the similarity weights: compute by hand
    const b = l2Normalize(bank.features, 2);
    const q = l2Normalize(query.features, 2).subarray(4, 6);
    const s = [0, 1, 2, 3, 4].map((i) => Math.exp((b[2 * i]! * q[0]! + b[2 * i + 1]! * q[1]!) / 0.07));
    const expected = s[0]! + s[1]! + s[2]! > s[3]! + s[4]! ? 0 : 1;
    expect(knnClassify(bank, query, { k: 5 }).predictions[2]).toBe(expected);
  });

  it('refuses a k that is not a positive integer and a temperature that is not a positive finite number', async () => {
    const bank = { features: Float32Array.from([1, 0, 0, 1]), labels: Int32Array.from([0, 1]), n: 2, dim: 2 };
    for (const k of [0, -1, 1.5, NaN]) expect(() => knnClassify(bank, bank, { k })).toThrow(`knnClassify: k must be a positive integer, got the number ${k}`);
    for (const temperature of [0, -1, Infinity, NaN])
      expect(() => knnClassify(bank, bank, { temperature })).toThrow(`knnClassify: temperature must be a positive finite number, got the number ${temperature}`);
    // knnEvaluate refuses them before extracting any features
    const model = new MaskedAutoencoder({ imgSize: 28, patchSize: 7, inChans: 1, embedDim: 16, depth: 1, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 });
    const data = await openDataset({ kind: 'synthetic', count: 8 }, 'train');
    await expect(knnEvaluate(model, data, data, { k: 0 })).rejects.toThrow('knnEvaluate: k must be a positive integer, got the number 0');
    // a misspelt option is refused, not left at its default (each names the options it takes)
    expect(() => knnClassify(bank, bank, { K: 5 } as never)).toThrow("knnClassify: opts has no option 'K' (did you mean k?); it takes k, temperature, numClasses, chunk");
    await expect(knnEvaluate(model, data, data, { temprature: 0.1 } as never)).rejects.toThrow("knnEvaluate: opts has no option 'temprature' (did you mean temperature?); it takes k, temperature, numClasses, chunk, pool, batchSize, workers, comm");
    await expect(extractFeatures(model, data, { batch_size: 4 } as never)).rejects.toThrow("extractFeatures: opts has no option 'batch_size' (did you mean batchSize?)");
    const classifier = new VisionTransformerClassifier(classifierConfigFrom(model.config, { numClasses: 10 }));
    await expect(evaluateClassifier(classifier, data, { worker: 2 } as never)).rejects.toThrow("evaluateClassifier: opts has no option 'worker' (did you mean workers?)");
    // knnEvaluate passes knnClassify only its own options
    expect((await knnEvaluate(model, data, data, { k: 3, batchSize: 4, workers: 0 })).k).toBe(3);
    classifier.dispose();
    model.dispose();
  });

  it('refuses features whose sizes disagree and labels outside the classes', () => {
    const bank = { features: Float32Array.from([1, 0, 0.6, 0.8, 0, 1]), labels: Int32Array.from([0, 1, 2]), n: 3, dim: 2 };
    const query = { features: Float32Array.from([0, 1]), labels: Int32Array.from([2]), n: 1, dim: 2 };
    // the query is the class-2 sample: with 3 classes it is found; with numClasses 2 its label is refused, not a hit
    expect(knnClassify(bank, query, { k: 1, numClasses: 3 })).toMatchObject({ top1: 1, top5: 1 });
    expect(() => knnClassify(bank, query, { k: 1, numClasses: 2 })).toThrow('knnClassify: bank.labels[2] is 2, outside the 2 classes [0, 2)');
    expect(() => knnClassify({ ...bank, labels: Int32Array.from([0, 1, -1]) }, query)).toThrow('knnClassify: bank.labels[2] is -1: unlabelled data (no class sub-folders) cannot be scored');
    expect(() => knnClassify({ ...bank, labels: Int32Array.from([0, 1, -2]) }, query)).toThrow('knnClassify: bank.labels[2] is -2, outside the 3 classes [0, 3)');
    // a query class the bank lacks counts as a miss, never as a top-5 hit
    const absent = knnClassify(bank, { ...query, labels: Int32Array.from([7]) }, { k: 1 });
    expect(absent).toMatchObject({ top1: 0, top5: 0 });
    expect(() => knnClassify(bank, { ...query, labels: Int32Array.from([7]) }, { numClasses: 3 })).toThrow('knnClassify: query.labels[0] is 7, outside the 3 classes [0, 3)');
    expect(() => knnClassify({ ...bank, dim: 0 }, query)).toThrow('knnClassify: bank.dim must be a positive integer, got the number 0');
    expect(() => knnClassify({ ...bank, n: 5 }, query)).toThrow('knnClassify: bank.features must be a Float32Array of n x dim = 5 x 2 values, got 6');
    expect(() => knnClassify(bank, query, { chunk: 0 })).toThrow('knnClassify: chunk must be a positive integer, got the number 0');
    expect(() => knnClassify(bank, query, { numClasses: 0 })).toThrow('knnClassify: numClasses must be a positive integer, got the number 0');
    expect(() => knnClassify({ ...bank, features: new Float32Array(0), labels: new Int32Array(0), n: 0 }, query)).toThrow('knnClassify: the bank holds no features');
  });

  it('l2Normalize refuses a row length that is not a positive divisor of the values', () => {
    expect(Array.from(l2Normalize(Float32Array.from([3, 4, 0, 2]), 2))).toEqual([0.6000000238418579, 0.800000011920929, 0, 1]);
    for (const dim of [0, -2, 3, 1.5, NaN]) expect(() => l2Normalize(Float32Array.from([3, 4, 0, 2]), dim)).toThrow(`l2Normalize: dim must be a positive integer that divides the 4 values, got ${dim}`);
  });
});
