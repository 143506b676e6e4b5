/**
 * The worker-thread entry of embedAsync / forwardAsync (lib/infer/async.ts): builds the model without initialising
 * it (withoutInit), gives every parameter the storage the main thread shared (same memory, no copy), then answers
 * calls one at a time, in order.
 *
 * Protocol: workerData WorkerInit { kind, config, params: [{ name, id }], versions, threads, owner }; main -> worker
 * WorkerRequest { id, op, imagesId, precision, versions }; worker -> main { type: 'ready' } once, then
 * { type: 'result', id, resultId } or { type: 'error', id, message } per call; { type: 'fatal', message } if the model
 * cannot be built. A parameter whose version differs from the one last seen was changed on the main thread: the
 * worker's Tensor of it takes a new version too, so that its bf16 shadow is made again.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { noGrad } from '../autograd.js';
import { VisionTransformerClassifier, type ClassifierConfig } from '../classify/model.js';
import { MaskedAutoencoder } from '../mae/model.js';
import { toFloat32 } from '../mae/precision.js';
import type { MaeConfig } from '../mae/presets.js';
import { native } from '../native.js';
import { withoutInit } from '../nn/init.js';
import { Tensor, tidy } from '../tensor.js';
import type { WorkerInit, WorkerReply, WorkerRequest } from './async.js';

if (!parentPort) throw new Error('lib/infer/worker.js is a worker-thread entry of embedAsync / forwardAsync, not a program');
const port = parentPort;
const post = (m: WorkerReply) => port.postMessage(m);
const init = workerData as WorkerInit;

function build(): MaskedAutoencoder | VisionTransformerClassifier {
  native.setNumThreads(init.threads);
  const model = withoutInit(() =>
    init.kind === 'mae' ? new MaskedAutoencoder(init.config as MaeConfig) : new VisionTransformerClassifier(init.config as ClassifierConfig),
  );
  const ids = new Map(init.params.map((p) => [p.name, p.id]));
  const own = model.namedParameters();
  if (own.length !== ids.size || own.some(([name]) => !ids.has(name)))
    throw new Error(`the parameters shared (${ids.size}) are not those of the model built from its config (${own.length})`);
  for (const [name, p] of own) p.adoptHandle(native.takeTensor(ids.get(name)!));
  const byName = new Map(own);
  params = init.params.map((p) => byName.get(p.name)!);
  return model.eval();
}

let model: MaskedAutoencoder | VisionTransformerClassifier;
/** the parameters in the order of init.params, and the main thread's versions of them that this thread last saw */
let params: Tensor[] = [];
const versions = [...init.versions];
try {
  model = build();
  post({ type: 'ready' });
} catch (e) {
  post({ type: 'fatal', message: (e as Error).message });
  process.exit(1);
}

port.on('message', (r: WorkerRequest) => {
  let images: Tensor | null = null;
  try {
    images = new Tensor(native.takeTensor(r.imagesId));
    // values changed on the main thread (an optimizer step, write): this thread's copies of them (bf16 shadows) are stale
    r.versions.forEach((v, i) => {
      if (v !== versions[i]) {
        versions[i] = v;
        params[i]!.version++;
      }
    });
    const x = images;
    const out = noGrad(() =>
      tidy(() => {
        if (r.op === 'embed' && model instanceof MaskedAutoencoder) return model.embed(x, { precision: r.precision });
        if (r.op === 'forward' && model instanceof VisionTransformerClassifier) return toFloat32(model.forward(x, { precision: r.precision }));
        throw new Error(`${r.op} is not a method of this model`);
      }),
    );
    images.dispose(); // before the reply: the caller sees nothing of the call left in memory
    const resultId = native.shareTensor(out.handle, init.owner); // dropped with the caller's thread if never taken
    out.dispose();
    post({ type: 'result', id: r.id, resultId });
  } catch (e) {
    post({ type: 'error', id: r.id, message: (e as Error).message });
  } finally {
    images?.dispose();
  }
});
