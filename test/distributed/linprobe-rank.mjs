// One rank of a data-parallel linear-probe test job (test/distributed/linprobe-mpi.test.ts starts it under mpirun):
// runs linprobe() of the compiled package (dist/, made by `npm run build`) with the JSON options in argv[2], and prints
// one line `result {"rank", "stopped", "top1"}`. argv[3], when given, is a JSON fault for one rank: { rank, epoch,
// kind: 'throw' | 'stop' }: after that epoch of the head that rank's event handler throws an Error, or aborts that
// rank's AbortSignal (Ctrl-C on one rank).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { linprobe } from '../../dist/lib/train/linprobe.js';
import { activeCommunicator } from '../../dist/lib/distributed/comm.js';

const options = JSON.parse(process.argv[2]);
const fault = process.argv[3] ? JSON.parse(process.argv[3]) : null;
const stop = new AbortController();
// each rank's error also goes to TEST_RANK_ERRORS/rank-R.txt: mpirun may drop the output of a rank it ends when
// another rank exits first
let r;
try {
  r = await linprobe({
    ...options,
    signal: stop.signal,
    onEvent: (e) => {
      if (!fault || e.type !== 'epoch' || activeCommunicator()?.rank !== fault.rank || e.epoch !== fault.epoch) return;
      if (fault.kind === 'throw') throw new Error(`a fault injected after epoch ${e.epoch}`);
      if (fault.kind === 'stop') stop.abort();
    },
  });
} catch (e) {
  if (process.env.TEST_RANK_ERRORS) writeFileSync(join(process.env.TEST_RANK_ERRORS, `rank-${process.env.OMPI_COMM_WORLD_RANK ?? 0}.txt`), e.message);
  throw e;
}
console.log('result ' + JSON.stringify({ rank: activeCommunicator()?.rank ?? 0, stopped: r.stopped, top1: r.top1 }));
