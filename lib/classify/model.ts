/**
 * A ViT classifier on the MAE encoder, as the official models_vit.py VisionTransformer (timm) used by
 * main_finetune.py and main_linprobe.py:
 *
 *   imgs -> patch_embed + pos_embed, cls token first -> blocks (with drop path) ->
 *     globalPool:  mean of the patch tokens (cls left out) -> fc_norm -> head        (fine-tuning; no `norm`)
 *     otherwise:   norm -> the cls token -> [head.0 BatchNorm without affine] -> head  (linear probing)
 *
 * Parameter names are the official ones (cls_token, pos_embed, patch_embed.proj.*, blocks.{i}.*, norm.* or
 * fc_norm.*, head.* or head.0.running_mean/var + head.1.*), so the encoder loads from a pre-training checkpoint
 * by name (decoder keys are ignored and reported). pos_embed starts as the fixed sin-cos table and is trainable,
 * as in timm. Drop path (stochastic depth) rates increase linearly over the blocks from 0 to dropPathRate and act
 * only in training. No masking.
 */
import { closeAsync, runAsync } from '../infer/async.js';
import { init } from '../nn/index.js';
import { Block, LayerNorm, Linear, PatchEmbed } from '../nn/layers.js';
import { Module, ModuleList, expectStateMap } from '../nn/module.js';
import * as ops from '../ops/index.js';
import { get2dSincosPosEmbed, posEmbedFor } from '../mae/pos_embed.js';
import { OFFICIAL_HEADS, buildFromWeights, declaredWithOverrides, encoderShape, heads, readWeights, weight, type PretrainedReport, type WeightsOptions } from '../mae/pretrained.js';
import { checkWeightsFit, encoderSizes, type MaeConfig } from '../mae/presets.js';
import { checkPrecision, toBf16, type Precision } from '../mae/precision.js';
import { seedOf } from '../mae/model.js';
import { Generator } from '../random.js';
import { Tensor, expectTensors, shapeStr } from '../tensor.js';
import { describeValue, expectFinite, expectInstance, expectInteger, expectKnownKeys, expectNumber, expectObject, expectString } from '../check.js';

export interface ClassifierConfig {
  imgSize: number;
  patchSize: number;
  inChans: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
  eps: number;
  numClasses: number;
  /** true: mean of the patch tokens + fc_norm (fine-tuning); false: cls token after norm (linear probing) */
  globalPool: boolean;
  /** stochastic depth rate of the last block (default 0) */
  dropPathRate: number;
  /** a BatchNorm without affine (eps 1e-6) before the head, as the official linear probe (head.0, head.1) */
  headBatchNorm: boolean;
  /** std of the trunc-normal head weight init: 2e-5 fine-tuning, 0.01 linear probing */
  headInitStd: number;
}

const CLASSIFIER_KEYS: readonly (keyof ClassifierConfig)[] = [
  'imgSize', 'patchSize', 'inChans', 'embedDim', 'depth', 'numHeads', 'mlpRatio', 'eps', 'numClasses', 'globalPool', 'dropPathRate', 'headBatchNorm', 'headInitStd',
];

/**
 * The fields of a classifier config, checked in the name of `where`, each named `${prefix}${key}`: every field, or
 * with `partial` only those given (not undefined), as classifierConfigFrom's opts. Keys of no field are refused, the
 * object named `name`.
 */
function checkClassifierConfig(where: string, name: string, c: Partial<ClassifierConfig>, prefix: string, partial = false): void {
  expectKnownKeys(where, name, c, CLASSIFIER_KEYS);
  const given = (k: keyof ClassifierConfig) => !partial || c[k] !== undefined;
  for (const k of ['imgSize', 'patchSize', 'inChans', 'embedDim', 'depth', 'numHeads', 'numClasses'] as const) if (given(k)) expectInteger(where, `${prefix}${k}`, c[k], 1);
  if (given('mlpRatio')) expectFinite(where, `${prefix}mlpRatio`, c.mlpRatio, (x) => x > 0, 'a positive finite number');
  if (given('eps')) expectFinite(where, `${prefix}eps`, c.eps, (x) => x > 0, 'a positive finite number');
  if (given('dropPathRate')) expectFinite(where, `${prefix}dropPathRate`, c.dropPathRate, (x) => x >= 0 && x < 1, 'a number in [0, 1)');
  if (given('headInitStd')) expectFinite(where, `${prefix}headInitStd`, c.headInitStd, (x) => x > 0, 'a positive finite number');
  for (const k of ['globalPool', 'headBatchNorm'] as const)
    if (given(k) && typeof c[k] !== 'boolean') throw new Error(`${where}: ${prefix}${k} must be true or false, got ${String(c[k])}`);
}

