// Process ids for tests of what a run leaves behind (locks, unfinished writes).
import { spawnSync } from 'node:child_process';

/** The pid of a process that has run and ended: a dead run's, as a lock or a temporary file's name gives it. */
export function endedPid(): number {
  const pid = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
  if (!(Number.isInteger(pid) && pid > 0)) throw new Error(`endedPid: the child process printed no pid (${pid})`);
  return pid;
}
