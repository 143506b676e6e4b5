// Bad arguments to the public API: every function, class constructor, static method and public instance method
// exported by lib/index.ts (through the ops, nn, nn.init and data namespaces too) is called with valid arguments
// (the table below) except one parameter, replaced in turn by null, undefined (where the parameter is required), a
// number, a string, and an object or array of the wrong kind. Each call must throw (an async one reject) an Error
// that is not a TypeError or RangeError, whose message starts with the function's name and names the parameter.
// Every parameter is tried, the optional ones after the required ones too (eps, dtype, device, precision, antialias,
// quality, onWarning): undefined is valid for those, the other bad values of their kind are not. A second test
// checks that the table has a row for every function, class and instance method exported (a method inherited under
// the class that defines it: nn.Module#loadStateDict), or a reason in LEFT_OUT, or is listed as taking no argument.
// A third tries the fields of options objects (a row's `fields`) one at a time, each with the bad values of its kind
// (null where null is not valid, other types, NaN, Infinity, 1.5 for integers, and a value just outside a documented
// range), and an unknown key (a misspelt field) where the object refuses them: the Error must name the function and
// the field (or quote the unknown key). Unknown keys are not tried on the objects in `ignoresUnknownKeys`, which take
// them by design: classifierConfigFrom's and maeFlops' config (a MaskedAutoencoder's: classifierConfigFrom does not
// read its decoder keys, and every key maeFlops reads is required, so a misspelt one is refused as missing) and
// knnClassify's bank and query (features records, every field required, so a misspelt one is refused as missing).
// Not tried field by field: pretrain's resume (true, false or a run folder: the harness has no kind for it), bench's
// maxMemoryBytes (its default, Infinity, is valid; the harness would try it as bad); objects whose fields another
// export checks in its own name: the data sources of openDataset and the training functions (a training function
// checks their keys, openDataset their values), the model configs of pretrain and finetune, the overrides of
// VisionTransformerClassifier.fromPretrained, embedImages and classifyImages (the model's, classifierConfigFrom's,
// MaskedAutoencoder.fromPretrained's), classifierFromPretrain's opts (classifierConfigFrom's), pretrainInWorker's
// options (pretrain's); and object parameters that are data, not options: tensors, metadata and
// extra (free-form, saved as given), states, specs, indexes, ShardDataset's names, samples, pipeline configs, settings,
// env, results, images.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as api from '../lib/index.js';
import { Communicator, Generator, MaskedAutoencoder, Tensor, VisionTransformerClassifier, classifierConfigFrom, data, encodePng, nn, syntheticDataset } from '../lib/index.js';

/**
 * What a parameter takes, which picks the bad values it is tried with (BAD; undefined is added where the parameter
 * is required): null, and a number, a string, an object or an array where each is of the wrong kind. 'any' is a
 * parameter that takes every value (a JSON value to send), written 'name?:any' so that it holds its place untried.
 */
type Kind = 'number' | 'boolean' | 'string' | 'enum' | 'object' | 'array' | 'iterable' | 'function' | 'instance' | 'any';

const BAD: Record<Kind, unknown[]> = {
  number: [null, '1', {}],
  boolean: [null, 1, 'true', {}],
  string: [null, 1, {}, []],
  enum: [null, 1, 'nonsense', {}],
  object: [null, 1, 'x', []],
  array: [null, 1, 'x', {}],
  iterable: [null, 1, {}],
  function: [null, 1, 'x', {}],
  instance: [null, 1, 'x', {}, []],
  any: [],
};

/**
 * One parameter of a row: 'name:kind', 'name?:kind' when it may be left out (undefined is then valid), and
 * 'name:kind|null' when null is valid.
 */
function parse(spec: string): { name: string; kind: Kind; optional: boolean; nullable: boolean } {
  const m = /^(\w+)(\??):(\w+)(\|null)?$/.exec(spec);
  if (!m) throw new Error(`bad parameter spec '${spec}'`);
  return { name: m[1]!, optional: m[2] === '?', kind: m[3] as Kind, nullable: m[4] !== undefined };
}

/**
 * A row: the export's path in lib/index.ts ('maeFlops', 'data.normalize', 'Tensor.zeros'; 'new X' constructs X;
 * 'X#method' calls an instance method of the exported class X on `self()`, a small model for MaskedAutoencoder),
 * its parameters in order (as parse reads them), and valid arguments (given the receiver, for methods that take
 * something of it). `where` is the name its messages start with, when not the path's last part ('Tensor.zeros' for
 * static methods; the class and method, 'Generator.int', for most instance methods).
 */
interface Row {
  name: string;
  params: string;
  args: (self?: any) => unknown[]; // any: the receiver's class is the row's
  where?: string;
  self?: () => unknown;
  /**
   * The fields of the row's options objects, by parameter name: 'field:kind' as parse reads them ('shard.rank' for a
   * field of a field), with 'int' for integers, 'numbers' and 'strings' for arrays of them, and after a number's kind
   * its range in interval notation ('int[1,)', 'number(0,1]'), which parseField turns into bad values.
   */
  fields?: Record<string, string>;
  /** The options objects (parameter names) of `fields` that take unknown keys silently, so are not tried with one. */
  ignoresUnknownKeys?: string[];
}

let dir = '';
let gen: Generator;
let model: MaskedAutoencoder;
let classifier: VisionTransformerClassifier;
let dataset: api.data.Dataset;
let pipeline: api.data.PipelineConfig;
let comm: Communicator;
let folderDataset: api.data.ImageFolderDataset;
let shardDataset: api.data.ShardDataset;
let loader: api.data.DataLoader;
let png: Uint8Array = new Uint8Array(0);
let runs = 0; // a new output folder for each call of a training function: one that ran leaves a run in its folder
const tmp = (name: string) => join(dir, name);
const t = (shape: number[]) => Tensor.zeros(shape);
const ints = (shape: number[]) => Tensor.zeros(shape, 'int32');
const img = () => new Float32Array(16); // [1, 4, 4]
const named = () => ({ shape: [1, 1, 8], data: new Float32Array(8) });
const features = (): api.Features => ({ features: new Float32Array(4), labels: new Int32Array(2), n: 2, dim: 2 });
const config = { imgSize: 8, patchSize: 4, inChans: 1, embedDim: 8, depth: 1, numHeads: 2, decoderEmbedDim: 8, decoderDepth: 1, decoderNumHeads: 2, mlpRatio: 2 };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mae-bad-args-'));
  gen = new Generator(0);
  model = new MaskedAutoencoder(config);
  classifier = new VisionTransformerClassifier(classifierConfigFrom(model.config, { numClasses: 10 }));
  dataset = syntheticDataset(4, 1, 8, 0);
  pipeline = data.resolvePipelineConfig(dataset, { batchSize: 2 });
  comm = Communicator.single();
  png = encodePng(4, 4, 3, new Uint8Array(48));
  for (const c of ['a', 'b']) {
    mkdirSync(tmp(`images/${c}`), { recursive: true });
    writeFileSync(tmp(`images/${c}/0.png`), png);
  }
  await api.data.prepareShards({ data: tmp('images'), out: tmp('shards'), shortSide: null });
  folderDataset = await api.data.ImageFolderDataset.open(tmp('images'));
  shardDataset = await api.data.ShardDataset.open(tmp('shards'));
  loader = new api.data.DataLoader(dataset, { batchSize: 2, workers: 0 });
  await api.saveSafetensors(tmp('mae.safetensors'), model.stateDict());
  await api.saveCheckpoint(tmp('checkpoint.safetensors'), model, null, { position: { epoch: 1, iter: 0, step: 1 }, options: {} });
  await api.saveClassifier(tmp('classifier.safetensors'), classifier, { run: 'bad arguments' });
}, 60_000);