/**
 * The classifier config of an MAE encoder config (its other keys, a decoder's, are not read); options left undefined
 * take their defaults. The options given are checked (named by their keys), then the encoder's fields (config.*).
 */
export function classifierConfigFrom(c: Pick<MaeConfig, 'imgSize' | 'patchSize' | 'inChans' | 'embedDim' | 'depth' | 'numHeads' | 'mlpRatio' | 'eps'>, opts: Partial<ClassifierConfig> = {}): ClassifierConfig {
  const where = 'classifierConfigFrom';
  expectObject(where, 'config', c, false, "e.g. a MaskedAutoencoder's config");
  expectObject(where, 'opts', opts);
  checkClassifierConfig(where, 'opts', opts, '', true);
  const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
  const config: ClassifierConfig = {
    imgSize: c.imgSize,
    patchSize: c.patchSize,
    inChans: c.inChans,
    embedDim: c.embedDim,
    depth: c.depth,
    numHeads: c.numHeads,
    mlpRatio: c.mlpRatio,
    eps: c.eps,
    numClasses: 10,
    globalPool: true,
    dropPathRate: 0,
    headBatchNorm: false,
    headInitStd: 2e-5,
    ...given,
  };
  checkClassifierConfig(where, 'config', config, 'config.');
  return config;
}

/**
 * Drop path (stochastic depth) of a residual branch x [B, ...]: in training each sample's branch is zeroed with
 * probability p and the kept ones are scaled by 1 / (1 - p) (timm DropPath, scale_by_keep); identity otherwise.
 */
export function dropPath(x: Tensor, p: number, training: boolean, gen: Generator): Tensor {
  expectTensors('dropPath', { x });
  expectFinite('dropPath', 'p', p, (v) => v >= 0 && v < 1, 'a rate in [0, 1)');
  if (typeof training !== 'boolean') throw new Error(`dropPath: training must be true or false, got ${describeValue(training)}`);
  expectInstance('dropPath', 'gen', gen, Generator, 'a Generator');
  if (!training || p === 0) return x;
  const B = x.shape[0]!;
  const per = x.size / B;
  const keep = 1 - p;
  const m = new Float32Array(x.size);
  for (let b = 0; b < B; b++) {
    const v = gen.uniform() < keep ? 1 / keep : 0;
    if (v !== 0) m.fill(v, b * per, (b + 1) * per);
  }
  return ops.mul(x, Tensor.fromArray(m, x.shape));
}

