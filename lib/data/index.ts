/**
 * The data pipeline: dataset readers (IDX / Fashion-MNIST, CIFAR-10 binary, image folders, prepared shards and their
 * preparation), image transforms on float32 CHW images (run natively on 8-bit pixels by the DataLoader), the Dataset
 * interface and the threaded, seeded DataLoader.
 */
export { DEFAULT_FASHION_MNIST_DIR, loadFashionMnist, parseIdx, readIdxImages, readIdxLabels, readMaybeGzip, resolveFashionMnistDir } from './idx.js';
export type { IdxArray, IdxImages, MnistSplit } from './idx.js';
export { CIFAR_IMAGE_BYTES, CIFAR_RECORD_BYTES, cifar10FileNames, loadCifar10, parseCifarBatch } from './cifar.js';
export type { CifarSplit } from './cifar.js';
export { IMAGE_EXTENSIONS, decodeImageBytes, decodeImageFile, reencodeJpeg, scanImageFolder } from './folder.js';
export { evalResizeLength, loadImages } from './images.js';
export type { LoadImagesOptions } from './images.js';
export type { DecodedImage, ImageFolderIndex, OnBadFile } from './folder.js';
export {
  BICUBIC_A, MAE_CROP, bicubicWeights, centerCrop, centerCropBox, horizontalFlip, normalize, randomHorizontalFlip, randomResizedCrop,
  randomResizedCropParams, resize, resizeShorterSide, resizedCrop, shorterSideSize, toChannels,
} from './transforms.js';
export type { CropBox, RandomResizedCropOptions } from './transforms.js';
export { ImageFolderDataset, InMemoryDataset, cifar10Dataset, datasetFromSpec, fashionMnistDataset, pixelsToImage } from './dataset.js';
export type { Dataset, DatasetSpec, FolderDatasetSpec, ImageFolderOptions, InMemoryDatasetOptions, MemoryDatasetSpec, PixelSample, Sample } from './dataset.js';
export { MAX_RECORD_BYTES, MAX_SHARD_SIDE, SHARD_FORMAT_VERSION, SHARD_INDEX_FILE, ShardDataset, readShardIndex, verifyShards } from './shards.js';
export type { ShardDatasetSpec, ShardIndex, ShardPixels, VerifyShardsEvent, VerifyShardsOptions, VerifyShardsResult } from './shards.js';
export { prepareShards } from './prepare.js';
export type { PrepareEvent, PrepareOptions, PrepareResult } from './prepare.js';
export { epochPermutation, maskGenerator, sampleGenerator, transformSample } from './pipeline.js';
export type { PipelineConfig } from './pipeline.js';
export { DataLoader, FASHION_MNIST_MEAN, FASHION_MNIST_STD, IMAGENET_MEAN, IMAGENET_STD, resolvePipelineConfig } from './loader.js';
export type { Batch, DataLoaderOptions } from './loader.js';
