// A pre-training run in its own process, for the crash test in pretrain.test.ts: runs pretrain() of the compiled
// package (dist/, made by `npm run build`) with the JSON options in argv[2]. With argv[3] = N the process kills
// itself with SIGKILL when the event of optimizer step N arrives, which is before that step's log line is
// written: an abrupt end at a known point, after the checkpoints of the earlier steps.
import { pretrain } from '../../dist/lib/train/pretrain.js';

const options = JSON.parse(process.argv[2]);
const killAt = process.argv[3] === undefined ? Infinity : Number(process.argv[3]);
await pretrain({
  ...options,
  onEvent: (e) => {
    if (e.type === 'step' && e.step >= killAt) process.kill(process.pid, 'SIGKILL');
  },
});
