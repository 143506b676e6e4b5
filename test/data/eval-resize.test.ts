// The evaluation transform's resize, as the official util/datasets.py build_transform: crop_pct = 224 / 256 when
// input_size <= 224, else 1.0; the shorter side resized to int(input_size / crop_pct), then the central crop. Images of
// varying size (folders, shards) take that rule; fixed-size data (Fashion-MNIST, CIFAR) is only resized to the model's
// size; evalCropFraction sets the fraction for either.
import { describe, expect, it } from 'vitest';
import { resolvePipelineConfig, type Dataset } from '../../lib/data/index.js';

function dataset(height: number, width: number): Dataset {
  return { length: 1, numClasses: 0, channels: 3, height, width, get: () => Promise.reject(new Error('not read')) };
}

describe('the eval resize (evalResize) of the DataLoader', () => {
  it('images of varying size: int(size / 0.875) up to 224, the size itself above (crop_pct 1.0), as the official eval transform', () => {
    const resize = (imageSize: number) => resolvePipelineConfig(dataset(0, 0), { batchSize: 1, imageSize }).evalResize;
    // python: [int(s / (224 / 256)) if s <= 224 else s for s in (32, 112, 224, 256, 384, 448)]
    expect([32, 112, 224, 256, 384, 448].map(resize)).toEqual([36, 128, 256, 256, 384, 448]);
  });

  it('fixed-size data: no crop by default; evalCropFraction is taken as given at any size', () => {
    expect(resolvePipelineConfig(dataset(32, 32), { batchSize: 1, imageSize: 224 }).evalResize).toBe(224);
    expect(resolvePipelineConfig(dataset(0, 0), { batchSize: 1, imageSize: 448, evalCropFraction: 0.875 }).evalResize).toBe(512);
    expect(resolvePipelineConfig(dataset(32, 32), { batchSize: 1, imageSize: 224, evalCropFraction: 0.875 }).evalResize).toBe(256);
  });
});
