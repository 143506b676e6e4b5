#!/usr/bin/env node
/**
 * The `mae` command.
 *   mae pretrain [flags]     pre-train an MAE (no --data: a small MAE on Fashion-MNIST in a few minutes)
 *   mae visualize [flags]    write a Figure-2 style PNG of reconstructions from a checkpoint
 *   mae linprobe [flags]     linear probe of a pre-trained encoder (or logistic regression on raw pixels)
 *   mae finetune [flags]     fine-tune a pre-trained encoder, or train the same ViT from scratch
 *   mae eval [flags]         top-1 / top-5 and the confusion matrix of a classifier; kNN accuracy of an encoder
 *   mae embed [flags]        encoder features of a folder of images from any checkpoint (.pth, Hugging Face, ours)
 *   mae classify [flags]     top-5 labels of images from a fine-tuned checkpoint
 *   mae prepare-data [flags] convert an image folder into shards (reduced size, raw or JPEG) for fast loading
 *   mae verify-data [flags]  read every record of a shard folder and check it against its CRC-32
 *   mae bench [flags]        training-step speed of the MAE encoder vs the mask-token encoder (the paper's Table 2)
 *   mae info                 version, binary used (local build or prebuilt), BLAS, threads, CUDA devices and versions,
 *                            MPI, NCCL and the MPI launcher
 * `mae <command> --help` lists the flags. Under an MPI launcher (`mpirun -np N mae pretrain ...`) pretrain and
 * linprobe run data parallel; an error on any rank ends the whole job, naming the rank.
 */
import { existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { nearestName } from './check.js';
import { info } from './info.js';
import { amxUnusedReason, cpuBf16Tip, notNativeReason } from './mae/precision.js';
import { presetNames, type MaeConfig, type Precision } from './mae/index.js';
import { MAX_SHARD_SIDE, SHARD_INDEX_FILE, type OnBadFile, prepareShards, resolvePipelineConfig, verifyShards, type PrepareEvent, type PrepareOptions, type VerifyShardsEvent } from './data/index.js';
import { loadModel } from './train/checkpoint.js';
import { DATA_KINDS, DATA_PATHS, checkChannels, openDataset, type DataKind, type DataSource } from './train/data.js';
import { pretrain, type PretrainOptions, type TrainEvent } from './train/pretrain.js';
import { writeReconstructions } from './train/visualize.js';
import { linprobe, type LinprobeEvent, type LinprobeOptions } from './train/linprobe.js';
import { finetune, type FinetuneEvent, type FinetuneOptions } from './train/finetune.js';
import { checkClassCount, classifierFileMeta, evaluateClassifier, writeConfusionPng } from './train/evaluate.js';
import { FEATURE_POOLS, KNN_QUERY_EVERY, knnData, knnEvaluate } from './train/knn.js';
import { hasTestSplit } from './train/data.js';
import { loadClassifier } from './classify/checkpoint.js';
import { checkOutputFile, classifyImages, embedImages } from './infer/commands.js';
import { BATCHES, STEP_BUDGET_S, bench, benchChart, formatBench, type BenchEvent, type BenchOptions } from './train/bench.js';
import { writeFileAtomic } from './io/atomic.js';
import { writePng } from './viz/png.js';
import { activeCommunicator, type DistributedMode } from './distributed/comm.js';
import { packageRoot } from './native.js';

type Flags = NonNullable<ParseArgsConfig['options']>;

/** The built-in default run: a small MAE on 10,000 Fashion-MNIST images, a few minutes on 2 cores. */
export const DEFAULT_RUN: PretrainOptions = {
  preset: 'mae_vit_tiny_patch4_28',
  data: { kind: 'fashion-mnist', limit: 10000 },
  epochs: 4,
  batchSize: 64,
  blr: 1.5e-3,
  warmupEpochs: 1,
  outDir: 'runs/pretrain',
};

const modelFlags: Flags = {
  'img-size': { type: 'string' },
  'patch-size': { type: 'string' },
  'in-chans': { type: 'string' },
  'embed-dim': { type: 'string' },
  depth: { type: 'string' },
  'num-heads': { type: 'string' },
  'decoder-embed-dim': { type: 'string' },
  'decoder-depth': { type: 'string' },
  'decoder-num-heads': { type: 'string' },
  'mlp-ratio': { type: 'string' },
  'norm-pix-loss': { type: 'boolean' },
};

const dataFlags: Flags = {
  data: { type: 'string' },
  'data-kind': { type: 'string' },
  limit: { type: 'string' },
  'on-bad-file': { type: 'string' },
};

/** The schedule and run flags every training command takes. */
const runFlags: Flags = {
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  blr: { type: 'string' },
  lr: { type: 'string' },
  'min-lr': { type: 'string' },
  'warmup-epochs': { type: 'string' },
  'weight-decay': { type: 'string' },
  seed: { type: 'string' },
  threads: { type: 'string' },
  workers: { type: 'string' },
  out: { type: 'string' },
};

/** How a command runs across processes (pretrain, linprobe). */
const distFlags: Flags = {
  distributed: { type: 'string' },
  'mpi-lib': { type: 'string' },
  'dist-timeout': { type: 'string' },
};

const pretrainFlags: Flags = {
  preset: { type: 'string' },
  ...distFlags,
  'nccl-lib': { type: 'string' },
  'bucket-mb': { type: 'string' },
  ...modelFlags,
  ...dataFlags,
  ...runFlags,
  'accum-iter': { type: 'string' },
  'mask-ratio': { type: 'string' },
  'mask-token-encoder': { type: 'boolean' },
  resume: { type: 'boolean' },
  overwrite: { type: 'boolean' },
  'checkpoint-every': { type: 'string' },
  'log-every': { type: 'string' },
  'visualize-every': { type: 'string' },
  'max-steps': { type: 'string' },
  'knn-every': { type: 'string' },
  device: { type: 'string' },
  precision: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const visualizeFlags: Flags = {
  checkpoint: { type: 'string' },
  ...dataFlags,
  split: { type: 'string' },
  out: { type: 'string' },
  count: { type: 'string' },
  start: { type: 'string' },
  'mask-ratio': { type: 'string' },
  seed: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const linprobeFlags: Flags = {
  checkpoint: { type: 'string' },
  'raw-pixels': { type: 'boolean' },
  pool: { type: 'string' },
  ...dataFlags,
  ...runFlags,
  'blr-sweep': { type: 'string' },
  'val-size': { type: 'string' },
  'eval-every': { type: 'string' },
  'test-data': { type: 'string' },
  'test-data-kind': { type: 'string' },
  overwrite: { type: 'boolean' },
  ...distFlags,
  precision: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

/** The model flags of the encoder (a classifier has no decoder and no pixel loss). */
const encoderFlags: Flags = Object.fromEntries(Object.entries(modelFlags).filter(([f]) => !f.startsWith('decoder-') && f !== 'norm-pix-loss'));

const finetuneFlags: Flags = {
  checkpoint: { type: 'string' },
  'from-scratch': { type: 'boolean' },
  preset: { type: 'string' },
  ...encoderFlags,
  ...dataFlags,
  ...runFlags,
  'accum-iter': { type: 'string' },
  'layer-decay': { type: 'string' },
  'drop-path': { type: 'string' },
  smoothing: { type: 'string' },
  mixup: { type: 'string' },
  cutmix: { type: 'string' },
  'mixup-prob': { type: 'string' },
  'mixup-switch-prob': { type: 'string' },
  reprob: { type: 'string' },
  'crop-scale-min': { type: 'string' },
  'eval-every': { type: 'string' },
  'log-every': { type: 'string' },
  'test-data': { type: 'string' },
  'test-data-kind': { type: 'string' },
  overwrite: { type: 'boolean' },
  resume: { type: 'boolean' },
  'checkpoint-every': { type: 'string' },
  precision: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const evalFlags: Flags = {
  checkpoint: { type: 'string' },
  ...dataFlags,
  split: { type: 'string' },
  out: { type: 'string' },
  knn: { type: 'boolean' },
  k: { type: 'string' },
  temperature: { type: 'string' },
  'train-limit': { type: 'string' },
  threads: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

/** The flags of `mae embed` and `mae classify`. */
const imageRunFlags: Flags = {
  checkpoint: { type: 'string' },
  data: { type: 'string' },
  'batch-size': { type: 'string' },
  size: { type: 'string' },
  mean: { type: 'string' },
  std: { type: 'string' },
  'num-heads': { type: 'string' },
  threads: { type: 'string' },
  'on-bad-file': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};
const embedFlags: Flags = { ...imageRunFlags, out: { type: 'string' }, pool: { type: 'string' }, 'decoder-num-heads': { type: 'string' }, precision: { type: 'string' } };
const classifyFlags: Flags = { ...imageRunFlags, labels: { type: 'string' }, topk: { type: 'string' } };
const prepareFlags: Flags = {
  data: { type: 'string' },
  out: { type: 'string' },
  'short-side': { type: 'string' },
  format: { type: 'string' },
  quality: { type: 'string' },
  channels: { type: 'string' },
  'on-bad-file': { type: 'string' },
  'shard-size': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};
const verifyFlags: Flags = {
  data: { type: 'string' },
  decode: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};
const benchFlags: Flags = {
  preset: { type: 'string' },
  'decoder-depth': { type: 'string' },
  'batch-size': { type: 'string' },
  steps: { type: 'string' },
  device: { type: 'string' },
  precision: { type: 'string' },
  threads: { type: 'string' },
  json: { type: 'string' },
  png: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

/** Each command's flags, for naming a library option by its flag in an error. */
export const COMMAND_FLAGS: Record<string, Flags> = {
  pretrain: pretrainFlags,
  visualize: visualizeFlags,
  linprobe: linprobeFlags,
  finetune: finetuneFlags,
  eval: evalFlags,
  embed: embedFlags,
  classify: classifyFlags,
  'prepare-data': prepareFlags,
  'verify-data': verifyFlags,
  bench: benchFlags,
};

/**
 * The line `mae <cmd>` prints for an error: the command once (library errors start with it too), and a library option
 * at the start of a "must" message named by the command's flag for it: "pretrain: maskRatio must be ..." reads
 * "mae pretrain: --mask-ratio must be ...", "knn.every" reads "--knn-every". `given`, the flags on the command line:
 * only those are named (a value that came from a checkpoint or a default is left as the library wrote it). A rank of
 * a data-parallel job says which.
 */
export function errorLine(cmd: string, message: string, rank?: number, given?: ReadonlySet<string>): string {
  // the command once: a library error may start with it, or with the call it made (embed, classify, prepare-data,
  // visualize)
  let m = message.replace(/^((embed|forward)Async|embedImages|classifyImages|prepareShards|loadImages|setNumThreads|writeReconstructions): /, '');
  m = m.startsWith(`${cmd}: `) ? m.slice(cmd.length + 2) : m;
  // an option of the model (its config) or of kNN that a flag of this command sets: named by the flag, without the class
  const named = /^(?:(?:MaskedAutoencoder|VisionTransformerClassifier|classifierConfigFrom|knnEvaluate): (?:config\.)?)?([a-z][A-Za-z]*(?:\.[a-z][A-Za-z]*)?)((?:\[\d+\])? must .*)$/s.exec(m);
  if (named) {
    const flag = named[1]!.replace('.', '-').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    if (Object.hasOwn(COMMAND_FLAGS[cmd] ?? {}, flag) && (given === undefined || given.has(flag))) m = `--${flag}${named[2]}`;
  }
  // a full disk: every file is written whole or not at all, so what was written before is sound; say how to go on
  if (/\b(ENOSPC|EDQUOT)\b/.test(m)) {
    const then = cmd === 'pretrain' || cmd === 'finetune' ? `continue the run from its last checkpoint with mae ${cmd} --resume --out DIR` : cmd === 'prepare-data' ? 'run the same command to continue after the last finished shard' : 'run the command again';
    m += `; the disk is full (the files written before are whole): free some space, then ${then}`;
  }
  return `mae ${cmd}: ${rank === undefined ? '' : `[rank ${rank}] `}${m}`;
}

export const HELP = {
  pretrain: `mae pretrain [flags]
  With no --data or --data-kind, runs the built-in default: ${DEFAULT_RUN.preset} on ${DEFAULT_RUN.data!.limit} Fashion-MNIST
  images (Debian package dataset-fashion-mnist), ${DEFAULT_RUN.epochs} epochs, blr ${DEFAULT_RUN.blr} with ${DEFAULT_RUN.warmupEpochs} warm-up epoch, writing
  ${DEFAULT_RUN.outDir}/ (flags given override these); otherwise the defaults below apply.

  model:  --preset NAME (${presetNames().join(', ')})
          --img-size --patch-size --in-chans --embed-dim --depth --num-heads --decoder-embed-dim
          --decoder-depth --decoder-num-heads --mlp-ratio --norm-pix-loss
          --mask-token-encoder (the paper's "encoder w/ [M]" baseline: the encoder sees every patch, the removed
                                ones replaced by a learned encoder_mask_token; the decoder takes its outputs)
  data:   --data PATH  --data-kind ${DATA_KINDS.join('|')} (guessed from PATH)
          --limit N (the first N images; all, the built-in run ${DEFAULT_RUN.data!.limit})  --on-bad-file skip|stop (skip)
          --workers N (data-loading threads, default 1)
  recipe: --epochs (10; the built-in run ${DEFAULT_RUN.epochs}) --batch-size (${DEFAULT_RUN.batchSize}) --accum-iter (1) --blr (1.5e-4; the built-in run ${DEFAULT_RUN.blr})
          --lr (blr x effective batch / 256) --min-lr (0) --warmup-epochs (epochs / 20 rounded up, at most 40;
          the built-in run ${DEFAULT_RUN.warmupEpochs}) --weight-decay (0.05) --mask-ratio (0.75) --seed (0)
          --max-steps N (stop after N optimizer steps in all, the schedule kept; none)
  run:    --out DIR (runs/pretrain) --resume (the run in --out, with its own options and settings; flags given
          must agree with the run's, but for --threads --device --precision --workers --checkpoint-every
          --log-every --visualize-every --knn-every --bucket-mb: these may change, and another --threads, --device
          or --precision makes the result differ from the uninterrupted run's, which the resume line says)
          --overwrite (start again in an --out that holds a run: its checkpoint, log and figures are removed once
          the new run's data and model are checked; without it or --resume that is an error)
          --checkpoint-every STEPS (0: only at each epoch end) --log-every STEPS (10: a line of log.jsonl)
          --visualize-every EPOCHS (1: reconstructions/epoch-NNN.png; a run that stops between epoch ends with no
          figure yet writes reconstructions/step-NNNNNN.png)
          --threads N (OMP_NUM_THREADS, else one per core)
          --knn-every EPOCHS (0: none; kNN accuracy of the encoder's cls features: a bank of 10000 train images,
          2000 test queries; an image folder: every 5th image a query, the others the bank)
          Ctrl-C, SIGTERM or SIGUSR1 stops at the next step with a checkpoint, then exits with 130 (143 for SIGTERM,
          138 for SIGUSR1; under mpirun: kill -USR1 <mpirun's pid>, or Ctrl-C, which reaches the ranks as SIGTERM after
          --mca odls_base_sigkill_timeout seconds, 1 by default, and SIGKILL as long again later)
  device: --device cpu|cuda|cuda:N (cpu)  --precision fp32|bf16 (fp32; bf16: bfloat16 activations, fp32 master
          weights, optimizer and loss; on the CPU through oneDNN, see mae info)
  data parallel (mpirun -np N mae pretrain ..., srun --mpi=pmix mae pretrain ...): one run on N ranks;
          --batch-size is per rank, the lr follows batch x accum-iter x N; rank 0 writes the outputs;
          --device cuda gives each rank the GPU of its local rank (NCCL)
          --distributed auto|mpi|none (auto: mpi under an MPI launcher)  --mpi-lib PATH (Open MPI's libmpi.so.40
          or its folder; default $MAE_MPI_LIB, then the library path)  --nccl-lib PATH (libnccl.so.2 or its
          folder; default $MAE_NCCL_LIB)  --dist-timeout SECONDS (600: a collective that takes longer ends the job)
          --bucket-mb MIB (25: gradients per all-reduce bucket; buckets start as backward finishes them)`,
  visualize: `mae visualize --checkpoint PATH [flags]
  Writes rows of original | masked | reconstruction | reconstruction + visible patches.
  --data PATH --data-kind KIND (default: the checkpoint's data)  --limit N  --on-bad-file skip|stop (an image
  folder's undecodable files; skip)  --split train|test (test; not for an image folder or shards: drawn from as a whole)
  --out FILE (reconstructions.png next to the checkpoint)  --count N (8, at most 64)  --start INDEX (0)
  --mask-ratio R (0.75)  --seed S (0)`,
  linprobe: `mae linprobe --checkpoint PATH [flags]   (or --raw-pixels: logistic regression on pixels)
  Frozen encoder; features = cls token of the final-normed encoder output, computed once (no augmentation);
  head = BatchNorm (no affine) + Linear, LARS, lr = blr * batch / 256, warm-up then cosine.
  --data PATH --data-kind KIND (default: the checkpoint's data, all of it, else Fashion-MNIST)  --limit N (the
  first N training images, of --data or of the default)  --on-bad-file skip|stop (an image folder's; skip)
  --test-data PATH --test-data-kind KIND (guessed from PATH): the data scored (default: the test split of the
  training data; required for an image folder or shards, which have none)
  --epochs (90) --batch-size (256) --blr (0.1) --lr (blr x batch / 256) --min-lr (0) --warmup-epochs (10, at most
  a ninth of --epochs) --weight-decay (0)
  --blr-sweep B1,B2,... (choose the base lr on --val-size held-out training samples, default a sixth; then
                         train on all training samples with the best one)
  --seed (0) --eval-every EPOCHS (0: only at the end) --out DIR (runs/linprobe; with --raw-pixels
  runs/linprobe-pixels) --threads N (OMP_NUM_THREADS, else one per core) --workers N (1)
  --overwrite (start again in an --out that holds a run, any of checkpoint.safetensors, classifier.safetensors,
  results.json, log.jsonl, head.safetensors: its files are removed once the new probe's data, checkpoint and
  features are ready; without it that is an error)
  Ctrl-C or SIGTERM stops after the current batch of the feature pass or epoch of the head (under mpirun the feature
  pass runs to its end) and exits with 130 (143 for SIGTERM): no head, classifier or results.json is written, the
  log holds the epochs done
  --pool cls|avg|cls+avg (cls, the official probe; the others are variants on the normed patch tokens)
  --precision fp32|bf16 (fp32; the encoder's feature pass in bfloat16 activations, the head in fp32)
  --distributed auto|mpi|none --mpi-lib PATH --dist-timeout SECONDS: under mpirun the ranks split the feature
  extraction (see mae pretrain --help)`,
  finetune: `mae finetune --checkpoint PATH [--from-scratch] [flags]
  Fine-tunes the encoder with global pooling + fc_norm + head; --from-scratch trains the same architecture
  (the checkpoint's, or without --checkpoint --preset / model flags, which a checkpoint does not take) from random
  initialisation with the same recipe.
  model (--from-scratch without --checkpoint): --preset NAME, or the encoder's flags: --img-size --patch-size
  --in-chans --embed-dim --depth --num-heads --mlp-ratio
  --data PATH --data-kind KIND (default: the checkpoint's data, all of it, else Fashion-MNIST)  --limit N (the
  first N training images, of --data or of the default)  --on-bad-file skip|stop (an image folder's; skip)
  --test-data PATH --test-data-kind KIND (guessed from PATH): the data scored (default: the test split of the
  training data; required for an image folder or shards, which have none)
  --epochs (100) --batch-size (64) --accum-iter (1) --blr (1e-3) --lr (blr x batch x accum-iter / 256) --min-lr (1e-6)
  --warmup-epochs (5, at most a tenth of --epochs)
  --weight-decay (0.05) --layer-decay (0.75) --drop-path (0.1) --smoothing (0.1) --mixup (0.8) --cutmix (1.0)
  --mixup-prob (1) --mixup-switch-prob (0.5) --reprob (0.25) --crop-scale-min (0.08)
  (training transform: RandomResizedCrop + flip; the official recipe's RandAugment rand-m9-mstd0.5-inc1 is not
  implemented, nor gradient clipping)
  --seed (0) --eval-every EPOCHS (0: only at the end) --log-every STEPS (20) --out DIR (runs/finetune; with
  --from-scratch runs/scratch) --threads N (OMP_NUM_THREADS, else one per core) --workers N (1)
  --overwrite (start again in an --out that holds a run, any of checkpoint.safetensors, classifier.safetensors,
  results.json, log.jsonl, head.safetensors: its files are removed once the new run's data, checkpoint and options
  are checked; without it or --resume that is an error)
  --resume (continue the unfinished run in --out from its checkpoint.safetensors, with its own options and settings;
  flags given must agree with the run's, but for --threads --workers --eval-every --log-every --checkpoint-every:
  these may change, and another --threads makes the result differ from the uninterrupted run's, which the resume
  line says) --checkpoint-every STEPS (0: only at each epoch end)
  The training checkpoint, --out's checkpoint.safetensors (weights, optimizer state, position, generators), is written
  at each epoch end, every --checkpoint-every steps and on a stop, and removed once classifier.safetensors and
  results.json are written.
  Ctrl-C or SIGTERM stops after the current step and exits with 130 (143 for SIGTERM), writing the checkpoint: no
  classifier or results.json is written, the log holds the steps taken; --resume --out DIR continues the run
  --precision fp32|bf16 (fp32; bf16 trains with bfloat16 activations, fp32 master weights; evaluation in fp32)`,
  eval: `mae eval --checkpoint PATH [flags]
  A classifier (from finetune or linprobe): top-1 / top-5 on a split and the confusion matrix as a PNG.
  --knn with a pre-training checkpoint (or a linear probe's classifier): weighted kNN accuracy of the encoder's cls
  features (cosine similarity, --k (20), --temperature (0.07)): the test split's images (--limit N) as queries
  against the train split's as the bank (--train-limit N); data without a test split (an image folder, shards):
  every 5th image a query, the others the bank.
  --data PATH --data-kind KIND (default: the data the checkpoint records; needed when it records none) --limit N
  --on-bad-file skip|stop (an image folder's; skip)  --threads N
  --split train|test (test; not for an image folder or shards: scored as a whole, give the evaluation folder as
  --data) --out FILE (confusion-<split>.png, or confusion-<folder name>.png, next to the checkpoint)`,
  embed: `mae embed --checkpoint FILE --data FOLDER [--out features.safetensors] [flags]
  Encoder features of every image in FOLDER (class sub-folders or flat; or one image file), written to --out:
  features [N, D], labels [N] (class sub-folders), and the file names, classes, pool and size as metadata.
  --checkpoint: an official .pth (mae_pretrain_vit_*.pth, checkpoint-N.pth), a Hugging Face folder or .bin /
  .safetensors file, or a run folder / checkpoint of mae pretrain. Images through the official evaluation
  transform: shorter side to int(size / 0.875) (size <= 224; else to size) bicubic, center crop, normalise.
  --pool cls|mean (cls: the cls token; mean: the mean of the patch tokens)  --batch-size N (32)
  --size PX (the model's image size; others interpolate the position table)  --mean R,G,B --std R,G,B (ImageNet)
  --num-heads N --decoder-num-heads N (when the checkpoint cannot tell: widths of no official model)  --threads N
  --precision fp32|bf16 (fp32; bf16 runs the encoder in bfloat16 activations, the features are written as float32)
  --on-bad-file skip|stop (skip: an image that cannot be read is left out, the rows and the metadata's files are
  the images read, and the ones left out are listed at the end; stop: end the run naming it)`,
  classify: `mae classify --checkpoint FILE --data FOLDER|IMAGE [--labels FILE] [flags]
  Prints the top-5 classes of each image with their probabilities, from a fine-tuned checkpoint (official
  mae_finetuned_vit_*.pth, checkpoint-N.pth of main_finetune.py, or a classifier of mae finetune / linprobe).
  Class names: --labels FILE (one per line, in class order, none blank), else FOLDER's class sub-folders when there are as
  many as the model's classes, else class indices. With class sub-folders, top-1 / top-k accuracy is printed too when
  each folder's class is known: with --labels, the class whose name is the folder's name; without (or when no
  folder is named as a class: synset folders), the folders in sorted order as the model's classes (when there are as
  many); else a line says why there is no accuracy.
  --topk K (5) --batch-size N (32) --size PX --mean R,G,B --std R,G,B --num-heads N --threads N
  --on-bad-file skip|stop (skip: an image that cannot be read is left out of the results and the accuracy, and
  listed at the end; stop: end the run naming it)`,
  'prepare-data': `mae prepare-data --data FOLDER --out DIR [flags]
  Converts an image folder (class sub-folders, as --data-kind folder) into a few large shard files plus an index
  (DIR/${SHARD_INDEX_FILE}); train from it with --data DIR (--data-kind shards, guessed from the index).
  --short-side N (256)     shrink each image so its shorter side is N (smaller ones are kept); 0 keeps every size
  --format raw|jpeg (raw)  raw: uint8 pixels (fastest to read, larger); jpeg: re-encoded (smaller, decoded when read)
  --quality Q (90)         JPEG quality
  --channels 1|3 (3)       3: RGB; 1: greyscale, for a model of one input channel (--in-chans 1, the 28-px preset)
  --on-bad-file skip|stop (skip)  skip: report the file and leave it out; stop: end the run naming it
  --shard-size MIB (1024)  close a shard once it holds this many MiB
  Resumable: after Ctrl-C, a crash or a stop, run the same command again to continue after the last finished shard.`,
  'verify-data': `mae verify-data --data DIR [--decode]
  Reads every record of the shard folder DIR (from mae prepare-data) and checks it against the CRC-32 in its index,
  listing the first 20 damaged records by sample and source file (and counting the rest). Training finds the same
  damage only when it first reads the record; this finds it before a long run. Exit status 0: every record matched; 1: some did not (or the index is bad).
  --decode   also decode every JPEG record (--format jpeg shards) and check its size against the index
  Shards prepared before the index had checksums (version 1) can only be read and, with --decode, decoded.`,
  bench: `mae bench [flags]
  Times full training steps (forward, backward, AdamW; synthetic images, mask ratio 0.75) of the MAE encoder
  (visible patches only) and of the mask-token encoder (the paper's "encoder w/ [M]") for each decoder depth, and
  prints step time, img/s, the speed-up and training-FLOP ratio over the mask-token encoder with the deepest
  decoder (Table 2's baseline), MFU against the matrix-product peak measured in the same run, and the paper's figure.
  --preset NAME (mae_vit_large_patch16 on CUDA, mae_vit_base_patch16 on the CPU)
                (${presetNames().join(', ')})
  --decoder-depth D1,D2,... (8,1)
  --batch-size N (default: the largest of ${BATCHES.cpu[0]}, ${BATCHES.cpu[1]}, ... ${BATCHES.cpu[BATCHES.cpu.length - 1]} on the CPU, ${BATCHES.cuda[0]}, ${BATCHES.cuda[1]}, ... ${BATCHES.cuda[BATCHES.cuda.length - 1]} on CUDA whose
                  baseline step fits in memory and takes at most ${STEP_BUDGET_S.cpu} s (CPU) or ${STEP_BUDGET_S.cuda} s (CUDA); a batch that
                  does not fit in memory is said and halved)
  --steps N (timed steps per configuration, median reported; 5 on the CPU, 20 on CUDA; after 1 / 3 warm-up steps)
  --device cpu|cuda|cuda:N (cuda when a usable GPU is there, else cpu)  --precision fp32|bf16 (fp32)
  --threads N (CPU threads)  --json FILE (the table as JSON)  --png FILE (bar chart of img/s and speed-up)`,
  info: 'mae info: version, Node, the binary used (local build or prebuilt) and its path, BLAS, threads, CUDA (devices, driver, runtime, cuBLASLt), precisions, oneDNN (the ISA its bf16 products run, native bf16 or not), MPI and NCCL (found or why not), the MPI launcher',
} satisfies Record<string, string>;

/** What each command does, in a line: `mae --help` lists them. */
const SUMMARY: Record<keyof typeof HELP, string> = {
  pretrain: 'pre-train an MAE (with no data flags: the 28-px model on Fashion-MNIST)',
  visualize: 'original | masked | reconstruction figures from a pre-training checkpoint',
  linprobe: "train a linear classifier on a frozen pre-trained encoder's features",
  finetune: 'fine-tune a pre-trained encoder as a classifier (or train one from scratch)',
  eval: "a classifier's top-1 / top-5 and confusion matrix; --knn: an encoder's kNN accuracy",
  embed: "a folder of images through an encoder: its features, to a .safetensors file",
  classify: "the top-5 classes of images, from a fine-tuned classifier",
  'prepare-data': 'an image folder as a few large shard files, for fast loading',
  'verify-data': 'check every record of a shard folder against its CRC-32',
  bench: "time training steps: the MAE encoder against the mask-token encoder (the paper's 3x)",
  info: 'this installation: native addon, BLAS, oneDNN, CUDA, MPI',
};


function num(v: unknown, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  // decimal only: Number() also reads '0x10' and '0b11'
  if (typeof v !== 'string' || !/^\s*[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\s*$/i.test(v) || !Number.isFinite(n)) throw new UsageError(`--${flag} must be a number, got '${String(v)}'`);
  return n;
}

class UsageError extends Error {}

/** The values of a command's flags. No flag takes an empty value: '' names no file (resolve('') is the current folder). */
function flagValues(argv: string[], options: Flags) {
  // `--seed -1`: a negative number after a flag that takes a value is its value (parseArgs reads it as a flag)
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const flag = /^--([a-z0-9-]+)$/.exec(argv[i]!)?.[1];
    const next = argv[i + 1];
    if (flag !== undefined && options[flag]?.type === 'string' && next !== undefined && /^-(\d|\.\d|Infinity$)/.test(next)) {
      args.push(`--${flag}=${next}`);
      i++;
    } else args.push(argv[i]!);
  }
  let values;
  try {
    ({ values } = parseArgs({ args, options, allowPositionals: false }));
  } catch (e) {
    // an unknown flag: the one it most likely misspells
    const unknown = (e as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'--([^'=]+)'/.exec((e as Error).message)?.[1] : undefined;
    if (unknown === undefined) throw e;
    const near = nearestName(unknown, Object.keys(options));
    throw new UsageError(`unknown flag --${unknown}${near ? ` (did you mean --${near}?)` : ''}; --help lists the flags`);
  }
  const empty = Object.keys(values).find((flag) => values[flag] === '');
  if (empty !== undefined) throw new UsageError(`--${empty} is empty`);
  return values;
}

/** --precision fp32|bf16 (undefined when absent) */
function precisionFlag(v: Record<string, unknown>): Precision | undefined {
  const p = v.precision;
  if (p === undefined) return undefined;
  if (p !== 'fp32' && p !== 'bf16') throw new UsageError(`--precision must be fp32 or bf16, got '${String(p)}'`);
  return p;
}

/** --limit N (or another count of images): a positive integer (undefined when absent) */
function limitFlag(v: Record<string, unknown>, flag = 'limit'): number | undefined {
  const limit = num(v[flag], flag);
  if (limit !== undefined && !(Number.isSafeInteger(limit) && limit > 0)) throw new UsageError(`--${flag} must be a positive integer, got ${limit}`);
  return limit;
}

/** Guesses the kind of the data at `path`. */
export function guessDataKind(path: string): DataKind {
  if (!existsSync(path)) throw new UsageError(`--data ${path}: no such file or folder`);
  if (!statSync(path).isDirectory()) throw new UsageError(`--data ${path}: expected a folder`);
  const names = new Set(readdirSync(path));
  if (names.has(SHARD_INDEX_FILE)) return 'shards';
  if (names.has('train-images-idx3-ubyte.gz') || names.has('train-images-idx3-ubyte')) return 'mnist';
  if (names.has('data_batch_1.bin') || names.has('cifar-10-batches-bin')) return 'cifar10';
  return 'folder';
}

/**
 * The data flags: --data / --data-kind name the data; without them, `fallback` (the command's default data, or the
 * checkpoint's), which --limit and --on-bad-file then apply to. undefined when neither names any data.
 */
function dataSource(v: Record<string, unknown>, fallback?: DataSource): DataSource | undefined {
  let src: DataSource | undefined;
  if (v.data !== undefined || v['data-kind'] !== undefined) {
    const kind = (v['data-kind'] as string | undefined) ?? guessDataKind(v.data as string);
    if (!DATA_KINDS.includes(kind as DataKind)) throw new UsageError(`--data-kind must be one of ${DATA_KINDS.join(', ')}, got '${kind}'`);
    src = { kind: kind as DataKind };
    if (v.data !== undefined && kind === 'synthetic') throw new UsageError(`--data is not read with --data-kind synthetic (made in memory): leave one of them out`);
    if (v.data === undefined && Object.hasOwn(DATA_PATHS, kind)) throw new UsageError(`--data-kind ${kind} needs --data PATH, ${DATA_PATHS[kind as DataKind]}`);
    if (v.data !== undefined) src.path = resolve(v.data as string);
  } else if (fallback) {
    src = { ...fallback };
  }
  const limit = limitFlag(v);
  const bad = v['on-bad-file'];
  if (!src) {
    if (bad !== undefined) throw new UsageError('--on-bad-file needs --data (it applies to the files of an image folder)');
    if (limit !== undefined) throw new UsageError('--limit needs --data or --data-kind: this command has no default data to cut');
    return undefined;
  }
  if (limit !== undefined) src.limit = limit;
  if (bad !== undefined) {
    if (bad !== 'skip' && bad !== 'stop') throw new UsageError(`--on-bad-file must be skip or stop, got '${String(bad)}'`);
    if (src.kind !== 'folder') throw new UsageError(`--on-bad-file applies to image folders (--data-kind folder), not to ${src.kind} data`);
    src.onBadFile = bad;
  }
  return src;
}

/** linprobe's and finetune's data flags: --data / --data-kind, or --limit alone for their default data */
function dataOrLimit(v: Record<string, unknown>, o: { data?: DataSource; limit?: number }): void {
  if (v.data === undefined && v['data-kind'] === undefined && v['on-bad-file'] === undefined) {
    const limit = limitFlag(v);
    if (limit !== undefined) o.limit = limit;
    return;
  }
  o.data = dataSource(v);
}

function modelConfig(v: Record<string, unknown>): Partial<MaeConfig> {
  const map: [string, keyof MaeConfig][] = [
    ['img-size', 'imgSize'],
    ['patch-size', 'patchSize'],
    ['in-chans', 'inChans'],
    ['embed-dim', 'embedDim'],
    ['depth', 'depth'],
    ['num-heads', 'numHeads'],
    ['decoder-embed-dim', 'decoderEmbedDim'],
    ['decoder-depth', 'decoderDepth'],
    ['decoder-num-heads', 'decoderNumHeads'],
    ['mlp-ratio', 'mlpRatio'],
  ];
  const c: Partial<MaeConfig> = {};
  for (const [flag, key] of map) {
    const n = num(v[flag], flag);
    if (n !== undefined) (c as Record<string, number>)[key] = n;
  }
  if (v['norm-pix-loss']) c.normPixLoss = true;
  return c;
}

/** --distributed, --mpi-lib, --dist-timeout */
function distOptions(v: Record<string, unknown>): { distributed?: DistributedMode; mpiLibrary?: string; distTimeout?: number } {
  const o: { distributed?: DistributedMode; mpiLibrary?: string; distTimeout?: number } = {};
  if (v.distributed !== undefined) {
    if (!['auto', 'mpi', 'none'].includes(v.distributed as string)) throw new UsageError(`--distributed must be auto, mpi or none, got '${String(v.distributed)}'`);
    o.distributed = v.distributed as DistributedMode;
  }
  if (v['mpi-lib'] !== undefined) o.mpiLibrary = v['mpi-lib'] as string;
  const timeout = num(v['dist-timeout'], 'dist-timeout');
  if (timeout !== undefined) {
    if (!(timeout > 0)) throw new UsageError(`--dist-timeout must be a positive number of seconds, got ${timeout}`);
    o.distTimeout = timeout;
  }
  return o;
}

export function pretrainOptions(argv: string[]): PretrainOptions {
  const v = flagValues(argv, pretrainFlags);
  const given = v.data !== undefined || v['data-kind'] !== undefined;
  if (v.resume && !given && v['on-bad-file'] !== undefined)
    throw new UsageError("--on-bad-file with --resume needs --data: a resumed run takes its data, what to do with bad files included, from its checkpoint");
  const data = dataSource(v, DEFAULT_RUN.data)!;
  // a resumed run takes its options from its checkpoint: only the flags given are passed (and must agree with it);
  // --limit alone is checked against the limit of the run's data
  const limit = limitFlag(v);
  const base: PretrainOptions = v.resume ? { outDir: DEFAULT_RUN.outDir, ...(given ? { data } : limit !== undefined ? { limit } : {}) } : given ? { data } : { ...DEFAULT_RUN, data };
  const o: PretrainOptions = { ...base };
  if (v.preset !== undefined) o.preset = v.preset as string;
  const config = modelConfig(v);
  if (v['mask-token-encoder']) config.maskTokenEncoder = true;
  if (Object.keys(config).length) o.config = config;
  const numeric: [string, keyof PretrainOptions][] = [
    ['epochs', 'epochs'],
    ['batch-size', 'batchSize'],
    ['accum-iter', 'accumIter'],
    ['blr', 'blr'],
    ['lr', 'lr'],
    ['min-lr', 'minLr'],
    ['warmup-epochs', 'warmupEpochs'],
    ['weight-decay', 'weightDecay'],
    ['mask-ratio', 'maskRatio'],
    ['seed', 'seed'],
    ['threads', 'threads'],
    ['workers', 'workers'],
    ['checkpoint-every', 'checkpointEvery'],
    ['log-every', 'logEvery'],
    ['visualize-every', 'visualizeEvery'],
    ['max-steps', 'maxSteps'],
    ['bucket-mb', 'bucketMb'],
  ];
  for (const [flag, key] of numeric) {
    const n = num(v[flag], flag);
    if (n !== undefined) (o as Record<string, unknown>)[key] = n;
  }
  if (v.out !== undefined) o.outDir = v.out as string;
  if (v.resume) o.resume = true;
  if (v.overwrite) o.overwrite = true;
  if (v.device !== undefined) o.device = v.device as string;
  if (v.precision !== undefined) o.precision = precisionFlag(v);
  const knnEvery = num(v['knn-every'], 'knn-every');
  if (knnEvery !== undefined) o.knn = { every: knnEvery };
  Object.assign(o, distOptions(v));
  if (v['nccl-lib'] !== undefined) o.ncclLibrary = v['nccl-lib'] as string;
  return o;
}

/** cpuBf16Tip, indented under a training run's first line, where it runs in fp32 on the CPU. */
function printBf16Tip(device: string, precision: Precision | undefined): void {
  const tip = device === 'cpu' && (precision ?? 'fp32') === 'fp32' ? cpuBf16Tip() : undefined;
  if (tip) console.log(`  ${tip}`);
}

function formatTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
}

/** A progress bar 24 characters wide, filled to done / total: "[=====      ]". */
function bar(done: number, total: number): string {
  const filled = Math.round((done / total) * 24);
  return `[${'='.repeat(filled)}${' '.repeat(24 - filled)}]`;
}

/**
 * Shows progress lines: on a terminal one line redrawn in place on stderr, elsewhere through `print` a line every 5 s
 * and the last one.
 */
function progressOutput(print: (line: string) => void = console.log): (line: string, last: boolean) => void {
  const tty = process.stderr.isTTY;
  let lastLine = 0;
  return (line, last) => {
    if (tty) process.stderr.write(`\r${line}\x1b[K`);
    else if (last || Date.now() - lastLine > 5000) {
      print(line);
      lastLine = Date.now();
    }
  };
}

/**
 * A progress bar on a terminal, a line every few seconds elsewhere. In a data-parallel run rank 0 prints the progress
 * and every rank its warnings, marked with its rank.
 */
function progressPrinter(): (e: TrainEvent) => void {
  const tty = process.stderr.isTTY;
  const show = progressOutput();
  let rank = 0;
  let tag = '';
  return (e) => {
    if (e.type === 'start') {
      rank = e.rank;
      tag = e.worldSize > 1 ? `[rank ${e.rank}] ` : '';
    }
    if (rank !== 0 && e.type !== 'warning') return;
    switch (e.type) {
      case 'start':
        console.log(
          `pre-training ${e.parameters.toLocaleString('en-US')} parameters${e.config.maskTokenEncoder ? ' (mask-token encoder)' : ''} in ${e.precision} on ${e.datasetSize} images: ${e.totalSteps} steps of ${e.effectiveBatch} images (${(e.trainingFlopsPerImage / 1e9).toPrecision(3)} GFLOP per image), lr ${e.lr.toExponential(2)}, data ${e.dataMode}` +
            (e.worldSize > 1 ? `, ${e.worldSize} ranks of ${e.effectiveBatch / e.worldSize} images (rank 0 on ${e.device})` : '') +
            (e.resumedFrom ? ` (resumed at step ${e.resumedFrom.step}${e.resumeNote ? `; ${e.resumeNote}` : ''})` : ''),
        );
        printBf16Tip(e.device, e.precision);
        break;
      case 'step': {
        const percent = ((e.step / e.totalSteps) * 100).toFixed(0).padStart(3);
        show(`epoch ${e.epoch.toFixed(2)} ${bar(e.step, e.totalSteps)} ${percent}% step ${e.step}/${e.totalSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ${e.imgPerSec.toFixed(0)} img/s ETA ${formatTime(e.etaSeconds)}`, e.step === e.totalSteps);
        break;
      }
      case 'epoch':
        if (tty) process.stderr.write('\n');
        // the event's epoch is the index of the epoch done (from 0): said as the epochs done, as finetune does and the
        // figure (epoch-001.png), the log and the kNN line count them
        console.log(`epoch ${e.epoch + 1} done: mean loss ${e.loss.toFixed(4)}, ${e.seconds.toFixed(1)} s, waited ${(e.stallMs / 1000).toFixed(2)} s for data`);
        break;
      case 'checkpoint':
        break;
      case 'visualize':
        console.log(`reconstructions: ${e.path}`);
        break;
      case 'knn':
        console.log(`kNN monitor after epoch ${e.epoch}: top-1 ${(100 * e.top1).toFixed(2)}%, top-5 ${(100 * e.top5).toFixed(2)}% (${e.seconds.toFixed(1)} s)`);
        break;
      case 'warning':
        if (tty) process.stderr.write('\n');
        console.warn(`${tag}warning: ${e.message}`);
        break;
      case 'end':
        if (tty) process.stderr.write('\n');
        // a run resumed at its end takes no step: there is no loss of this run to show
        console.log(`${e.stopped ? 'stopped' : 'finished'} after ${e.steps} steps in ${formatTime(e.seconds)}${Number.isNaN(e.loss) ? ', no step left to take' : `, last loss ${e.loss.toFixed(4)}`}`);
        break;
    }
  };
}

/**
 * Runs `job` with SIGINT and SIGTERM (and SIGUSR1, which mpirun passes on to every rank of a data-parallel job)
 * asking it to stop through its signal. Once a stop is asked, by any of the three, a
 * SIGINT or SIGTERM quits at once and a SIGUSR1 is ignored, also after the job (without a listener it would end the
 * process, or start Node's inspector, mid-checkpoint).
 * Returns the exit status: 0, or 128 + the number of the signal that stopped the job.
 */
async function stoppable<T>(what: string, job: (signal: AbortSignal) => Promise<T>, stopped: (r: T) => boolean): Promise<{ r: T; code: number }> {
  const abort = new AbortController();
  let code = 0;
  let first: NodeJS.Signals | undefined;
  const label = (name: NodeJS.Signals) => (name === 'SIGINT' ? 'Ctrl-C' : name);
  const handlers = (['SIGINT', 'SIGTERM', 'SIGUSR1'] as const).map((name) => {
    const h = () => {
      if (first !== undefined) {
        if (name === 'SIGUSR1') return;
        const again = `${label(name)} ${name === first ? 'again' : `after ${label(first)}`}`;
        code = 128 + osConstants.signals[name];
        // a rank of a data-parallel job ends every rank: exiting alone, its MPI_Finalize would meet the others
        // mid-step and the job end with another rank's error about it
        const comm = activeCommunicator();
        if (comm && comm.size > 1) {
          console.error(`\nmae: [rank ${comm.rank}] ${again}: quitting at once, which ends every rank`);
          comm.abort(code);
        }
        process.exit(code);
      }
      first = name;
      console.log(`\n${name === 'SIGINT' ? 'interrupted' : name}: ${what}${name === 'SIGUSR1' ? '' : ` (${label(name)} again to quit at once)`}`);
      code = 128 + osConstants.signals[name];
      abort.abort();
    };
    process.on(name, h);
    return [name, h] as const;
  });
  try {
    const r = await job(abort.signal);
    return { r, code: stopped(r) ? code : 0 };
  } finally {
    for (const [name, h] of handlers) process.off(name, h);
    // a later SIGUSR1 (mpirun passes on each one) is ignored while the process ends, not its end by the signal
    if (abort.signal.aborted) process.on('SIGUSR1', () => {});
  }
}

async function cmdPretrain(argv: string[]): Promise<number> {
  const o = pretrainOptions(argv);
  const { r, code } = await stoppable('finishing the current step and writing a checkpoint', (signal) => pretrain({ ...o, signal, onEvent: progressPrinter() }), (r) => r.stopped);
  if (r.rank !== 0) return code;
  console.log(`checkpoint: ${r.checkpoint}`);
  console.log(`log: ${join(r.outDir, 'log.jsonl')}`);
  if (r.reconstructions.length) console.log(`reconstructions: ${r.reconstructions[r.reconstructions.length - 1]}`);
  return code;
}

export function prepareOptions(argv: string[]): PrepareOptions {
  const v = flagValues(argv, prepareFlags);
  if (v.data === undefined || v.out === undefined) throw new UsageError('prepare-data: --data FOLDER and --out DIR are required');
  const o: PrepareOptions = { data: resolve(v.data as string), out: resolve(v.out as string) };
  const shortSide = num(v['short-side'], 'short-side');
  if (shortSide !== undefined) {
    if (!(Number.isInteger(shortSide) && shortSide >= 0 && shortSide <= MAX_SHARD_SIDE)) throw new UsageError(`--short-side must be an integer from 0 (every size kept) to ${MAX_SHARD_SIDE}, got ${shortSide}`);
    o.shortSide = shortSide === 0 ? null : shortSide;
  }
  if (v.format !== undefined) {
    if (v.format !== 'raw' && v.format !== 'jpeg') throw new UsageError(`--format must be raw or jpeg, got '${String(v.format)}'`);
    o.format = v.format;
  }
  const quality = num(v.quality, 'quality');
  if (quality !== undefined) {
    if (o.format !== 'jpeg') throw new UsageError('--quality applies to --format jpeg (raw shards keep the decoded pixels)');
    o.quality = quality;
  }
  if (v.channels !== undefined) {
    if (v.channels !== '1' && v.channels !== '3') throw new UsageError(`--channels must be 1 or 3, got '${String(v.channels)}'`);
    o.channels = v.channels === '1' ? 1 : 3;
  }
  const bad = v['on-bad-file'];
  if (bad !== undefined) {
    if (bad !== 'skip' && bad !== 'stop') throw new UsageError(`--on-bad-file must be skip or stop, got '${String(bad)}'`);
    o.onBadFile = bad;
  }
  const mib = num(v['shard-size'], 'shard-size');
  if (mib !== undefined) {
    o.shardBytes = Math.round(mib * 2 ** 20);
    if (!(o.shardBytes >= 1)) throw new UsageError(`--shard-size must be a positive number of MiB (a byte at least), got ${mib}`);
  }
  return o;
}

async function cmdPrepareData(argv: string[]): Promise<number> {
  const o = prepareOptions(argv);
  const tty = process.stderr.isTTY;
  const show = progressOutput();
  const onEvent = (e: PrepareEvent) => {
    if (e.type === 'start') {
      console.log(`preparing ${e.files} image files from ${o.data} into ${o.out}` + (e.done > 0 ? ` (resuming after ${e.done} files in ${e.shards} shards)` : ''));
    } else if (e.type === 'progress') {
      show(`${bar(e.done, e.files)} ${e.done}/${e.files} files, ${(e.bytes / 2 ** 20).toFixed(0)} MiB, ${e.imgPerSec.toFixed(0)} img/s ETA ${formatTime(e.etaSeconds)}`, e.done === e.files);
    } else if (e.type === 'bad-file' || e.type === 'warning') {
      if (tty) process.stderr.write('\n');
      console.warn(e.type === 'bad-file' ? `bad file: ${e.error}` : `warning: ${e.message}`);
    } else if (e.type === 'end') {
      if (tty) process.stderr.write('\n');
      console.log(`${e.complete ? 'done' : 'stopped'}: ${e.samples} images in ${e.shards} shards (${(e.bytes / 2 ** 20).toFixed(1)} MiB), ${e.skipped} bad files left out, ${formatTime(e.seconds)}`);
    }
  };
  const { r, code } = await stoppable('finishing the current shard; run the same command to resume', (signal) => prepareShards({ ...o, signal, onEvent }), (r) => !r.complete);
  if (r.complete) console.log(`index: ${r.index}; train with --data ${r.dir}`);
  else console.log(`not finished: run the same command again to resume`);
  return code;
}

async function cmdVerifyData(argv: string[]): Promise<number> {
  const v = flagValues(argv, verifyFlags);
  if (v.data === undefined) throw new UsageError('verify-data: --data DIR is required (a shard folder from mae prepare-data)');
  const dir = resolve(v.data as string);
  const tty = process.stderr.isTTY;
  const show = progressOutput();
  const shown = 20; // damaged records listed one per line; the rest are counted
  let damaged = 0;
  const onEvent = (e: VerifyShardsEvent) => {
    if (e.type === 'start') {
      console.log(`verifying ${e.samples} records (${(e.bytes / 2 ** 20).toFixed(1)} MiB) in ${dir}`);
      const decoded = v.decode === true && e.pixels === 'jpeg';
      if (v.decode && !decoded) console.warn('note: --decode applies to JPEG shards; these raw records have nothing to decode');
      if (!e.checksums) console.warn(`warning: ${join(dir, SHARD_INDEX_FILE)} is version 1 and has no checksums: records are only read${decoded ? ' and decoded' : ''}; prepare the data again to get them`);
    } else if (e.type === 'progress') {
      show(`${bar(e.done, e.samples)} ${e.done}/${e.samples} records, ${e.mibPerSec.toFixed(0)} MiB/s ETA ${formatTime(e.etaSeconds)}`, e.done === e.samples);
    } else if (e.type === 'damaged') {
      if (++damaged > shown) return;
      if (tty) process.stderr.write('\n');
      console.error(`damaged: sample ${e.sample}${e.source ? ` (${e.source})` : ''}: ${e.error}`);
    } else if (e.type === 'end' && tty) {
      process.stderr.write('\n');
    }
  };
  const { r, code } = await stoppable('stopping', (signal) => verifyShards(dir, { decode: v.decode === true, signal, onEvent, maxListed: shown }), (r) => !r.complete);
  const what = `${r.samples} records (${(r.bytes / 2 ** 20).toFixed(1)} MiB)${r.decoded ? `, ${r.decoded} decoded` : ''}, ${formatTime(r.seconds)}`;
  if (!r.complete) {
    console.log(`stopped after ${what}: ${r.damagedCount} damaged so far`);
    return code;
  }
  if (r.damagedCount === 0) {
    console.log(r.checksums ? `ok: ${what}; every record matches its CRC-32` : `read ${what}; no checksums to compare (version 1 index)`);
    return 0;
  }
  if (r.damagedCount > shown) console.error(`... and ${r.damagedCount - shown} more damaged records`);
  console.error(`mae verify-data: ${r.damagedCount} of ${r.samples} records are damaged (${what}); prepare the data again (mae prepare-data) or restore the shards`);
  return 1;
}

async function cmdVisualize(argv: string[]): Promise<void> {
  const v = flagValues(argv, visualizeFlags);
  if (!v.checkpoint) throw new UsageError('visualize: --checkpoint PATH is required (a checkpoint file or a run folder)');
  const { model, meta } = await loadModel(v.checkpoint as string);
  if (model.loadReport?.decoderLoaded === false)
    throw new UsageError(`visualize: ${v.checkpoint} holds the encoder only (as the released mae_pretrain_vit_*.pth): reconstructions need the decoder's weights (the released mae_visualize_vit_*.pth have them)`);
  const data = dataSource(v, meta.options.data as DataSource | undefined);
  if (!data) throw new UsageError('visualize: the checkpoint names no data; pass --data');
  const split = (v.split as string | undefined) ?? 'test';
  if (split !== 'train' && split !== 'test') throw new UsageError(`--split must be train or test, got '${split}'`);
  if (v.split !== undefined && !hasTestSplit(data))
    throw new UsageError(`visualize: --split: ${data.path} (${data.kind}) has no train and test splits: its images are drawn from as a whole; leave out --split`);
  // --limit cuts the data; the training run's own limit does not apply to a figure
  const dataset = await openDataset({ ...data, limit: v.limit !== undefined ? data.limit : undefined }, data.kind === 'folder' ? 'train' : split);
  const c = model.config;
  checkChannels('visualize', data.path ?? `the ${data.kind} data`, dataset.channels, c.inChans);
  const pipeline = resolvePipelineConfig(dataset, { batchSize: 1, imageSize: c.imgSize, inChans: c.inChans });
  const ckDir = statSync(v.checkpoint as string).isDirectory() ? (v.checkpoint as string) : join(v.checkpoint as string, '..');
  const out = (v.out as string | undefined) ?? join(ckDir, 'reconstructions.png');
  checkOutputFile(out, '--out', v.checkpoint as string);
  const opts: { count?: number; start?: number; maskRatio?: number; seed?: number } = {};
  for (const [flag, key] of [['count', 'count'], ['start', 'start'], ['mask-ratio', 'maskRatio'], ['seed', 'seed']] as const) {
    const n = num(v[flag], flag);
    if (n !== undefined) opts[key] = n;
  }
  const drawn = await writeReconstructions(model, dataset, pipeline, out, opts);
  const start = opts.start ?? 0;
  console.log(
    opts.count !== undefined && drawn < opts.count
      ? `wrote ${out} (${drawn} of the ${opts.count} images --count asks for: the data has ${dataset.length}, drawn from index ${start})`
      : `wrote ${out}`,
  );
  model.dispose();
}

function numbers<T extends object>(v: Record<string, unknown>, o: T, pairs: [string, keyof T][]): void {
  for (const [flag, key] of pairs) {
    const n = num(v[flag], flag);
    if (n !== undefined) (o as Record<string, unknown>)[key as string] = n;
  }
}

/** --test-data PATH and --test-data-kind KIND (finetune, linprobe): the data scored, named as --data names the training data. */
function testDataFlags(v: Record<string, unknown>, o: { testData?: DataSource }): void {
  const path = v['test-data'] as string | undefined;
  if (path === undefined && v['test-data-kind'] === undefined) return;
  let kind = v['test-data-kind'] as string | undefined;
  if (kind === undefined) {
    try {
      kind = guessDataKind(path!);
    } catch (e) {
      throw new UsageError((e as Error).message.replace(/^--data /, '--test-data '));
    }
  }
  if (!DATA_KINDS.includes(kind as DataKind)) throw new UsageError(`--test-data-kind must be one of ${DATA_KINDS.join(', ')}, got '${kind}'`);
  if (path !== undefined && kind === 'synthetic') throw new UsageError('--test-data is not read with --test-data-kind synthetic (made in memory): leave one of them out');
  if (path === undefined && Object.hasOwn(DATA_PATHS, kind)) throw new UsageError(`--test-data-kind ${kind} needs --test-data PATH, ${DATA_PATHS[kind as DataKind]}`);
  o.testData = { kind: kind as DataKind, ...(path !== undefined ? { path: resolve(path) } : {}) };
}

async function cmdLinprobe(argv: string[]): Promise<number> {
  const v = flagValues(argv, linprobeFlags);
  if (!v.checkpoint && !v['raw-pixels']) throw new UsageError('linprobe: --checkpoint PATH is required (or --raw-pixels)');
  const o: LinprobeOptions = {};
  if (v.checkpoint) o.checkpoint = v.checkpoint as string;
  if (v['raw-pixels']) o.rawPixels = true;
  if (v.pool !== undefined) {
    if (!(FEATURE_POOLS as readonly string[]).includes(v.pool as string)) throw new UsageError(`--pool must be one of ${FEATURE_POOLS.join(', ')}, got '${String(v.pool)}'`);
    o.pool = v.pool as 'cls' | 'avg' | 'cls+avg';
  }
  dataOrLimit(v, o);
  testDataFlags(v, o);
  if (v.out !== undefined) o.outDir = v.out as string;
  if (v.overwrite) o.overwrite = true;
  numbers(v, o, [['epochs', 'epochs'], ['batch-size', 'batchSize'], ['blr', 'blr'], ['lr', 'lr'], ['min-lr', 'minLr'], ['warmup-epochs', 'warmupEpochs'], ['weight-decay', 'weightDecay'], ['seed', 'seed'], ['threads', 'threads'], ['workers', 'workers'], ['eval-every', 'evalEvery'], ['val-size', 'valSize']]);
  if (v['blr-sweep'] !== undefined) o.blrSweep = String(v['blr-sweep']).split(',').map((b) => num(b, 'blr-sweep')!);
  Object.assign(o, distOptions(v));
  const quiet = () => (activeCommunicator()?.rank ?? 0) !== 0;
  o.precision = precisionFlag(v);
  const what = 'stopping after the current batch of features or epoch of the head; no results will be written';
  const { r, code } = await stoppable(what, (signal) => linprobe({
    ...o,
    signal,
    onEvent: (e: LinprobeEvent) => {
      if (quiet()) return;
      if (e.type === 'sweep') console.log(`sweep: blr ${e.blr} (lr ${e.lr.toExponential(2)}): held-out top-1 ${(100 * e.valTop1).toFixed(2)}% (${e.seconds.toFixed(1)} s)`);
      else if (e.type === 'features') console.log(`features: ${e.split} ${e.n} x ${e.dim} in ${e.seconds.toFixed(1)} s`);
      else if (e.type === 'start') console.log(`training the head: ${e.steps} steps, lr ${e.lr.toExponential(2)}`);
      else if (e.type === 'epoch' && (e.top1 !== undefined || e.epoch % 10 === 0)) console.log(`epoch ${e.epoch}: loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)}${e.top1 !== undefined ? ` top-1 ${(100 * e.top1).toFixed(2)}%` : ''}`);
      else if (e.type === 'warning') console.warn(`warning: ${e.message}`);
    },
  }), (r) => r.stopped);
  if (quiet()) return code;
  if (r.stopped) {
    console.log(`stopped: the probe was not finished; no head, classifier, confusion matrix or results.json written in ${r.outDir}${existsSync(join(r.outDir, 'log.jsonl')) ? ` (the log of the epochs done: ${join(r.outDir, 'log.jsonl')})` : ''}`);
    return code;
  }
  console.log(`linear probe: top-1 ${(100 * r.top1).toFixed(2)}%  top-5 ${(100 * r.top5).toFixed(2)}%  (features ${formatTime(r.featureSeconds)}, head ${formatTime(r.trainSeconds)})`);
  console.log(`results: ${join(r.outDir, 'results.json')}  confusion: ${join(r.outDir, 'confusion.png')}`);
  return code;
}

async function cmdFinetune(argv: string[]): Promise<number> {
  const v = flagValues(argv, finetuneFlags);
  if (!v.checkpoint && !v['from-scratch'] && !v.resume) throw new UsageError('finetune: --checkpoint PATH is required (or --from-scratch, or --resume)');
  const o: FinetuneOptions = {};
  if (v.checkpoint) o.checkpoint = v.checkpoint as string;
  if (v['from-scratch']) o.fromScratch = true;
  if (v.preset !== undefined) o.preset = v.preset as string;
  const config = modelConfig(v);
  if (Object.keys(config).length) o.config = config;
  dataOrLimit(v, o);
  testDataFlags(v, o);
  if (v.out !== undefined) o.outDir = v.out as string;
  if (v.overwrite) o.overwrite = true;
  if (v.resume) o.resume = true;
  numbers(v, o, [
    ['epochs', 'epochs'], ['batch-size', 'batchSize'], ['accum-iter', 'accumIter'], ['blr', 'blr'], ['lr', 'lr'], ['min-lr', 'minLr'],
    ['warmup-epochs', 'warmupEpochs'], ['weight-decay', 'weightDecay'], ['layer-decay', 'layerDecay'], ['drop-path', 'dropPath'],
    ['smoothing', 'smoothing'], ['mixup', 'mixup'], ['cutmix', 'cutmix'], ['mixup-prob', 'mixupProb'], ['mixup-switch-prob', 'mixupSwitchProb'],
    ['reprob', 'reprob'], ['seed', 'seed'], ['threads', 'threads'], ['workers', 'workers'], ['eval-every', 'evalEvery'], ['log-every', 'logEvery'],
    ['checkpoint-every', 'checkpointEvery'],
  ]);
  o.precision = precisionFlag(v);
  const cropMin = num(v['crop-scale-min'], 'crop-scale-min');
  if (cropMin !== undefined) {
    if (!(cropMin > 0 && cropMin <= 1)) throw new UsageError(`--crop-scale-min must be in (0, 1], got ${cropMin}`);
    o.cropScale = [cropMin, 1];
  }
  let last = 0;
  let fromScratch = o.fromScratch ?? false; // (a resumed run's: its own, from the start event)
  const { r, code } = await stoppable('stopping after the current step and writing a checkpoint; no classifier or results will be written', (signal) => finetune({
    ...o,
    signal,
    onEvent: (e: FinetuneEvent) => {
      if (e.type === 'start') fromScratch = e.fromScratch;
      if (e.type === 'start' && e.resumedFrom) {
        const p = e.resumedFrom;
        console.log(`resuming the run at step ${p.step} of ${e.totalSteps} (epoch ${p.epoch}${p.iter ? `, batch ${p.iter}` : ''}): ${e.parameters.toLocaleString('en-US')} parameters, ${e.trainSamples} images${e.resumeNote ? `; ${e.resumeNote}` : ''}`);
      } else if (e.type === 'start') {
        console.log(
          `${e.fromScratch ? 'training from scratch' : `fine-tuning (${e.loaded} encoder tensors loaded, ${e.ignored.length} ignored, initialised: ${e.missing.join(', ')})`}: ${e.parameters.toLocaleString('en-US')} parameters in ${o.precision ?? 'fp32'}, ${e.trainSamples} images, ${e.totalSteps} steps, lr ${e.lr.toExponential(2)}`,
        );
        printBf16Tip('cpu', o.precision);
      } else if (e.type === 'step' && (Date.now() - last > 10000 || e.step === e.totalSteps)) {
        last = Date.now();
        console.log(`epoch ${e.epoch.toFixed(2)} step ${e.step}/${e.totalSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ${e.imgPerSec.toFixed(0)} img/s ETA ${formatTime(e.etaSeconds)}`);
      } else if (e.type === 'epoch') console.log(`epoch ${e.epoch} done: loss ${e.loss.toFixed(4)}, ${e.seconds.toFixed(1)} s${e.top1 !== undefined ? `, top-1 ${(100 * e.top1).toFixed(2)}%` : ''}`);
      else if (e.type === 'stopped') console.log(`stopped after ${e.step} of ${e.totalSteps} steps: not evaluated; no classifier, confusion matrix or results.json written; checkpoint: ${e.checkpoint}`);
      else if (e.type === 'warning') console.warn(`warning: ${e.message}`);
    },
  }), (r) => r.stopped);
  if (r.stopped) {
    console.log(`log of the steps taken: ${join(r.outDir, 'log.jsonl')}`);
    console.log(`continue the run with: mae finetune --resume --out ${r.outDir}`);
    return code;
  }
  console.log(`${fromScratch ? 'from scratch' : 'fine-tuned'}: top-1 ${(100 * r.top1).toFixed(2)}%  top-5 ${(100 * r.top5).toFixed(2)}%  (training ${formatTime(r.trainSeconds)}, total ${formatTime(r.seconds)})`);
  console.log(`results: ${join(r.outDir, 'results.json')}  confusion: ${join(r.outDir, 'confusion.png')}`);
  return code;
}

/** The options both image commands share, from their flags. */
function imageRun(v: Record<string, unknown>, cmd: string) {
  if (!v.checkpoint) throw new UsageError(`${cmd}: --checkpoint FILE is required`);
  if (!v.data) throw new UsageError(`${cmd}: --data FOLDER (or an image file) is required`);
  const list = (flag: string) => (v[flag] === undefined ? undefined : String(v[flag]).split(',').map((x) => num(x, flag)!));
  const bad = v['on-bad-file'] as OnBadFile | undefined;
  if (bad !== undefined && bad !== 'skip' && bad !== 'stop') throw new UsageError(`--on-bad-file must be skip or stop, got '${String(bad)}'`);
  const o = { checkpoint: v.checkpoint as string, data: v.data as string, batchSize: num(v['batch-size'], 'batch-size'), size: num(v.size, 'size'), mean: list('mean'), std: list('std'), onBadFile: bad };
  const threads = num(v.threads, 'threads');
  return { o, threads, numHeads: num(v['num-heads'], 'num-heads') };
}

/** The images an image command left out (onBadFile 'skip'), on stderr: the first 20 with why, then a count. */
function reportSkipped(skipped: { file: string; error: string }[]): void {
  if (skipped.length === 0) return;
  console.warn(`warning: ${skipped.length} image${skipped.length > 1 ? 's' : ''} could not be read and ${skipped.length > 1 ? 'were' : 'was'} left out (--on-bad-file stop ends the run at the first instead):`);
  for (const s of skipped.slice(0, 20)) console.warn(`  ${s.error}`);
  if (skipped.length > 20) console.warn(`  ... and ${skipped.length - 20} more`);
}

/** A progress bar of images done on a terminal, a line every few seconds elsewhere. */
function imageProgress(what: string): (done: number, total: number) => void {
  const t0 = performance.now();
  const show = progressOutput(console.error);
  return (done, total) => {
    const s = (performance.now() - t0) / 1000;
    show(`${what} ${bar(done, total)} ${done}/${total} images ${(done / s).toFixed(1)} img/s ETA ${formatTime(((total - done) * s) / done)}`, done === total);
    if (done === total && process.stderr.isTTY) process.stderr.write('\n');
  };
}

async function cmdEmbed(argv: string[]): Promise<void> {
  const v = flagValues(argv, embedFlags);
  const { o, threads, numHeads } = imageRun(v, 'embed');
  if (threads !== undefined) (await import('./native.js')).native.setNumThreads(threads);
  const pool = (v.pool as string | undefined) ?? 'cls';
  if (pool !== 'cls' && pool !== 'mean') throw new UsageError(`--pool must be cls or mean, got '${pool}'`);
  const overrides: Partial<MaeConfig> = {};
  if (numHeads !== undefined) overrides.numHeads = numHeads;
  const dnh = num(v['decoder-num-heads'], 'decoder-num-heads');
  if (dnh !== undefined) overrides.decoderNumHeads = dnh;
  const out = (v.out as string | undefined) ?? 'features.safetensors';
  checkOutputFile(out, '--out', o.checkpoint);
  const r = await embedImages({ ...o, out, pool, overrides, precision: precisionFlag(v), onProgress: imageProgress('embedding') });
  reportSkipped(r.skipped);
  console.log(`wrote ${r.count} x ${r.dim} ${pool} features to ${r.out}`);
}

async function cmdClassify(argv: string[]): Promise<void> {
  const v = flagValues(argv, classifyFlags);
  const { o, threads, numHeads } = imageRun(v, 'classify');
  if (threads !== undefined) (await import('./native.js')).native.setNumThreads(threads);
  const topk = num(v.topk, 'topk');
  const r = await classifyImages({
    ...o,
    labels: v.labels as string | undefined,
    topk,
    overrides: numHeads !== undefined ? { numHeads } : {},
    onResult: (file, top) => console.log(`${file}\t${top.map((t) => `${t.label} ${t.probability.toFixed(3)}`).join('  ')}`),
  });
  reportSkipped(r.skipped);
  if (r.top1 !== null) console.log(`top-1 ${(100 * r.top1).toFixed(2)}%  top-${Math.min(topk ?? 5, r.names.length)} ${(100 * r.topk!).toFixed(2)}% on ${r.count} images (${r.scoredBy})`);
  else if (r.notScored !== null) console.error(`no accuracy: ${r.notScored}`);
}

async function cmdEval(argv: string[]): Promise<void> {
  const v = flagValues(argv, evalFlags);
  if (!v.checkpoint) throw new UsageError('eval: --checkpoint PATH is required');
  const knnOnly = ['k', 'temperature', 'train-limit'].filter((f) => v[f] !== undefined);
  if (!v.knn && knnOnly.length) throw new UsageError(`eval: --${knnOnly.join(', --')} ${knnOnly.length > 1 ? 'apply' : 'applies'} only with --knn`);
  if (v.knn && v.out !== undefined) throw new UsageError('eval: --out applies only without --knn (the file of a classifier\'s confusion matrix): --knn prints its accuracy and writes no file');
  const threads = num(v.threads, 'threads');
  if (threads !== undefined) (await import('./native.js')).native.setNumThreads(threads);
  const split = (v.split as string | undefined) ?? 'test';
  if (split !== 'train' && split !== 'test') throw new UsageError(`--split must be train or test, got '${split}'`);
  const ckPath = v.checkpoint as string;
  // the data: --data / --data-kind, else what the checkpoint records (refused when it records none)
  const evalData = (recorded: DataSource | null | undefined): DataSource => {
    if (!recorded && v.data === undefined && v['data-kind'] === undefined)
      throw new UsageError(`eval: ${ckPath} names no data (weights from elsewhere and classifiers of older versions record none): pass --data PATH (and --data-kind KIND where the folder does not tell)`);
    return dataSource(v, recorded ? { ...recorded, limit: undefined } : undefined)!;
  };
  if (v.knn) {
    let loaded: Awaited<ReturnType<typeof loadModel>>;
    try {
      loaded = await loadModel(ckPath);
    } catch (e) {
      if ((await classifierFileMeta(ckPath).catch(() => null))?.config.globalPool)
        throw new UsageError(`eval: --knn takes a pre-training checkpoint (or a linear probe's classifier): ${ckPath} is a fine-tuned classifier, whose encoder has no final norm to take the kNN features after; evaluate it without --knn`);
      throw e;
    }
    const { model, meta } = loaded;
    const recipe = (await classifierFileMeta(ckPath).catch(() => null))?.recipe as { data?: DataSource } | undefined;
    const data = evalData((meta.options.data as DataSource | undefined) ?? recipe?.data);
    if (v.split !== undefined && !hasTestSplit(data))
      throw new UsageError(`eval: --split: ${data.path} has no test split: with --knn every ${KNN_QUERY_EVERY}th image is a query and the others the bank; leave out --split`);
    if (split === 'train') throw new UsageError('eval: --split train: with --knn the train split is the bank and the test split the queries; leave out --split');
    // (--limit was checked with the data flags; knnData would name them limits.query and limits.bank)
    const trainLimit = limitFlag(v, 'train-limit');
    const { bank, query, scored } = await knnData(data, { bank: trainLimit, query: data.limit });
    checkChannels('eval', data.path ?? `the ${data.kind} data`, bank.channels, model.config.inChans);
    const opts: { k?: number; temperature?: number } = {};
    numbers(v, opts, [['k', 'k'], ['temperature', 'temperature']]);
    const t = performance.now();
    const r = await knnEvaluate(model, bank, query, opts);
    const asked = opts.k ?? 20;
    console.log(`kNN (k ${r.k}${r.k < asked ? `: the whole bank, ${asked} asked;` : ','} T ${opts.temperature ?? 0.07}): top-1 ${(100 * r.top1).toFixed(2)}%  top-5 ${(100 * r.top5).toFixed(2)}% on ${scored} (${formatTime((performance.now() - t) / 1000)})`);
    model.dispose();
    return;
  }
  let loaded: Awaited<ReturnType<typeof loadClassifier>>;
  try {
    loaded = await loadClassifier(ckPath);
  } catch (e) {
    if ((await classifierFileMeta(ckPath).catch(() => undefined)) === null && !/holds a pre-training run/.test((e as Error).message))
      throw new Error(`${(e as Error).message} (eval takes a classifier of mae finetune or linprobe; a pre-training checkpoint is evaluated with --knn)`);
    throw e;
  }
  const { model, meta } = loaded;
  // where the classifier was tested (its test data, else its data's test split)
  const recipe = meta.recipe as { data?: DataSource; testData?: DataSource | null } | undefined;
  const data = evalData(recipe?.testData ?? recipe?.data);
  const whole = !hasTestSplit(data);
  if (whole && v.split !== undefined)
    throw new UsageError(`eval: --split: ${data.path} (${data.kind}) has no train and test splits: it is scored as a whole; give the evaluation folder as --data, without --split`);
  const dataset = await openDataset(data, split);
  checkChannels('eval', data.path ?? `the ${data.kind} data`, dataset.channels, model.config.inChans);
  checkClassCount('eval', data.path ?? `the ${data.kind} data`, dataset.numClasses, model.config.numClasses);
  // the confusion matrix is written after scoring: a path that cannot be written is refused before it
  const ckDir = statSync(ckPath).isDirectory() ? ckPath : join(ckPath, '..');
  const out = (v.out as string | undefined) ?? join(ckDir, whole ? `confusion-${basename(data.path!)}.png` : `confusion-${split}.png`);
  checkOutputFile(out, '--out', ckPath);
  if (whole && v.data === undefined && !recipe?.testData)
    console.error(`note: ${data.path} is the data the classifier was trained on (it has no test split): give held-out images as --data`);
  const t = performance.now();
  const r = await evaluateClassifier(model, dataset);
  await writeConfusionPng(out, r.confusion, r.numClasses);
  console.log(`top-1 ${(100 * r.top1).toFixed(2)}%  top-5 ${(100 * r.top5).toFixed(2)}% on ${r.n} ${whole ? `images of ${data.path}` : `${split} images`} (${formatTime((performance.now() - t) / 1000)})`);
  console.log(`confusion matrix (rows true, columns predicted): ${out}`);
  const C = r.numClasses;
  for (let i = 0; i < C; i++) console.log(Array.from(r.confusion.subarray(i * C, (i + 1) * C), (x) => String(x).padStart(5)).join(''));
  model.dispose();
}

async function cmdBench(argv: string[]): Promise<void> {
  const v = flagValues(argv, benchFlags);
  const o: BenchOptions = {};
  if (v.preset !== undefined) o.preset = v.preset as string;
  if (v['decoder-depth'] !== undefined) o.decoderDepths = String(v['decoder-depth']).split(',').map((d) => num(d, 'decoder-depth')!);
  numbers(v, o, [['batch-size', 'batchSize'], ['steps', 'steps'], ['threads', 'threads']]);
  if (v.device !== undefined) o.device = v.device as string;
  if (v.precision !== undefined) o.precision = precisionFlag(v);
  // the files are written after the benchmark: a path that cannot be written is refused before it
  if (v.json !== undefined) checkOutputFile(v.json as string, '--json');
  if (v.png !== undefined) checkOutputFile(v.png as string, '--png');
  if (v.json !== undefined && v.png !== undefined && resolve(v.json as string) === resolve(v.png as string)) throw new UsageError(`--json and --png name the same file, ${v.png}`);
  const tty = process.stderr.isTTY;
  const show = progressOutput(console.error);
  o.onEvent = (e: BenchEvent) => {
    if (e.type === 'note') {
      if (tty) process.stderr.write('\r\x1b[K');
      console.error(`note: ${e.message}`);
    } else show(e.message, false);
  };
  let r;
  try {
    r = await bench(o);
  } finally {
    if (tty) process.stderr.write('\r\x1b[K');
  }
  console.log(formatBench(r));
  if (v.json !== undefined) {
    await writeFileAtomic(v.json as string, JSON.stringify(r, null, 2) + '\n');
    console.log(`wrote ${v.json}`);
  }
  if (v.png !== undefined) {
    await writePng(v.png as string, benchChart(r));
    console.log(`wrote ${v.png}`);
  }
}

// CUDA's version integers: driver/runtime 13000 -> 13.0; cuBLASLt 130100 -> 13.1.0
function cudaVersion(v: number | undefined): string {
  return v ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : '?';
}
function cublasVersion(v: number): string {
  return `${Math.floor(v / 10000)}.${Math.floor((v % 10000) / 100)}.${v % 100}`;
}

/** How idle OpenMP threads wait, as libgomp was told (lib/native.ts sets GOMP_SPINCOUNT unless the user chose). */
function ompWait(): string {
  const set = ['OMP_WAIT_POLICY', 'GOMP_SPINCOUNT'].filter((k) => process.env[k]).map((k) => `${k}=${process.env[k]}`);
  return set.length ? set.join(', ') : 'libgomp default';
}

function cmdInfo(): void {
  const i = info();
  const c = i.cuda;
  const amxUnused = amxUnusedReason(i.dnnl);
  const blasLink = i.blasLink === 'static' ? 'static, inside the addon' : i.blasLink.replace(/^shared /, 'system ');
  const rows: [string, string][] = [
    ['masked-autoencoder', `${i.version} (${i.root})`],
    ['node', `${i.node} (${i.platform})`],
    ['binary', `${i.binary.kind}: ${i.binary.path}`],
    ...i.binary.skipped.map((s): [string, string] => ['  skipped', `${s.path}: ${s.error}`]),
    ['compiler', i.compiler],
    ['backends', i.backends.join(', ')],
    ['blas', `${i.blas} (${blasLink})`],
    ['threads', `${i.threads} (OpenMP; each runs the BLAS single-threaded on its block of a product; idle wait: ${ompWait()})`],
    ['precision', `cpu: ${i.precisions.cpu.join(', ')}; cuda: ${i.precisions.cuda.join(', ') || '-'}`],
    [
      'onednn',
      !i.dnnl.available
        ? `unavailable (${i.dnnl.reason ?? 'unknown reason'}): bf16 products run on the BLAS (widened copies: about fp32's speed)`
        : `${i.dnnl.version} (${i.dnnl.library}): isa ${i.dnnl.isa}, bf16 products ` +
          (i.dnnl.bf16Products
            ? `native (${i.dnnl.amx ? 'AMX' : 'AVX512-BF16'}${amxUnused ? `; this CPU has AMX, unused: ${amxUnused}` : ''})` +
              (i.dnnl.amxOddKDeclined ? `, but those of two matrices with an odd reduction length above 32 on the BLAS (oneDNN before 2.7.4 can configure the AMX tiles wrongly for them)` : '')
            : `on the BLAS (widened copies: about fp32's speed): ${notNativeReason(i.dnnl)}`),
    ],
    ['avx-512 kernels', i.avx512Kernels],
    ['bf16 rounding', i.bf16Convert],
    ['bf16 attention', i.bf16Attention],
    ['cuda library', `${i.cudaBuilt ? 'built with this addon' : 'not built with this addon'}: ${c.library}`],
    [
      'cuda',
      c.available
        ? `available: ${(c.devices ?? []).map((d) => `cuda:${d.index} ${d.name} (sm ${d.computeCapability}${d.usable ? '' : ', not usable'})`).join('; ')}`
        : `unavailable: ${c.reason ?? 'unknown reason'}`,
    ],
  ];
  if (c.available) {
    rows.push(['cuda driver', `supports CUDA up to ${cudaVersion(c.driverVersion)}`]);
    rows.push(['cuda runtime', `${cudaVersion(c.runtimeVersion)} (linked statically into libmae_cuda.so)`]);
    rows.push(['cublasLt', c.cublasLt ? `${c.cublasLt.path} (${cublasVersion(c.cublasLt.version)})` : 'not found']);
    if (c.archs) rows.push(['cuda kernels', c.archs]);
    for (const d of c.devices ?? [])
      rows.push([
        `gpu cuda:${d.index}`,
        `${d.name}, sm ${d.computeCapability}, ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB, ${d.multiprocessors} SMs${d.usable ? '' : ', not usable (needs sm 8.0+)'}`,
      ]);
  } else {
    rows.push(['cublasLt', 'not checked (CUDA unavailable)']);
  }
  const l = i.launcher;
  rows.push(['mpi', i.mpi.found ? `${i.mpi.version} (${i.mpi.library})` : `not found: ${i.mpi.reason}`]);
  rows.push(['mpi launcher', l ? `${l.name}: this process is rank ${l.rank}${l.size !== null ? ` of ${l.size}` : ''}` : 'none: runs as one process (mpirun -np N or srun --mpi=pmix start data-parallel runs)']);
  const nv = typeof i.nccl.version === 'number' ? i.nccl.version : 0;
  rows.push([
    'nccl',
    i.nccl.found
      ? `${Math.floor(nv / 10000)}.${Math.floor((nv % 10000) / 100)}.${nv % 100} (${i.nccl.library})${c.available ? '' : '; unused: CUDA is unavailable'}`
      : `not found: ${i.nccl.reason}${c.available ? '' : ' (only GPU ranks need NCCL)'}`,
  ]);
  for (const [k, val] of rows) console.log(`${k.padEnd(20)} ${val.replace(/\n/g, '\n' + ' '.repeat(21))}`);
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    // the commands, in HELP's order
    const commands = Object.keys(HELP);
    const usageLine = `usage: mae <${commands.join('|')}> [flags]; mae <command> --help`;
    if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
      const width = Math.max(...commands.map((c) => c.length));
      console.log(`${usageLine}\n\n${commands.map((c) => `  ${c.padEnd(width)}  ${SUMMARY[c as keyof typeof HELP]}`).join('\n')}\n\nmae --version prints the package's version.`);
      return 0;
    }
    if (cmd === '--version' || cmd === '-v') {
      console.log(JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')).version);
      return 0;
    }
    if (!cmd) {
      // no command is a usage error: the usage on stderr, exit status 2
      console.error(usageLine);
      return 2;
    }
    // an unknown command's --help: the error below, on stderr
    if (Object.hasOwn(HELP, cmd) && (rest.includes('--help') || rest.includes('-h'))) {
      console.log(HELP[cmd as keyof typeof HELP]);
      return 0;
    }
    if (cmd === 'pretrain') return await cmdPretrain(rest);
    else if (cmd === 'visualize') await cmdVisualize(rest);
    else if (cmd === 'linprobe') return await cmdLinprobe(rest);
    else if (cmd === 'finetune') return await cmdFinetune(rest);
    else if (cmd === 'eval') await cmdEval(rest);
    else if (cmd === 'embed') await cmdEmbed(rest);
    else if (cmd === 'classify') await cmdClassify(rest);
    else if (cmd === 'prepare-data') return await cmdPrepareData(rest);
    else if (cmd === 'verify-data') return await cmdVerifyData(rest);
    else if (cmd === 'bench') await cmdBench(rest);
    else if (cmd === 'info') {
      parseArgs({ args: rest, options: {}, allowPositionals: false });
      cmdInfo();
    }
    else {
      console.error(`mae: unknown command '${cmd}'; commands: ${commands.join(', ')}`);
      return 2;
    }
    return 0;
  } catch (e) {
    const err = e as Error & { code?: string };
    const comm = activeCommunicator();
    const given = new Set(rest.flatMap((a) => /^--([a-z0-9-]+)/.exec(a)?.[1] ?? []));
    const line = errorLine(String(cmd), err.message, comm && comm.size > 1 ? comm.rank : undefined, given);
    // a flag's value out of its range is a usage error wherever it was found: in the command's checks or the library's
    const usage = e instanceof UsageError || err.code?.startsWith('ERR_PARSE_ARGS') || /^mae [a-z-]+: (\[rank \d+\] )?--[a-z-]+(\[\d+\])? must /.test(line);
    console.error(line);
    // a rank of a data-parallel job ends the whole job: no rank may wait for this one
    if (comm) comm.abort(usage ? 2 : 1);
    return usage ? 2 : 1;
  }
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
