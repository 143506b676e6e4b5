import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolvePipelineConfig } from '../../lib/data/loader.js';
import { MaskedAutoencoder } from '../../lib/mae/model.js';
import { openDataset } from '../../lib/train/data.js';
import { writeReconstructions } from '../../lib/train/visualize.js';

const dir = mkdtempSync(join(tmpdir(), 'mae-visualize-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tiny = { imgSize: 28, patchSize: 7, inChans: 1, embedDim: 16, depth: 1, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 };

describe('writeReconstructions', () => {
  it('draws count images from start, and refuses a start or count out of range before drawing', async () => {
    const model = new MaskedAutoencoder(tiny);
    const dataset = await openDataset({ kind: 'synthetic', count: 16 }, 'test');
    const pipeline = resolvePipelineConfig(dataset, { batchSize: 1, imageSize: 28, inChans: 1 });
    const path = join(dir, 'figure.png');
    // the dataset ends first: 2 images, not 8
    expect(await writeReconstructions(model, dataset, pipeline, path, { start: 14, count: 8 })).toBe(2);
    expect(existsSync(path)).toBe(true);
    expect(await writeReconstructions(model, dataset, pipeline, path, { start: 3, count: 5 })).toBe(5);
    const refused = join(dir, 'refused.png');
    const cases: [{ start?: number; count?: number; seed?: number }, string][] = [
      [{ count: 1.5 }, 'count must be an integer from 1 to 64, got the number 1.5'],
      [{ count: 0 }, 'count must be an integer from 1 to 64, got the number 0'],
      [{ count: 65 }, 'count must be an integer from 1 to 64, got the number 65'],
      [{ count: 100000 }, 'count must be an integer from 1 to 64, got the number 100000'],
      [{ start: -1 }, 'start must be a non-negative integer, got the number -1'],
      [{ start: 2.5 }, 'start must be a non-negative integer, got the number 2.5'],
      [{ start: 16 }, 'no images at index 16 of a dataset of 16'],
      [{ seed: -1 }, 'seed must be a non-negative integer, got the number -1'],
    ];
    for (const [opts, message] of cases) {
      await expect(writeReconstructions(model, dataset, pipeline, refused, opts), message).rejects.toThrow(`writeReconstructions: ${message}`);
      expect(existsSync(refused), message).toBe(false);
    }
    model.dispose();
  });
});
