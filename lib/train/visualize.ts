/**
 * Reconstruction figures like the paper's Figure 2: for a few fixed images, one row each of original, masked input
 * (removed patches grey), reconstruction, and reconstruction with the visible patches pasted back. Images are the
 * first `count` samples of the dataset without augmentation, masked with noise from a fixed seed, so figures from
 * different points of a run show the same images and masks.
 */
import type { Dataset } from '../data/index.js';
import { buildBatch, type PipelineConfig } from '../data/pipeline.js';
import { expectDataset, expectInstance, expectObject, expectString } from '../check.js';
import { MaskedAutoencoder } from '../mae/index.js';
import { Generator } from '../random.js';
import { Tensor, tidy } from '../tensor.js';
import { makeGrid, maeFigureRow, unnormalize, type ChwImage } from '../viz/grid.js';
import { writePng } from '../viz/png.js';

export interface VisualizeOptions {
  maskRatio?: number;
  /** seeds the masking noise */
  seed?: number;
  /** number of images (rows): 1 to 64 (default 8), fewer where the dataset ends first */
  count?: number;
  /** dataset index of the first image */
  start?: number;
  /** pixel upscaling of the figure (default: enough for about 112 px cells) */
  scale?: number;
}

/** The most images (rows) one figure takes. */
const MAX_COUNT = 64;

/** Writes the figure of `opts.count` images from `opts.start` to `path` (PNG); returns how many images it drew. */
export async function writeReconstructions(
  model: MaskedAutoencoder,
  dataset: Dataset,
  pipeline: PipelineConfig,
  path: string,
  opts: VisualizeOptions = {},
): Promise<number> {
  const where = 'writeReconstructions';
  expectInstance(where, 'model', model, MaskedAutoencoder, 'a MaskedAutoencoder');
  expectDataset(where, 'dataset', dataset);
  expectObject(where, 'pipeline', pipeline, false, "e.g. a DataLoader's config");
  expectString(where, 'path', path, 'a file path');
  expectObject(where, 'opts', opts);
  const c = model.config;
  const start = opts.start ?? 0;
  const wanted = opts.count ?? 8;
  if (!(Number.isInteger(start) && start >= 0)) throw new Error(`visualize: start must be a non-negative integer, got ${start}`);
  if (!(Number.isInteger(wanted) && wanted >= 1 && wanted <= MAX_COUNT)) throw new Error(`visualize: count must be an integer from 1 to ${MAX_COUNT}, got ${wanted}`);
  const seed = opts.seed ?? 0;
  if (!(Number.isSafeInteger(seed) && seed >= 0)) throw new Error(`visualize: seed must be a non-negative integer, got ${seed}`);
  const count = Math.min(wanted, dataset.length - start);
  if (count < 1) throw new Error(`visualize: no images at index ${start} of a dataset of ${dataset.length}`);
  const evalCfg: PipelineConfig = { ...pipeline, augment: false, imageSize: c.imgSize, inChans: c.inChans };
  const indices = Int32Array.from({ length: count }, (_, i) => start + i);
  const { images } = await buildBatch(dataset, evalCfg, { indices, epoch: 0, start: 0 });
  const noise = new Generator(seed).uniformArray(count * model.numPatches);
  const { recon, mask } = tidy(() => {
    const imgs = Tensor.fromArray(images, [count, c.inChans, c.imgSize, c.imgSize], { device: model.device });
    const r = model.reconstruct(imgs, { maskRatio: opts.maskRatio ?? 0.75, noise });
    return { recon: r.reconstruction.dataSync(), mask: r.mask.dataSync() };
  });
  const per = c.inChans * c.imgSize * c.imgSize;
  const L = model.numPatches;
  const view = (data: Float32Array): ChwImage => ({ data: unnormalize(data, evalCfg.mean, evalCfg.std), channels: c.inChans, height: c.imgSize, width: c.imgSize });
  const rows = Array.from({ length: count }, (_, b) =>
    maeFigureRow(view(images.subarray(b * per, (b + 1) * per)), view(recon.subarray(b * per, (b + 1) * per)), mask.subarray(b * L, (b + 1) * L), c.patchSize),
  );
  const scale = opts.scale ?? Math.max(1, Math.round(112 / c.imgSize));
  await writePng(path, makeGrid(rows, { scale, pad: 2 }));
  return count;
}