afterAll(async () => {
  await loader?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ROWS: Row[] = [
  // tensors, autograd, random numbers
  { name: 'new Tensor', params: 'handle:instance', args: () => [t([1]).handle] },
  { name: 'Tensor.fromArray', params: 'data:array shape:array opts?:object', args: () => [[1, 2], [2]], where: 'Tensor.fromArray', fields: { opts: 'dtype?:enum requiresGrad?:boolean device?:enum' } },
  { name: 'Tensor.full', params: 'shape:array value:number dtype?:enum device?:enum', args: () => [[2], 1], where: 'Tensor.full' },
  { name: 'Tensor.zeros', params: 'shape:array dtype?:enum device?:enum', args: () => [[2]], where: 'Tensor.zeros' },
  { name: 'Tensor.ones', params: 'shape:array device?:enum', args: () => [[2]], where: 'Tensor.ones' },
  { name: 'tidy', params: 'fn:function', args: () => [() => 1] },
  { name: 'keep', params: 'tensor:instance', args: () => [t([1])] },
  { name: 'noGrad', params: 'fn:function', args: () => [() => 1] },
  { name: 'new Generator', params: 'seed?:number', args: () => [0] },
  { name: 'manualSeed', params: 'seed:number', args: () => [0] },

  // ops
  { name: 'ops.linear', params: 'x:instance weight:instance bias?:instance|null weightBf16?:instance|null', args: () => [t([2, 3]), t([4, 3])] },
  { name: 'ops.layerNorm', params: 'x:instance weight:instance bias:instance eps?:number', args: () => [t([2, 3]), t([3]), t([3])] },
  { name: 'ops.addLayerNorm', params: 'x:instance r:instance weight:instance bias:instance eps?:number', args: () => [t([2, 3]), t([2, 3]), t([3]), t([3])] },
  { name: 'ops.gelu', params: 'x:instance', args: () => [t([2])] },
  { name: 'ops.biasGelu', params: 'x:instance bias:instance', args: () => [t([2, 3]), t([3])] },
  { name: 'ops.attention', params: 'qkv:instance numHeads:number', args: () => [t([1, 2, 12]), 2] },
  { name: 'ops.maskedMse', params: 'pred:instance target:instance mask:instance normPix:boolean', args: () => [t([1, 2, 3]), t([1, 2, 3]), t([1, 2]), false] },
  { name: 'ops.crossEntropy', params: 'logits:instance target:instance smoothing?:number', args: () => [t([2, 3]), ints([2])] },
  { name: 'ops.batchNorm', params: 'x:instance runningMean:instance runningVar:instance training:boolean momentum?:number eps?:number', args: () => [t([2, 3]), t([3]), Tensor.ones([3]), true] },
  { name: 'ops.gatherRows', params: 'x:instance index:instance', args: () => [t([1, 3, 2]), ints([1, 2])] },
  { name: 'ops.catTokens', params: 'a:instance b:instance', args: () => [t([1, 2, 3]), t([1, 1, 3])] },
  { name: 'ops.sliceTokens', params: 'x:instance start:number length:number', args: () => [t([1, 3, 2]), 0, 1] },
  { name: 'ops.add', params: 'a:instance b:instance', args: () => [t([2]), t([2])] },
  { name: 'ops.mul', params: 'a:instance b:instance', args: () => [t([2]), t([2])] },
  { name: 'ops.scale', params: 'x:instance s:number', args: () => [t([2]), 2] },
  { name: 'ops.sum', params: 'x:instance', args: () => [t([2])] },
  { name: 'ops.mean', params: 'x:instance', args: () => [t([2])] },
  { name: 'ops.meanTokens', params: 'x:instance', args: () => [t([1, 2, 3])] },
  { name: 'ops.reshape', params: 'x:instance shape:array', args: () => [t([2, 3]), [6]] },
  { name: 'ops.patchify', params: 'imgs:instance patchSize:number order?:enum', args: () => [t([1, 1, 2, 2]), 1] },
  { name: 'ops.unpatchify', params: 'x:instance patchSize:number imageShape:array order?:enum', args: () => [t([1, 4, 1]), 1, [1, 2, 2]] },

  // nn
  { name: 'new nn.ModuleList', params: 'items:array', args: () => [[]] },
  { name: 'new nn.Linear', params: 'inFeatures:number outFeatures:number gen:instance opts?:object', args: () => [2, 3, gen], fields: { opts: 'bias?:boolean' } },
  { name: 'new nn.LayerNorm', params: 'dim:number eps?:number', args: () => [4] },
  { name: 'new nn.Attention', params: 'dim:number numHeads:number gen:instance', args: () => [4, 2, gen] },
  { name: 'new nn.Mlp', params: 'dim:number hidden:number gen:instance', args: () => [4, 8, gen] },
  { name: 'new nn.Block', params: 'dim:number numHeads:number mlpRatio:number gen:instance eps?:number', args: () => [4, 2, 2, gen] },
  { name: 'new nn.PatchEmbed', params: 'imgSize:number patchSize:number inChans:number embedDim:number gen:instance', args: () => [4, 2, 1, 4, gen] },
  { name: 'new nn.ConvProj', params: 'inChans:number outChans:number p:number gen:instance', args: () => [1, 4, 2, gen] },
  { name: 'nn.forwardBlocks', params: 'blocks:array x:instance norm:instance', args: () => [[new nn.Block(4, 2, 2, gen)], t([1, 2, 4]), new nn.LayerNorm(4)] },
  { name: 'nn.init.withoutInit', params: 'make:function', args: () => [() => 1] },
  { name: 'nn.init.xavierUniform', params: 'shape:array fanIn:number fanOut:number gen:instance', args: () => [[2, 3], 3, 2, gen] },
  { name: 'nn.init.uniform', params: 'shape:array bound:number gen:instance', args: () => [[2], 0.1, gen] },
  { name: 'nn.init.normal', params: 'shape:array std:number gen:instance', args: () => [[2], 0.1, gen] },
  { name: 'nn.init.truncNormal', params: 'shape:array std:number gen:instance', args: () => [[2], 0.1, gen] },
  { name: 'nn.init.numel', params: 'shape:array', args: () => [[2, 3]] },

  // the model
  { name: 'new MaskedAutoencoder', params: 'config?:object opts?:object', args: () => [config], fields: { config: 'imgSize?:int[1,) patchSize?:int[1,) inChans?:int[1,) embedDim?:int[1,) depth?:int[1,) numHeads?:int[1,) decoderEmbedDim?:int[1,) decoderDepth?:int[1,) decoderNumHeads?:int[1,) mlpRatio?:number(0,) normPixLoss?:boolean eps?:number(0,) maskTokenEncoder?:boolean', opts: 'seed?:int' } },
  { name: 'MaskedAutoencoder.fromPreset', params: 'name:enum overrides?:object opts?:object', args: () => ['mae_vit_tiny_patch4_28', { depth: 1, decoderDepth: 1 }], where: 'MaskedAutoencoder.fromPreset', fields: { overrides: 'imgSize?:int[1,) patchSize?:int[1,) inChans?:int[1,) embedDim?:int[1,) depth?:int[1,) numHeads?:int[1,) decoderEmbedDim?:int[1,) decoderDepth?:int[1,) decoderNumHeads?:int[1,) mlpRatio?:number(0,) normPixLoss?:boolean eps?:number(0,) maskTokenEncoder?:boolean', opts: 'seed?:int' } },
  { name: 'MaskedAutoencoder.fromPretrained', params: 'path:string overrides?:object opts?:object', args: () => [tmp('mae.safetensors'), { numHeads: 2, decoderNumHeads: 2 }], where: 'MaskedAutoencoder.fromPretrained', fields: { overrides: 'imgSize?:int[1,) patchSize?:int[1,) inChans?:int[1,) embedDim?:int[1,) depth?:int[1,) numHeads?:int[1,) decoderEmbedDim?:int[1,) decoderDepth?:int[1,) decoderNumHeads?:int[1,) mlpRatio?:number(0,) normPixLoss?:boolean eps?:number(0,) maskTokenEncoder?:boolean', opts: 'key?:string seed?:int' } },
  { name: 'MaskedAutoencoder#forward', params: 'images:instance opts?:object', args: () => [t([1, 1, 8, 8])], fields: { opts: 'precision?:enum|null maskRatio?:number[0,1) noise?:instance generator?:instance' } },
  { name: 'MaskedAutoencoder#forwardEncoder', params: 'images:instance idsKeep:instance|null precision?:enum|null idsRestore?:instance|null', args: () => [t([1, 1, 8, 8]), null] },
  { name: 'MaskedAutoencoder#forwardDecoder', params: 'latent:instance idsRestore:instance|null', args: () => [t([1, 5, 8]), null] },
  { name: 'MaskedAutoencoder#forwardLoss', params: 'images:instance pred:instance mask:instance', args: () => [t([1, 1, 8, 8]), t([1, 4, 16]), t([1, 4])] },
  { name: 'MaskedAutoencoder#patchify', params: 'imgs:instance', args: () => [t([1, 1, 8, 8])] },
  { name: 'MaskedAutoencoder#unpatchify', params: 'x:instance', args: () => [t([1, 4, 16])] },
  { name: 'MaskedAutoencoder#embed', params: 'images:instance opts?:object', args: () => [t([1, 1, 8, 8])], fields: { opts: 'precision?:enum|null' } },
  { name: 'MaskedAutoencoder#reconstruct', params: 'images:instance opts?:object', args: () => [t([1, 1, 8, 8])], fields: { opts: 'precision?:enum|null maskRatio?:number[0,1) noise?:instance generator?:instance' } },
  { name: 'checkPrecision', params: 'precision?:enum|null where:string', args: () => ['fp32', 'checkPrecision'] },
  { name: 'getPreset', params: 'name:enum', args: () => ['mae_vit_tiny_patch4_28'] },
  { name: 'randomMasking', params: 'B:number L:number maskRatio:number noise?:instance gen?:instance', args: () => [2, 4, 0.5, undefined, gen] },
  { name: 'get2dSincosPosEmbed', params: 'embedDim:number gridSize:number', args: () => [4, 2] },
  { name: 'interpolatePosEmbed', params: 'table:instance embedDim:number gridH:number gridW:number newH:number newW:number numExtra?:number', args: () => [api.get2dSincosPosEmbed(4, 2), 4, 2, 2, 3, 3] },
  { name: 'deviceStepCheck', params: 'opts:object', args: () => [{ device: 'cpu', steps: 1 }], fields: { opts: 'device:enum steps?:int[1,) log?:function lr?:number(0,) fp32Tolerance?:number(0,) bf16Tolerance?:number(0,)' } },
  {
    name: 'maeFlops',
    params: 'config:object maskRatio?:number',
    args: () => [model.config],
    fields: { config: 'imgSize:int[1,) patchSize:int[1,) inChans:int[1,) embedDim:int[1,) depth:int[1,) numHeads:int[1,) decoderEmbedDim:int[1,) decoderDepth:int[1,) decoderNumHeads:int[1,) mlpRatio:number(0,) normPixLoss:boolean eps:number(0,) maskTokenEncoder:boolean' },
    ignoresUnknownKeys: ['config'], // a model's config: a checkpoint's may carry keys of other versions
  },

  // optimizers and schedules
  { name: 'new AdamW', params: 'params:array options:object', args: () => [[t([2])], { lr: 1e-3 }], fields: { options: 'lr:number[0,) betas?:numbers eps?:number[0,) weightDecay?:number[0,)' } },
  { name: 'new LARS', params: 'params:array options:object', args: () => [[t([2])], { lr: 0.1 }], fields: { options: 'lr:number[0,) weightDecay?:number[0,) momentum?:number[0,1) trustCoefficient?:number(0,)' } },
  { name: 'cosineLr', params: 'epoch:number opts:object', args: () => [0, { lr: 1, warmupEpochs: 1, epochs: 2 }], fields: { opts: 'lr:number[0,) minLr?:number[0,) warmupEpochs:number[0,) epochs:number[0,)' } },
  { name: 'scaledLr', params: 'blr:number effectiveBatch:number', args: () => [1e-3, 256] },
  { name: 'paramGroupsLrd', params: 'model:instance depth:number opts?:object', args: () => [model, 1], fields: { opts: 'weightDecay?:number[0,) noWeightDecay?:strings layerDecay?:number(0,1]' } },
  { name: 'layerIdForVit', params: 'name:string numLayers:number', args: () => ['blocks.0.attn.qkv.weight', 12] },

  // data
  { name: 'data.loadFashionMnist', params: 'dir:string split:enum', args: () => [dir, 'train'] },
  { name: 'data.parseIdx', params: 'bytes:instance path:string', args: () => [new Uint8Array([0, 0, 8, 1, 0, 0, 0, 1, 7]), 'labels.idx'] },
  { name: 'data.readIdxImages', params: 'path:string', args: () => [tmp('images.idx')] },
  { name: 'data.readIdxLabels', params: 'path:string', args: () => [tmp('labels.idx')] },
  { name: 'data.readMaybeGzip', params: 'path:string expectedBytes?:function', args: () => [tmp('labels.idx')] },
  { name: 'data.resolveFashionMnistDir', params: 'dir?:string', args: () => [dir] },
  { name: 'data.cifar10FileNames', params: 'split:enum', args: () => ['train'] },
  { name: 'data.loadCifar10', params: 'dir:string split:enum', args: () => [dir, 'train'] },
  { name: 'data.parseCifarBatch', params: 'bytes:instance path:string', args: () => [new Uint8Array(3073), 'data_batch_1.bin'] },
  { name: 'data.decodeImageBytes', params: 'bytes:instance name:string channels:number maxPixels?:number', args: () => [png, 'a.png', 3] },
  { name: 'data.decodeImageFile', params: 'path:string channels:number shorterSide?:number', args: () => [tmp('images/a/0.png'), 3] },
  { name: 'data.reencodeJpeg', params: 'path:string channels:number shorterSide?:number quality:number', args: () => [tmp('images/a/0.png'), 3, undefined, 90] },
  { name: 'data.scanImageFolder', params: 'root:string onWarning?:function', args: () => [tmp('images')] },
  { name: 'data.evalResizeLength', params: 'size:number cropPct?:number', args: () => [224] },
  { name: 'data.loadImages', params: 'inputs:array opts?:object', args: () => [[tmp('images/a/0.png')], { size: 4 }], fields: { opts: 'size?:int[1,) channels?:int[1,3] mean?:numbers std?:numbers cropPct?:number(0,1]' } },
  { name: 'data.bicubicWeights', params: 't:number', args: () => [0.5] },
  { name: 'data.centerCrop', params: 'img:instance c:number h:number w:number outH:number outW:number', args: () => [img(), 1, 4, 4, 2, 2] },
  { name: 'data.centerCropBox', params: 'h:number w:number outH:number outW:number', args: () => [4, 4, 2, 2] },
  { name: 'data.horizontalFlip', params: 'img:instance c:number h:number w:number', args: () => [img(), 1, 4, 4] },
  { name: 'data.normalize', params: 'img:instance c:number h:number w:number mean:array std:array', args: () => [img(), 1, 4, 4, [0.5], [0.5]] },
  { name: 'data.randomHorizontalFlip', params: 'img:instance c:number h:number w:number gen:instance p?:number', args: () => [img(), 1, 4, 4, gen] },
  { name: 'data.randomResizedCrop', params: 'img:instance c:number h:number w:number outSize:number gen:instance opts?:object', args: () => [img(), 1, 4, 4, 2, gen, { scale: [0.2, 1], ratio: [0.75, 1.25] }], fields: { opts: 'scale:numbers ratio:numbers antialias?:boolean' } },
  { name: 'data.randomResizedCropParams', params: 'h:number w:number gen:instance opts?:object', args: () => [4, 4, gen, { scale: [0.2, 1], ratio: [0.75, 1.25] }], fields: { opts: 'scale:numbers ratio:numbers' } },
  { name: 'data.resize', params: 'img:instance c:number h:number w:number outH:number outW:number antialias?:boolean', args: () => [img(), 1, 4, 4, 2, 2] },
  { name: 'data.resizeShorterSide', params: 'img:instance c:number h:number w:number size:number antialias?:boolean', args: () => [img(), 1, 4, 4, 2] },
  {
    name: 'data.resizedCrop',
    params: 'img:instance c:number h:number w:number top:number left:number cropH:number cropW:number outH:number outW:number antialias?:boolean part?:object',
    args: () => [img(), 1, 4, 4, 0, 0, 2, 2, 2, 2, false, { top: 0, left: 0, height: 2, width: 2 }],
    fields: { part: 'top:int[0,) left:int[0,) height:int[1,) width:int[1,)' },
  },
  { name: 'data.shorterSideSize', params: 'h:number w:number size:number', args: () => [4, 6, 2] },
  { name: 'data.toChannels', params: 'img:instance c:number h:number w:number inChans:number', args: () => [img(), 1, 4, 4, 3] },
  { name: 'new data.ImageFolderDataset', params: 'index:object opts?:object', args: () => [{ root: dir, files: [], labels: new Int32Array(0), classes: [] }], fields: { opts: 'channels?:int[1,3] onBadFile?:enum onWarning?:function shorterSide?:int[1,)' } },
  { name: 'data.ImageFolderDataset.open', params: 'root:string opts?:object', args: () => [tmp('images')], where: 'ImageFolderDataset.open', fields: { opts: 'channels?:int[1,3] onBadFile?:enum onWarning?:function shorterSide?:int[1,)' } },
  { name: 'new data.InMemoryDataset', params: 'opts:object', args: () => [{ images: new Uint8Array(16), labels: new Int32Array([0]), channels: 1, height: 4, width: 4, numClasses: 1 }], fields: { opts: 'images:instance labels:array channels:int[1,) height:int[1,) width:int[1,) numClasses:int[0,)' } },
  { name: 'data.cifar10Dataset', params: 'split:enum dir:string', args: () => ['train', dir] },
  { name: 'data.datasetFromSpec', params: 'spec:object onWarning:function', args: () => [dataset.workerSpec!(), () => {}] },
  { name: 'data.fashionMnistDataset', params: 'split:enum dir?:string', args: () => ['train', dir] },
  { name: 'data.pixelsToImage', params: 'pixels:instance c:number height:number width:number', args: () => [new Uint8Array(16), 1, 4, 4] },
  { name: 'new data.ShardDataset', params: 'spec:object names?:object', args: () => [{ kind: 'shards', index: tmp('x'), pixels: 'raw', channels: 3, numClasses: 0, files: [], shard: new Int32Array(0), offset: new Float64Array(0), size: new Int32Array(0), height: new Int32Array(0), width: new Int32Array(0), labels: new Int32Array(0), crc32: null, sample: new Int32Array(0), verified: null }] },
  { name: 'data.ShardDataset.open', params: 'dir:string', args: () => [tmp('shards')], where: 'ShardDataset.open' },
  { name: 'data.readShardIndex', params: 'dir:string', args: () => [tmp('shards')] },
  { name: 'data.verifyShards', params: 'dir:string options?:object', args: () => [tmp('shards'), {}], fields: { options: 'decode?:boolean signal?:instance onEvent?:function maxListed?:int[0,)' } },
  { name: 'data.prepareShards', params: 'options:object', args: () => [{ data: tmp('images'), out: tmp('shards-2') }], fields: { options: 'data:string out:string shortSide?:int|null[1,65535] format?:enum quality?:int[1,100] onBadFile?:enum shardBytes?:int[1,) concurrency?:int[1,) signal?:instance onEvent?:function' } },
  { name: 'data.epochPermutation', params: 'seed:number epoch:number n:number', args: () => [0, 0, 4] },
  { name: 'data.maskGenerator', params: 'seed:number epoch:number position:number', args: () => [0, 0, 1] },
  { name: 'data.sampleGenerator', params: 'seed:number epoch:number position:number', args: () => [0, 0, 1] },
  { name: 'data.transformSample', params: 'sample:object dataset:instance cfg:object gen:instance', args: () => [{ image: new Float32Array(64), label: 0 }, dataset, pipeline, gen] },
  { name: 'new data.DataLoader', params: 'dataset:instance opts:object', args: () => [dataset, { batchSize: 2, shard: { rank: 0, count: 1 } }], fields: { opts: 'batchSize:int[1,) shuffle?:boolean dropLast?:boolean seed?:int augment?:boolean imageSize?:int[1,) inChans?:int[1,) mean?:numbers std?:numbers scale?:numbers ratio?:numbers flipProb?:number[0,1] evalCropFraction?:number(0,1] antialias?:boolean transforms?:enum workers?:int[0,256] prefetch?:int[1,) workerUrl?:instance shard?:object shard.rank:int[0,) shard.count:int[1,) timeout?:number[0,2147483]' } },
  { name: 'data.resolvePipelineConfig', params: 'dataset:instance opts:object', args: () => [dataset, { batchSize: 2 }], fields: { opts: 'seed?:int augment?:boolean imageSize?:int[1,) inChans?:int[1,) mean?:numbers std?:numbers scale?:numbers ratio?:numbers flipProb?:number[0,1] evalCropFraction?:number(0,1] antialias?:boolean transforms?:enum' } },

  // files: safetensors, names, weights
  { name: 'readSafetensors', params: 'path:string opts?:object', args: () => [tmp('mae.safetensors')], fields: { opts: 'select?:function' } },
  { name: 'writeSafetensors', params: 'path:string tensors:object metadata?:object', args: () => [tmp('written.safetensors'), { a: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }] },
  { name: 'parseSafetensors', params: 'bytes:instance source?:string', args: () => [api.serializeSafetensors({})] },
  { name: 'serializeSafetensors', params: 'tensors:object metadata?:object', args: () => [{ a: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }] },
  { name: 'fromHuggingFace', params: 'map:instance', args: () => [new Map([['vit.embeddings.cls_token', named()]])] },
  { name: 'toHuggingFace', params: 'map:instance', args: () => [new Map([['cls_token', named()]])] },
  { name: 'toOfficialNames', params: 'map:instance source?:string', args: () => [new Map([['cls_token', named()]])] },
  { name: 'detectNaming', params: 'keys:iterable', args: () => [['cls_token']] },
  { name: 'loadSafetensors', params: 'path:string', args: () => [tmp('mae.safetensors')] },
  { name: 'saveSafetensors', params: 'path:string state:instance metadata?:object', args: () => [tmp('saved.safetensors'), new Map([['a', t([1])]])] },
  { name: 'removeStaleTemps', params: 'path:string', args: () => [tmp('mae.safetensors')] },
  { name: 'loadWeights', params: 'path:string opts?:object', args: () => [tmp('mae.safetensors')], fields: { opts: 'key?:string' } },
  { name: 'readWeights', params: 'path:string opts?:object', args: () => [tmp('mae.safetensors')], fields: { opts: 'key?:string' } },

  // training, checkpoints, distributed
  {
    name: 'pretrain',
    params: 'options?:object',
    args: () => [{ data: { kind: 'synthetic', count: 4, imageSize: 8 }, epochs: 1, batchSize: 2, knn: { every: 0 }, outDir: tmp(`pretrain-${runs++}`) }],
    // (not resume: true, false or a run folder, which the harness has no kind for; config's fields are the model's to
    // check, the data sources' openDataset's)
    fields: {
      options:
        'preset?:enum config?:object data?:object limit?:int[1,) outDir?:string epochs?:int[1,) batchSize?:int[1,) accumIter?:int[1,) blr?:number(0,) ' +
        'lr?:number(0,) minLr?:number[0,) warmupEpochs?:number[0,) weightDecay?:number[0,) maskRatio?:number[0,1) seed?:int[0,) threads?:int[1,1024] ' +
        'device?:enum precision?:enum workers?:int[0,256] checkpointEvery?:int[0,) logEvery?:int[1,) visualizeEvery?:int[0,) overwrite?:boolean ' +
        'maxSteps?:int[1,) signal?:instance onEvent?:function knn?:object knn.every:int[0,) knn.trainLimit?:int[1,) knn.testLimit?:int[1,) knn.k?:int[1,) ' +
        'knn.temperature?:number(0,) distributed?:enum mpiLibrary?:string ncclLibrary?:string distTimeout?:number(0,1e9] bucketMb?:number(0,)',
    },
  },
  { name: 'pretrainInWorker', params: 'options:object onEvent?:function', args: () => [{ data: { kind: 'synthetic', count: 4, imageSize: 8 }, epochs: 1 }] },
  { name: 'maskNoise', params: 'seed:number epoch:number start:number B:number L:number', args: () => [0, 0, 0, 2, 4] },
  { name: 'Communicator.open', params: 'opts?:object', args: () => [{ distributed: 'none' }], where: 'Communicator.open', fields: { opts: 'distributed?:enum mpiLibrary?:string timeoutSeconds?:number(0,1e9]' } },
  { name: 'new GradReducer', params: 'comm:instance params:array opts?:object', args: () => [comm, [t([2])]], fields: { opts: 'bucketBytes?:number(0,) firstBucketBytes?:number(0,) bf16?:boolean label?:function' } },
  { name: 'launcher', params: 'env?:object', args: () => [{}] },
  { name: 'mpiStatus', params: 'mpiLibrary?:string', args: () => [] },
  { name: 'ncclStatus', params: 'ncclLibrary?:string', args: () => [] },
  { name: 'checkSameSettings', params: 'comm:instance settings:object what:string', args: () => [comm, { seed: 0 }, 'the run'] },
  { name: 'datasetFingerprint', params: 'dataset:instance', args: () => [dataset] },
  { name: 'saveCheckpoint', params: 'path:string model:instance optimizer:instance|null meta:object', args: () => [tmp('saved-checkpoint.safetensors'), model, null, { position: { epoch: 1, iter: 0, step: 1 }, options: {} }], fields: { meta: 'position:object position.epoch:int[0,) position.iter:int[0,) position.step:int[0,) options:object data?:object epochLoss?:object logWindow?:object' } },
  { name: 'loadCheckpoint', params: 'pathOrDir:string', args: () => [tmp('checkpoint.safetensors')] },
  { name: 'loadModel', params: 'pathOrDir:string', args: () => [tmp('checkpoint.safetensors')] },
  { name: 'openDataset', params: 'src:object split?:enum onWarning?:function', args: () => [{ kind: 'synthetic', count: 4 }] },
  { name: 'syntheticDataset', params: 'count:number channels:number imageSize:number seed:number', args: () => [4, 1, 8, 0] }, // size is named as the data source option that reaches it
  { name: 'writeReconstructions', params: 'model:instance dataset:instance pipeline:object path:string opts?:object', args: () => [model, dataset, pipeline, tmp('reconstructions.png')], fields: { opts: 'maskRatio?:number[0,1) seed?:int[0,) count?:int[1,64] start?:int[0,) scale?:int[1,)' } },
  {
    name: 'bench',
    params: 'options?:object',
    args: () => [{ preset: 'mae_vit_tiny_patch4_28', steps: 1, warmup: 0, batchSize: 1, device: 'cpu' }],
    // (not maxMemoryBytes: Infinity, which the harness tries as bad, is a valid limit, its default)
    fields: { options: 'preset?:enum decoderDepths?:numbers batchSize?:int[1,) steps?:int[1,) warmup?:int[0,) device?:enum precision?:enum threads?:int[1,1024] onEvent?:function' },
  },
  { name: 'formatBench', params: 'result:object', args: () => [{}] }, // any object passes the parameter check
  { name: 'benchChart', params: 'result:object', args: () => [{}] }, // likewise
  { name: 'matmulPeak', params: 'device:string precision?:enum|null', args: () => ['cpu', 'fp32'] }, // undefined or null precision reads as 'fp32', as checkPrecision reads it
  { name: 'new MatmulRate', params: 'device:string precision?:enum|null', args: () => ['cpu', 'fp32'] }, // likewise
  { name: 'paperSpeedup', params: 'preset:string baselineDepth:number encoder:enum depth:number', args: () => ['mae_vit_large_patch16', 8, 'visible', 1] },
  { name: 'barChart', params: 'title:string panels:array', args: () => ['title', [{ title: 'panel', series: [{ name: 'series', color: [0, 0, 0] }], groups: [{ label: 'group', values: [1] }], format: String }]] },
  { name: 'writePng', params: 'path:string image:object', args: () => [tmp('written.png'), { width: 1, height: 1, channels: 1, pixels: new Uint8Array(1) }] },
  { name: 'encodePng', params: 'width:number height:number channels:number pixels:instance', args: () => [1, 1, 1, new Uint8Array(1)] },
  { name: 'setNumThreads', params: 'threads:number', args: () => [1] }, // n, named for what it counts
  { name: 'memoryStats', params: 'device?:string', args: () => ['cpu'] },
  { name: 'emptyCache', params: 'device?:string', args: () => ['cpu'] },

  // classification
  { name: 'new VisionTransformerClassifier', params: 'config:object opts?:object', args: () => [classifier.config], fields: { config: 'imgSize:int[1,) patchSize:int[1,) inChans:int[1,) embedDim:int[1,) depth:int[1,) numHeads:int[1,) mlpRatio:number(0,) eps:number(0,) numClasses:int[1,) globalPool:boolean dropPathRate:number[0,1) headBatchNorm:boolean headInitStd:number(0,)', opts: 'seed?:int' } },
  { name: 'VisionTransformerClassifier.fromPretrained', params: 'path:string overrides?:object opts?:object', args: () => [tmp('classifier.safetensors'), { numHeads: 2 }], where: 'VisionTransformerClassifier.fromPretrained', fields: { opts: 'key?:string seed?:int' } },
  { name: 'new ProbeHead', params: 'inFeatures:number numClasses:number initStd:number gen:instance', args: () => [4, 2, 0.01, gen] },
  { name: 'new BatchNormNoAffine', params: 'features:number eps?:number momentum?:number', args: () => [4] },
  {
    name: 'classifierConfigFrom',
    params: 'config:object opts?:object',
    args: () => [model.config],
    fields: {
      config: 'imgSize:int[1,) patchSize:int[1,) inChans:int[1,) embedDim:int[1,) depth:int[1,) numHeads:int[1,) mlpRatio:number(0,) eps:number(0,)',
      opts: 'imgSize?:int[1,) patchSize?:int[1,) inChans?:int[1,) embedDim?:int[1,) depth?:int[1,) numHeads?:int[1,) mlpRatio?:number(0,) eps?:number(0,) numClasses?:int[1,) globalPool?:boolean dropPathRate?:number[0,1) headBatchNorm?:boolean headInitStd?:number(0,)',
    },
    ignoresUnknownKeys: ['config'], // a MaskedAutoencoder's config: its decoder's keys ride along, not read
  },
  { name: 'dropPath', params: 'x:instance p:number training:boolean gen:instance', args: () => [t([2, 3]), 0.1, true, gen] },
  { name: 'saveClassifier', params: 'path:string model:instance extra?:object', args: () => [tmp('saved-classifier.safetensors'), classifier] },
  { name: 'loadClassifier', params: 'pathOrDir:string', args: () => [tmp('classifier.safetensors')] },
  { name: 'classifierFromPretrain', params: 'pathOrDir:string opts?:object', args: () => [tmp('checkpoint.safetensors'), { numClasses: 2 }] },
  {
    name: 'linprobe',
    params: 'options:object',
    args: () => [{ rawPixels: true, data: { kind: 'synthetic', count: 4, imageSize: 8 }, epochs: 1, batchSize: 2, outDir: tmp(`linprobe-${runs++}`) }],
    // (the data sources' fields are openDataset's to check)
    fields: {
      options:
        'checkpoint?:string rawPixels?:boolean pool?:enum data?:object limit?:int[1,) testData?:object outDir?:string overwrite?:boolean epochs?:int[1,) ' +
        'batchSize?:int[1,) blr?:number(0,) blrSweep?:numbers valSize?:int[1,) lr?:number(0,) minLr?:number[0,) warmupEpochs?:number[0,) weightDecay?:number[0,) ' +
        'seed?:int[0,) threads?:int[1,1024] workers?:int[0,256] evalEvery?:int[0,) precision?:enum signal?:instance onEvent?:function distributed?:enum ' +
        'mpiLibrary?:string distTimeout?:number(0,1e9]',
    },
  },
  {
    name: 'finetune',
    params: 'options:object',
    args: () => [{ fromScratch: true, config, data: { kind: 'synthetic', count: 4, imageSize: 8 }, epochs: 1, batchSize: 2, outDir: tmp(`finetune-${runs++}`) }],
    // (config's fields are classifierConfigFrom's to check, data's and testData's openDataset's)
    fields: {
      options:
        'checkpoint?:string fromScratch?:boolean preset?:enum config?:object data?:object limit?:int[1,) testData?:object outDir?:string resume?:boolean ' +
        'checkpointEvery?:int[0,) overwrite?:boolean epochs?:int[1,) batchSize?:int[1,) accumIter?:int[1,) blr?:number(0,) lr?:number(0,) minLr?:number[0,) warmupEpochs?:number[0,) weightDecay?:number[0,) ' +
        'layerDecay?:number(0,1] dropPath?:number[0,1) smoothing?:number[0,1) mixup?:number[0,) cutmix?:number[0,) mixupProb?:number[0,1] mixupSwitchProb?:number[0,1] ' +
        'reprob?:number[0,1] cropScale?:numbers flipProb?:number[0,1] seed?:int[0,) threads?:int[1,1024] workers?:int[0,256] evalEvery?:int[0,) logEvery?:int[1,) ' +
        'precision?:enum signal?:instance onEvent?:function',
    },
  },
  { name: 'evaluateClassifier', params: 'model:instance dataset:instance opts?:object', args: () => [classifier, dataset], fields: { opts: 'batchSize?:int[1,) workers?:int[0,256] signal?:instance' } },
  { name: 'new MetricAccumulator', params: 'numClasses:number', args: () => [2] },
  { name: 'topkAccuracy', params: 'logits:instance labels:array numClasses:number', args: () => [new Float32Array(4), [0, 1], 2] },
  { name: 'confusionImage', params: 'confusion:instance numClasses:number opts?:object', args: () => [new Int32Array(4), 2], fields: { opts: 'cell?:int[1,)' } },
  { name: 'writeConfusionPng', params: 'path:string confusion:instance numClasses:number', args: () => [tmp('confusion.png'), new Int32Array(4), 2] },
  { name: 'extractFeatures', params: 'model:instance dataset:instance opts?:object', args: () => [model, dataset], fields: { opts: 'pool?:enum batchSize?:int[1,) workers?:int[0,256] precision?:enum|null onProgress?:function comm?:instance signal?:instance' } },
  { name: 'pixelFeatures', params: 'dataset:instance opts?:object', args: () => [dataset], fields: { opts: 'imageSize?:int[1,) inChans?:int[1,) batchSize?:int[1,) workers?:int[0,256] signal?:instance' } },
  {
    name: 'knnClassify',
    params: 'bank:object query:object opts?:object',
    args: () => [features(), features()],
    fields: {
      bank: 'features:instance labels:instance n:int[0,) dim:int[1,)',
      query: 'features:instance labels:instance n:int[0,) dim:int[1,)',
      opts: 'k?:int[1,) temperature?:number(0,) numClasses?:int[1,) chunk?:int[1,)',
    },
    ignoresUnknownKeys: ['bank', 'query'], // features records: each field is required, so a misspelt one is refused as missing
  },
  { name: 'knnEvaluate', params: 'model:instance train:instance test:instance opts?:object', args: () => [model, dataset, dataset], fields: { opts: 'k?:int[1,) temperature?:number(0,) numClasses?:int[1,) chunk?:int[1,) pool?:enum batchSize?:int[1,) workers?:int[0,256] comm?:instance' } },
  { name: 'l2Normalize', params: 'x:instance dim:number', args: () => [new Float32Array(4), 2] },
  { name: 'new Mixup', params: 'opts:object', args: () => [{ numClasses: 2 }], fields: { opts: 'mixupAlpha?:number[0,) cutmixAlpha?:number[0,) prob?:number[0,1] switchProb?:number[0,1] labelSmoothing?:number[0,1) numClasses:int[1,)' } },
  { name: 'mixupTarget', params: 'labels:array numClasses:number lam:number smoothing?:number', args: () => [[0, 1], 2, 0.5] },
  { name: 'smoothOneHot', params: 'labels:array numClasses:number smoothing?:number', args: () => [[0, 1], 2] },
  { name: 'randBbox', params: 'H:number W:number lam:number gen:instance', args: () => [4, 4, 0.5, gen] },
  { name: 'cutmixBboxAndLam', params: 'H:number W:number lam:number gen:instance', args: () => [4, 4, 0.5, gen] },
  { name: 'randomErasing', params: 'images:instance shape:array gen:instance opts?:object', args: () => [new Float32Array(16), [1, 1, 4, 4], gen], fields: { opts: 'probability?:number[0,1] minArea?:number(0,0.3] maxArea?:number(0,1] minAspect?:number(0,1]' } },
  { name: 'sampleBeta', params: 'a:number b:number gen:instance', args: () => [1, 1, gen] },
  // instance methods (those that take no argument are in METHODS_WITHOUT_ARGS; a subclass's inherited methods are
  // tried on the class that defines them)
  { name: 'Tensor#to', params: 'device:enum dtype?:enum', args: () => ['cpu', 'float32'], self: () => t([2]), where: 'Tensor.to' },
  { name: 'Tensor#write', params: 'data:instance', args: () => [new Float32Array(2)], self: () => t([2]), where: 'Tensor.write' },
  { name: 'Tensor#backward', params: 'grad?:instance|null opts?:object', args: () => [], self: () => Tensor.fromArray([1], [1], { requiresGrad: true }), where: 'backward', fields: { opts: 'onGradReady?:function' } },
  { name: 'Generator#seed', params: 'seed:number', args: () => [0], self: () => new Generator(0), where: 'Generator.seed' },
  { name: 'Generator#int', params: 'n:number', args: () => [3], self: () => gen, where: 'Generator.int' },
  { name: 'Generator#uniformArray', params: 'n:number lo?:number hi?:number', args: () => [2], self: () => gen, where: 'Generator.uniformArray' },
  { name: 'Generator#normalArray', params: 'n:number mean?:number std?:number', args: () => [2], self: () => gen, where: 'Generator.normalArray' },
  { name: 'Generator#permutation', params: 'n:number', args: () => [3], self: () => gen, where: 'Generator.permutation' },
  { name: 'Generator#setState', params: 'state:object', args: () => [gen.state()], self: () => new Generator(0), where: 'Generator.setState' },
  { name: 'nn.Module#namedParameters', params: 'prefix?:string', args: () => [], self: () => new nn.LayerNorm(4) },
  { name: 'nn.Module#changedSince', params: 'versions:array', args: (m: nn.Module) => [m.versions()], self: () => new nn.LayerNorm(4) },
  { name: 'nn.Module#loadStateDict', params: 'state:instance opts?:object', args: (m: nn.Module) => [m.stateDict()], self: () => new nn.LayerNorm(4), fields: { opts: 'strict?:boolean' } },
  { name: 'nn.Module#to', params: 'device:enum', args: () => ['cpu'], self: () => new nn.LayerNorm(4) },
  { name: 'nn.Module#train', params: 'on?:boolean', args: () => [], self: () => new nn.LayerNorm(4) },
  { name: 'nn.Module#numParameters', params: 'trainableOnly?:boolean', args: () => [], self: () => new nn.LayerNorm(4) },
  { name: 'nn.Linear#forward', params: 'x:instance', args: () => [t([2, 2])], self: () => new nn.Linear(2, 3, gen), where: 'Linear.forward' },
  { name: 'nn.Linear#product', params: 'x:instance', args: () => [t([2, 2])], self: () => new nn.Linear(2, 3, gen), where: 'Linear.product' },
  { name: 'nn.LayerNorm#forward', params: 'x:instance', args: () => [t([2, 4])], self: () => new nn.LayerNorm(4), where: 'LayerNorm.forward' },
  { name: 'nn.Attention#forward', params: 'x:instance', args: () => [t([1, 2, 4])], self: () => new nn.Attention(4, 2, gen), where: 'Attention.forward' },
  { name: 'nn.Mlp#forward', params: 'x:instance', args: () => [t([1, 2, 4])], self: () => new nn.Mlp(4, 8, gen), where: 'Mlp.forward' },
  { name: 'nn.Block#forward', params: 'x:instance', args: () => [t([1, 2, 4])], self: () => new nn.Block(4, 2, 2, gen), where: 'Block.forward' },
  { name: 'nn.PatchEmbed#forward', params: 'images:instance', args: () => [t([1, 1, 4, 4])], self: () => new nn.PatchEmbed(4, 2, 1, 4, gen), where: 'PatchEmbed.forward' },
  { name: 'MaskedAutoencoder#randomMasking', params: 'B:number maskRatio:number noise?:instance generator?:instance', args: () => [1, 0.75] },
  { name: 'MaskedAutoencoder#embedAsync', params: 'images:instance opts?:object', args: () => [t([1, 1, 8, 8])], fields: { opts: 'precision?:enum|null' } },
  { name: 'MaskedAutoencoder#loadStateDict', params: 'state:instance opts?:object', args: () => [model.stateDict()], fields: { opts: 'strict?:boolean' } },
  { name: 'MaskedAutoencoder#parameterGroups', params: 'weightDecay?:number', args: () => [] },
  { name: 'VisionTransformerClassifier#forward', params: 'images:instance opts?:object', args: () => [t([1, 1, 8, 8])], self: () => classifier, where: 'classifier', fields: { opts: 'precision?:enum|null' } },
  { name: 'VisionTransformerClassifier#forwardAsync', params: 'images:instance opts?:object', args: () => [t([1, 1, 8, 8])], self: () => classifier, fields: { opts: 'precision?:enum|null' } },
  { name: 'VisionTransformerClassifier#forwardFeatures', params: 'images:instance precision?:enum|null', args: () => [t([1, 1, 8, 8])], self: () => classifier, where: 'classifier' },
  { name: 'VisionTransformerClassifier#forwardHead', params: 'features:instance', args: () => [t([1, 8])], self: () => classifier, where: 'classifier' },
  { name: 'VisionTransformerClassifier#loadEncoder', params: 'state:instance', args: () => [model.stateDict()], self: () => classifier },
  { name: 'ProbeHead#forward', params: 'x:instance', args: () => [t([2, 4])], self: () => new api.ProbeHead(4, 2, 0.01, gen), where: 'ProbeHead.forward' },
  { name: 'BatchNormNoAffine#forward', params: 'x:instance', args: () => [t([2, 4])], self: () => new api.BatchNormNoAffine(4), where: 'BatchNormNoAffine.forward' },
  { name: 'AdamW#loadStateDict', params: 'state:object', args: (o: api.AdamW) => [o.stateDict()], self: () => new api.AdamW([t([2])], { lr: 1e-3 }), where: 'AdamW.loadStateDict' },
  { name: 'LARS#momentumOf', params: 'p:instance', args: (o: api.LARS) => [o.groups[0]!.params[0]], self: () => new api.LARS([t([2])], { lr: 0.1 }), where: 'LARS.momentumOf' },
  { name: 'data.InMemoryDataset#get', params: 'index:number', args: () => [0], self: () => dataset, where: 'Dataset.get' },
  { name: 'data.InMemoryDataset#getPixels', params: 'index:number', args: () => [0], self: () => dataset, where: 'Dataset.getPixels' },
  { name: 'data.ImageFolderDataset#get', params: 'index:number', args: () => [0], self: () => folderDataset, where: 'Dataset.get' },
  { name: 'data.ImageFolderDataset#getPixels', params: 'index:number', args: () => [0], self: () => folderDataset, where: 'Dataset.getPixels' },
  { name: 'data.ShardDataset#get', params: 'index:number', args: () => [0], self: () => shardDataset, where: 'Dataset.get' },
  { name: 'data.ShardDataset#getPixels', params: 'index:number', args: () => [0], self: () => shardDataset, where: 'Dataset.getPixels' },
  { name: 'data.ShardDataset#readRecord', params: 'index:number', args: () => [0], self: () => shardDataset, where: 'ShardDataset.readRecord' },
  { name: 'data.ShardDataset#slice', params: 'start:number end:number', args: () => [0, 1], self: () => shardDataset, where: 'ShardDataset.slice' },
  { name: 'data.ShardDataset#pick', params: 'indices:array', args: () => [[1, 0]], self: () => shardDataset, where: 'ShardDataset.pick' },
  { name: 'data.DataLoader#epoch', params: 'epoch:number opts?:object', args: () => [0], self: () => loader, where: 'DataLoader', fields: { opts: 'startAt?:int[0,)' } },
  { name: 'data.DataLoader#epochStallMs', params: 'epoch:number', args: () => [0], self: () => loader, where: 'DataLoader' },
  { name: 'data.DataLoader#order', params: 'epoch:number', args: () => [0], self: () => loader, where: 'DataLoader' },
  { name: 'Communicator#allreduce', params: 'values:array op?:enum what?:string', args: () => [[1]], self: () => comm, where: 'Communicator.allreduce' },
  { name: 'Communicator#broadcast', params: 'bytes:instance|null root?:number what?:string', args: () => [new Uint8Array(1)], self: () => comm, where: 'Communicator.broadcast' },
  { name: 'Communicator#broadcastJson', params: 'value?:any root?:number what?:string', args: () => [1], self: () => comm, where: 'Communicator.broadcastJson' },
  { name: 'Communicator#allgather', params: 'bytes:instance what?:string', args: () => [new Uint8Array(1)], self: () => comm, where: 'Communicator.allgather' },
  { name: 'Communicator#allgatherJson', params: 'value?:any what?:string', args: () => [1], self: () => comm, where: 'Communicator.allgatherJson' },
  { name: 'Communicator#allgatherConcat', params: 'values:instance what?:string', args: () => [new Float32Array(1)], self: () => comm, where: 'Communicator.allgatherConcat' },
  { name: 'Communicator#barrier', params: 'what?:string', args: () => [], self: () => comm, where: 'Communicator.barrier' },
  { name: 'MetricAccumulator#add', params: 'logits:instance labels:array', args: () => [new Float32Array(4), [0, 1]], self: () => new api.MetricAccumulator(2), where: 'MetricAccumulator.add' },
  { name: 'Mixup#apply', params: 'images:instance shape:array labels:array gen:instance', args: () => [new Float32Array(8), [2, 1, 2, 2], [0, 1], gen], self: () => new api.Mixup({ numClasses: 2 }), where: 'Mixup.apply' },

  // (the overrides' fields are checked by MaskedAutoencoder.fromPretrained and classifierConfigFrom, in their names)
  {
    name: 'embedImages',
    params: 'options:object',
    args: () => [{ checkpoint: tmp('checkpoint.safetensors'), data: tmp('images'), out: tmp('embeddings.safetensors') }],
    fields: { options: 'checkpoint:string data:string out:string batchSize?:int[1,) size?:int[1,) mean?:numbers std?:numbers onProgress?:function pool?:enum precision?:enum overrides?:object onBadFile?:enum signal?:instance' },
  },
  {
    name: 'classifyImages',
    params: 'options:object',
    args: () => [{ checkpoint: tmp('classifier.safetensors'), data: tmp('images') }],
    fields: { options: 'checkpoint:string data:string batchSize?:int[1,) size?:int[1,) mean?:numbers std?:numbers onProgress?:function labels?:string topk?:int[1,) overrides?:object onResult?:function onBadFile?:enum signal?:instance' },
  },
];

/**
 * Exports with no row, and why. Functions that take no arguments are listed by FUNCTIONS_WITHOUT_ARGS below,
 * checked to take none.
 */
const LEFT_OUT: Record<string, string> = {
  'new nn.Module': 'takes no arguments (the base class of the layers)',
  'new Communicator': 'its constructor is private: Communicator.single and Communicator.open make one',
  'new AgreedError': 'an Error subclass: takes any message, as Error does',
  // instance methods
  'Tensor#view': '@internal (a tensor over a native handle that shares the storage, for ops)',
  'Tensor#moveTo': '@internal (Module.to moves its parameters with it; users call Tensor.to)',
  'Tensor#adoptHandle': '@internal (the inference worker gives a parameter its storage)',
  'Tensor#adopt': '@internal (tidy moves its result into the enclosing scope)',
  'Tensor#untrack': 'private',
  'nn.Module#param': 'protected (a layer registers its parameters)',
  'nn.Module#module': 'protected (a layer registers its sub-layers)',
  'MaskedAutoencoder#checkImages': 'private',
  'MaskedAutoencoder#withMaskTokens': 'private',
  'MaskedAutoencoder#checkMaskingInputs': 'private',
  'MaskedAutoencoder#drawMasking': 'private',
  'AdamW#forget': 'private',
  'AdamW#moments': 'private',
  'GradReducer#launch': 'private',
  'GradReducer#reset': 'private',
  'MatmulRate#rate': 'private',
  'data.DataLoader#arrival': 'private',
  'data.DataLoader#fail': 'private',
  'data.DataLoader#onReply': 'private',
  'data.DataLoader#post': 'private',
  'data.DataLoader#recycle': 'private',
  'data.DataLoader#rejectAll': 'private',
  'data.DataLoader#startWorkers': 'private',
  'data.DataLoader#submit': 'private',
  'data.DataLoader#warnSlow': 'private',
  'Communicator#allreduceGrads': 'needs the native communicator of an MPI or NCCL run (Communicator.single has none): tried by the distributed tests',
  'Communicator#wait': "waits for a ticket of allreduceGrads, which needs an MPI or NCCL run",
  'Communicator#startNccl': 'starts NCCL on a CUDA device: needs a GPU and the NCCL library',
  'Communicator#fail': 'takes any value as the error (an Error or anything String() reads)',
  'Communicator#abort': 'ends the process (process.exit on Communicator.single, MPI_Abort in a run)',
};

/** Exports that take no arguments, so have no argument to get wrong. */
const FUNCTIONS_WITHOUT_ARGS = [
  'liveTensors', 'hostReadCount', 'ops.fusedOps', 'presetNames', 'Communicator.single', 'info', 'cpuModel',
];

/** Public instance methods that take no arguments (checked to declare none). */
const METHODS_WITHOUT_ARGS = [
  'Tensor#data', 'Tensor#dataSync', 'Tensor#intDataSync', 'Tensor#item', 'Tensor#dispose', 'Tensor#keep', 'Tensor#toString',
  'Generator#nextUint32', 'Generator#uniform', 'Generator#normal', 'Generator#state',
  'nn.Module#parameters', 'nn.Module#versions', 'nn.Module#stateDict', 'nn.Module#zeroGrad', 'nn.Module#eval', 'nn.Module#dispose',
  'MaskedAutoencoder#dispose', 'VisionTransformerClassifier#dispose', 'VisionTransformerClassifier#encoderParameterNames',
  'AdamW#step', 'AdamW#zeroGrad', 'AdamW#stateDict', 'AdamW#dispose', 'LARS#step', 'LARS#zeroGrad',
  'data.InMemoryDataset#workerSpec', 'data.ImageFolderDataset#workerSpec', 'data.ShardDataset#workerSpec', 'data.DataLoader#close',
  'Communicator#now', 'Communicator#defaultThreads', 'GradReducer#finish', 'MatmulRate#measure', 'MatmulRate#sample', 'MatmulRate#dispose',
  'MetricAccumulator#result',
];

/** Whether `fn`'s source declares no parameter: `name() {`, `async name() {`, `function name() {` (length is 0 for defaults too). */
function declaresNoParameters(fn: unknown): boolean {
  return /^(async\s+)?(function\s*)?\*?\s*[\w$]*\s*\(\s*\)/.test(Function.prototype.toString.call(fn));
}

/** The value at `path` in the exports ('data.normalize', 'Tensor.zeros'), and what holds it (`this` for a static method). */
function lookup(path: string): { fn: (...args: unknown[]) => unknown; self: unknown } {
  let self: unknown = undefined;
  let v: unknown = api;
  for (const key of path.split('.')) {
    self = v;
    v = (v as Record<string, unknown>)[key];
  }
  if (typeof v !== 'function') throw new Error(`${path} is not a function export`);
  return { fn: v as (...args: unknown[]) => unknown, self };
}

/**
 * Calls `row` with `args` (on `self` for a method): returns what it throws or rejects with, or `none` when it does
 * neither. An async generator (DataLoader#epoch) is run to its first item.
 */
const none = Symbol('none');
async function failureOf(row: Row, self: unknown, args: unknown[]): Promise<unknown> {
  const name = row.name;
  try {
    let r: unknown;
    if (name.startsWith('new ')) {
      const C = lookup(name.slice(4)).fn as unknown as new (...a: unknown[]) => unknown;
      r = new C(...args);
    } else if (name.includes('#')) {
      const method = name.slice(name.indexOf('#') + 1);
      r = (self as Record<string, (...a: unknown[]) => unknown>)[method]!(...args);
    } else {
      const { fn, self } = lookup(name);
      r = fn.apply(self, args);
    }
    // pretrainInWorker returns { result, stop }
    if (r && typeof r === 'object' && 'result' in r && 'stop' in r) {
      (r as { stop(): void }).stop();
      r = (r as { result: Promise<unknown> }).result;
    }
    if (r && typeof r === 'object' && Symbol.asyncIterator in r) {
      const it = r as AsyncGenerator<unknown>;
      await it.next();
      await it.return(undefined);
    }
    await r;
  } catch (e) {
    return e;
  }
  return none;
}

function whereOf(row: Row): string {
  if (row.where) return row.where;
  const name = row.name.replace(/^new /, '');
  return name.slice(Math.max(name.lastIndexOf('.'), name.lastIndexOf('#')) + 1);
}

/** The receiver of a method row: `self()`, or the small model for MaskedAutoencoder's. */
function selfOf(row: Row): unknown {
  if (!row.name.includes('#')) return undefined;
  if (row.self) return row.self();
  if (row.name.startsWith('MaskedAutoencoder#')) return model;
  throw new Error(`row ${row.name} has no self`);
}

function show(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `'${v}'`;
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  if (v !== null && typeof v === 'object') return '{}';
  return String(v);
}

describe('every export refuses bad arguments with an Error naming itself and the argument', () => {
  for (const row of ROWS) {
    it(row.name, async () => {
      const where = whereOf(row);
      const params = row.params.split(' ').map(parse);
      const problems: string[] = [];
      for (const [i, p] of params.entries()) {
        const bad = [...BAD[p.kind], ...(p.optional ? [] : [undefined])].filter((v) => !(v === null && p.nullable));
        for (const v of bad) {
          const self = selfOf(row);
          const args = row.args(self);
          while (args.length < i) args.push(undefined);
          args[i] = v;
          const call = `${row.name}(${p.name} = ${show(v)})`;
          const e = await failureOf(row, self, args);
          if (e === none) problems.push(`${call} did not throw`);
          else if (!(e instanceof Error)) problems.push(`${call} threw a non-Error ${String(e)}`);
          else if (e instanceof TypeError || e instanceof RangeError) problems.push(`${call} threw ${e.name}: ${e.message}`);
          else if (!e.message.startsWith(`${where}: `)) problems.push(`${call}: message does not start with '${where}: ': ${e.message}`);
          else if (!new RegExp(`\\b${p.name}\\b`).test(e.message)) problems.push(`${call}: message does not name ${p.name}: ${e.message}`);
        }
      }
      expect(problems, `\n${problems.join('\n')}\n`).toEqual([]);
    }, 60_000);
  }
});

/** The bad values of a field's kind: BAD's, and NaN and Infinity for numbers, 1.5 for integers, a bad item for arrays. */
const FIELD_BAD: Record<string, unknown[]> = {
  number: [...BAD.number, NaN, Infinity],
  int: [...BAD.number, NaN, Infinity, 1.5],
  numbers: [...BAD.array, ['1'], [NaN]],
  strings: [...BAD.array, [1]],
};

/**
 * One field of an options object: 'name:kind' as parse reads it, 'a.b' for field b of field a, and after a number's
 * kind its range in interval notation ('[1,)', '(0,1]'), which adds a value just outside each end (the end itself
 * where it is open; 1 beyond it for an integer, 0.5 for other numbers, where it is closed).
 */
function parseField(spec: string): { path: string[]; name: string; bad: unknown[] } {
  const m = /^([\w.]+)(\??):(\w+)(\|null)?(?:([[(])([^,]*),([^\])]*)([\])]))?$/.exec(spec);
  const kind = m?.[3] ?? '';
  const kindBad = FIELD_BAD[kind] ?? (kind in BAD ? BAD[kind as Kind] : undefined);
  if (!m || !kindBad) throw new Error(`bad field spec '${spec}'`);
  const path = m[1]!.split('.');
  const bad = [...kindBad, ...(m[2] === '?' ? [] : [undefined])];
  if (m[5]) {
    const step = kind === 'int' ? 1 : 0.5;
    const [lo, hi] = [m[6]!, m[7]!];
    if (lo !== '') bad.push(m[5] === '(' ? Number(lo) : Number(lo) - step);
    if (hi !== '') bad.push(m[8] === ')' ? Number(hi) : Number(hi) + step);
  }
  return { path, name: path[path.length - 1]!, bad: bad.filter((v) => !(v === null && m[4])) };
}

