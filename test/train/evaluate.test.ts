// evaluateClassifier: its metrics over a whole dataset, and its stop between batches when its signal is aborted.
import { describe, expect, it } from 'vitest';
import { VisionTransformerClassifier } from '../../lib/classify/model.js';
import { openDataset } from '../../lib/train/data.js';
import { evaluateClassifier } from '../../lib/train/evaluate.js';

const config = { imgSize: 28, patchSize: 7, inChans: 1, embedDim: 32, depth: 1, numHeads: 2, mlpRatio: 4, eps: 1e-6, numClasses: 10, globalPool: true, dropPathRate: 0, headBatchNorm: false, headInitStd: 2e-5 };

describe('evaluateClassifier', () => {
  it('scores every sample, and stops at its next batch with the reason of an aborted signal', async () => {
    const model = new VisionTransformerClassifier(config, { seed: 1 });
    const data = await openDataset({ kind: 'synthetic', count: 40 }, 'test');
    const m = await evaluateClassifier(model, data, { batchSize: 16, workers: 0 });
    expect(m.n).toBe(40);
    expect(m.confusion.reduce((a, b) => a + b, 0)).toBe(40);
    const stop = new AbortController();
    stop.abort(new Error('enough'));
    await expect(evaluateClassifier(model, data, { batchSize: 16, workers: 0, signal: stop.signal })).rejects.toThrow('enough');
    await expect(evaluateClassifier(model, data, { signal: 'stop' as unknown as AbortSignal })).rejects.toThrow(/evaluateClassifier: signal must be an AbortSignal/);
    // the model is back in the mode it was in
    expect(model.training).toBe(true);
    model.dispose();
  });
});
