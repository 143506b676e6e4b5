/**
 * Reconstruction figures like the paper's Figure 2: for a few fixed images, one row each of original, masked input
 * (removed patches grey), reconstruction, and reconstruction with the visible patches pasted back. Images are the
 * first `count` samples of the dataset without augmentation, masked with noise from a fixed seed, so figures from
 * different points of a run show the same images and masks.
 */
import type { Dataset } from '../data/index.js';
import { buildBatch, type PipelineConfig } from '../data/pipeline.js';
import { describeValue, expectDataset, expectFinite, expectInstance, expectInteger, expectKnownKeys, expectObject, expectString, optionNames } from '../check.js';
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
  expectKnownKeys(where, 'opts', opts, optionNames<VisualizeOptions>({ maskRatio: true, seed: true, count: true, start: true, scale: true }));
  const c = model.config;
  // an option left out or undefined takes its default; null is refused as any other value of the wrong type
  const start = opts.start === undefined ? 0 : opts.start;
  const wanted = opts.count === undefined ? 8 : opts.count;
  if (!(Number.isInteger(start) && start >= 0)) throw new Error(`${where}: start must be a non-negative integer, got ${describeValue(start)}`);
  if (!(Number.isInteger(wanted) && wanted >= 1 && wanted <= MAX_COUNT)) throw new Error(`${where}: count must be an integer from 1 to ${MAX_COUNT}, got ${describeValue(wanted)}`);
  const seed = opts.seed === undefined ? 0 : opts.seed;
  if (!(Number.isSafeInteger(seed) && seed >= 0)) throw new Error(`${where}: seed must be a non-negative integer, got ${describeValue(seed)}`);
  const maskRatio = opts.maskRatio === undefined ? 0.75 : opts.maskRatio;
  expectFinite(where, 'maskRatio', maskRatio, (x) => x >= 0 && x < 1, 'in [0, 1)');
  if (opts.scale !== undefined) expectInteger(where, 'scale', opts.scale, 1);
  const count = Math.min(wanted, dataset.length - start);
  if (count < 1) throw new Error(`${where}: no images at index ${start} of a dataset of ${dataset.length}`);
  const evalCfg: PipelineConfig = { ...pipeline, augment: false, imageSize: c.imgSize, inChans: c.inChans };
  const indices = Int32Array.from({ length: count }, (_, i) => start + i);
  const { images } = await buildBatch(dataset, evalCfg, { indices, epoch: 0, start: 0 });
  const noise = new Generator(seed).uniformArray(count * model.numPatches);
  const { recon, mask } = tidy(() => {
    const imgs = Tensor.fromArray(images, [count, c.inChans, c.imgSize, c.imgSize], { device: model.device });
    const r = model.reconstruct(imgs, { maskRatio, noise });
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