/** `obj` (an options object, or undefined) with the field at `path` set to `v`; the objects on the way are copies. */
function withField(obj: unknown, path: string[], v: unknown): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...(obj as object | undefined) };
  const [k, ...rest] = path;
  copy[k!] = rest.length ? withField(copy[k!], rest, v) : v;
  return copy;
}

/** A misspelling of `name` (its second letter dropped: 'batchSize' -> 'btchSize'), an option no function takes. */
function typo(name: string): string {
  return name.length > 2 ? name[0] + name.slice(2) : `${name}x`;
}

describe('every option field refuses bad values with an Error naming the function and the field', () => {
  for (const row of ROWS.filter((r) => r.fields)) {
    it(row.name, async () => {
      const where = whereOf(row);
      const params = row.params.split(' ').map(parse);
      const problems: string[] = [];
      for (const [param, specs] of Object.entries(row.fields!)) {
        const i = params.findIndex((p) => p.name === param);
        if (i < 0) throw new Error(`row ${row.name} has fields for ${param}, which is not one of its parameters`);
        const fields = specs.split(' ').map(parseField);
        // [what the message must name, the field's path, the bad value]
        const tries: [string, string[], unknown][] = fields.flatMap((f) => f.bad.map((v): [string, string[], unknown] => [f.name, f.path, v]));
        // an unknown option, where the object refuses them: the message quotes it
        const unknown = typo(fields[0]!.name);
        if (!row.ignoresUnknownKeys?.includes(param)) tries.push([`'${unknown}'`, [unknown], 1]);
        for (const [name, path, v] of tries) {
          const self = selfOf(row);
          const args = row.args(self);
          while (args.length <= i) args.push(undefined);
          args[i] = withField(args[i], path, v);
          const call = `${row.name}(${param}.${path.join('.')} = ${show(v)})`;
          const e = await failureOf(row, self, args);
          if (e === none) problems.push(`${call} did not throw`);
          else if (!(e instanceof Error)) problems.push(`${call} threw a non-Error ${String(e)}`);
          else if (e instanceof TypeError || e instanceof RangeError) problems.push(`${call} threw ${e.name}: ${e.message}`);
          else if (!e.message.startsWith(`${where}: `)) problems.push(`${call}: message does not start with '${where}: ': ${e.message}`);
          else if (name.startsWith("'") ? !e.message.includes(name) : !new RegExp(`\\b${name}\\b`).test(e.message)) problems.push(`${call}: message does not name ${name}: ${e.message}`);
        }
      }
      expect(problems, `\n${problems.join('\n')}\n`).toEqual([]);
    }, 120_000);
  }
});

