/**
 * Worker-thread entry of the DataLoader: rebuilds the dataset from its spec, then answers batch requests.
 *
 * Protocol (all messages structured-cloned; batch buffers are transferred, not copied):
 *   workerData          WorkerInit { dataset spec, pipeline config }
 *   main -> worker      WorkerRequest { type: 'batch', id, job } | { type: 'recycle', buffer } (a released batch's images)
 *   worker -> main      { type: 'batch', id, images, labels } | { type: 'error', id, message } | { type: 'warning', message }
 * Requests are handled concurrently (image decoding is asynchronous), each answered exactly once. An exception
 * outside a request crashes the worker; the DataLoader sees that through the Worker 'error' / 'exit' events.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { datasetFromSpec, type DatasetSpec } from './dataset.js';
import { buildBatch, type BatchJob, type PipelineConfig } from './pipeline.js';

export interface WorkerInit {
  dataset: DatasetSpec;
  config: PipelineConfig;
}

export type WorkerRequest = { type: 'batch'; id: number; job: BatchJob } | { type: 'recycle'; buffer: ArrayBuffer };

/** Released image buffers kept for reuse, at most this many. */
const POOL_SIZE = 2;

export type WorkerReply =
  | { type: 'batch'; id: number; images: Float32Array; labels: Int32Array }
  | { type: 'error'; id: number; message: string }
  | { type: 'warning'; message: string };

if (parentPort === null) throw new Error('lib/data/worker: this file is a worker-thread entry started by DataLoader, not a program');
const port = parentPort;
const post = (reply: WorkerReply, transfer: ArrayBuffer[] = []) => port.postMessage(reply, transfer);

const init = workerData as WorkerInit;
const dataset = datasetFromSpec(init.dataset, (message) => post({ type: 'warning', message }));

const pool: ArrayBuffer[] = [];

port.on('message', (request: WorkerRequest) => {
  if (request.type === 'recycle') {
    if (pool.length < POOL_SIZE) pool.push(request.buffer);
    return;
  }
  const { imageSize, inChans } = init.config;
  const k = pool.findIndex((b) => b.byteLength >= 4 * request.job.indices.length * inChans * imageSize * imageSize);
  buildBatch(dataset, init.config, request.job, k >= 0 ? pool.splice(k, 1)[0] : undefined).then(
    ({ images, labels }) => post({ type: 'batch', id: request.id, images, labels }, [images.buffer as ArrayBuffer, labels.buffer as ArrayBuffer]),
    (e: unknown) => post({ type: 'error', id: request.id, message: e instanceof Error ? e.message : String(e) }),
  );
});
