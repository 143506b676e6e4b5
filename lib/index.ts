/**
 * masked-autoencoder: Masked Autoencoder (MAE) pre-training of Vision Transformers for Node.js.
 * The public API: tensors and autograd, the ops, the nn layers, the MAE model and presets, the optimizer and
 * schedules, data loading, safetensors, checkpoints, weights of other frameworks (loadWeights), the training loop
 * (also data parallel across processes on MPI), reconstruction figures, and inference off the JavaScript thread.
 */
export { Tensor, tidy, keep, liveTensors, hostReadCount, type DType, type TensorDType } from './tensor.js';
export { noGrad, type BackwardOptions, type GradNode } from './autograd.js';
export { Generator, manualSeed, defaultGenerator, type GeneratorState } from './random.js';
export * as ops from './ops/index.js';
export * as nn from './nn/index.js';
export { MaskedAutoencoder, checkPrecision, presets, getPreset, presetNames, randomMasking, get2dSincosPosEmbed, interpolatePosEmbed, deviceStepCheck, maeFlops } from './mae/index.js';
export type { MaeConfig, MaeClass, PresetName, ForwardOptions, ForwardResult, Reconstruction, ParamGroup, Masking, Precision, DeviceStepCheckOptions, DeviceStepCheckResult, PretrainedReport, FlopCount } from './mae/index.js';
export { AdamW, cosineLr, scaledLr, type AdamWOptions, type AdamWState } from './optim/index.js';
export * as data from './data/index.js';
export { readSafetensors, writeSafetensors, parseSafetensors, serializeSafetensors, type SafetensorsContents, type ReadSafetensorsOptions, type TensorsToWrite, type SafetensorsDtype, type StoredTensor, type RawTensor, type DeferredTensor, type TensorData } from './io/safetensors.js';
export { fromHuggingFace, toHuggingFace, toOfficialNames, detectNaming, type Naming, type Converted, type TensorMap, type NamedTensor } from './io/names.js';
export { loadSafetensors, saveSafetensors } from './io/state.js';
export { removeStaleTemps } from './io/atomic.js';
export { loadWeights, readWeights, type WeightsFile, type WeightsFormat, type WeightsOptions } from './io/weights.js';
export { pretrain, pretrainInWorker, maskNoise, type PretrainOptions, type PretrainResult, type TrainEvent, type KnnMonitorOptions } from './train/pretrain.js';
export { Communicator, GradReducer, launcher, mpiStatus, ncclStatus, checkSameSettings, datasetFingerprint, AgreedError } from './distributed/index.js';
export type { DistributedMode, DistributedOptions, Launcher, GradReducerOptions, ReduceStats } from './distributed/index.js';
export { saveCheckpoint, loadCheckpoint, loadModel, type CheckpointMeta, type TrainPosition, type LoadedCheckpoint } from './train/checkpoint.js';
export { openDataset, syntheticDataset, type DataSource, type DataKind } from './train/data.js';
export { writeReconstructions, type VisualizeOptions } from './train/visualize.js';
export { bench, formatBench, benchChart, matmulPeak, MatmulRate, paperSpeedup, BATCHES, STEP_BUDGET_S, type BenchOptions, type BenchResult, type BenchRow, type BenchEvent, type BenchEncoder, type BenchMachine } from './train/bench.js';
export { barChart, type BarPanel, type Rgb } from './viz/chart.js';
export { writePng, encodePng, type Image8 } from './viz/png.js';
export { info, setNumThreads, cpuModel, memoryStats, emptyCache, type Info, type MemoryStats } from './info.js';
export type { NativeInfo, NativeDnnlInfo, NativeCudaInfo, NativeCudaDevice, NativeLibraryInfo, NativeBinary, NativeTensor } from './native.js';
export { LARS, type LarsOptions } from './optim/lars.js';
export type { ParamGroupInput } from './optim/groups.js';
export { paramGroupsLrd, layerIdForVit, type LrdOptions } from './optim/lr_decay.js';
export { VisionTransformerClassifier, ProbeHead, BatchNormNoAffine, classifierConfigFrom, dropPath, type ClassifierConfig } from './classify/model.js';
export { saveClassifier, loadClassifier, classifierFromPretrain, type ClassifierMeta, type FromPretrainResult } from './classify/checkpoint.js';
export { linprobe, type LinprobeOptions, type LinprobeResult, type LinprobeEvent } from './train/linprobe.js';
export { finetune, type FinetuneOptions, type FinetuneResult, type FinetuneEvent } from './train/finetune.js';
export { evaluateClassifier, MetricAccumulator, topkAccuracy, confusionImage, writeConfusionPng, type ClassificationMetrics } from './train/evaluate.js';
export { extractFeatures, pixelFeatures, knnClassify, knnEvaluate, l2Normalize, type Features, type FeaturePool, type KnnOptions, type KnnResult } from './train/knn.js';
export { Mixup, mixupTarget, smoothOneHot, randBbox, cutmixBboxAndLam, randomErasing, sampleBeta, type MixupOptions, type MixResult, type RandomErasingOptions } from './train/mixup.js';
export { embedImages, classifyImages, type ImageRunOptions, type EmbedImagesOptions, type ClassifyImagesOptions, type SkippedImage } from './infer/commands.js';