describe('the table', () => {
  it('has a row, a reason to leave it out, or no arguments for every function, class and instance method exported', () => {
    const exported: string[] = [];
    const visit = (o: Record<string, unknown>, prefix: string) => {
      for (const [k, v] of Object.entries(o)) {
        if (v !== null && typeof v === 'object' && (v as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag] === 'Module') visit(v as Record<string, unknown>, `${prefix}${k}.`);
        if (typeof v !== 'function') continue;
        const isClass = Function.prototype.toString.call(v).startsWith('class ');
        if (!isClass) {
          exported.push(`${prefix}${k}`);
          continue;
        }
        exported.push(`new ${prefix}${k}`);
        for (const s of Object.getOwnPropertyNames(v))
          if (!['length', 'name', 'prototype'].includes(s) && typeof (v as unknown as Record<string, unknown>)[s] === 'function') exported.push(`${prefix}${k}.${s}`);
      }
    };
    visit(api as unknown as Record<string, unknown>, '');
    // the instance methods of every exported class, each as 'X#method' of the exported class X that defines it (a
    // subclass's inherited methods under the base class: nn.Module#loadStateDict)
    const classPaths = new Map<unknown, string>();
    for (const name of exported) if (name.startsWith('new ')) classPaths.set(lookup(name.slice(4)).fn, name.slice(4));
    const methods = new Map<string, unknown>();
    for (const C of classPaths.keys())
      for (let proto = (C as { prototype: object }).prototype; proto && proto !== Object.prototype && proto !== Error.prototype; proto = Object.getPrototypeOf(proto)) {
        const owner = classPaths.get(proto.constructor) ?? `(unexported ${proto.constructor.name})`;
        for (const m of Object.getOwnPropertyNames(proto)) {
          const d = Object.getOwnPropertyDescriptor(proto, m)!;
          if (m !== 'constructor' && typeof d.value === 'function') methods.set(`${owner}#${m}`, d.value);
        }
      }
    const covered = new Set([...ROWS.map((r) => r.name), ...Object.keys(LEFT_OUT), ...FUNCTIONS_WITHOUT_ARGS, ...METHODS_WITHOUT_ARGS]);
    expect(exported.filter((n) => !covered.has(n))).toEqual([]);
    expect([...methods.keys()].filter((n) => !covered.has(n))).toEqual([]);
    // and nothing listed that is not exported
    const all = new Set([...exported, ...methods.keys()]);
    expect([...covered].filter((n) => !all.has(n))).toEqual([]);
    for (const name of FUNCTIONS_WITHOUT_ARGS) expect(lookup(name).fn.length, name).toBe(0);
    for (const name of METHODS_WITHOUT_ARGS) expect(declaresNoParameters(methods.get(name)), name).toBe(true);
  });
});
