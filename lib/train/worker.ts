/**
 * The worker-thread entry of pretrainInWorker: runs pretrain() with the options it was started with, posts every
 * event and the result to the parent, and stops at the next step boundary when the parent posts 'stop'.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pretrain, type PretrainOptions, type WorkerError } from './pretrain.js';

if (!parentPort) throw new Error('lib/train/worker.js must run in a worker thread (use pretrainInWorker)');
const port = parentPort;
const abort = new AbortController();
port.on('message', (m) => {
  if (m === 'stop') abort.abort();
});
try {
  const result = await pretrain({ ...(workerData as PretrainOptions), signal: abort.signal, onEvent: (event) => port.postMessage({ event }) });
  port.postMessage({ result });
} catch (e) {
  // as plain data: a cloned Error keeps no code, and no name but those of JavaScript's own errors
  const { name, message, stack, code } = e instanceof Error ? (e as NodeJS.ErrnoException) : { name: 'Error', message: String(e), stack: undefined, code: undefined };
  port.postMessage({ error: { name, message, ...(stack !== undefined ? { stack } : {}), ...(code !== undefined ? { code } : {}) } satisfies WorkerError });
}
port.close();