/** BatchNorm1d(affine=False, eps 1e-6): only the running statistics, stored but not trained. */
export class BatchNormNoAffine extends Module {
  readonly running_mean: Tensor;
  readonly running_var: Tensor;
  constructor(
    readonly features: number,
    readonly eps = 1e-6,
    readonly momentum = 0.1,
  ) {
    super();
    expectInteger('BatchNormNoAffine', 'features', features, 1);
    if (!(eps >= 0 && Number.isFinite(eps))) throw new Error(`BatchNormNoAffine: eps must be non-negative and finite, got ${eps}`);
    expectFinite('BatchNormNoAffine', 'momentum', momentum, (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
    this.running_mean = this.param('running_mean', Tensor.zeros([features]), false);
    this.running_var = this.param('running_var', Tensor.ones([features]), false);
  }
  forward(x: Tensor): Tensor {
    expectTensors('BatchNormNoAffine.forward', { x });
    const y = ops.batchNorm(x, this.running_mean, this.running_var, this.training, this.momentum, this.eps);
    if (this.training) {
      // the running statistics changed in place: new values for whatever goes by versions (forwardAsync's calls)
      this.running_mean.version++;
      this.running_var.version++;
    }
    return y;
  }
}

/** The linear-probe head: head.0 (BatchNorm without affine), head.1 (Linear). */
export class ProbeHead extends Module {
  readonly bn: BatchNormNoAffine;
  readonly fc: Linear;
  constructor(inFeatures: number, numClasses: number, initStd: number, gen: Generator) {
    super();
    expectInteger('ProbeHead', 'inFeatures', inFeatures, 1);
    expectInteger('ProbeHead', 'numClasses', numClasses, 1);
    expectNumber('ProbeHead', 'initStd', initStd, true);
    expectInstance('ProbeHead', 'gen', gen, Generator, 'a Generator');
    this.bn = this.module('0', new BatchNormNoAffine(inFeatures));
    this.fc = this.module('1', headLinear(inFeatures, numClasses, initStd, gen));
  }
  forward(x: Tensor): Tensor {
    expectTensors('ProbeHead.forward', { x });
    return this.fc.forward(this.bn.forward(x));
  }
}

function headLinear(inFeatures: number, numClasses: number, std: number, gen: Generator): Linear {
  const l = new Linear(inFeatures, numClasses, gen);
  const w = init.truncNormal([numClasses, inFeatures], std, gen).keep();
  l.weight.write(w.dataSync());
  w.dispose();
  return l;
}

export class VisionTransformerClassifier extends Module {
  /** frozen: the model's structure was built from it (and forwardAsync's worker builds its copy from it) */
  readonly config: Readonly<ClassifierConfig>;
  readonly numPatches: number;
  readonly patch_embed: PatchEmbed;
  readonly cls_token: Tensor;
  readonly pos_embed: Tensor;
  readonly blocks: ModuleList<Block>;
  readonly norm: LayerNorm | null;
  readonly fc_norm: LayerNorm | null;
  readonly head: Linear | ProbeHead;
  /** drop path rate of each block */
  readonly dpr: number[];
  /** draws the drop-path masks */
  readonly generator: Generator;

  constructor(config: ClassifierConfig, opts: { seed?: number } = {}) {
    super();
    expectObject('VisionTransformerClassifier', 'config', config, false, 'e.g. classifierConfigFrom(maeConfig, { numClasses })');
    expectObject('VisionTransformerClassifier', 'opts', opts, false, 'e.g. { seed: 0 }');
    expectKnownKeys('VisionTransformerClassifier', 'opts', opts, ['seed']);
    const c = config;
    const where = 'VisionTransformerClassifier';
    checkClassifierConfig(where, 'config', c, 'config.');
    this.config = Object.freeze({ ...c });
    const seed = seedOf(where, opts);
    const gen = new Generator(seed);
    const grid = c.imgSize / c.patchSize;
    if (!Number.isInteger(grid)) throw new Error(`classifier: imgSize ${c.imgSize} is not divisible by patchSize ${c.patchSize}`);
    // the encoder, the head (a Linear, after a BatchNorm's two running statistics with headBatchNorm)
    const encoder = encoderSizes(c.imgSize, c.patchSize, c.inChans, c.embedDim, c.depth, c.mlpRatio);
    const head = c.embedDim * c.numClasses + c.numClasses + (c.headBatchNorm ? 2 * c.embedDim : 0);
    checkWeightsFit({ count: encoder.count + head, largest: Math.max(encoder.largest, c.embedDim * c.numClasses) }, where, 'depth, embedDim, numClasses, mlpRatio and imgSize / patchSize');
    const L = grid * grid;
    this.numPatches = L;
    this.patch_embed = this.module('patch_embed', new PatchEmbed(c.imgSize, c.patchSize, c.inChans, c.embedDim, gen));
    this.cls_token = this.param('cls_token', init.normal([1, 1, c.embedDim], 0.02, gen));
    this.pos_embed = this.param('pos_embed', Tensor.fromArray(get2dSincosPosEmbed(c.embedDim, grid), [1, L + 1, c.embedDim]));
    this.blocks = this.module('blocks', new ModuleList(Array.from({ length: c.depth }, () => new Block(c.embedDim, c.numHeads, c.mlpRatio, gen, c.eps))));
    this.dpr = Array.from({ length: c.depth }, (_, i) => (c.depth > 1 ? (c.dropPathRate * i) / (c.depth - 1) : 0));
    this.norm = c.globalPool ? null : this.module('norm', new LayerNorm(c.embedDim, c.eps));
    this.fc_norm = c.globalPool ? this.module('fc_norm', new LayerNorm(c.embedDim, c.eps)) : null;
    this.head = this.module(
      'head',
      c.headBatchNorm ? new ProbeHead(c.embedDim, c.numClasses, c.headInitStd, gen) : headLinear(c.embedDim, c.numClasses, c.headInitStd, gen),
    );
    this.generator = new Generator(seed + 7);
  }

  /**
   * imgs [B, C, H, W] -> pooled features [B, D] (before the head). In eval mode the images may have another size
   * (sides multiples of patchSize): the position table is interpolated bicubically to their grid, as the official
   * interpolate_pos_embed does when fine-tuning at another resolution. precision 'bf16': bfloat16 activations from the
   * patch embedding on (fp32 master weights and statistics), as MaskedAutoencoder.forward.
   */
  forwardFeatures(imgs: Tensor, precision: Precision = 'fp32'): Tensor {
    expectInstance('classifier', 'images', imgs, Tensor, 'a Tensor [B, C, H, W]', 'Tensor.fromArray(data, shape) makes one');
    const c = this.config;
    const s = imgs.shape;
    const p = c.patchSize;
    const sameSize = s[2] === c.imgSize && s[3] === c.imgSize;
    const otherSize = !this.training && s[2]! > 0 && s[3]! > 0 && s[2]! % p === 0 && s[3]! % p === 0;
    if (s.length !== 4 || s[1] !== c.inChans || !(sameSize || otherSize))
      throw new Error(
        `classifier: expected images [B, ${c.inChans}, ${c.imgSize}, ${c.imgSize}] (in eval mode any [B, ${c.inChans}, H, W] ` +
          `with H and W multiples of ${p}), got ${shapeStr(s)}${this.training ? ' in training mode' : ''}`,
      );
    const pos = posEmbedFor(this.pos_embed, c.imgSize / p, p, s[2]!, s[3]!);
    const L = pos.shape[1]! - 1;
    checkPrecision(precision, 'classifier');
    let x = ops.add(this.patch_embed.forward(precision === 'bf16' ? toBf16(imgs) : imgs), ops.sliceTokens(pos, 1, L));
    x = ops.catTokens(ops.add(this.cls_token, ops.sliceTokens(pos, 0, 1)), x);
    this.blocks.items.forEach((blk, i) => {
      const p = this.dpr[i]!;
      x = ops.add(x, dropPath(blk.attn.forward(blk.norm1.forward(x)), p, this.training, this.generator));
      x = ops.add(x, dropPath(blk.mlp.forward(blk.norm2.forward(x)), p, this.training, this.generator));
    });
    const B = s[0]!;
    if (this.fc_norm) return this.fc_norm.forward(ops.meanTokens(ops.sliceTokens(x, 1, L)));
    return ops.reshape(ops.sliceTokens(this.norm!.forward(x), 0, 1), [B, c.embedDim]);
  }

  /** features [B, D] -> logits [B, numClasses] */
  forwardHead(features: Tensor): Tensor {
    expectTensors('classifier', { features });
    return this.head.forward(features);
  }

  /** imgs [B, C, H, W] -> logits [B, numClasses] (bfloat16 with precision 'bf16') */
  forward(imgs: Tensor, opts: { precision?: Precision } = {}): Tensor {
    expectObject('classifier', 'opts', opts);
    expectKnownKeys('classifier', 'opts', opts, ['precision']);
    return this.forwardHead(this.forwardFeatures(imgs, opts.precision));
  }

  /**
   * forward() in eval mode (no drop path, BatchNorm statistics frozen) off the JavaScript thread: resolves to exactly
   * the logits forward(imgs) gives in eval mode, as float32 (with precision 'bf16' too), computed in a worker thread
   * over this model's own parameter memory (lib/infer/async.ts). Calls are queued; errors reject; a call in flight
   * when the weights change rejects. The worker builds VisionTransformerClassifier itself: a subclass's model runs
   * its own forward on the calling thread (in eval mode, with a warning).
   */
  async forwardAsync(imgs: Tensor, opts: { precision?: Precision } = {}): Promise<Tensor> {
    expectObject('forwardAsync', 'opts', opts);
    expectKnownKeys('forwardAsync', 'opts', opts, ['precision']);
    return runAsync(this, 'classifier', 'forward', imgs, opts.precision ?? 'fp32', VisionTransformerClassifier);
  }

  /** Frees the parameters and ends the worker thread of forwardAsync, if one was started. */
  override dispose(): void {
    closeAsync(this);
    super.dispose();
  }

  /** What fromPretrained loaded; null for a model made otherwise. */
  loadReport: PretrainedReport | null = null;

  /**
   * A classifier from weights in any format readWeights reads, in eval mode, its architecture read off the weights
   * (lib/mae/pretrained.ts): the official fine-tuned checkpoints (mae_finetuned_vit_*.pth: global pooling, fc_norm,
   * head), linear-probe ones (norm, head.0 BatchNorm, head.1), or this library's classifier files. A pre-training
   * checkpoint (no head) gives a new head of `overrides.numClasses` classes, reported as not loaded. Called on a
   * subclass, it makes one of that class.
   */
  static async fromPretrained<M extends VisionTransformerClassifier>(
    this: new (config: ClassifierConfig, opts?: { seed?: number }) => M,
    path: string,
    overrides: Partial<ClassifierConfig> = {},
    opts: WeightsOptions & { seed?: number } = {},
  ): Promise<M> {
    const where = 'VisionTransformerClassifier.fromPretrained';
    expectString(where, 'path', path, 'a path');
    expectObject(where, 'overrides', overrides);
    expectObject(where, 'opts', opts);
    expectKnownKeys(where, 'opts', opts, ['key', 'seed']);
    if (opts.key !== undefined) expectString(where, 'key', opts.key, 'a string (the checkpoint entry that holds the weights)');
    seedOf(where, opts);
    const file = await readWeights(path, { key: opts.key });
    const w = file.weights;
    const e = encoderShape(w, file.path);
    const declared = declaredWithOverrides(file, overrides);
    const headName = w.has('head.1.weight') ? 'head.1.weight' : w.has('head.weight') ? 'head.weight' : null;
    const numClasses = headName ? weight(w, headName, 2, file.path)[0] : overrides.numClasses;
    if (numClasses === undefined)
      throw new Error(`${file.path}: no classifier head (head.weight) among the weights (a pre-training checkpoint?); pass { numClasses } for a new head`);
    const imgSize = e.imgSize ?? declared.imgSize;
    if (imgSize === undefined) throw new Error(`${file.path}: no pos_embed, so the image size is unknown; pass { imgSize }`);
    const config = classifierConfigFrom(
      { ...e, imgSize, numHeads: heads(e.embedDim, declared.numHeads, OFFICIAL_HEADS, 'encoder', file.path), eps: declared.eps ?? 1e-6 },
      { numClasses, globalPool: headName ? w.has('fc_norm.weight') : true, headBatchNorm: headName === 'head.1.weight', ...overrides },
    );
    const head = (k: string) => k.startsWith('head.') || k.startsWith('fc_norm.');
    const { model, report } = buildFromWeights(() => new this(config, { seed: opts.seed }), file, (k) => headName !== null || !head(k));
    model.loadReport = { path: file.path, format: file.format, naming: file.naming, ...report, headLoaded: headName !== null, args: file.args };
    return model.eval();
  }

  /** Names of the encoder (everything but the head and fc_norm). */
  encoderParameterNames(): string[] {
    return this.namedParameters()
      .map(([n]) => n)
      .filter((n) => !n.startsWith('head.') && !n.startsWith('fc_norm.'));
  }

  /**
   * Loads encoder weights by their official names from a pre-training state dict (decoder_*, mask_token and, with
   * global pooling, the encoder's final norm are ignored). Returns what was loaded, ignored and left as initialised.
   * Throws on mis-shaped keys, when no encoder weight is found, and when an encoder tensor is missing (weights of
   * another depth): only the head and fc_norm may stay as initialised.
   */
  loadEncoder(state: Map<string, Tensor | { shape: readonly number[]; data: Float32Array }>): { loaded: string[]; ignored: string[]; missing: string[] } {
    expectStateMap('loadEncoder', state);
    const own = this.stateDict();
    const take = new Map<string, Tensor | { shape: readonly number[]; data: Float32Array }>();
    const ignored: string[] = [];
    for (const [k, v] of state) {
      if (own.has(k) && !k.startsWith('head.') && !k.startsWith('fc_norm.')) take.set(k, v);
      else ignored.push(k);
    }
    if (take.size === 0) throw new Error('loadEncoder: the state dict holds no encoder weight of this model (expected official names: cls_token, patch_embed.proj.weight, blocks.0.norm1.weight, ...)');
    const missing = [...own.keys()].filter((k) => !take.has(k));
    const lacking = missing.filter((k) => !k.startsWith('head.') && !k.startsWith('fc_norm.'));
    if (lacking.length)
      throw new Error(`loadEncoder: the state dict lacks ${lacking.length} encoder tensor(s) of this model (depth ${this.config.depth}, width ${this.config.embedDim}): ${lacking.slice(0, 4).join(', ')}${lacking.length > 4 ? ', ...' : ''}`);
    this.loadStateDict(take, { strict: false });
    return { loaded: [...take.keys()], ignored, missing };
  }
}
