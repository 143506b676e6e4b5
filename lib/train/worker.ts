/**
 * The worker-thread entry of pretrainInWorker: runs pretrain() with the options it was started with, posts every
 * event and the result to the parent, and stops at the next step boundary once the parent's stop() set the shared flag
 * (read at each event, so that a stop made during a step ends the run after that step) or posted 'stop' (read while
 * the run awaits).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pretrain, type PretrainWorkerData, type WorkerError } from './pretrain.js';

if (!parentPort) throw new Error('lib/train/worker.js must run in a worker thread (use pretrainInWorker)');
const port = parentPort;
const { options, stop } = workerData as PretrainWorkerData;
const abort = new AbortController();
port.on('message', (m) => {
  if (m === 'stop') abort.abort();
});
try {
  const onEvent = (event: unknown) => {
    // pretrain() reads the signal after a step's events: one aborted here stops the run after this step
    if (Atomics.load(stop, 0) === 1) abort.abort();
    port.postMessage({ event });
  };
  const result = await pretrain({ ...options, signal: abort.signal, onEvent });
  port.postMessage({ result });
} catch (e) {
  // as plain data: a cloned Error keeps no code, and no name but those of JavaScript's own errors
  const { name, message, stack, code } = e instanceof Error ? (e as NodeJS.ErrnoException) : { name: 'Error', message: String(e), stack: undefined, code: undefined };
  port.postMessage({ error: { name, message, ...(stack !== undefined ? { stack } : {}), ...(code !== undefined ? { code } : {}) } satisfies WorkerError });
}
port.close();
