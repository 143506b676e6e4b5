/**
 * The data pipeline: dataset readers (IDX / Fashion-MNIST, CIFAR-10 binary, image folders), image transforms on
 * float32 CHW images, the Dataset interface and the threaded, seeded DataLoader.
 */
export { DEFAULT_FASHION_MNIST_DIR, loadFashionMnist, parseIdx, readIdxImages, readIdxLabels, readMaybeGzip, resolveFashionMnistDir } from './idx.js';
export type { IdxArray, IdxImages, MnistSplit } from './idx.js';
export { CIFAR_IMAGE_BYTES, CIFAR_RECORD_BYTES, cifar10FileNames, loadCifar10, parseCifarBatch } from './cifar.js';
export type { CifarSplit } from './cifar.js';
export { IMAGE_EXTENSIONS, decodeImageFile, scanImageFolder } from './folder.js';
export { evalResizeLength, loadImages } from './images.js';
export type { LoadImagesOptions } from './images.js';
export type { DecodedImage, ImageFolderIndex, OnBadFile } from './folder.js';
export {
  BICUBIC_A, MAE_CROP, bicubicWeights, centerCrop, horizontalFlip, normalize, randomHorizontalFlip, randomResizedCrop,
  randomResizedCropParams, resize, resizeShorterSide, resizedCrop, toChannels,
} from './transforms.js';
export type { CropBox, RandomResizedCropOptions } from './transforms.js';
export { ImageFolderDataset, InMemoryDataset, cifar10Dataset, datasetFromSpec, fashionMnistDataset } from './dataset.js';
export type { Dataset, DatasetSpec, ImageFolderOptions, InMemoryDatasetOptions, Sample } from './dataset.js';
export { epochPermutation, maskGenerator, sampleGenerator, transformSample } from './pipeline.js';
export type { PipelineConfig } from './pipeline.js';
export { DataLoader, FASHION_MNIST_MEAN, FASHION_MNIST_STD, IMAGENET_MEAN, IMAGENET_STD, resolvePipelineConfig } from './loader.js';
export type { Batch, DataLoaderOptions } from './loader.js';
