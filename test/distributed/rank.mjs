// One rank of a data-parallel test job (test/distributed/mpi.test.ts starts it under mpirun): runs pretrain() of the compiled
// package (dist/, made by `npm run build`) with the JSON options in argv[2], and prints one line
// `result {"rank", "losses", "weights"}` (weights: a checksum of every parameter, to compare the ranks).
// argv[3], when given, is a JSON fault for one rank: { rank, step, kind: 'throw' | 'kill' | 'stall' | 'stop', seconds }:
// at that optimizer step that rank's event handler throws an Error, kills its process with SIGKILL, blocks its
// thread for `seconds` (a rank that stops answering), or aborts that rank's AbortSignal (Ctrl-C on one rank).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { pretrain } from '../../dist/lib/train/pretrain.js';
import { loadCheckpoint } from '../../dist/lib/train/checkpoint.js';

const options = JSON.parse(process.argv[2]);
const fault = process.argv[3] ? JSON.parse(process.argv[3]) : null;
let rank = -1;
const stop = new AbortController();
// each rank's error also goes to TEST_RANK_ERRORS/rank-R.txt: mpirun may drop the output of a rank it ends when
// another rank exits first
let r;
try {
  r = await pretrain({
    ...options,
    signal: stop.signal,
    onEvent: (e) => {
      if (e.type === 'start') rank = e.rank;
      if (!fault || e.type !== 'step' || rank !== fault.rank || e.step !== fault.step) return;
      if (fault.kind === 'throw') throw new Error(`a fault injected at step ${e.step}`);
      if (fault.kind === 'kill') process.kill(process.pid, 'SIGKILL');
      if (fault.kind === 'stall') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, fault.seconds * 1000);
      if (fault.kind === 'stop') stop.abort();
    },
  });
} catch (e) {
  if (process.env.TEST_RANK_ERRORS) writeFileSync(join(process.env.TEST_RANK_ERRORS, `rank-${process.env.OMPI_COMM_WORLD_RANK ?? 0}.txt`), e.message);
  throw e;
}
const h = createHash('sha256');
if (r.rank === 0) {
  for (const [, t] of (await loadCheckpoint(r.checkpoint)).weights) h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
}
console.log('result ' + JSON.stringify({ rank: r.rank, worldSize: r.worldSize, steps: r.steps, stopped: r.stopped, losses: r.losses, weights: r.rank === 0 ? h.digest('hex') : null }));
